package oauth

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// FuzzParseForm checks that the token-request parser never panics and that
// whatever it accepts has each parameter once, in UTF-8, from a form body
// with no query string.
func FuzzParseForm(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "", []byte("grant_type=client_credentials&scope=a+b"))
	f.Add("application/x-www-form-urlencoded; charset=UTF-8", "", []byte("a=1&a=2"))
	f.Add("application/json", "", []byte(`{"a":1}`))
	f.Add("application/x-www-form-urlencoded", "client_secret=x", []byte("grant_type=x"))
	f.Add("application/x-www-form-urlencoded", "", []byte("%zz=1&b=%ff"))
	f.Fuzz(func(t *testing.T, contentType, query string, body []byte) {
		form, err := parseForm(contentType, query, body)
		if err != nil {
			if form != nil {
				t.Fatal("error with a non-nil form")
			}
			return
		}
		if query != "" {
			t.Fatalf("accepted a query string %q", query)
		}
		for k, vs := range form {
			if len(vs) != 1 {
				t.Fatalf("parameter %q has %d values", k, len(vs))
			}
			if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) {
				t.Fatalf("parameter %q is not UTF-8", k)
			}
		}
		// Re-encoding and parsing again gives the same parameters.
		again, err := parseForm(contentType, "", []byte(form.Encode()))
		if err != nil || len(again) != len(form) {
			t.Fatalf("round trip: %v, %d parameters, want %d", err, len(again), len(form))
		}
	})
}

// FuzzParseCredentials checks client-credential parsing: no panics, at most
// one method, and bounded credentials.
func FuzzParseCredentials(f *testing.F) {
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("id:secret")), "")
	f.Add("", "client_id=id&client_secret=s")
	f.Add("", "client_assertion_type="+url.QueryEscape(assertionTypeJWT)+"&client_assertion=a.b.c")
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("a%zz:b")), "client_id=a")
	f.Add("Bearer x", "client_id=x")
	f.Fuzz(func(t *testing.T, header, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		c, oe := parseCredentials(header, form)
		if oe != nil {
			if oe.Code != errInvalidClient && oe.Code != errInvalidRequest {
				t.Fatalf("error code %q", oe.Code)
			}
			return
		}
		switch c.method {
		case authSecretBasic, authSecretPost:
			if c.clientID == "" || c.secret == "" || len(c.clientID) > maxClientIDLen || len(c.secret) > maxSecretLen {
				t.Fatalf("accepted credentials %q/%d bytes", c.clientID, len(c.secret))
			}
			if c.method == authSecretBasic && !strings.HasPrefix(strings.ToLower(header), "basic ") {
				t.Fatal("basic credentials without a Basic header")
			}
		case authPrivateKeyJWT:
			if c.assertion == "" {
				t.Fatal("empty assertion accepted")
			}
		case authNone:
			if c.clientID == "" || header != "" {
				t.Fatalf("public client with id %q, header %q", c.clientID, header)
			}
		default:
			t.Fatalf("unknown method %q", c.method)
		}
	})
}

// FuzzParseAssertion checks the client-assertion parser: no panics, and an
// accepted assertion's signing input is exactly its first two parts.
func FuzzParseAssertion(f *testing.F) {
	f.Add(b64url([]byte(`{"alg":"ES256","kid":"k"}`)) + "." + b64url([]byte(`{"iss":"c","sub":"c","aud":"x","exp":1,"jti":"j"}`)) + ".AAAA")
	f.Add(b64url([]byte(`{"alg":"none"}`)) + "." + b64url([]byte(`{"aud":["a","b"]}`)) + ".")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		a, err := parseAssertion(raw)
		if err != nil {
			return
		}
		i := strings.LastIndexByte(raw, '.')
		if string(a.signingInput) != raw[:i] {
			t.Fatalf("signing input %q, want %q", a.signingInput, raw[:i])
		}
	})
}
