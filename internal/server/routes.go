package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxBodyBytes bounds every request body; endpoints that need less set
// their own, smaller limit.
const maxBodyBytes = 1 << 20

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /.well-known/openid-configuration", s.serveDiscovery)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.serveDiscovery)
	mux.HandleFunc("GET /.well-known/jwks.json", s.serveJWKS)
	s.oauth.Register(mux)
	s.registerAPIKeys(mux)
	s.registerFeed(mux)
	s.console.Register(mux)
	return s.instrument(mux)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: store unreachable", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "store unreachable")
		return
	}
	if !s.keys.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "signing keys not loaded")
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerDiscoveryMaxAge
	h["Access-Control-Allow-Origin"] = headerAnyOrigin
	w.Write(s.discovery)
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = headerJWKS
	h["Cache-Control"] = s.jwksCacheControl
	h["Access-Control-Allow-Origin"] = headerAnyOrigin
	w.Write(s.keys.JWKS())
}

// statusWriter records the status code written by a handler.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Values of the headers instrument sets on every response. They are
// shared and never modified: net/http only reads them, and Header.Set
// replaces rather than changes a value slice.
var (
	headerNosniff    = []string{"nosniff"}
	headerNoReferrer = []string{"no-referrer"}

	headerJSON            = []string{"application/json"}
	headerJWKS            = []string{"application/jwk-set+json"}
	headerDiscoveryMaxAge = []string{"public, max-age=3600"}
	headerAnyOrigin       = []string{"*"}
)

// statusClientClosed is recorded (never sent) for a request whose client
// closed the connection before the answer, as nginx does.
const statusClientClosed = 499

// instrument wraps the mux: it bounds bodies, sets safe default headers,
// turns panics into 500s, and records metrics and a debug log line per
// request. The log names the route pattern and path only: query strings
// can carry secrets and are never logged.
func (s *Server) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h := sw.Header()
		h["X-Content-Type-Options"] = headerNosniff // shared slices: Set allocates
		h["Referrer-Policy"] = headerNoReferrer
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(sw, r.Body, maxBodyBytes)
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "route", r.Pattern, "panic", fmt.Sprint(p))
				if sw.status == 0 {
					http.Error(sw, "internal error", http.StatusInternalServerError)
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if status >= 500 && errors.Is(r.Context().Err(), context.Canceled) {
				// The client closed the connection before the answer: the
				// handler's failure is only that (a store call returned
				// context.Canceled), nobody reads the 500, and counting it
				// as a server error would page someone for a browser
				// that navigated away. 499 is the de facto code for it.
				status = statusClientClosed
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			s.metrics.observe(route, status, elapsed)
			level := slog.LevelDebug
			if status >= 500 {
				level = slog.LevelWarn
			}
			if s.log.Enabled(r.Context(), level) { // the arguments alone allocate
				s.log.Log(r.Context(), level, "request", "method", r.Method, "route", route, "path", r.URL.Path,
					"status", status, "duration", elapsed)
			}
		}()
		mux.ServeHTTP(sw, r)
	})
}
