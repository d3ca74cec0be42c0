package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// discardWriter is a minimal http.ResponseWriter for benchmarks: it keeps
// the status and drops the body, so that only the server's own work is
// measured.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(b)
	return len(b), nil
}

// rewindBody is a request body that can be read again after rewind.
type rewindBody struct {
	s string
	r strings.Reader
}

func (b *rewindBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *rewindBody) Close() error               { return nil }
func (b *rewindBody) rewind()                    { b.r.Reset(b.s) }

// BenchmarkHandler measures the whole server handler (the instrument
// middleware with its metrics, the mux and the endpoint) for one request,
// without net/http's connection handling: a client-credentials grant, an
// introspection of a JWT, and the discovery and JWKS documents. The same
// request is served again and again, so allocations are the server's own.
func BenchmarkHandler(b *testing.B) {
	srv, err := New(context.Background(), Config{
		DataDir:    filepath.Join(b.TempDir(), "data"),
		Issuer:     "http://127.0.0.1:8080",
		AdminToken: testAdminToken,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	h := srv.Handler()

	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/admin/clients", strings.NewReader(`{"client_name":"load","grant_types":["client_credentials"],"scope":"read"}`))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	var client struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &client); err != nil || rec.Code != 201 {
		b.Fatalf("create client: %d %s", rec.Code, rec.Body)
	}
	grant := "grant_type=client_credentials&scope=read"
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("POST", "/token", strings.NewReader(grant))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client.ID, client.Secret)
	h.ServeHTTP(rec, req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || rec.Code != 200 {
		b.Fatalf("token: %d %s", rec.Code, rec.Body)
	}

	for _, bc := range []struct {
		name, method, target, body string
		auth                       bool
	}{
		{"token", "POST", "/token", grant, true},
		{"introspect", "POST", "/introspect", "token=" + tok.AccessToken, true},
		{"discovery", "GET", "/.well-known/openid-configuration", "", false},
		{"jwks", "GET", "/.well-known/jwks.json", "", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := &rewindBody{s: bc.body}
			req := httptest.NewRequest(bc.method, bc.target, nil)
			if bc.body != "" {
				req.Body = body
				req.ContentLength = int64(len(bc.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if bc.auth {
				req.SetBasicAuth(client.ID, client.Secret)
			}
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				body.rewind()
				if bc.body != "" {
					req.Body = body
				}
				clear(w.h)
				w.status, w.n = 0, 0
				h.ServeHTTP(w, req)
				if w.status != http.StatusOK || w.n == 0 {
					b.Fatalf("status %d, %d bytes", w.status, w.n)
				}
			}
		})
	}
}
