package oauth

import (
	"strings"
	"testing"
)

// FuzzSafeReturnTo: whatever a login form posts as return_to, the login
// page sends the browser to a local path of Gatehouse's own: never to
// another site ("//host", "/\host"), never with a header break.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/console", "/console/users/abc", "/console//evil.example", "/console/../x",
		"//evil.example", "/authorize?client_id=a", "https://evil.example", "/console/\r\nSet-Cookie:x", "/console\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeReturnTo(s)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n") {
			t.Fatalf("safeReturnTo(%q) = %q: not a plain local path", s, got)
		}
		if got != ConsentsPath && got != s {
			t.Fatalf("safeReturnTo(%q) = %q: changed instead of refused", s, got)
		}
		if strings.HasPrefix(got, ConsolePath) && (strings.Contains(got, "//") || strings.Contains(got, "..")) {
			t.Fatalf("safeReturnTo(%q) = %q", s, got)
		}
	})
}
