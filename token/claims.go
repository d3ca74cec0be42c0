package token

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Claims are the claims of an RFC 9068 JWT access token, also used for the
// gateway's internal tokens. Times are Unix seconds; zero means absent.
//
// Claims marshals with encoding/json as the JWT claim set (empty members are
// omitted). [Verifier.Verify] and [Issuer.Issue] use a faster, stricter
// reader and writer that produce and accept the same JSON.
type Claims struct {
	// Issuer is "iss", the issuer identifier.
	Issuer string `json:"iss,omitempty"`
	// Subject is "sub": the user, or the client for client credentials.
	Subject string `json:"sub,omitempty"`
	// Audience is "aud", the resource servers the token is meant for.
	Audience Audience `json:"aud,omitempty"`
	// ExpiresAt is "exp".
	ExpiresAt int64 `json:"exp,omitempty"`
	// IssuedAt is "iat".
	IssuedAt int64 `json:"iat,omitempty"`
	// NotBefore is "nbf", optional.
	NotBefore int64 `json:"nbf,omitempty"`
	// AuthTime is "auth_time", when the user authenticated, optional.
	AuthTime int64 `json:"auth_time,omitempty"`
	// ID is "jti", the unique token id used for revocation.
	ID string `json:"jti,omitempty"`
	// ClientID is "client_id", the OAuth client the token was issued to.
	ClientID string `json:"client_id,omitempty"`
	// Scope is "scope", space-separated scopes (RFC 9068, section 2.2.3).
	Scope string `json:"scope,omitempty"`
	// Actor is "act", the RFC 8693 delegation chain, optional.
	Actor *Actor `json:"act,omitempty"`
	// Kind is the private claim "gh_kind", set on the gateway's internal
	// tokens to the kind of credential the caller presented.
	Kind Kind `json:"gh_kind,omitempty"`
	// KeyID is the private claim "gh_key_id": the API key id when Kind is
	// KindAPIKey.
	KeyID string `json:"gh_key_id,omitempty"`
}

// Scopes returns the scopes in c.Scope, split on spaces.
func (c *Claims) Scopes() []string {
	return splitScope(c.Scope)
}

