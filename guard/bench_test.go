package guard

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// ok is the bare handler of the benchmarks.
var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

// benchRequest returns a request with the given header, reused across
// iterations (the guard does not modify it).
func benchRequest(name, value string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/invoices", nil)
	req.RemoteAddr = "192.0.2.1:4321"
	if name != "" {
		req.Header.Set(name, value)
	}
	return req
}

// BenchmarkGuard compares a bare handler with the guarded handler on a
// cached credential: the difference is what the guard adds per request.
func BenchmarkGuard(b *testing.B) {
	e := newEnv(b, nil)
	policy := Policy{AllOf: []string{"invoices:read"}}
	key := makeKey("AAAAAAAAAAA1", "k")
	e.keys.set(key, activeKey("AAAAAAAAAAA1", "invoices:read", "invoices:write"))
	jwt := e.issuer.issue(b, e.issuer.claims("invoices:read invoices:write"))

	cases := []struct {
		name    string
		handler http.Handler
		req     *http.Request
	}{
		{"bare", ok, benchRequest("", "")},
		{"jwt", e.guard.Require(policy)(ok), benchRequest("Authorization", "Bearer "+jwt)},
		{"apikey-header", e.guard.Require(policy)(ok), benchRequest(HeaderAPIKey, key)},
		{"apikey-bearer", e.guard.Require(policy)(ok), benchRequest("Authorization", "Bearer "+key)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w := &benchWriter{h: http.Header{}}
			c.handler.ServeHTTP(w, c.req) // warm the caches
			if w.status != http.StatusOK {
				b.Fatalf("status: got %d, want 200", w.status)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.handler.ServeHTTP(w, c.req)
			}
		})
	}
	if got := e.keys.callCount(); got > 1 {
		b.Errorf("verifier calls: got %d, want at most 1 (every request after the first is cached)", got)
	}
}

// benchWriter is a ResponseWriter that records only the status.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(s int)           { w.status = s }
