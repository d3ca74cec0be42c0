package token

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small, strict JSON reader for the untrusted parts of a
// token (header and claims) and of a JWKS document. encoding/json accepts
// duplicate member names and is slow enough to matter next to a signature
// check; this reader rejects duplicates in every object, invalid UTF-8,
// lone surrogates, trailing data and nesting deeper than maxDepth, and
// returns strings that share memory with its input when they hold no escapes.

// maxDepth bounds the nesting of arrays and objects.
const maxDepth = 32

// maxNumericDate is 9999-12-31T23:59:59Z, the largest accepted NumericDate.
const maxNumericDate = 253402300799

var (
	errSyntax    = fmt.Errorf("%w: invalid JSON", ErrMalformed)
	errDuplicate = fmt.Errorf("%w: duplicate JSON member name", ErrMalformed)
	errDepth     = fmt.Errorf("%w: JSON nested too deeply", ErrMalformed)
	errTrailing  = fmt.Errorf("%w: data after the JSON object", ErrMalformed)
)

// scanner reads JSON from s, starting at i.
type scanner struct {
	s string
	i int
}

// ws skips white space.
func (d *scanner) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (d *scanner) peek() byte {
	d.ws()
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

// open consumes the '{' that starts an object.
func (d *scanner) open() bool {
	if d.peek() != '{' {
		return false
	}
	d.i++
	return true
}

// end reports whether only white space is left.
func (d *scanner) end() bool {
	d.ws()
	return d.i == len(d.s)
}

// member moves to the next member of the object whose '{' has been read:
// it consumes the ',' before it (unless first) or the closing '}'. It
// returns the decoded member name, leaving the scanner at the value, or
// done at the end of the object.
func (d *scanner) member(first bool) (name string, done bool, err error) {
	c := d.peek()
	if c == '}' {
		d.i++
		return "", true, nil
	}
	if !first {
		if c != ',' {
			return "", false, errSyntax
		}
		d.i++
		d.ws()
	}
	name, ok := d.str()
	if !ok {
		return "", false, errSyntax
	}
	if d.peek() != ':' {
		return "", false, errSyntax
	}
	d.i++
	d.ws()
	return name, false, nil
}

// str reads a string. Without escapes it returns a substring of the input.
func (d *scanner) str() (string, bool) {
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		return "", false
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.s); j++ {
		c := d.s[j]
		switch {
		case c == '"':
			v := d.s[start:j]
			if !ascii && !utf8.ValidString(v) {
				return "", false
			}
			d.i = j + 1
			return v, true
		case c == '\\':
			return d.strEscaped(start, j)
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// strEscaped finishes reading a string that starts at start and has its
// first backslash at j.
func (d *scanner) strEscaped(start, j int) (string, bool) {
	b := make([]byte, 0, j-start+16)
	b = append(b, d.s[start:j]...)
	for j < len(d.s) {
		c := d.s[j]
		switch {
		case c == '"':
			if !utf8.Valid(b) {
				return "", false
			}
			d.i = j + 1
			return string(b), true
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			j++
			continue
		}
		// An escape sequence.
		if j+1 >= len(d.s) {
			return "", false
		}
		e := d.s[j+1]
		j += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(d.s, j)
			if !ok {
				return "", false
			}
			j += 4
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by an escaped low surrogate
				// is a character; anything else is rejected.
				if r >= 0xdc00 || j+6 > len(d.s) || d.s[j] != '\\' || d.s[j+1] != 'u' {
					return "", false
				}
				r2, ok := hex4(d.s, j+2)
				if !ok {
					return "", false
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", false
				}
				j += 6
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", false
		}
	}
	return "", false
}

// hex4 decodes the four hex digits at s[i:].
func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// numericDate reads a NumericDate (RFC 7519, section 2). Only integers from
// 0 to maxNumericDate are accepted: no sign, fraction or exponent.
func (d *scanner) numericDate() (int64, bool) {
	start := d.i
	var n int64
	for d.i < len(d.s) {
		c := d.s[d.i]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
		d.i++
		if n > maxNumericDate {
			return 0, false
		}
	}
	digits := d.i - start
	if digits == 0 || (digits > 1 && d.s[start] == '0') {
		return 0, false
	}
	if d.i < len(d.s) {
		switch d.s[d.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return n, true
}

// skip reads and validates any value, checking objects for duplicate
// member names.
func (d *scanner) skip(depth int) error {
	if depth >= maxDepth {
		return errDepth
	}
	switch d.peek() {
	case '{':
		d.i++
		var names nameSet
		for first := true; ; first = false {
			name, done, err := d.member(first)
			if err != nil {
				return err
			}
			if done {
				return nil
			}
			if !names.add(name) {
				return errDuplicate
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
	case '[':
		d.i++
		if d.peek() == ']' {
			d.i++
			return nil
		}
		for {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			switch d.peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return nil
			default:
				return errSyntax
			}
		}
	case '"':
		if _, ok := d.str(); !ok {
			return errSyntax
		}
		return nil
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		if !d.number() {
			return errSyntax
		}
		return nil
	}
}

func (d *scanner) literal(lit string) error {
	if len(d.s)-d.i < len(lit) || d.s[d.i:d.i+len(lit)] != lit {
		return errSyntax
	}
	d.i += len(lit)
	return nil
}

// number reads a number per the JSON grammar (RFC 8259, section 6).
func (d *scanner) number() bool {
	if d.i < len(d.s) && d.s[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.digits() == 0:
		return false
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return false
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return false
		}
	}
	return true
}

func (d *scanner) digits() int {
	start := d.i
	for d.i < len(d.s) && '0' <= d.s[d.i] && d.s[d.i] <= '9' {
		d.i++
	}
	return d.i - start
}

// nameSet detects duplicate member names within one object. Small objects
// are checked by comparison; large ones switch to a map.
type nameSet struct {
	small [8]string
	n     int
	m     map[string]struct{}
}

// add records name and reports false if it was already present.
func (s *nameSet) add(name string) bool {
	if s.m != nil {
		if _, dup := s.m[name]; dup {
			return false
		}
		s.m[name] = struct{}{}
		return true
	}
	for _, v := range s.small[:s.n] {
		if v == name {
			return false
		}
	}
	if s.n < len(s.small) {
		s.small[s.n] = name
		s.n++
		return true
	}
	s.m = make(map[string]struct{}, 2*len(s.small))
	for _, v := range s.small {
		s.m[v] = struct{}{}
	}
	s.m[name] = struct{}{}
	return true
}

// checkJSON reports whether data is exactly one JSON value with no
// duplicate member names at any level and nothing after it.
func checkJSON(data string) error {
	d := scanner{s: data}
	if err := d.skip(0); err != nil {
		return err
	}
	if !d.end() {
		return errTrailing
	}
	return nil
}
