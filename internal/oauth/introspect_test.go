package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// introspect calls the introspection endpoint as client id and decodes
// the JSON answer.
func (e *m2mEnv) introspect(t testing.TB, id, secret, tok string) (int, map[string]any) {
	t.Helper()
	status, _, body := e.post(t, IntrospectPath, url.Values{"token": {tok}}, id, secret)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("introspection body %s: %v", body, err)
	}
	return status, m
}

func TestIntrospection(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newM2MEnv(t, open, nil)
		owner, ownerSecret := e.newClient(t, store.Client{Scopes: []string{"read"}, Audiences: []string{"https://api1"}})
		rs, rsSecret := e.newClient(t, store.Client{GrantTypes: []string{}, Audiences: []string{"https://api1"}})
		other, otherSecret := e.newClient(t, store.Client{Audiences: []string{"https://api2"}})
		self, selfSecret := e.newClient(t, store.Client{Scopes: []string{"x"}}) // tokens for the issuer
		tok := e.token(t, owner.ID, ownerSecret, "")
		selfTok := e.token(t, self.ID, selfSecret, "")

		// A token signed by a key the server never published.
		foreignKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		foreignIss, _ := token.NewIssuer(token.IssuerConfig{Issuer: e.issuer, Key: func() (token.SigningKey, error) {
			return token.SigningKey{ID: "foreign", Algorithm: token.ES256, Signer: foreignKey}, nil
		}})
		forged, _, err := foreignIss.Issue(token.Claims{Subject: owner.ID, ClientID: owner.ID, Audience: token.Audience{"https://api1"},
			ExpiresAt: time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(tok, ".")
		tampered := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))

		cases := []struct {
			name       string
			id, secret string
			tok        string
			wantActive bool
		}{
			{"issued to the caller", owner.ID, ownerSecret, tok, true},
			{"meant for the caller's audience", rs.ID, rsSecret, tok, true},
			{"another audience", other.ID, otherSecret, tok, false},
			{"issuer-audience token, own", self.ID, selfSecret, selfTok, true},
			{"issuer-audience token, other client", rs.ID, rsSecret, selfTok, false},
			{"forged key", owner.ID, ownerSecret, forged, false},
			{"bad signature", owner.ID, ownerSecret, tampered, false},
			{"garbage", owner.ID, ownerSecret, "not-a-token", false},
			{"three dots of garbage", owner.ID, ownerSecret, "a.b.c", false},
			{"huge", owner.ID, ownerSecret, strings.Repeat("a", 20000), false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, m := e.introspect(t, tc.id, tc.secret, tc.tok)
				if status != 200 {
					t.Fatalf("status %d, want 200", status)
				}
				if m["active"] != tc.wantActive {
					t.Fatalf("active = %v, want %v (%v)", m["active"], tc.wantActive, m)
				}
				if !tc.wantActive && len(m) != 1 {
					t.Errorf("inactive answer %v has more than \"active\"", m)
				}
				if tc.wantActive {
					for _, k := range []string{"scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "token_type"} {
						if _, ok := m[k]; !ok {
							t.Errorf("active answer lacks %q: %v", k, m)
						}
					}
				}
			})
		}
		status, m := e.introspect(t, owner.ID, ownerSecret, tok)
		if status != 200 || m["client_id"] != owner.ID || m["sub"] != owner.ID || m["scope"] != "read" || m["iss"] != e.issuer {
			t.Errorf("answer %v: want client_id = sub = %s, scope read, iss %s", m, owner.ID, e.issuer)
		}
		// The token expires: inactive (after the verifier's leeway).
		e.clock.Advance(DefaultAccessTokenTTL + token.MaxLeeway)
		if _, m := e.introspect(t, owner.ID, ownerSecret, tok); m["active"] != false {
			t.Errorf("expired token: active = %v, want false", m["active"])
		}
	})
}

