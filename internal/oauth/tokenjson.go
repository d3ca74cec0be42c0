package oauth

import (
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"
)

// writeTokenResponse writes a successful token response (RFC 6749 section
// 5.1) with the headers of writeJSON. It is what writeJSON would write for
// resp, byte for byte, without encoding/json's reflection: every grant
// answers with it, and the token endpoint is the hottest path there is.
func writeTokenResponse(w http.ResponseWriter, resp *tokenResponse) {
	bp := tokenJSONPool.Get().(*[]byte)
	b := resp.appendJSON((*bp)[:0])
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerNoStore
	h["Pragma"] = headerNoCache
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	if cap(b) <= 16<<10 {
		*bp = b
		tokenJSONPool.Put(bp)
	}
}

// tokenJSONPool holds buffers for writeTokenResponse (an ES256 access
// token with a refresh and an RS256 ID token is about 1.5 KB).
var tokenJSONPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// appendJSON appends r encoded as encoding/json encodes it (the tags of
// tokenResponse: empty optional members omitted, strings escaped the same
// way, HTML characters included).
func (r *tokenResponse) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"access_token":`...)
	dst = appendJSONString(dst, r.AccessToken)
	dst = append(dst, `,"token_type":`...)
	dst = appendJSONString(dst, r.TokenType)
	dst = append(dst, `,"expires_in":`...)
	dst = strconv.AppendInt(dst, r.ExpiresIn, 10)
	if r.Scope != "" {
		dst = append(dst, `,"scope":`...)
		dst = appendJSONString(dst, r.Scope)
	}
	if r.RefreshToken != "" {
		dst = append(dst, `,"refresh_token":`...)
		dst = appendJSONString(dst, r.RefreshToken)
	}
	if r.IDToken != "" {
		dst = append(dst, `,"id_token":`...)
		dst = appendJSONString(dst, r.IDToken)
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// writes it: '"', '\\' and control characters escaped (\n, \r, \t, \b, \f
// or \u00XX), '<', '>' and '&' as \u003c, \u003e, \u0026, U+2028 and U+2029
// escaped, and invalid UTF-8 replaced by \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
