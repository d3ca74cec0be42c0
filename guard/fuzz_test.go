package guard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/token"
)

// FuzzExtract feeds arbitrary Authorization and X-API-Key headers and query
// strings to the credential extraction. It must never panic; a credential
// it returns must be exactly what the header carried, of a known kind; and
// a query string it accepts must not carry anything shaped like a key.
func FuzzExtract(f *testing.F) {
	key := makeKey("AAAAAAAAAAA1", "k")
	seeds := [][3]string{
		{"Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig", "", ""},
		{"Bearer " + key, "", ""},
		{"", key, ""},
		{"bearer  abc==", "", "page=2"},
		{"Basic dXNlcjpwYXNz", "", ""},
		{"Bearer", "", ""},
		{"Bearer a=b", "", ""},
		{"", "", "access_token=x"},
		{"", "", "q=" + key},
		{"", "", "a%3D=%zz&&=&key"},
		{"Bearer x", "y", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, authz, apiKey, query string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.RawQuery = query
		if authz != "" {
			req.Header["Authorization"] = []string{authz}
		}
		if apiKey != "" {
			req.Header[http.CanonicalHeaderKey(HeaderAPIKey)] = []string{apiKey}
		}
		c, err := extract(req, 1024)
		if err != nil {
			if c != (credential{}) {
				t.Fatalf("error %v with a credential", err)
			}
			return
		}
		if queryHasCredential(query) {
			t.Fatalf("query %q accepted, but it carries a credential", query)
		}
		if c.value == "" {
			if c.kind != "" {
				t.Fatalf("empty credential of kind %q", c.kind)
			}
			return
		}
		switch {
		case apiKey != "":
			if authz != "" {
				t.Fatalf("two credentials accepted")
			}
			if c.value != apiKey || c.kind != token.KindAPIKey {
				t.Fatalf("got %q (%s), want the X-API-Key header as an API key", c.value, c.kind)
			}
		default:
			if !strings.HasSuffix(authz, c.value) || !strings.EqualFold(authz[:6], "bearer") {
				t.Fatalf("got %q from Authorization %q", c.value, authz)
			}
			if len(c.value) > 1024 || !isB64Token(c.value) {
				t.Fatalf("accepted an invalid bearer token %q", c.value)
			}
			if want := kindOf(c.value); c.kind != want {
				t.Fatalf("kind: got %s, want %s", c.kind, want)
			}
		}
	})
}
