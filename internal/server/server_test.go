package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/signing"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/token"
)

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type backend struct {
	name string
	db   func(t *testing.T) string // "" means the default SQLite file in the data dir
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return "" }},
	{"postgres", func(t *testing.T) string { return storetest.PostgresURL(t) }},
}

// start runs a server on a loopback listener and returns its base URL.
func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if cfg.Issuer == "" {
		cfg.Issuer = base
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv, base
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestDiscoveryAndJWKS(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			logs := &syncBuffer{}
			srv, base := start(t, Config{DBURL: be.db(t), Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

			for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
				resp, body := get(t, base+path)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: status %d", path, resp.StatusCode)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s: Content-Type %q", path, ct)
				}
				var md map[string]any
				if err := json.Unmarshal(body, &md); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if md["issuer"] != base {
					t.Errorf("%s: issuer %v, want %s", path, md["issuer"], base)
				}
				if md["jwks_uri"] != base+"/.well-known/jwks.json" {
					t.Errorf("%s: jwks_uri %v", path, md["jwks_uri"])
				}
				// Nothing is advertised that does not exist yet.
				for k, v := range md {
					if s, ok := v.(string); ok && strings.HasPrefix(s, base+"/") {
						r, _ := get(t, s)
						if r.StatusCode == http.StatusNotFound {
							t.Errorf("%s advertises %s = %s, which answers 404", path, k, s)
						}
					}
				}
			}

			resp, body := get(t, base+"/.well-known/jwks.json")
			if resp.StatusCode != 200 {
				t.Fatalf("jwks: status %d", resp.StatusCode)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=300" {
				t.Errorf("jwks Cache-Control: got %q", cc)
			}
			var doc struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatal(err)
			}
			algs := map[string]bool{}
			for _, k := range doc.Keys {
				for _, f := range []string{"kid", "kty", "alg", "use"} {
					if _, ok := k[f]; !ok {
						t.Errorf("jwks key lacks %q: %v", f, k)
					}
				}
				for _, f := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
					if _, ok := k[f]; ok {
						t.Errorf("jwks key has private member %q", f)
					}
				}
				algs[k["alg"].(string)] = true
			}
			for _, a := range signing.Algorithms {
				if !algs[string(a)] {
					t.Errorf("jwks has no %s key", a)
				}
			}

			// A token signed by the server verifies against the served JWKS
			// through the public RemoteKeySet, as a resource server would.
			ks, err := token.NewRemoteKeySet(token.RemoteKeySetConfig{URL: base + "/.well-known/jwks.json"})
			if err != nil {
				t.Fatal(err)
			}
			iss, _ := token.NewIssuer(token.IssuerConfig{Issuer: base, Key: func() (token.SigningKey, error) { return srv.Keys().Active(token.ES256) }})
			raw, _, err := iss.Issue(token.Claims{Subject: "alice", ClientID: "c1", Audience: token.Audience{"api"}, ExpiresAt: time.Now().Add(time.Minute).Unix()})
			if err != nil {
				t.Fatal(err)
			}
			v, _ := token.NewVerifier(token.VerifierConfig{Issuer: base, Audience: "api", Keys: ks})
			if _, err := v.Verify(context.Background(), raw); err != nil {
				t.Errorf("verify server-signed token via JWKS: %v", err)
			}

			// No secret material reaches the log.
			mk, _ := os.ReadFile(filepath.Join(srv.cfg.DataDir, secret.FileName))
			if s := strings.TrimSpace(string(mk)); s != "" && strings.Contains(logs.String(), s) {
				t.Error("master secret appears in the log")
			}
			if strings.Contains(logs.String(), raw) {
				t.Error("token appears in the log")
			}
		})
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	srv, base := start(t, Config{})
	if resp, body := get(t, base+"/healthz"); resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, base+"/readyz"); resp.StatusCode != 200 {
		t.Errorf("readyz: %d", resp.StatusCode)
	}
	get(t, base+"/.well-known/jwks.json")
	get(t, base+"/nope")
	resp, body := get(t, base+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`gatehouse_http_requests_total{code="200",route="GET /.well-known/jwks.json"} 1`,
		`gatehouse_http_requests_total{code="404",route="unmatched"} 1`,
		`gatehouse_http_request_duration_seconds_bucket{code="200",route="GET /healthz"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// With the store gone, the process is alive but not ready.
	srv.Store().Close()
	if resp, _ := get(t, base+"/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with closed store: %d, want 503", resp.StatusCode)
	}
	if resp, _ := get(t, base+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz with closed store: %d, want 200", resp.StatusCode)
	}
}

func TestCheckIssuer(t *testing.T) {
	cases := []struct {
		issuer string
		ok     bool
	}{
		{"https://auth.example.com", true},
		{"https://auth.example.com/tenant", true},
		{"http://127.0.0.1:8080", true},
		{"http://localhost:8080", true},
		{"http://[::1]:8080", true},
		{"http://auth.example.com", false},
		{"http://0.0.0.0:8080", false},
		{"http://10.0.0.1", false},
		{"ftp://auth.example.com", false},
		{"https://auth.example.com?x=1", false},
		{"https://auth.example.com#f", false},
		{"https://user@auth.example.com", false},
		{"auth.example.com", false},
		{"", false},
	}
	for _, c := range cases {
		err := CheckIssuer(c.issuer)
		if (err == nil) != c.ok {
			t.Errorf("CheckIssuer(%q): got %v, want ok=%v", c.issuer, err, c.ok)
		}
	}
}

func TestStartupBadInput(t *testing.T) {
	ctx := context.Background()
	t.Run("data dir is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, []byte("x"), 0o600)
		if _, err := New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: f}); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("insecure issuer", func(t *testing.T) {
		if _, err := New(ctx, Config{Issuer: "http://auth.example.com", DataDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("wrong master secret", func(t *testing.T) {
		dir := t.TempDir()
		st, _, err := OpenStore(ctx, Config{DataDir: dir, Secret: strings.Repeat("a", 32)})
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		before, _ := os.ReadFile(filepath.Join(dir, "gatehouse.db"))
		_, err = New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: dir, Secret: strings.Repeat("b", 32)})
		if err == nil || !strings.Contains(err.Error(), "master secret does not match") {
			t.Fatalf("got %v", err)
		}
		after, _ := os.ReadFile(filepath.Join(dir, "gatehouse.db"))
		if !bytes.Equal(before, after) {
			t.Error("store file changed after a refused start")
		}
	})
	t.Run("corrupt sqlite file", func(t *testing.T) {
		dir := t.TempDir()
		junk := bytes.Repeat([]byte("not a database "), 512)
		os.WriteFile(filepath.Join(dir, "gatehouse.db"), junk, 0o600)
		if _, err := New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: dir}); err == nil {
			t.Fatal("got nil error")
		}
		after, _ := os.ReadFile(filepath.Join(dir, "gatehouse.db"))
		if !bytes.Equal(junk, after) {
			t.Error("corrupt store file was overwritten")
		}
	})
	t.Run("unreachable postgres", func(t *testing.T) {
		start := time.Now()
		_, err := New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: t.TempDir(), DBURL: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"})
		if err == nil {
			t.Fatal("got nil error")
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("took %v to fail", time.Since(start))
		}
	})
	t.Run("half TLS config", func(t *testing.T) {
		if _, err := New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: t.TempDir(), TLSCert: "x.pem"}); err == nil {
			t.Error("got nil error")
		}
	})
}

// TestKeyRotationSeenByRunningServer rotates keys the way the CLI does, in a
// separate store handle, and checks the running server publishes the new key
// within a second.
func TestKeyRotationSeenByRunningServer(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "data")
			db := be.db(t)
			srv, base := start(t, Config{DataDir: dir, DBURL: db})
			cfg := Config{DataDir: dir, DBURL: db}
			st, master, err := OpenStore(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			m, err := NewSigning(ctx, st, master, cfg)
			if err != nil {
				t.Fatal(err)
			}
			old, _ := srv.Keys().Active(token.ES256)
			k, err := m.Rotate(ctx, token.ES256, true)
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			for {
				_, body := get(t, base+"/.well-known/jwks.json")
				active, _ := srv.Keys().Active(token.ES256)
				if strings.Contains(string(body), k.ID) && active.ID == k.ID {
					break
				}
				if time.Since(begin) > time.Second {
					t.Fatalf("server did not pick up the rotated key within 1 s (old %s, new %s)", old.ID, k.ID)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("rotation seen after %v", time.Since(begin))
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	srv, err := New(context.Background(), Config{Issuer: "https://127.0.0.1", DataDir: filepath.Join(dir, "data"), TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.StatusCode != 200 {
		t.Errorf("got TLS=%v status=%d", resp.TLS != nil, resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	srv, err := New(context.Background(), Config{Issuer: "http://127.0.0.1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// Hold a request in flight: a handler that waits until shutdown began.
	release := make(chan struct{})
	entered := make(chan struct{})
	inner := srv.handler
	srv.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
			w.Write([]byte("finished"))
			return
		}
		inner.ServeHTTP(w, r)
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel()
	time.Sleep(100 * time.Millisecond) // shutdown has begun
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	close(release)
	if s := <-got; s != "finished" {
		t.Errorf("in-flight request: got %q, want finished", s)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

func TestPanicIsA500(t *testing.T) {
	srv, _ := start(t, Config{})
	h := srv.instrument(func() *http.ServeMux {
		mux := http.NewServeMux()
		mux.HandleFunc("/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
		return mux
	}())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	if rec.Code != 500 {
		t.Errorf("got %d, want 500", rec.Code)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestOversizedHeaderRefused(t *testing.T) {
	_, base := start(t, Config{})
	req, _ := http.NewRequest("GET", base+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: got %d, want 431", resp.StatusCode)
	}
	// The server keeps serving.
	if r, _ := get(t, base+"/healthz"); r.StatusCode != 200 {
		t.Errorf("healthz after oversized header: %d", r.StatusCode)
	}
}

func TestHousekeepingPrunesOldAuditAndChanges(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			var shift atomic.Int64 // the background schedule reads the clock too
			clock := func() time.Time { return now.Add(time.Duration(shift.Load())) }
			srv, _ := start(t, Config{DBURL: be.db(t), Now: clock, AuditRetention: time.Hour, ChangeRetention: time.Hour})
			st := srv.Store()
			old, recent := now.Add(-2*time.Hour), now.Add(-time.Minute)
			if err := st.AppendAudit(ctx,
				store.AuditEvent{At: old, Event: "test.old"},
				store.AuditEvent{At: recent, Event: "test.recent"}); err != nil {
				t.Fatal(err)
			}
			before, err := st.LastChange(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.RecordChange(ctx, "test", "x"); err != nil {
				t.Fatal(err)
			}
			// Changes are stamped by the store's own clock: move ours
			// past the retention of everything written so far.
			shift.Store(int64(3 * time.Hour))
			if err := srv.housekeep(ctx); err != nil {
				t.Fatal(err)
			}
			evs, err := st.AuditEvents(ctx, store.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range evs {
				names = append(names, e.Event)
			}
			if strings.Contains(strings.Join(names, ","), "test.old") {
				t.Errorf("audit events after housekeeping: %v; the old one should be gone", names)
			}
			if cs, err := st.Changes(ctx, 0, 100); err != nil || len(cs) != 1 {
				t.Errorf("changes after housekeeping: %d rows, %v; want only the newest", len(cs), err)
			}
			if last, _ := st.LastChange(ctx); last <= before {
				t.Errorf("LastChange went back to %d (was %d)", last, before)
			}
		})
	}
}

// TestClientGoneIsNotA500 checks that a request whose client closed the
// connection while the handler waited (for the store, here for its
// context) is counted as 499, not as a server error, while a real failure
// on a connected client stays a 500.
func TestClientGoneIsNotA500(t *testing.T) {
	srv, base := start(t, Config{})
	entered := make(chan struct{}, 1)
	h := srv.instrument(func() *http.ServeMux {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-r.Context().Done() // a store call returning context.Canceled
			http.Error(w, "internal error", http.StatusInternalServerError)
		})
		mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "internal error", http.StatusInternalServerError)
		})
		return mux
	}())
	ts := httptest.NewServer(h)
	defer ts.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/wait", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel() // the client goes away: its connection closes
	if err := <-errc; err == nil {
		t.Fatal("request succeeded after its context was cancelled")
	}
	if resp, err := http.Get(ts.URL + "/fail"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, base, `gatehouse_http_requests_total{code="499",route="GET /wait"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("GET /wait: 499 count = %v, want 1 (500 count %v)",
				metricValue(t, base, `gatehouse_http_requests_total{code="499",route="GET /wait"}`),
				metricValue(t, base, `gatehouse_http_requests_total{code="500",route="GET /wait"}`))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := metricValue(t, base, `gatehouse_http_requests_total{code="500",route="GET /wait"}`); n != -1 {
		t.Errorf("GET /wait counted as 500 %v times", n)
	}
	if n := metricValue(t, base, `gatehouse_http_requests_total{code="500",route="GET /fail"}`); n != 1 {
		t.Errorf("GET /fail: 500 count = %v, want 1", n)
	}
}
