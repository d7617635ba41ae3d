package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
)

// decodeStrict decodes the JSON object raw into the struct that dst points to.
//
// Unlike json.Decoder.DisallowUnknownFields it reports every unknown or
// ill-typed field with its full path ("advanced.chunk_size"), lists the known
// fields, matches names exactly rather than case-insensitively, and rejects
// duplicate keys. Values of fields tagged secret are never quoted in errors.
// Syntax errors and each field's errors say where, by line and column, so
// that a file can be fixed in an editor.
func decodeStrict(src []byte, dst any) error {
	raw := bytes.TrimSpace(src)
	if len(raw) == 0 {
		return errors.New("empty document, want a JSON object")
	}
	lead := len(src) - len(bytes.TrimLeft(src, " \t\r\n"))
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		if syntaxErr, ok := errors.AsType[*json.SyntaxError](err); ok {
			// Offset counts the bytes read, the offending one included.
			return fmt.Errorf("not valid JSON at %s: %w", position(src, lead+max(int(syntaxErr.Offset)-1, 0)), err)
		}
		return fmt.Errorf("not valid JSON: %w", err)
	}
	d := &decoder{src: src}
	return errors.Join(d.object(raw, lead, reflect.ValueOf(dst).Elem(), "")...)
}

// decoder decodes one document, src, and places errors in it.
type decoder struct{ src []byte }

// at appends to err where in the document the value at offset starts.
func (d *decoder) at(err error, offset int) error {
	return fmt.Errorf("%w (%s)", err, position(d.src, offset))
}

// position describes the byte offset of text as a line and column, both
// from 1, the column counted in characters as editors count them.
func position(text []byte, offset int) string {
	offset = min(offset, len(text))
	before := text[:offset]
	line := 1 + bytes.Count(before, []byte{'\n'})
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return fmt.Sprintf("line %d, column %d", line, 1+utf8.RuneCount(before[lineStart:]))
}

// object decodes the valid JSON value raw, found at offset in the
// document, into the struct v, whose fields are named prefix+name in
// errors.
func (d *decoder) object(raw json.RawMessage, offset int, v reflect.Value, prefix string) []error {
	if raw[0] != '{' {
		where := "the document"
		if prefix != "" {
			where = fmt.Sprintf("%q", strings.TrimSuffix(prefix, "."))
		}
		return []error{d.at(fmt.Errorf("%s must be a JSON object, got %s", where, describeJSON(raw, false)), offset)}
	}

	fields := jsonFields(v.Type())
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.Token() //nolint:errcheck // the opening brace, checked above

	var errs []error
	seen := make(map[string]bool)
	for dec.More() {
		// raw is valid JSON, so neither call can fail.
		tok, _ := dec.Token()
		key, _ := tok.(string)
		var value json.RawMessage
		_ = dec.Decode(&value)
		// The decoder stops right after the value, which has no spaces
		// around it.
		at := offset + int(dec.InputOffset()) - len(value)

		path := prefix + key
		if seen[key] {
			errs = append(errs, d.at(fmt.Errorf("%q is given more than once", path), at))
			continue
		}
		seen[key] = true

		field, ok := fields[key]
		if !ok {
			errs = append(errs, d.at(unknownFieldError(path, key, fields), at))
			continue
		}
		errs = append(errs, d.field(value, at, v.Field(field.index), path, field.secret)...)
	}
	return errs
}

func (d *decoder) field(raw json.RawMessage, offset int, v reflect.Value, path string, secret bool) []error {
	if string(raw) == "null" {
		v.SetZero()
		return nil
	}
	switch {
	case v.Kind() == reflect.Struct:
		return d.object(raw, offset, v, path+".")
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.object(raw, offset, v.Elem(), path+".")
	}
	if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
		return []error{d.at(fmt.Errorf("%q must be %s, got %s", path, describeType(v.Type()), describeJSON(raw, secret)), offset)}
	}
	return nil
}

type jsonField struct {
	index  int
	secret bool
}

// jsonFields maps the JSON names of t's fields to the fields.
func jsonFields(t reflect.Type) map[string]jsonField {
	fields := make(map[string]jsonField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = jsonField{
			index:  i,
			secret: strings.Contains(f.Tag.Get("jsonschema_extras"), "secret=true"),
		}
	}
	return fields
}

func unknownFieldError(path, key string, fields map[string]jsonField) error {
	names := make([]string, 0, len(fields))
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Errorf("%q is not a known field; did you mean %q? (names are case-sensitive)", path, name)
		}
		names = append(names, name)
	}
	// List the fields in declaration order, as the documentation does.
	slices.SortFunc(names, func(a, b string) int { return fields[a].index - fields[b].index })
	return fmt.Errorf("%q is not a known field; known fields are %s", path, strings.Join(names, ", "))
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "a " + t.Kind().String()
	}
}

// describeJSON describes a JSON value for an error message: the value itself,
// shortened, or only its kind when it is secret.
func describeJSON(raw json.RawMessage, secret bool) string {
	var kind string
	switch raw[0] {
	case '"':
		kind = "a string"
	case '{':
		kind = "an object"
	case '[':
		kind = "an array"
	case 't', 'f':
		kind = "a boolean"
	case 'n':
		kind = "null"
	default:
		kind = "a number"
	}
	if secret {
		return kind
	}
	const maxLen = 40
	if len(raw) > maxLen {
		start := raw[:maxLen]
		for !utf8.Valid(start) {
			start = start[:len(start)-1]
		}
		return fmt.Sprintf("%s starting %s...", kind, start)
	}
	return string(raw)
}
