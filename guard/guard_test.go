package guard

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

func TestPolicies(t *testing.T) {
	e := newEnv(t, nil)
	jwtRW := e.issuer.issue(t, e.issuer.claims("read write"))
	jwtR := e.issuer.issue(t, e.issuer.claims("read"))
	keyRW, keyR := makeKey("AAAAAAAAAAA1", "rw"), makeKey("AAAAAAAAAAA2", "r")
	e.keys.set(keyRW, activeKey("AAAAAAAAAAA1", "read", "write"))
	e.keys.set(keyR, activeKey("AAAAAAAAAAA2", "read"))

	policies := map[string]Policy{
		"any":      {},
		"jwt":      {Kinds: []token.Kind{token.KindJWT}},
		"apikey":   {Kinds: []token.Kind{token.KindAPIKey}},
		"both":     {Kinds: []token.Kind{token.KindJWT, token.KindAPIKey}},
		"allOf":    {AllOf: []string{"read", "write"}},
		"anyOf":    {AnyOf: []string{"admin", "write"}},
		"allAny":   {AllOf: []string{"read"}, AnyOf: []string{"admin", "write"}},
		"audOther": {Audience: "https://other.example.com"},
		"audOwn":   {Audience: testAudience, AllOf: []string{"read"}},
	}
	creds := map[string][]string{
		"jwtRW":  {"Authorization", "Bearer " + jwtRW},
		"jwtR":   {"Authorization", "Bearer " + jwtR},
		"keyRW":  {"X-API-Key", keyRW},
		"keyR":   {"X-API-Key", keyR},
		"bearKR": {"Authorization", "Bearer " + keyR},
		"none":   nil,
	}
	const (
		noErr   = `Bearer realm="api"`
		invalid = `Bearer realm="api", error="invalid_token"`
	)
	tests := []struct {
		policy, cred string
		status       int
		challenge    string
		body         string
	}{
		{"any", "jwtRW", 200, "", "jwt user-1 read,write"},
		{"any", "keyR", 200, "", "apikey owner-AAAAAAAAAAA2 read"},
		{"any", "bearKR", 200, "", "apikey owner-AAAAAAAAAAA2 read"},
		{"any", "none", 401, noErr, ""},
		{"jwt", "jwtR", 200, "", "jwt user-1 read"},
		{"jwt", "keyRW", 401, invalid, ""},
		{"jwt", "bearKR", 401, invalid, ""},
		{"jwt", "none", 401, noErr, ""},
		{"apikey", "keyRW", 200, "", "apikey owner-AAAAAAAAAAA1 read,write"},
		{"apikey", "bearKR", 200, "", "apikey owner-AAAAAAAAAAA2 read"},
		{"apikey", "jwtRW", 401, invalid, ""},
		{"both", "jwtR", 200, "", "jwt user-1 read"},
		{"both", "keyR", 200, "", "apikey owner-AAAAAAAAAAA2 read"},
		{"allOf", "jwtRW", 200, "", "jwt user-1 read,write"},
		{"allOf", "keyRW", 200, "", "apikey owner-AAAAAAAAAAA1 read,write"},
		{"allOf", "jwtR", 403, `Bearer realm="api", error="insufficient_scope", scope="read write"`, ""},
		{"allOf", "keyR", 403, `Bearer realm="api", error="insufficient_scope", scope="read write"`, ""},
		{"allOf", "none", 401, noErr, ""},
		{"anyOf", "jwtRW", 200, "", "jwt user-1 read,write"},
		{"anyOf", "jwtR", 403, `Bearer realm="api", error="insufficient_scope", scope="admin write"`, ""},
		{"anyOf", "keyR", 403, `Bearer realm="api", error="insufficient_scope", scope="admin write"`, ""},
		{"allAny", "keyRW", 200, "", "apikey owner-AAAAAAAAAAA1 read,write"},
		{"allAny", "jwtR", 403, `Bearer realm="api", error="insufficient_scope", scope="read admin write"`, ""},
		{"audOther", "jwtRW", 401, invalid, ""},
		{"audOther", "keyRW", 200, "", "apikey owner-AAAAAAAAAAA1 read,write"},
		{"audOwn", "jwtR", 200, "", "jwt user-1 read"},
	}
	for _, tt := range tests {
		t.Run(tt.policy+"/"+tt.cred, func(t *testing.T) {
			h := e.guard.Require(policies[tt.policy])(echo)
			rec := do(h, "/r", creds[tt.cred]...)
			if rec.Code != tt.status {
				t.Fatalf("status: got %d, want %d (body %q)", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.challenge)
			}
			if tt.status == 200 && rec.Body.String() != tt.body {
				t.Errorf("body: got %q, want %q", rec.Body, tt.body)
			}
			if tt.status != 200 && strings.Contains(rec.Body.String(), "user-1") {
				t.Errorf("refusal body %q reveals the principal", rec.Body)
			}
		})
	}
}

