package oauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// benchHandler returns the provider's handler and a confidential client.
func benchHandler(b *testing.B) (*m2mEnv, http.Handler, store.Client, string) {
	e := newM2MEnv(b, nil, nil)
	c, secret := e.newClient(b, store.Client{Scopes: []string{"read", "write"}, Audiences: []string{"https://api.example"}})
	mux := http.NewServeMux()
	e.p.Register(mux)
	return e, mux, c, secret
}

// BenchmarkTokenEndpoint measures the server's work for one
// client-credentials grant (form parsing, client authentication with the
// keyed hash, an ES256 signature, the JSON answer), in process. Profile it
// with -cpuprofile to see where the time goes.
func BenchmarkTokenEndpoint(b *testing.B) {
	_, h, c, secret := benchHandler(b)
	body := "grant_type=client_credentials&scope=read"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", TokenPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(c.ID, secret)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkIntrospectJWT measures introspection of a JWT access token seen
// before (the verifier cache answers), in process.
func BenchmarkIntrospectJWT(b *testing.B) {
	e, h, c, secret := benchHandler(b)
	body := url.Values{"token": {e.token(b, c.ID, secret, "")}}.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", IntrospectPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(c.ID, secret)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 || !strings.Contains(w.Body.String(), `"active":true`) {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkTokenEndpointHTTP runs the client-credentials grant over real
// HTTP on 127.0.0.1 with 64 concurrent keep-alive clients in this process,
// so that a CPU profile shows the server's share (serveToken, net/http's
// server) next to the load generator's (net/http's client).
func BenchmarkTokenEndpointHTTP(b *testing.B) {
	e, _, c, secret := benchHandler(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body := "grant_type=client_credentials&scope=read"
	b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", e.srv.URL+TokenPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(c.ID, secret)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
