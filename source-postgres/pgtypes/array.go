package pgtypes

// Arrays arrive in PostgreSQL's array text syntax: "{1,2,NULL}",
// "{{1,2},{3,4}}", "[0:1]={a,b}", with elements double-quoted when they are
// empty, hold the delimiter, braces, quotes, backslashes or white space, or
// spell NULL; inside quotes a backslash escapes the next character.

// appendArrayJSON converts an array to nested JSON arrays, one level per
// dimension, converting each element by the element type.
func (t *Type) appendArrayJSON(dst, text []byte) ([]byte, error) {
	s := text
	if len(s) > 0 && s[0] == '[' {
		// Explicit bounds "[l:u]...=" precede an array whose lower bound is
		// not 1. JSON arrays have no bounds: drop them.
		for len(s) > 0 && s[0] != '=' {
			s = s[1:]
		}
		if len(s) == 0 {
			return dst, t.invalid(text)
		}
		s = s[1:]
	}
	if len(s) == 0 || s[0] != '{' {
		return dst, t.invalid(text)
	}
	if t.Elem == nil {
		return appendString(dst, text), nil
	}
	p := arrayParser{array: t, text: text, elem: t.Elem, delim: t.delim, flat: t.enc.FlattenArrays}
	dst, rest, err := p.appendDimension(dst, s, true)
	if err != nil {
		return dst, err
	}
	if len(rest) != 0 {
		return dst, t.invalid(text)
	}
	return dst, nil
}

type arrayParser struct {
	array   *Type
	text    []byte // the whole array, for errors
	elem    *Type
	delim   byte
	scratch []byte // an element with its quoting and escapes removed
	// flat writes the elements of every dimension into the outermost
	// JSON array (Encoding.FlattenArrays).
	flat bool
}

// appendDimension converts the brace-delimited list at the start of s and
// returns what follows it. outer is true for the outermost dimension.
func (p *arrayParser) appendDimension(dst, s []byte, outer bool) ([]byte, []byte, error) {
	brackets := outer || !p.flat
	if brackets {
		dst = append(dst, '[')
	}
	s = s[1:] // '{'
	if len(s) > 0 && s[0] == '}' {
		if brackets {
			dst = append(dst, ']')
		}
		return dst, s[1:], nil
	}
	for {
		var err error
		switch {
		case len(s) == 0:
			return dst, nil, p.malformed()
		case s[0] == '{':
			if dst, s, err = p.appendDimension(dst, s, false); err != nil {
				return dst, nil, err
			}
		default:
			if dst, s, err = p.appendElement(dst, s); err != nil {
				return dst, nil, err
			}
		}
		switch {
		case len(s) == 0:
			return dst, nil, p.malformed()
		case s[0] == p.delim:
			dst = append(dst, ',')
			s = s[1:]
		case s[0] == '}':
			if brackets {
				dst = append(dst, ']')
			}
			return dst, s[1:], nil
		default:
			return dst, nil, p.malformed()
		}
	}
}

// appendElement converts the element at the start of s and returns what
// follows it.
func (p *arrayParser) appendElement(dst, s []byte) ([]byte, []byte, error) {
	if s[0] != '"' {
		end := 0
		for end < len(s) && s[end] != p.delim && s[end] != '}' && s[end] != '\\' {
			end++
		}
		if end < len(s) && s[end] != '\\' {
			elem := s[:end]
			if len(elem) == 4 && (elem[0]|0x20) == 'n' && (elem[1]|0x20) == 'u' && (elem[2]|0x20) == 'l' && (elem[3]|0x20) == 'l' {
				return append(dst, "null"...), s[end:], nil
			}
			dst, err := p.elem.AppendJSON(dst, elem)
			return dst, s[end:], err
		}
	}
	// A quoted or escaped element: copy it without quotes and escapes.
	p.scratch = p.scratch[:0]
	quoted := false
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			p.scratch = append(p.scratch, s[i])
		case c == '"':
			quoted = !quoted
		case !quoted && (c == p.delim || c == '}'):
			dst, err := p.elem.AppendJSON(dst, p.scratch)
			return dst, s[i:], err
		default:
			p.scratch = append(p.scratch, c)
		}
	}
	return dst, nil, p.malformed()
}

// malformed reports an array whose text does not follow the syntax.
func (p *arrayParser) malformed() error {
	return p.array.invalid(p.text)
}