// splitScope splits a space-separated scope string, ignoring empty tokens.
func splitScope(s string) []string {
	if s == "" {
		return nil
	}
	out := make([]string, 0, strings.Count(s, " ")+1)
	for f := range strings.SplitSeq(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Principal returns the principal these claims describe. Kind defaults to
// KindJWT when c.Kind is empty. The Audience slice is copied; Actor is
// shared.
func (c *Claims) Principal() Principal {
	p := Principal{
		Subject:  c.Subject,
		ClientID: c.ClientID,
		Scopes:   c.Scopes(),
		Audience: slices.Clone([]string(c.Audience)),
		Kind:     c.Kind,
		KeyID:    c.KeyID,
		TokenID:  c.ID,
		Actor:    c.Actor,
	}
	if p.Kind == "" {
		p.Kind = KindJWT
	}
	if c.ExpiresAt != 0 {
		p.ExpiresAt = time.Unix(c.ExpiresAt, 0)
	}
	return p
}

// Audience is the "aud" claim. It marshals as a JSON string when it has one
// element and as an array otherwise, and accepts either form (RFC 7519,
// section 4.1.3).
type Audience []string

// Contains reports whether s is one of the audiences, compared exactly.
func (a Audience) Contains(s string) bool {
	return slices.Contains(a, s)
}

// MarshalJSON implements [json.Marshaler].
func (a Audience) MarshalJSON() ([]byte, error) {
	return appendAudience(nil, a), nil
}

// UnmarshalJSON implements [json.Unmarshaler]. It accepts a string or an
// array of strings and nothing else. (Verify, stricter, also rejects an
// empty array.)
func (a *Audience) UnmarshalJSON(b []byte) error {
	d := scanner{s: string(b)}
	if d.peek() == '[' {
		e := scanner{s: d.s, i: d.i + 1}
		if e.peek() == ']' {
			e.i++
			if !e.end() {
				return errTrailing
			}
			*a = Audience{}
			return nil
		}
	}
	v, err := d.audience()
	if err != nil {
		return err
	}
	if !d.end() {
		return errTrailing
	}
	*a = v
	return nil
}

// Claim names, as bits for duplicate detection.
const (
	bitIss = 1 << iota
	bitSub
	bitAud
	bitExp
	bitIat
	bitNbf
	bitAuthTime
	bitJti
	bitClientID
	bitScope
	bitAct
	bitKind
	bitKeyID
)

// claimTypeError reports a claim of the wrong type. name is always one of
// the fixed claim names above, never token content.
func claimTypeError(name string) error {
	return fmt.Errorf("%w: claim %q has the wrong type or value", ErrMalformed, name)
}

// parseClaims reads a claim set strictly into c: one JSON object, no
// duplicate member names at any level, known claims well-typed, unknown
// claims valid JSON. Strings share memory with s.
func parseClaims(s string, c *Claims) error {
	d := scanner{s: s}
	if !d.open() {
		return errSyntax
	}
	var seen uint32
	var others nameSet
	for first := true; ; first = false {
		name, done, err := d.member(first)
		if err != nil {
			return err
		}
		if done {
			break
		}
		var bit uint32
		ok := true
		switch name {
		case "iss":
			bit = bitIss
			c.Issuer, ok = d.str()
		case "sub":
			bit = bitSub
			c.Subject, ok = d.str()
		case "aud":
			bit = bitAud
			c.Audience, err = d.audience()
		case "exp":
			bit = bitExp
			c.ExpiresAt, ok = d.numericDate()
		case "iat":
			bit = bitIat
			c.IssuedAt, ok = d.numericDate()
		case "nbf":
			bit = bitNbf
			c.NotBefore, ok = d.numericDate()
		case "auth_time":
			bit = bitAuthTime
			c.AuthTime, ok = d.numericDate()
		case "jti":
			bit = bitJti
			c.ID, ok = d.str()
		case "client_id":
			bit = bitClientID
			c.ClientID, ok = d.str()
		case "scope":
			bit = bitScope
			c.Scope, ok = d.str()
		case "act":
			bit = bitAct
			c.Actor, err = d.actor(1)
		case "gh_kind":
			bit = bitKind
			var k string
			k, ok = d.str()
			c.Kind = Kind(k)
			ok = ok && c.Kind.valid()
		case "gh_key_id":
			bit = bitKeyID
			c.KeyID, ok = d.str()
		default:
			if !others.add(name) {
				return errDuplicate
			}
			err = d.skip(1)
		}
		if err != nil {
			return err
		}
		if !ok {
			return claimTypeError(name)
		}
		if seen&bit != 0 {
			return errDuplicate
		}
		seen |= bit
	}
	if !d.end() {
		return errTrailing
	}
	return nil
}

// audience reads "aud": a string, or a non-empty array of strings.
func (d *scanner) audience() (Audience, error) {
	switch d.peek() {
	case '"':
		v, ok := d.str()
		if !ok {
			return nil, errSyntax
		}
		return Audience{v}, nil
	case '[':
		d.i++
		if d.peek() == ']' {
			return nil, claimTypeError("aud")
		}
		var a Audience
		for {
			d.ws()
			v, ok := d.str()
			if !ok {
				return nil, claimTypeError("aud")
			}
			a = append(a, v)
			switch d.peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return a, nil
			default:
				return nil, errSyntax
			}
		}
	}
	return nil, claimTypeError("aud")
}

// actor reads an "act" object (RFC 8693, section 4.1); "sub" is required.
func (d *scanner) actor(depth int) (*Actor, error) {
	if depth >= maxDepth {
		return nil, errDepth
	}
	if !d.open() {
		return nil, claimTypeError("act")
	}
	a := new(Actor)
	var seen uint32
	var others nameSet
	for first := true; ; first = false {
		name, done, err := d.member(first)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		var bit uint32
		ok := true
		switch name {
		case "sub":
			bit = bitSub
			a.Subject, ok = d.str()
		case "client_id":
			bit = bitClientID
			a.ClientID, ok = d.str()
		case "act":
			bit = bitAct
			a.Actor, err = d.actor(depth + 1)
		default:
			if !others.add(name) {
				return nil, errDuplicate
			}
			err = d.skip(depth + 1)
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, claimTypeError("act")
		}
		if seen&bit != 0 {
			return nil, errDuplicate
		}
		seen |= bit
	}
	if a.Subject == "" {
		return nil, fmt.Errorf("%w: \"act\" without \"sub\"", ErrMalformed)
	}
	return a, nil
}

// appendClaims appends c as JSON to dst, byte for byte what json.Marshal
// produces for it.
func appendClaims(dst []byte, c *Claims) []byte {
	dst = append(dst, '{')
	dst = appendStr(dst, "iss", c.Issuer)
	dst = appendStr(dst, "sub", c.Subject)
	if len(c.Audience) > 0 {
		dst = appendName(dst, "aud")
		dst = appendAudience(dst, c.Audience)
	}
	dst = appendNum(dst, "exp", c.ExpiresAt)
	dst = appendNum(dst, "iat", c.IssuedAt)
	dst = appendNum(dst, "nbf", c.NotBefore)
	dst = appendNum(dst, "auth_time", c.AuthTime)
	dst = appendStr(dst, "jti", c.ID)
	dst = appendStr(dst, "client_id", c.ClientID)
	dst = appendStr(dst, "scope", c.Scope)
	if c.Actor != nil {
		dst = appendName(dst, "act")
		dst = appendActor(dst, c.Actor)
	}
	dst = appendStr(dst, "gh_kind", string(c.Kind))
	dst = appendStr(dst, "gh_key_id", c.KeyID)
	return append(dst, '}')
}

// appendName appends a member name of the object being written, after a
// comma unless it is the first member.
func appendName(dst []byte, name string) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// appendStr appends a string member unless v is empty.
func appendStr(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	return appendString(appendName(dst, name), v)
}

// appendNum appends an integer member unless v is zero.
func appendNum(dst []byte, name string, v int64) []byte {
	if v == 0 {
		return dst
	}
	return strconv.AppendInt(appendName(dst, name), v, 10)
}

func appendAudience(dst []byte, a Audience) []byte {
	if len(a) == 1 {
		return appendString(dst, a[0])
	}
	dst = append(dst, '[')
	for i, v := range a {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, v)
	}
	return append(dst, ']')
}

// appendActor appends the "act" chain starting at a. It loops rather than
// recursing, which keeps the buffers of its callers on the stack.
func appendActor(dst []byte, a *Actor) []byte {
	depth := 0
	for ; a != nil; a = a.Actor {
		if depth > 0 {
			dst = append(dst, `,"act":`...)
		}
		dst = append(dst, `{"sub":`...)
		dst = appendString(dst, a.Subject)
		if a.ClientID != "" {
			dst = append(dst, `,"client_id":`...)
			dst = appendString(dst, a.ClientID)
		}
		depth++
	}
	for range depth {
		dst = append(dst, '}')
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped exactly as
// encoding/json does (including HTML characters, U+2028 and U+2029, and
// invalid UTF-8 replaced by U+FFFD).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// marshalClaims returns the JSON of claims: the fast writer for Claims,
// encoding/json for anything else.
func marshalClaims(dst []byte, claims any) ([]byte, error) {
	switch c := claims.(type) {
	case *Claims:
		if c != nil {
			return appendClaims(dst, c), nil
		}
	case Claims:
		return appendClaims(dst, &c), nil
	}
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("token: marshaling claims: %w", err)
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("token: claims must marshal to a JSON object")
	}
	return append(dst, b...), nil
}
