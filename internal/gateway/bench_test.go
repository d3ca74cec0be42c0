package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// BenchmarkProxy compares the gateway, with a cached credential of each
// kind, with a plain httputil.ReverseProxy with no authentication, both in
// front of the same trivial upstream over loopback. The handlers are called
// directly, so the figures are the proxies' own cost plus the upstream
// round trip; the difference is what authentication adds. bench/gateway.sh
// measures the same over HTTP with wrk (BENCHMARKS.md).
func BenchmarkProxy(b *testing.B) {
	body := []byte(`{"ok":true}` + "\n")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)

	f := newFakeGatehouse(b)
	gw, _, _ := newTestGateway(b, f, fmt.Sprintf(`
[[route]]
path = "/"
upstream = %q
audience = "http://orders.internal"
all_of = ["orders:read"]
`, up.URL))
	plain := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport: defaultTransport(),
	}

	cases := []struct {
		name    string
		h       http.Handler
		headers []string
	}{
		{"plain", plain, nil},
		{"jwt", gw, []string{"Authorization", "Bearer " + f.jwt(b, "alice", "orders:read")}},
		{"apikey", gw, []string{"X-API-Key", f.apiKey("KEY000000001", "carol", "orders:read")}},
		{"opaque", gw, []string{"Authorization", "Bearer " + f.opaque("bob", "orders:read", "op-1")}},
	}
	for _, c := range cases {
		newReq := func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "http://api.example.com/orders/1", nil)
			r.RemoteAddr = "127.0.0.1:1234"
			for i := 0; i < len(c.headers); i += 2 {
				r.Header.Set(c.headers[i], c.headers[i+1])
			}
			return r
		}
		// Warm the caches (and check the path works) before timing.
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, newReq())
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: status %d: %s", c.name, rec.Code, rec.Body)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := &discardWriter{h: http.Header{}}
					c.h.ServeHTTP(w, newReq())
					if w.code != 0 && w.code != http.StatusOK {
						b.Errorf("status %d", w.code)
						return
					}
				}
			})
		})
	}
}

// discardWriter is a minimal ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}
func (d *discardWriter) Write(p []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	return io.Discard.Write(p)
}