// TestBadTokens: everything in the verifier's threat list is refused 401.
func TestBadTokens(t *testing.T) {
	e := newEnv(t, nil)
	h := e.guard.Require(Policy{})(echo)
	good := e.issuer.issue(t, e.issuer.claims("read"))
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding

	// Same kid, another key.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := token.NewIssuer(token.IssuerConfig{Issuer: e.issuer.url, Now: e.clock.Now,
		Key: func() (token.SigningKey, error) {
			return token.SigningKey{ID: "k1", Algorithm: token.ES256, Signer: other}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := forger.Issue(e.issuer.claims("read"))
	if err != nil {
		t.Fatal(err)
	}
	none := b64.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`)) + "." + parts[1] + "."
	hs := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"k1"}`)) + "." + parts[1] + "." + parts[2]
	payload, _ := b64.DecodeString(parts[1])
	tampered := parts[0] + "." + b64.EncodeToString(bytes.Replace(payload, []byte(`"read"`), []byte(`"admin"`), 1)) + "." + parts[2]
	wrongAud := e.issuer.claims("read")
	wrongAud.Audience = token.Audience{"https://other.example.com"}
	expired := e.issuer.claims("read")
	expired.ExpiresAt = e.clock.Now().Add(-time.Hour).Unix()
	expired.IssuedAt = e.clock.Now().Add(-2 * time.Hour).Unix()

	tests := []struct {
		name, tok string
	}{
		{"forged", forged},
		{"alg none", none},
		{"alg HS256", hs},
		{"tampered payload", tampered},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))},
		{"wrong audience", e.issuer.issue(t, wrongAud)},
		{"expired", e.issuer.issue(t, expired)},
		{"garbage", "a.b.c"},
		{"opaque", "2YotnFZFEjr1zCsicMWpAA"},
		{"too large", strings.Repeat("a", token.DefaultMaxSize+1)},
		{"key-shaped, bad checksum", makeKey("AAAAAAAAAAA1", "x")[:57] + "Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, "/r", "Authorization", "Bearer "+tt.tok)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status: got %d, want 401", rec.Code)
			}
			want := `Bearer realm="api", error="invalid_token"`
			if got := rec.Header().Get("WWW-Authenticate"); got != want {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, want)
			}
			if got, want := strings.TrimSpace(rec.Body.String()), `{"error":"invalid_token"}`; got != want {
				t.Errorf("body: got %q, want %q", got, want)
			}
		})
	}
	if got := e.keys.callCount(); got != 0 {
		t.Errorf("key verifier calls: got %d, want 0 (a bad checksum is refused locally)", got)
	}
	// The genuine token still works.
	if rec := do(h, "/r", "Authorization", "Bearer "+good); rec.Code != 200 {
		t.Errorf("good token: got %d, want 200", rec.Code)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, nil)
	h := e.guard.Require(Policy{})(echo)
	tok := e.issuer.issue(t, e.issuer.claims("read"))
	key := makeKey("AAAAAAAAAAA1", "k")
	e.keys.set(key, activeKey("AAAAAAAAAAA1", "read"))
	tests := []struct {
		name    string
		target  string
		headers []string
		status  int
	}{
		{"access_token in query", "/r?access_token=abc", nil, 400},
		{"api_key in query", "/r?x=1&API_KEY=abc", nil, 400},
		{"key in query", "/r?key=abc", []string{"Authorization", "Bearer " + tok}, 400},
		{"escaped name in query", "/r?access%5Ftoken=abc", nil, 400},
		{"JWT value in query", "/r?q=" + tok, nil, 400},
		{"API key value in query", "/r?q=" + key, []string{"X-API-Key", key}, 400},
		{"harmless query", "/r?page=2&sort=name", []string{"Authorization", "Bearer " + tok}, 200},
		{"duplicate Authorization", "/r", []string{"Authorization", "Bearer " + tok, "Authorization", "Bearer " + tok}, 400},
		{"duplicate X-API-Key", "/r", []string{"X-API-Key", key, "X-API-Key", key}, 400},
		{"Bearer and X-API-Key", "/r", []string{"Authorization", "Bearer " + tok, "X-API-Key", key}, 400},
		{"Basic and X-API-Key", "/r", []string{"Authorization", "Basic dXNlcjpwYXNz", "X-API-Key", key}, 400},
		{"Bearer without token", "/r", []string{"Authorization", "Bearer"}, 400},
		{"Bearer with space only", "/r", []string{"Authorization", "Bearer "}, 400},
		{"bad token characters", "/r", []string{"Authorization", "Bearer a,b"}, 400},
		{"two bearer tokens in one header", "/r", []string{"Authorization", "Bearer a Bearer b"}, 400},
		{"empty X-API-Key", "/r", []string{"X-API-Key", ""}, 400},
		{"X-API-Key with space", "/r", []string{"X-API-Key", "a b"}, 400},
		{"empty Authorization", "/r", []string{"Authorization", ""}, 400},
		{"other scheme", "/r", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401},
		{"lowercase bearer", "/r", []string{"Authorization", "bearer " + tok}, 200},
		{"extra spaces", "/r", []string{"Authorization", "Bearer   " + tok}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, tt.target, tt.headers...)
			if rec.Code != tt.status {
				t.Fatalf("status: got %d, want %d (body %q)", rec.Code, tt.status, rec.Body)
			}
			if tt.status == 400 {
				want := `Bearer realm="api", error="invalid_request"`
				if got := rec.Header().Get("WWW-Authenticate"); got != want {
					t.Errorf("WWW-Authenticate: got %q, want %q", got, want)
				}
				if body := rec.Body.String(); strings.Contains(body, tok) || strings.Contains(body, key) {
					t.Errorf("body %q contains the credential", body)
				}
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	t.Run("key verifier down", func(t *testing.T) {
		e := newEnv(t, nil)
		h := e.guard.Require(Policy{})(echo)
		key := makeKey("AAAAAAAAAAA1", "k")
		e.keys.setErr(errors.New("connection refused"))
		rec := do(h, "/r", "X-API-Key", key)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status: got %d, want 503", rec.Code)
		}
		if got := rec.Header().Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After: got %q, want 1", got)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != "" {
			t.Errorf("WWW-Authenticate on 503: got %q, want none", got)
		}
		// A cached answer still serves while Gatehouse is down.
		e.keys.setErr(nil)
		e.keys.set(key, activeKey("AAAAAAAAAAA1", "read"))
		if rec := do(h, "/r", "X-API-Key", key); rec.Code != 200 {
			t.Fatalf("status after recovery: got %d, want 200", rec.Code)
		}
		e.keys.setErr(errors.New("connection refused"))
		if rec := do(h, "/r", "X-API-Key", key); rec.Code != 200 {
			t.Errorf("cached key while down: got %d, want 200", rec.Code)
		}
		e.clock.Add(DefaultKeyTTL)
		if rec := do(h, "/r", "X-API-Key", key); rec.Code != 503 {
			t.Errorf("after the TTL while down: got %d, want 503", rec.Code)
		}
	})
	t.Run("issuer down", func(t *testing.T) {
		e := newEnv(t, nil)
		h := e.guard.Require(Policy{})(echo)
		tok := e.issuer.issue(t, e.issuer.claims("read"))
		e.issuer.down.Store(true)
		if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status: got %d, want 503", rec.Code)
		}
		// Discovery is not retried on every request.
		hits := e.issuer.metaHits.Load()
		do(h, "/r", "Authorization", "Bearer "+tok)
		if got := e.issuer.metaHits.Load(); got != hits {
			t.Errorf("metadata fetches: got %d, want %d (retry only after %v)", got, hits, discoveryRetry)
		}
		e.issuer.down.Store(false)
		e.clock.Add(discoveryRetry)
		if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != 200 {
			t.Fatalf("after recovery: got %d, want 200", rec.Code)
		}
		// Once verified, the token is answered from the cache.
		e.issuer.down.Store(true)
		if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != 200 {
			t.Errorf("cached token while down: got %d, want 200", rec.Code)
		}
	})
	t.Run("metadata for another issuer", func(t *testing.T) {
		e := newEnv(t, nil)
		e.issuer.metaIssuer.Store("https://evil.example.com")
		h := e.guard.Require(Policy{})(echo)
		tok := e.issuer.issue(t, e.issuer.claims("read"))
		if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status: got %d, want 503", rec.Code)
		}
		if got := e.issuer.jwksHits.Load(); got != 0 {
			t.Errorf("JWKS fetches: got %d, want 0", got)
		}
	})
}

