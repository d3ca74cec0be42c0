package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

const (
	extAudience = "https://api.example.com"
	gwClient    = "gw-test"
	gwSecret    = "gw-secret-value"
)

// subject is what the fake Gatehouse knows about a credential.
type subject struct {
	sub, scope string
	kind       token.Kind
	keyID, jti string
}

// fakeGatehouse serves discovery, JWKS, /apikeys/verify, /introspect and
// the token exchange at /token, signing with one ES256 key.
type fakeGatehouse struct {
	t      testing.TB
	srv    *httptest.Server
	url    string
	key    token.SigningKey
	iss    *token.Issuer
	ttl    atomic.Int64 // internal token lifetime, seconds
	down   atomic.Bool
	block  atomic.Pointer[chan struct{}]
	mu     sync.Mutex
	subs   map[string]subject
	calls  atomic.Int64 // exchange calls
	lastEx atomic.Value // url.Values of the last exchange, as a map
}

func newFakeGatehouse(t testing.TB) *fakeGatehouse {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGatehouse{t: t, key: token.SigningKey{ID: "k1", Algorithm: token.ES256, Signer: priv}, subs: map[string]subject{}}
	f.ttl.Store(60)
	jwks, _ := token.MarshalJWKS(f.key.Public())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": f.url, "jwks_uri": f.url + "/jwks.json"})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) })
	mux.HandleFunc("POST /apikeys/verify", func(w http.ResponseWriter, r *http.Request) {
		if !f.authOK(w, r) {
			return
		}
		var req struct{ Key string }
		json.NewDecoder(r.Body).Decode(&req)
		s, ok := f.lookup(req.Key)
		if !ok || s.kind != token.KindAPIKey {
			w.Write([]byte(`{"active":false}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"active": true, "key_id": s.keyID, "sub": s.sub, "scope": s.scope})
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		if !f.authOK(w, r) {
			return
		}
		s, ok := f.lookup(r.PostFormValue("token"))
		ans := map[string]any{"active": false}
		if ok && s.kind == token.KindOpaque {
			ans = map[string]any{"active": true, "sub": s.sub, "scope": s.scope, "client_id": "app", "aud": extAudience,
				"exp": time.Now().Add(time.Hour).Unix(), "jti": s.jti}
		}
		jwt, err := token.Sign(f.key, "token-introspection+jwt", map[string]any{"iss": f.url, "aud": gwClient, "iat": time.Now().Unix(), "token_introspection": ans})
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/token-introspection+jwt")
		w.Write([]byte(jwt))
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		if b := f.block.Load(); b != nil {
			<-*b
		}
		if !f.authOK(w, r) {
			return
		}
		r.ParseForm()
		f.lastEx.Store(map[string]string{"subject_token_type": r.PostForm.Get("subject_token_type"), "audience": r.PostForm.Get("audience"), "scope": r.PostForm.Get("scope")})
		s, ok := f.lookup(r.PostForm.Get("subject_token"))
		if !ok || r.PostForm.Get("grant_type") != grantTokenExchange {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_request"}`))
			return
		}
		scope := s.scope
		if sc := r.PostForm.Get("scope"); sc != "" {
			scope = sc
		}
		ttl := f.ttl.Load()
		tok, _, err := f.iss.Issue(token.Claims{Subject: s.sub, ClientID: "app", Scope: scope, Audience: token.Audience{r.PostForm.Get("audience")},
			ExpiresAt: time.Now().Unix() + ttl, Kind: s.kind, KeyID: s.keyID, Actor: &token.Actor{Subject: gwClient}})
		if err != nil {
			t.Error(err)
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": ttl,
			"issued_token_type": typeAccessToken})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.url = f.srv.URL
	f.iss, err = token.NewIssuer(token.IssuerConfig{Issuer: f.url, Key: func() (token.SigningKey, error) { return f.key, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeGatehouse) authOK(w http.ResponseWriter, r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if f.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return false
	}
	if !ok || id != gwClient || secret != gwSecret {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_client"}`))
		return false
	}
	return true
}

func (f *fakeGatehouse) lookup(cred string) (subject, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.subs[cred]
	return s, ok
}

// jwt issues an external access token for extAudience.
func (f *fakeGatehouse) jwt(t testing.TB, sub, scope string) string {
	t.Helper()
	tok, cl, err := f.iss.Issue(token.Claims{Subject: sub, ClientID: "app", Scope: scope, Audience: token.Audience{extAudience},
		ExpiresAt: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.subs[tok] = subject{sub: sub, scope: scope, kind: token.KindJWT, jti: cl.ID}
	f.mu.Unlock()
	return tok
}

func (f *fakeGatehouse) opaque(sub, scope, jti string) string {
	tok := "gho_" + jti + strings.Repeat("x", 40)
	f.mu.Lock()
	f.subs[tok] = subject{sub: sub, scope: scope, kind: token.KindOpaque, jti: jti}
	f.mu.Unlock()
	return tok
}

func (f *fakeGatehouse) apiKey(id, sub, scope string) string {
	k := makeKey(id)
	f.mu.Lock()
	f.subs[k] = subject{sub: sub, scope: scope, kind: token.KindAPIKey, keyID: id}
	f.mu.Unlock()
	return k
}

// makeKey returns a well-formed Gatehouse API key with the 12-character id.
func makeKey(id string) string {
	s := "gk_live_" + id + strings.Repeat("s", 32)
	c := uint64(crc32.ChecksumIEEE([]byte(s)))
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var sum [6]byte
	for i := 5; i >= 0; i-- {
		sum[i] = alphabet[c%62]
		c /= 62
	}
	return s + string(sum[:])
}

// verifier returns a token.Verifier for internal tokens for audience.
func (f *fakeGatehouse) verifier(t testing.TB, audience string) *token.Verifier {
	ks, err := token.NewStaticKeySet(f.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: f.url, Audience: audience, Keys: ks})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// writeConfig writes a gateway config for f with the given route tables
// and returns its path. The secret is in a file beside it.
func writeConfig(t testing.TB, dir string, f *fakeGatehouse, routes string) string {
	t.Helper()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(gwSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "gateway.toml")
	cfg := fmt.Sprintf("issuer = %q\naudience = %q\nclient_id = %q\nclient_secret_file = %q\n%s", f.url, extAudience, gwClient, secret, routes)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newTestGateway starts a gateway for f with routes, behind a real HTTP
// server with the same limits as the command.
func newTestGateway(t testing.TB, f *fakeGatehouse, routes string) (*Gateway, *httptest.Server, string) {
	t.Helper()
	path := writeConfig(t, t.TempDir(), f, routes)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gw)
	srv.Config = NewServer(gw)
	srv.Start()
	t.Cleanup(srv.Close)
	return gw, srv, path
}
