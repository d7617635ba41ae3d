package testsupport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MergePatch applies patch to target as an RFC 7396 JSON merge patch, the
// way the runtime folds a checkpoint's state update into the connector state.
// An absent (nil) target is treated as null. Objects in the result have
// sorted keys and no insignificant whitespace.
func MergePatch(target, patch json.RawMessage) (json.RawMessage, error) {
	patchFields, err := objectFields(patch)
	if err != nil {
		return nil, fmt.Errorf("merge patch: %w", err)
	}
	if patchFields == nil { // not an object: the patch replaces the target
		var out bytes.Buffer
		if err := json.Compact(&out, patch); err != nil {
			return nil, fmt.Errorf("merge patch: %w", err)
		}
		return out.Bytes(), nil
	}
	var targetFields map[string]json.RawMessage
	if len(bytes.TrimSpace(target)) > 0 {
		if targetFields, err = objectFields(target); err != nil {
			return nil, fmt.Errorf("merge patch target: %w", err)
		}
	}
	if targetFields == nil {
		targetFields = make(map[string]json.RawMessage, len(patchFields))
	}
	for name, value := range patchFields {
		if isNull(value) {
			delete(targetFields, name)
			continue
		}
		merged, err := MergePatch(targetFields[name], value)
		if err != nil {
			return nil, err
		}
		targetFields[name] = merged
	}
	return json.Marshal(targetFields)
}

// Reduce reduces documents by key, the way the runtime combines the documents
// of a collection whose schema carries the connector's reduce annotations:
// a document with _meta.op "d" deletes its key; any other document is merged
// into the previous one for its key property by property, a later value
// replacing an earlier one. _meta is merged the same way one level further
// down, except that _meta.before keeps its first value. Nested column values
// (e.g. JSON columns) are replaced, not merged: the schema does not annotate
// them, and unannotated locations default to last-write-wins.
//
// key holds the collection key as JSON pointers, e.g. ["/id"]. The result
// maps the JSON encoding of each document's key values, e.g. `[1]` or
// `["a",2]`, to its reduced document.
func Reduce(docs []json.RawMessage, key []string) (map[string]json.RawMessage, error) {
	pointers := make([][]string, len(key))
	for i, ptr := range key {
		tokens, err := parsePointer(ptr)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", ptr, err)
		}
		pointers[i] = tokens
	}

	// _meta of a reduced document stays decoded while documents merge into it.
	type reducedDoc struct{ fields, meta map[string]json.RawMessage }
	reduced := make(map[string]*reducedDoc)
	var keyBuf bytes.Buffer
	for i, doc := range docs {
		fields, err := objectFields(doc)
		if err != nil || fields == nil {
			return nil, fmt.Errorf("document %d is not a JSON object: %s", i, excerpt(doc))
		}
		keyBuf.Reset()
		keyBuf.WriteByte('[')
		for j, tokens := range pointers {
			value, err := lookup(fields, tokens)
			if err != nil {
				return nil, fmt.Errorf("document %d: key %q: %w", i, key[j], err)
			}
			if j > 0 {
				keyBuf.WriteByte(',')
			}
			if err := json.Compact(&keyBuf, value); err != nil {
				return nil, fmt.Errorf("document %d: key %q: %w", i, key[j], err)
			}
		}
		keyBuf.WriteByte(']')

		meta, err := objectFields(fields["_meta"])
		if err != nil {
			return nil, fmt.Errorf("document %d: _meta: %w", i, err)
		}
		if string(bytes.TrimSpace(meta["op"])) == `"d"` {
			delete(reduced, keyBuf.String())
			continue
		}
		prev, ok := reduced[string(keyBuf.Bytes())] // no allocation for the lookup
		if !ok {
			reduced[keyBuf.String()] = &reducedDoc{fields, meta}
			continue
		}
		for name, value := range fields {
			if name != "_meta" {
				prev.fields[name] = value
			}
		}
		switch raw, has := fields["_meta"]; {
		case meta != nil && prev.meta != nil:
			for name, value := range meta {
				if _, had := prev.meta[name]; name == "before" && had {
					continue // firstWriteWins
				}
				prev.meta[name] = value
			}
		case has: // not both objects: the later value replaces the earlier
			prev.fields["_meta"], prev.meta = raw, meta
		}
	}

	out := make(map[string]json.RawMessage, len(reduced))
	for k, r := range reduced {
		if r.meta != nil {
			meta, err := json.Marshal(r.meta)
			if err != nil {
				return nil, err
			}
			r.fields["_meta"] = meta
		}
		doc, err := json.Marshal(r.fields)
		if err != nil {
			return nil, err
		}
		out[k] = doc
	}
	return out, nil
}

// objectFields decodes a JSON object into its fields. It returns nil fields
// and no error for valid JSON that is not an object (including empty input).
func objectFields(raw json.RawMessage) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return nil, fmt.Errorf("invalid JSON: %s", excerpt(raw))
		}
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return fields, nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

func isObject(raw json.RawMessage) bool {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

// parsePointer splits an RFC 6901 JSON pointer into its unescaped tokens.
func parsePointer(ptr string) ([]string, error) {
	if ptr == "" {
		return nil, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, errors.New(`a JSON pointer must be empty or start with "/"`)
	}
	tokens := strings.Split(ptr[1:], "/")
	for i, tok := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
	}
	return tokens, nil
}

// lookup resolves pointer tokens within a decoded object.
func lookup(fields map[string]json.RawMessage, tokens []string) (json.RawMessage, error) {
	if len(tokens) == 0 {
		return json.Marshal(fields)
	}
	value, ok := fields[tokens[0]]
	for i := 1; ok && i < len(tokens); i++ {
		trimmed := bytes.TrimLeft(value, " \t\r\n")
		switch {
		case len(trimmed) > 0 && trimmed[0] == '{':
			var next map[string]json.RawMessage
			if err := json.Unmarshal(trimmed, &next); err != nil {
				return nil, err
			}
			value, ok = next[tokens[i]]
		case len(trimmed) > 0 && trimmed[0] == '[':
			var items []json.RawMessage
			if err := json.Unmarshal(trimmed, &items); err != nil {
				return nil, err
			}
			index, err := strconv.Atoi(tokens[i])
			ok = err == nil && index >= 0 && index < len(items)
			if ok {
				value = items[index]
			}
		default:
			ok = false
		}
	}
	if !ok {
		return nil, errors.New("no such value in the document")
	}
	return value, nil
}

// excerpt shortens JSON for an error message.
func excerpt(raw []byte) string {
	const max = 200
	if len(raw) > max {
		return string(raw[:max]) + "…"
	}
	return string(raw)
}