func TestLogsWithoutCredential(t *testing.T) {
	var buf bytes.Buffer
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&buf, nil)) })
	h := e.guard.Require(Policy{AllOf: []string{"admin"}})(echo)
	key := makeKey("AAAAAAAAAAA1", "secretsecret")
	tok := e.issuer.issue(t, e.issuer.claims("read"))
	e.keys.set(key, activeKey("AAAAAAAAAAA1", "read"))
	do(h, "/r", "X-API-Key", key)
	do(h, "/r", "Authorization", "Bearer "+tok)
	do(h, "/r", "Authorization", "Bearer "+tok[:len(tok)-3]+"AAA")
	do(h, "/r?access_token="+tok)
	e.keys.setErr(errors.New("down"))
	do(h, "/r", "X-API-Key", makeKey("AAAAAAAAAAA3", "other"))
	log := buf.String()
	if n := strings.Count(log, "guard: request refused"); n != 5 {
		t.Errorf("log lines: got %d, want 5:\n%s", n, log)
	}
	for _, secret := range []string{key, key[20:40], tok, strings.Split(tok, ".")[2]} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains a credential:\n%s", log)
		}
	}
	for _, want := range []string{"key_id=AAAAAAAAAAA1", "insufficient_scope", "invalid_request", "level=ERROR", "token: invalid signature"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestNewErrors(t *testing.T) {
	keys := newFakeKeys()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"nothing enabled", Config{}},
		{"issuer without audience", Config{Issuer: "https://auth.example.com"}},
		{"plain http issuer", Config{Issuer: "http://auth.example.com", Audience: testAudience}},
		{"plain http JWKS", Config{Issuer: "https://auth.example.com", Audience: testAudience, JWKSURL: "http://auth.example.com/jwks"}},
		{"negative TTL", Config{APIKeys: keys, KeyTTL: -1}},
		{"quote in realm", Config{APIKeys: keys, Realm: `a"b`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Errorf("New: got nil error, want one")
			}
		})
	}
}

