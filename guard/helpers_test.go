package guard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

const testAudience = "https://api.example.com"

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// issuer is a fake authorization server: an httptest server serving RFC
// 8414 metadata and a JWKS, and a token.Issuer signing with its key.
type issuer struct {
	srv        *httptest.Server
	url        string
	key        token.SigningKey
	iss        *token.Issuer
	clock      *clock
	down       atomic.Bool  // answer 503 to everything
	jwksHits   atomic.Int64 // JWKS fetches
	metaHits   atomic.Int64 // metadata fetches
	metaIssuer atomic.Value // issuer written in the metadata, if not url
}

func newIssuer(t testing.TB, c *clock) *issuer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: token.SigningKey{ID: "k1", Algorithm: token.ES256, Signer: priv}, clock: c}
	jwks, err := token.MarshalJWKS(is.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		is.metaHits.Add(1)
		if is.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		iss := is.url
		if v, ok := is.metaIssuer.Load().(string); ok {
			iss = v
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": is.url + "/jwks.json"})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHits.Add(1)
		if is.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	is.url = is.srv.URL
	is.iss, err = token.NewIssuer(token.IssuerConfig{
		Issuer: is.url,
		Key:    func() (token.SigningKey, error) { return is.key, nil },
		Now:    c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// claims returns valid claims for testAudience with the given scopes.
func (is *issuer) claims(scope string) token.Claims {
	return token.Claims{
		Subject:   "user-1",
		ClientID:  "client-1",
		Audience:  token.Audience{testAudience},
		Scope:     scope,
		ExpiresAt: is.clock.Now().Add(15 * time.Minute).Unix(),
	}
}

func (is *issuer) issue(t testing.TB, c token.Claims) string {
	t.Helper()
	raw, _, err := is.iss.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// fakeKeys is a KeyVerifier answering from a map, counting calls.
type fakeKeys struct {
	mu      sync.Mutex
	results map[string]KeyResult
	err     error
	calls   int
	lastIP  netip.Addr
	block   chan struct{} // if set, VerifyKey waits for it
}

func newFakeKeys() *fakeKeys { return &fakeKeys{results: map[string]KeyResult{}} }

func (f *fakeKeys) VerifyKey(ctx context.Context, key string, ip netip.Addr) (KeyResult, error) {
	f.mu.Lock()
	f.calls++
	f.lastIP = ip
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return KeyResult{}, f.err
	}
	return f.results[key], nil
}

func (f *fakeKeys) set(key string, r KeyResult) {
	f.mu.Lock()
	f.results[key] = r
	f.mu.Unlock()
}

func (f *fakeKeys) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeKeys) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// makeKey returns a well-formed Gatehouse API key (valid checksum) whose
// ID is id (12 base62 characters) and whose secret is derived from seed.
func makeKey(id, seed string) string {
	secret := (seed + strings.Repeat("x", 32))[:32]
	s := "gk_live_" + id + secret
	c := uint64(crc32.ChecksumIEEE([]byte(s)))
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var sum [6]byte
	for i := 5; i >= 0; i-- {
		sum[i] = alphabet[c%62]
		c /= 62
	}
	return s + string(sum[:])
}

// activeKey returns an accepted KeyResult for the key with the given id.
func activeKey(id string, scopes ...string) KeyResult {
	return KeyResult{Active: true, Principal: token.Principal{Subject: "owner-" + id, Scopes: scopes,
		Kind: token.KindAPIKey, KeyID: id}}
}

// env is a Guard with a fake issuer and fake key verifier.
type env struct {
	clock  *clock
	issuer *issuer
	keys   *fakeKeys
	guard  *Guard
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{clock: newClock(), keys: newFakeKeys()}
	e.issuer = newIssuer(t, e.clock)
	cfg := Config{Issuer: e.issuer.url, Audience: testAudience, APIKeys: e.keys, Now: e.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.guard = g
	return e
}

// echo is a handler that writes the principal it sees.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		http.Error(w, "no principal", http.StatusInternalServerError)
		return
	}
	w.Write([]byte(string(p.Kind) + " " + p.Subject + " " + strings.Join(p.Scopes, ",")))
})

// do sends a request through h with the given headers (name, value pairs)
// from 192.0.2.1.
func do(h http.Handler, target string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = "192.0.2.1:4321"
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
