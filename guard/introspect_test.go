package guard

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

const introClient = "gw-client"

// introAnswer builds signed introspection response claims.
func introAnswer(iss, aud string, iat time.Time, result map[string]any) map[string]any {
	return map[string]any{"iss": iss, "aud": aud, "iat": iat.Unix(), "token_introspection": result}
}

func activeAnswer(now time.Time, jti string) map[string]any {
	return map[string]any{
		"active": true, "sub": "user-7", "client_id": "app-1", "scope": "orders:read orders:write",
		"aud": []string{testAudience}, "exp": now.Add(10 * time.Minute).Unix(), "jti": jti,
		"act": map[string]any{"sub": "svc"},
	}
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSAKey(t testing.TB) token.SigningKey {
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return token.SigningKey{ID: "r1", Algorithm: token.RS256, Signer: rsaKey}
}

func sign(t testing.TB, key token.SigningKey, typ string, claims any) string {
	t.Helper()
	s, err := token.Sign(key, typ, claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyIntrospection(t *testing.T) {
	c := newClock()
	now := c.Now()
	is := newIssuer(t, c)
	rk := testRSAKey(t)
	keys, err := token.NewStaticKeySet(is.key.Public(), rk.Public())
	if err != nil {
		t.Fatal(err)
	}
	good := introAnswer(is.url, introClient, now, activeAnswer(now, "jti-1"))
	valid := sign(t, rk, introspectionType, good)
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding
	hdr := func(h string) string { return b64.EncodeToString([]byte(h)) }
	tests := []struct {
		name   string
		raw    string
		active bool
		ok     bool
	}{
		{"RS256 active", valid, true, true},
		{"ES256 active", sign(t, is.key, "application/token-introspection+jwt", good), true, true},
		{"inactive", sign(t, rk, introspectionType, introAnswer(is.url, introClient, now, map[string]any{"active": false})), false, true},
		{"access token typ", sign(t, rk, "at+jwt", good), false, false},
		{"no typ", sign(t, rk, "", good), false, false},
		{"wrong issuer", sign(t, rk, introspectionType, introAnswer("https://evil.example", introClient, now, activeAnswer(now, "j"))), false, false},
		{"wrong audience", sign(t, rk, introspectionType, introAnswer(is.url, "other", now, activeAnswer(now, "j"))), false, false},
		{"old", sign(t, rk, introspectionType, introAnswer(is.url, introClient, now.Add(-time.Hour), activeAnswer(now, "j"))), false, false},
		{"future", sign(t, rk, introspectionType, introAnswer(is.url, introClient, now.Add(time.Hour), activeAnswer(now, "j"))), false, false},
		{"no answer", sign(t, rk, introspectionType, map[string]any{"iss": is.url, "aud": introClient, "iat": now.Unix()}), false, false},
		{"active without jti", sign(t, rk, introspectionType, introAnswer(is.url, introClient, now, map[string]any{"active": true, "sub": "u", "exp": now.Add(time.Hour).Unix()})), false, false},
		{"alg none", hdr(`{"alg":"none","kid":"r1","typ":"token-introspection+jwt"}`) + "." + parts[1] + ".", false, false},
		{"HS256 confusion", hdr(`{"alg":"HS256","kid":"r1","typ":"token-introspection+jwt"}`) + "." + parts[1] + "." + parts[2], false, false},
		{"alg of another key", hdr(`{"alg":"ES256","kid":"r1","typ":"token-introspection+jwt"}`) + "." + parts[1] + "." + parts[2], false, false},
		{"crit", hdr(`{"alg":"RS256","kid":"r1","typ":"token-introspection+jwt","crit":["x"]}`) + "." + parts[1] + "." + parts[2], false, false},
		{"unknown kid", hdr(`{"alg":"RS256","kid":"zz","typ":"token-introspection+jwt"}`) + "." + parts[1] + "." + parts[2], false, false},
		{"tampered", parts[0] + "." + b64.EncodeToString([]byte(strings.Replace(string(mustDecode(t, parts[1])), "user-7", "admin", 1))) + "." + parts[2], false, false},
		{"padded", valid + "=", false, false},
		{"two parts", parts[0] + "." + parts[1], false, false},
		{"newline", parts[0] + ".\n" + parts[1] + "." + parts[2], false, false},
		{"empty", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := verifyIntrospection(context.Background(), tt.raw, keys, is.url, introClient, now)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if res.Active != tt.active {
				t.Fatalf("active = %v, want %v", res.Active, tt.active)
			}
			if res.Active {
				p := res.Principal
				if p.Subject != "user-7" || p.TokenID != "jti-1" || p.Kind != token.KindOpaque || p.ClientID != "app-1" ||
					len(p.Scopes) != 2 || p.Audience[0] != testAudience || p.Actor == nil || p.Actor.Subject != "svc" ||
					!p.ExpiresAt.Equal(time.Unix(now.Add(10*time.Minute).Unix(), 0)) {
					t.Errorf("principal = %+v", p)
				}
			}
		})
	}
}

func mustDecode(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeIntrospection is an introspection endpoint answering from a map of
// token to RFC 7662 answer, signed with the issuer's key.
type fakeIntrospection struct {
	is      *issuer
	mu      sync.Mutex
	answers map[string]map[string]any
	calls   atomic.Int64
	down    atomic.Bool
	block   chan struct{}
	url     string
}

func newFakeIntrospection(t testing.TB, is *issuer) *fakeIntrospection {
	f := &fakeIntrospection{is: is, answers: map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		if f.block != nil {
			<-f.block
		}
		id, secret, ok := r.BasicAuth()
		secret, _ = url.QueryUnescape(secret)
		if f.down.Load() || !ok || id != introClient || secret != "s3cr%t" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Accept") != "application/token-introspection+jwt" || r.ParseForm() != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		a, ok := f.answers[r.PostForm.Get("token")]
		f.mu.Unlock()
		if !ok {
			a = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/token-introspection+jwt")
		w.Write([]byte(sign(t, is.key, introspectionType, introAnswer(is.url, introClient, is.clock.Now(), a))))
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + DefaultIntrospectPath
	return f
}

func (f *fakeIntrospection) set(tok string, a map[string]any) {
	f.mu.Lock()
	f.answers[tok] = a
	f.mu.Unlock()
}

// opaqueEnv is an env whose Guard also resolves opaque tokens.
func opaqueEnv(t *testing.T) (*env, *fakeIntrospection) {
	t.Helper()
	e := newEnv(t, nil)
	f := newFakeIntrospection(t, e.issuer)
	in, err := NewHTTPIntrospector(HTTPIntrospectorConfig{
		URL: f.url, Issuer: e.issuer.url, ClientID: introClient, ClientSecret: "s3cr%t",
		Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Issuer: e.issuer.url, Audience: testAudience, APIKeys: e.keys, Introspector: in, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.guard = g
	return e, f
}

func TestOpaqueTokens(t *testing.T) {
	e, f := opaqueEnv(t)
	now := e.clock.Now()
	f.set("gho_good", activeAnswer(now, "jti-good"))
	f.set("gho_short", func() map[string]any {
		a := activeAnswer(now, "jti-short")
		a["exp"] = now.Add(5 * time.Second).Unix()
		return a
	}())
	other := activeAnswer(now, "jti-other")
	other["aud"] = "https://elsewhere.example"
	f.set("gho_other", other)

	all := e.guard.Require(Policy{})(echo)
	jwtOnly := e.guard.Require(Policy{Kinds: []token.Kind{token.KindJWT}})(echo)
	write := e.guard.Require(Policy{Kinds: []token.Kind{token.KindOpaque}, AllOf: []string{"orders:write"}})(echo)
	admin := e.guard.Require(Policy{AllOf: []string{"admin"}})(echo)
	tests := []struct {
		name   string
		h      http.Handler
		tok    string
		status int
		body   string
	}{
		{"accepted", all, "gho_good", 200, "opaque user-7 orders:read,orders:write"},
		{"opaque-only route", write, "gho_good", 200, "opaque user-7 orders:read,orders:write"},
		{"kind not accepted", jwtOnly, "gho_good", 401, ""},
		{"insufficient scope", admin, "gho_good", 403, ""},
		{"unknown token", all, "gho_unknown", 401, ""},
		{"other audience", all, "gho_other", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(tt.h, "/", "Authorization", "Bearer "+tt.tok)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if tt.body != "" && rec.Body.String() != tt.body {
				t.Errorf("body = %q, want %q", rec.Body, tt.body)
			}
			if tt.status == 401 && !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("cached", func(t *testing.T) {
		before := f.calls.Load()
		for range 5 {
			if rec := do(all, "/", "Authorization", "Bearer gho_good"); rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
			if rec := do(all, "/", "Authorization", "Bearer gho_unknown"); rec.Code != 401 {
				t.Fatalf("status %d", rec.Code)
			}
		}
		if n := f.calls.Load() - before; n != 0 {
			t.Errorf("%d introspection calls for cached answers, want 0", n)
		}
	})
	t.Run("until exp", func(t *testing.T) {
		if rec := do(all, "/", "Authorization", "Bearer gho_short"); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		e.clock.Add(6 * time.Second)
		if rec := do(all, "/", "Authorization", "Bearer gho_short"); rec.Code != 401 {
			t.Fatalf("after exp: status %d, want 401", rec.Code)
		}
	})
	t.Run("revoked by jti", func(t *testing.T) {
		if rec := do(all, "/", "Authorization", "Bearer gho_good"); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		e.guard.Revoke(token.KindJWT, "jti-good") // what the feed sends
		before := f.calls.Load()
		if rec := do(all, "/", "Authorization", "Bearer gho_good"); rec.Code != 401 {
			t.Fatalf("after revocation: status %d, want 401", rec.Code)
		}
		if f.calls.Load() != before+1 {
			t.Errorf("revocation did not evict the cached answer")
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		f.set("gho_new", activeAnswer(e.clock.Now(), "jti-new"))
		f.down.Store(true)
		defer f.down.Store(false)
		rec := do(all, "/", "Authorization", "Bearer gho_new")
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
		}
	})
}

func TestOpaqueDisabled(t *testing.T) {
	e := newEnv(t, nil)
	rec := do(e.guard.Require(Policy{})(echo), "/", "Authorization", "Bearer gho_whatever")
	if rec.Code != 401 {
		t.Fatalf("status %d, want 401", rec.Code)
	}
	defer func() {
		if recover() == nil {
			t.Error("Require with KindOpaque and no Introspector did not panic")
		}
	}()
	e.guard.Require(Policy{Kinds: []token.Kind{token.KindOpaque}})
}

func TestOpaqueSingleFlight(t *testing.T) {
	e, f := opaqueEnv(t)
	f.set("gho_sf", activeAnswer(e.clock.Now(), "jti-sf"))
	f.block = make(chan struct{})
	h := e.guard.Require(Policy{})(echo)
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() { codes[i] = do(h, "/", "Authorization", "Bearer gho_sf").Code })
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the others join the flight
	close(f.block)
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("request %d: status %d", i, c)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d introspection calls, want 1", n)
	}
}

func TestNewHTTPIntrospectorErrors(t *testing.T) {
	ok := HTTPIntrospectorConfig{URL: "https://auth.example.com/introspect", Issuer: "https://auth.example.com", ClientID: "c", ClientSecret: "s"}
	if _, err := NewHTTPIntrospector(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mod := range map[string]func(*HTTPIntrospectorConfig){
		"http URL":  func(c *HTTPIntrospectorConfig) { c.URL = "http://auth.example.com/introspect" },
		"no issuer": func(c *HTTPIntrospectorConfig) { c.Issuer = "" },
		"no secret": func(c *HTTPIntrospectorConfig) { c.ClientSecret = "" },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := NewHTTPIntrospector(cfg); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
	if _, err := New(Config{Introspector: &HTTPIntrospector{}}); err == nil {
		t.Error("New with Introspector and no Audience: got nil error")
	}
}

func TestHTTPIntrospectorErrorsWrapUnavailable(t *testing.T) {
	c := newClock()
	is := newIssuer(t, c)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"active":true,"sub":"forged"}`)) // unsigned: must not be believed
	}))
	defer srv.Close()
	in, err := NewHTTPIntrospector(HTTPIntrospectorConfig{URL: srv.URL, Issuer: is.url, ClientID: introClient, ClientSecret: "x", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	res, err := in.Introspect(context.Background(), "gho_secret_value")
	if !errors.Is(err, ErrUnavailable) || res.Active {
		t.Fatalf("res %+v, err %v; want ErrUnavailable", res, err)
	}
	if strings.Contains(err.Error(), "gho_secret_value") {
		t.Errorf("error contains the token: %v", err)
	}
}

func TestHTTPKeyVerifierClientAuth(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		got.Store(id + ":" + secret)
		w.Write([]byte(`{"active":false}`))
	}))
	defer srv.Close()
	v, err := NewHTTPKeyVerifier(HTTPKeyVerifierConfig{URL: srv.URL, ClientID: "gw", ClientSecret: "a:b%c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyKey(context.Background(), makeKey("AAAAAAAAAAAA", "s"), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if s, _ := got.Load().(string); s != "gw:a:b%c" {
		t.Errorf("credentials = %q", s)
	}
	if _, err := NewHTTPKeyVerifier(HTTPKeyVerifierConfig{URL: srv.URL, ClientID: "gw", ClientSecret: "x", Token: "t"}); err == nil {
		t.Error("Token and ClientID: got nil error")
	}
}

// FuzzVerifyIntrospection checks that the signed-answer parser never
// panics and accepts nothing it did not sign.
func FuzzVerifyIntrospection(f *testing.F) {
	c := newClock()
	now := c.Now()
	is := newIssuer(f, c)
	keys, err := token.NewStaticKeySet(is.key.Public())
	if err != nil {
		f.Fatal(err)
	}
	signed := map[string]bool{}
	for _, a := range []map[string]any{activeAnswer(now, "j1"), {"active": false}} {
		s := sign(f, is.key, introspectionType, introAnswer(is.url, introClient, now, a))
		signed[s[:strings.LastIndexByte(s, '.')]] = true
		f.Add(s)
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		res, err := verifyIntrospection(context.Background(), raw, keys, is.url, introClient, now)
		if err != nil {
			if res.Active {
				t.Fatal("active result with an error")
			}
			return
		}
		if i := strings.LastIndexByte(raw, '.'); i < 0 || !signed[raw[:i]] {
			t.Fatalf("accepted a response it did not sign: %q", raw)
		}
	})
}