func TestRequirePanics(t *testing.T) {
	keysOnly, err := New(Config{APIKeys: newFakeKeys()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    Policy
	}{
		{"JWT without issuer", Policy{Kinds: []token.Kind{token.KindJWT}}},
		{"opaque", Policy{Kinds: []token.Kind{token.KindOpaque}}},
		{"unknown kind", Policy{Kinds: []token.Kind{"cookie"}}},
		{"empty scope", Policy{AllOf: []string{""}}},
		{"scope with quote", Policy{AnyOf: []string{`a"b`}}},
		{"scope with space", Policy{AllOf: []string{"a b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Require(%+v): got no panic, want one", tt.p)
				}
			}()
			keysOnly.Require(tt.p)
		})
	}
}

func TestPrincipalFrom(t *testing.T) {
	if _, ok := PrincipalFrom(t.Context()); ok {
		t.Errorf("PrincipalFrom(empty context): got ok, want not ok")
	}
	ctx := WithPrincipal(t.Context(), token.Principal{Subject: "s"})
	if p, ok := PrincipalFrom(ctx); !ok || p.Subject != "s" {
		t.Errorf("PrincipalFrom: got %+v, %v, want subject s", p, ok)
	}
}

func TestRealmAndRemoteIP(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Realm = "billing" })
	h := e.guard.Require(Policy{})(echo)
	if got, want := do(h, "/r").Header().Get("WWW-Authenticate"), `Bearer realm="billing"`; got != want {
		t.Errorf("WWW-Authenticate: got %q, want %q", got, want)
	}
	key := makeKey("AAAAAAAAAAA1", "k")
	e.keys.set(key, activeKey("AAAAAAAAAAA1"))
	do(h, "/r", "X-API-Key", key)
	if got := e.keys.lastIP.String(); got != "192.0.2.1" {
		t.Errorf("remote IP sent to the verifier: got %s, want 192.0.2.1", got)
	}
}