func TestIntrospectionErrors(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	c, secret := e.newClient(t, store.Client{})
	pub, _ := e.newClient(t, store.Client{Public: true, GrantTypes: []string{"authorization_code"},
		RedirectURIs: []string{"http://127.0.0.1/cb"}})
	tok := e.token(t, c.ID, secret, "")
	cases := []struct {
		name       string
		form       url.Values
		id, secret string
		wantStatus int
		wantCode   string
	}{
		{"no client authentication", url.Values{"token": {tok}}, "", "", 401, errInvalidClient},
		{"wrong secret", url.Values{"token": {tok}}, c.ID, "nope", 401, errInvalidClient},
		{"public client", url.Values{"token": {tok}, "client_id": {pub.ID}}, "", "", 401, errInvalidClient},
		{"missing token", url.Values{}, c.ID, secret, 400, errInvalidRequest},
		{"empty token", url.Values{"token": {""}}, c.ID, secret, 400, errInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := e.post(t, IntrospectPath, tc.form, tc.id, tc.secret)
			if status != tc.wantStatus || errorCode(t, body) != tc.wantCode {
				t.Errorf("got %d %s, want %d %s", status, body, tc.wantStatus, tc.wantCode)
			}
		})
	}
	req, _ := http.NewRequest("POST", e.srv.URL+IntrospectPath, strings.NewReader("token="+tok+"&token="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, secret)
	if status, _, body := do(t, req); status != 400 || errorCode(t, body) != errInvalidRequest {
		t.Errorf("repeated token: got %d %s, want 400 invalid_request", status, body)
	}
}

func TestIntrospectionJWTResponse(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	c, secret := e.newClient(t, store.Client{Scopes: []string{"read"}})
	tok := e.token(t, c.ID, secret, "")
	for _, tc := range []struct {
		name       string
		tok        string
		wantActive bool
	}{{"active", tok, true}, {"inactive", "x.y.z", false}} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := e.post(t, IntrospectPath, url.Values{"token": {tc.tok}}, c.ID, secret,
				"Accept", "application/json;q=0.5, application/token-introspection+jwt")
			if status != 200 || hdr.Get("Content-Type") != "application/token-introspection+jwt" {
				t.Fatalf("status %d, Content-Type %q; want 200 application/token-introspection+jwt", status, hdr.Get("Content-Type"))
			}
			a, err := parseAssertion(string(body))
			if err != nil {
				t.Fatalf("parse response JWT: %v", err)
			}
			key, err := e.p.keys.Key(context.Background(), a.kid)
			if err != nil || !verifySignature(key, a.alg, a.signingInput, a.signature) || a.alg != "RS256" {
				t.Fatalf("response JWT: alg %s, signature does not verify with the published key %q (%v)", a.alg, a.kid, err)
			}
			hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(string(body), ".")[0])
			pb, _ := base64.RawURLEncoding.DecodeString(strings.Split(string(body), ".")[1])
			var h struct{ Typ string }
			var p struct {
				Iss, Aud string
				Iat      int64
				Result   map[string]any `json:"token_introspection"`
			}
			json.Unmarshal(hb, &h)
			json.Unmarshal(pb, &p)
			if h.Typ != "token-introspection+jwt" || p.Iss != e.issuer || p.Aud != c.ID || p.Iat == 0 {
				t.Errorf("typ %q iss %q aud %q iat %d; want token-introspection+jwt, %s, %s, set", h.Typ, p.Iss, p.Aud, p.Iat, e.issuer, c.ID)
			}
			if p.Result["active"] != tc.wantActive {
				t.Errorf("token_introspection.active = %v, want %v", p.Result["active"], tc.wantActive)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		ctx := context.Background()
		e := newM2MEnv(t, open, nil)
		c, secret := e.newClient(t, store.Client{Audiences: []string{"https://api"}})
		other, otherSecret := e.newClient(t, store.Client{Audiences: []string{"https://api"}})
		tok := e.token(t, c.ID, secret, "")
		keep := e.token(t, c.ID, secret, "")

		// Another client cannot revoke it: 200, nothing happens.
		if status, _, _ := e.post(t, RevokePath, url.Values{"token": {tok}}, other.ID, otherSecret); status != 200 {
			t.Errorf("revoke by another client: status %d, want 200", status)
		}
		if _, m := e.introspect(t, other.ID, otherSecret, tok); m["active"] != true {
			t.Fatalf("after another client's revoke: active = %v, want true", m["active"])
		}
		last, _ := e.st.LastChange(ctx)
		status, hdr, body := e.post(t, RevokePath, url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, c.ID, secret)
		if status != 200 || len(body) != 0 || hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("revoke: status %d body %q Cache-Control %q; want 200, empty, no-store", status, body, hdr.Get("Cache-Control"))
		}
		// At once, for every client.
		for _, cl := range [][2]string{{c.ID, secret}, {other.ID, otherSecret}} {
			if _, m := e.introspect(t, cl[0], cl[1], tok); m["active"] != false {
				t.Errorf("revoked token introspected by %s: active = %v, want false", cl[0], m["active"])
			}
		}
		if _, m := e.introspect(t, c.ID, secret, keep); m["active"] != true {
			t.Errorf("the other token of the client: active = %v, want true", m["active"])
		}
		cs, _ := e.st.Changes(ctx, last, 10)
		if len(cs) != 1 || cs[0].Kind != store.ChangeTokenRevoked {
			t.Errorf("changes after revoke = %+v, want one %s", cs, store.ChangeTokenRevoked)
		}
		// Revoking again, an unknown hint and garbage are all fine.
		for _, form := range []url.Values{
			{"token": {tok}},
			{"token": {tok}, "token_type_hint": {"something_else"}},
			{"token": {"garbage"}},
		} {
			if status, _, body := e.post(t, RevokePath, form, c.ID, secret); status != 200 {
				t.Errorf("revoke %v: status %d %s, want 200", form, status, body)
			}
		}
		if status, _, body := e.post(t, RevokePath, url.Values{}, c.ID, secret); status != 400 || errorCode(t, body) != errInvalidRequest {
			t.Errorf("revoke without token: %d %s, want 400 invalid_request", status, body)
		}
		if status, _, body := e.post(t, RevokePath, url.Values{"token": {keep}}, c.ID, "wrong"); status != 401 || errorCode(t, body) != errInvalidClient {
			t.Errorf("revoke with a wrong secret: %d %s, want 401 invalid_client", status, body)
		}

		// A second replica on the same store: Init loads the denylist.
		p2, err := NewProvider(e.p.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := p2.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if r, _, _ := p2.introspectAccessToken(ctx, &c, tok, ""); r.Active {
			t.Error("replica started after the revocation: token active, want inactive")
		}
		// ... and the change feed brings later revocations.
		if r, _, _ := p2.introspectAccessToken(ctx, &c, keep, ""); !r.Active {
			t.Fatal("replica: second token inactive before its revocation")
		}
		if status, _, _ := e.post(t, RevokePath, url.Values{"token": {keep}}, c.ID, secret); status != 200 {
			t.Fatal("revoke second token failed")
		}
		cs, _ = e.st.Changes(ctx, last, 10)
		if err := p2.OnRevocationChange(ctx, cs); err != nil {
			t.Fatal(err)
		}
		if r, _, _ := p2.introspectAccessToken(ctx, &c, keep, ""); r.Active {
			t.Error("replica after the change feed: token active, want inactive")
		}
	})
}

