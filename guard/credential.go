package guard

import (
	"errors"
	"hash/crc32"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-dev/gatehouse/token"
)

// HeaderAPIKey is the header that carries an API key, as an alternative to
// "Authorization: Bearer <key>".
const HeaderAPIKey = "X-API-Key"

// canonicalKeyHeader is HeaderAPIKey in canonical form, for direct lookups.
const canonicalKeyHeader = "X-Api-Key"

// maxKeyHeader bounds the X-API-Key header. Gatehouse keys are at most 64
// bytes; anything much longer is not a key.
const maxKeyHeader = 256

// Reasons a request is malformed (answered 400 invalid_request). They are
// logged, and their text is safe to show: it never contains the credential.
var (
	errQueryCredential = errors.New("credentials must not be sent in the URL query string")
	errDuplicate       = errors.New("more than one Authorization or X-API-Key header")
	errTwoCredentials  = errors.New("more than one credential: send either Authorization or X-API-Key")
	errMalformed       = errors.New("malformed Authorization or X-API-Key header")
)

// errTooLarge reports a bearer token longer than the limit; it is answered
// 401 invalid_token, like any other token that cannot be valid.
var errTooLarge = errors.New("credential too large")

// credential is the one credential a request carries.
type credential struct {
	// value is the token or key; empty when the request carries none.
	value string
	// kind is what value looks like: KindJWT, KindAPIKey or KindOpaque.
	kind token.Kind
}

// queryCredentialNames are query parameters that mean "this is a
// credential", compared case-insensitively.
var queryCredentialNames = []string{
	"access_token", "token", "api_key", "apikey", "api-key", "x-api-key", "key",
}

// extract returns the credential of r, checking that it carries at most one
// and none in the query string. A request with no credential, or only an
// Authorization scheme other than Bearer, yields a zero credential and no
// error. maxSize bounds a bearer token.
func extract(r *http.Request, maxSize int) (credential, error) {
	if r.URL != nil && r.URL.RawQuery != "" && queryHasCredential(r.URL.RawQuery) {
		return credential{}, errQueryCredential
	}
	authz := r.Header["Authorization"]
	keys := r.Header[canonicalKeyHeader]
	switch {
	case len(authz) > 1 || len(keys) > 1:
		return credential{}, errDuplicate
	case len(authz) == 1 && len(keys) == 1:
		// Any Authorization header beside an X-API-Key is a second
		// credential, whatever its scheme.
		return credential{}, errTwoCredentials
	case len(keys) == 1:
		k := keys[0]
		if k == "" || len(k) > maxKeyHeader || !isVisibleASCII(k) {
			return credential{}, errMalformed
		}
		return credential{value: k, kind: token.KindAPIKey}, nil
	case len(authz) == 0:
		return credential{}, nil
	}
	bearer, ok, err := parseAuthorization(authz[0], maxSize)
	if err != nil || !ok {
		return credential{}, err
	}
	return credential{value: bearer, kind: kindOf(bearer)}, nil
}

// parseAuthorization parses an Authorization header value. It returns the
// bearer token and true for the Bearer scheme (RFC 6750, section 2.1), false
// for any other scheme, and an error for a malformed header.
func parseAuthorization(v string, maxSize int) (string, bool, error) {
	scheme, rest, ok := strings.Cut(v, " ")
	if !isToken(scheme) {
		return "", false, errMalformed
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false, nil
	}
	if !ok {
		return "", false, errMalformed
	}
	tok := strings.TrimLeft(rest, " ")
	if len(tok) > maxSize {
		return "", false, errTooLarge
	}
	if !isB64Token(tok) {
		return "", false, errMalformed
	}
	return tok, true, nil
}

// isB64Token reports whether s is a b64token (RFC 6750, section 2.1):
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && isB64Char(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	return i == len(s)
}

func isB64Char(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110, section
// 5.6.2), the syntax of an authentication scheme.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func isVisibleASCII(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// kindOf says what a bearer credential looks like: a JWT (three parts
// separated by dots), a Gatehouse API key, or anything else (opaque).
func kindOf(s string) token.Kind {
	switch {
	case strings.Count(s, ".") == 2:
		return token.KindJWT
	case looksLikeAPIKey(s):
		return token.KindAPIKey
	default:
		return token.KindOpaque
	}
}

// queryHasCredential reports whether a raw query string has a parameter
// named like a credential, or a value shaped like a JWT or an API key.
func queryHasCredential(raw string) bool {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		name, value, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		for _, c := range queryCredentialNames {
			if strings.EqualFold(name, c) {
				return true
			}
		}
		if v, err := url.QueryUnescape(value); err == nil {
			value = v
		}
		if looksLikeAPIKey(value) || looksLikeJWT(value) {
			return true
		}
	}
	return false
}

// looksLikeJWT reports whether s has the shape of a compact JWS whose
// header is a JSON object ("eyJ" is the base64url of `{"`).
func looksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// Shape of a Gatehouse API key: prefix "_" env "_" body, where the prefix is
// 2 to 8 lowercase letters or digits, env is "live" or "test", and the body
// is 50 base62 characters: a 12-character ID, a 32-character secret and a
// 6-character CRC32 checksum.
const (
	keyBodyLen     = 50
	keyIDLen       = 12
	keyChecksumLen = 6
	keyMinLen      = 2 + 1 + 4 + 1 + keyBodyLen
	keyMaxLen      = 8 + 1 + 4 + 1 + keyBodyLen
)

// looksLikeAPIKey reports whether s has the shape of a Gatehouse API key.
// It does not check the checksum (see validKeyChecksum).
func looksLikeAPIKey(s string) bool {
	if len(s) < keyMinLen || len(s) > keyMaxLen {
		return false
	}
	n := len(s) - (1 + 4 + 1 + keyBodyLen) // prefix length
	for i := range n {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	if s[n] != '_' || s[n+5] != '_' {
		return false
	}
	if env := s[n+1 : n+5]; env != "live" && env != "test" {
		return false
	}
	for i := n + 6; i < len(s); i++ {
		if base62Value(s[i]) < 0 {
			return false
		}
	}
	return true
}

// validKeyChecksum reports whether a string that looksLikeAPIKey ends with
// the base62 CRC32 (IEEE) of everything before it, so that a typo or a
// made-up key is refused without asking Gatehouse.
func validKeyChecksum(s string) bool {
	var buf [keyMaxLen]byte
	n := copy(buf[:], s[:len(s)-keyChecksumLen])
	want := uint64(crc32.ChecksumIEEE(buf[:n]))
	var got uint64
	for i := len(s) - keyChecksumLen; i < len(s); i++ {
		got = got*62 + uint64(base62Value(s[i]))
	}
	return got == want
}

// keyID returns the public ID of a key that looksLikeAPIKey.
func keyID(s string) string {
	start := len(s) - keyBodyLen
	return s[start : start+keyIDLen]
}

// base62Value returns the value of c in the alphabet 0-9A-Za-z, or -1.
func base62Value(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'Z':
		return int(c-'A') + 10
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 36
	}
	return -1
}