func TestRevocationPublicClient(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	pub, _ := e.newClient(t, store.Client{Public: true, GrantTypes: []string{"authorization_code"},
		RedirectURIs: []string{"http://127.0.0.1/cb"}})
	status, _, body := e.post(t, RevokePath, url.Values{"token": {"x"}, "client_id": {pub.ID}}, "", "")
	if status != 200 {
		t.Errorf("public client revoke: %d %s, want 200", status, body)
	}
	status, _, body = e.post(t, RevokePath, url.Values{"token": {"x"}, "client_id": {"unknown"}}, "", "")
	if status != 401 || errorCode(t, body) != errInvalidClient {
		t.Errorf("unknown public client: %d %s, want 401 invalid_client", status, body)
	}
}

// TestVerifiersBounded checks that tokens that do not verify never add a
// cached verifier, whatever audience they claim.
func TestVerifiersBounded(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	c, secret := e.newClient(t, store.Client{Audiences: []string{"https://api"}})
	forger := clientKey(t, token.ES256, "forger")
	iss, _ := token.NewIssuer(token.IssuerConfig{Issuer: e.issuer, Key: func() (token.SigningKey, error) { return forger, nil }})
	for i := range 50 {
		forged, _, err := iss.Issue(token.Claims{Subject: "x", ClientID: c.ID, ExpiresAt: time.Now().Add(time.Hour).Unix(),
			Audience: token.Audience{fmt.Sprint("https://junk/", i)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, m := e.introspect(t, c.ID, secret, forged); m["active"] != false {
			t.Fatalf("forged token active: %v", m)
		}
	}
	if n := len(e.p.verifiers); n != 0 {
		t.Errorf("%d verifiers kept after forged tokens, want 0", n)
	}
	e.introspect(t, c.ID, secret, e.token(t, c.ID, secret, ""))
	if n := len(e.p.verifiers); n != 1 {
		t.Errorf("%d verifiers kept after a real token, want 1", n)
	}
}
