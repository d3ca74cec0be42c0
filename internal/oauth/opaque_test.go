package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// tokenResp runs a token request that must succeed and decodes the answer.
func (e *m2mEnv) tokenResp(t testing.TB, form url.Values, id, secret string) map[string]any {
	t.Helper()
	status, _, body := e.post(t, TokenPath, form, id, secret)
	if status != http.StatusOK {
		t.Fatalf("token request %v: %d %s", form.Get("grant_type"), status, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkOpaque checks that tok has the shape of an opaque access token.
func checkOpaque(t testing.TB, tok string) {
	t.Helper()
	body, ok := strings.CutPrefix(tok, OpaqueTokenPrefix)
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if !ok || err != nil || len(raw) < 32 || strings.Contains(tok, ".") || apikey.LooksLikeKey(tok) {
		t.Fatalf("access token %q: want %s and at least 256 random bits, no dots", tok, OpaqueTokenPrefix)
	}
}

// introspectionJWT introspects tok as client id asking for an RFC 9701
// answer, checks its signature, and returns the token_introspection member.
func (e *m2mEnv) introspectionJWT(t testing.TB, id, secret, tok string) map[string]any {
	t.Helper()
	status, hdr, body := e.post(t, IntrospectPath, url.Values{"token": {tok}}, id, secret, "Accept", "application/token-introspection+jwt")
	if status != 200 || hdr.Get("Content-Type") != "application/token-introspection+jwt" {
		t.Fatalf("JWT introspection: %d %q", status, hdr.Get("Content-Type"))
	}
	a, err := parseAssertion(string(body))
	if err != nil {
		t.Fatal(err)
	}
	key, err := e.p.keys.Key(context.Background(), a.kid)
	if err != nil || !verifySignature(key, a.alg, a.signingInput, a.signature) {
		t.Fatalf("JWT introspection answer does not verify (%v)", err)
	}
	pb, _ := base64.RawURLEncoding.DecodeString(strings.Split(string(body), ".")[1])
	var p struct {
		Result map[string]any `json:"token_introspection"`
	}
	if err := json.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	return p.Result
}

func TestOpaqueClientCredentials(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		ctx := context.Background()
		e := newM2MEnv(t, open, nil)
		c, secret := e.newClient(t, store.Client{Scopes: []string{"read", "write"}, Audiences: []string{"https://api"},
			AccessTokenFormat: store.AccessTokenOpaque, AccessTokenTTL: 10 * time.Minute})
		rs, rsSecret := e.newClient(t, store.Client{Audiences: []string{"https://api"}})
		stranger, strangerSecret := e.newClient(t, store.Client{Audiences: []string{"https://elsewhere"}})

		resp := e.tokenResp(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, c.ID, secret)
		tok, _ := resp["access_token"].(string)
		checkOpaque(t, tok)
		if resp["token_type"] != "Bearer" || resp["expires_in"] != float64(600) || resp["scope"] != "read" {
			t.Errorf("token response %v; want Bearer, 600 s, scope read", resp)
		}
		// The store keeps only the hash, with the claims.
		rec, err := e.st.OpaqueToken(ctx, e.hasher.Hash(domainOpaqueToken, tok))
		if err != nil || strings.Contains(string(rec.Claims), tok) || rec.ClientID != c.ID {
			t.Fatalf("stored record %+v, %v", rec, err)
		}

		now := e.clock.Now().Unix()
		for _, who := range [][2]string{{c.ID, secret}, {rs.ID, rsSecret}} {
			_, m := e.introspect(t, who[0], who[1], tok)
			if m["active"] != true || m["sub"] != c.ID || m["client_id"] != c.ID || m["scope"] != "read" ||
				m["aud"] != "https://api" || m["iss"] != e.issuer || m["token_type"] != "Bearer" || m["jti"] != rec.ID ||
				m["exp"] != float64(now+600) || m["iat"] != float64(now) {
				t.Errorf("introspection by %s = %v; want active with the token's claims", who[0], m)
			}
			if j := e.introspectionJWT(t, who[0], who[1], tok); j["active"] != true || j["jti"] != rec.ID || j["sub"] != c.ID {
				t.Errorf("JWT introspection by %s = %v; want active", who[0], j)
			}
		}
		// mayKnow: neither issued to nor meant for the stranger.
		if _, m := e.introspect(t, stranger.ID, strangerSecret, tok); len(m) != 1 || m["active"] != false {
			t.Errorf("introspection by an unrelated client = %v, want only active=false", m)
		}
		if j := e.introspectionJWT(t, stranger.ID, strangerSecret, tok); j["active"] != false || j["sub"] != nil {
			t.Errorf("JWT introspection by an unrelated client = %v", j)
		}
		// An unknown token of the right shape is inactive.
		if _, m := e.introspect(t, c.ID, secret, OpaqueTokenPrefix+strings.Repeat("A", 43)); m["active"] != false {
			t.Errorf("unknown opaque token: %v", m)
		}

		// Revocation by another client does nothing; by the owner, it is
		// inactive at once, with one token_revoked change naming the jti.
		if st, _, _ := e.post(t, RevokePath, url.Values{"token": {tok}}, rs.ID, rsSecret); st != 200 {
			t.Fatalf("revoke by another client: %d", st)
		}
		if _, m := e.introspect(t, rs.ID, rsSecret, tok); m["active"] != true {
			t.Fatal("revoked by another client")
		}
		last, _ := e.st.LastChange(ctx)
		if st, _, _ := e.post(t, RevokePath, url.Values{"token": {tok}}, c.ID, secret); st != 200 {
			t.Fatalf("revoke: %d", st)
		}
		if _, m := e.introspect(t, rs.ID, rsSecret, tok); m["active"] != false {
			t.Errorf("after revocation: %v, want inactive", m)
		}
		cs, _ := e.st.Changes(ctx, last, 10)
		if len(cs) != 1 || cs[0].Kind != store.ChangeTokenRevoked || cs[0].Ref != rec.ID {
			t.Errorf("changes after revoke = %+v, want one token_revoked for %s", cs, rec.ID)
		}
		// Expired: inactive, and pruned by the store's housekeeping.
		tok2 := e.token(t, c.ID, secret, "")
		e.clock.Advance(11 * time.Minute)
		if _, m := e.introspect(t, c.ID, secret, tok2); m["active"] != false {
			t.Errorf("expired opaque token: %v, want inactive", m)
		}
		if _, err := e.st.Housekeep(ctx, store.Housekeeping{Now: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.OpaqueToken(ctx, e.hasher.Hash(domainOpaqueToken, tok2)); err == nil {
			t.Error("expired opaque token still stored after Housekeep")
		}
	})
}

func TestOpaqueCodeFlow(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		ctx := context.Background()
		e := newFlowEnv(t, open, nil)
		conf, secret := e.newClient(t, store.Client{Name: "Conf", GrantTypes: []string{"authorization_code", "refresh_token"},
			Scopes: []string{"openid", "profile"}, RedirectURIs: []string{testRedirect}, AccessTokenFormat: store.AccessTokenOpaque})
		b := e.browser(t)
		q := e.authorizeQuery()
		q.Set("client_id", conf.ID)
		q.Set("scope", "openid profile")
		code := e.runToCode(t, b, q).Get("code")
		resp := e.tokenResp(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"code_verifier": {testVerifier}, "redirect_uri": {q.Get("redirect_uri")}}, conf.ID, secret)
		at, _ := resp["access_token"].(string)
		checkOpaque(t, at)
		if resp["id_token"] == nil || resp["refresh_token"] == nil || resp["expires_in"] != float64(DefaultAccessTokenTTL/time.Second) {
			t.Errorf("code grant response %v; want an ID token, a refresh token, the default lifetime", resp)
		}
		if _, m := e.introspect(t, conf.ID, secret, at); m["active"] != true || m["sub"] != e.user.ID || m["auth_time"] == nil {
			t.Errorf("introspection of the code grant's token = %v", m)
		}

		// /userinfo takes the opaque token.
		req, _ := http.NewRequest("GET", e.issuer+UserinfoPath, nil)
		req.Header.Set("Authorization", "Bearer "+at)
		st, _, body := do(t, req)
		if st != 200 || !strings.Contains(string(body), `"sub":"`+e.user.ID+`"`) || !strings.Contains(string(body), "Ada Lovelace") {
			t.Errorf("userinfo with an opaque token: %d %s", st, body)
		}

		// Refresh: another opaque token.
		resp = e.tokenResp(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {resp["refresh_token"].(string)}}, conf.ID, secret)
		at2, _ := resp["access_token"].(string)
		checkOpaque(t, at2)
		if at2 == at {
			t.Fatal("refresh returned the same access token")
		}
		// Revoking the refresh token revokes the family's opaque access
		// tokens at once, without the change feed.
		last, _ := e.st.LastChange(ctx)
		if st, _, _ := e.post(t, RevokePath, url.Values{"token": {resp["refresh_token"].(string)}}, conf.ID, secret); st != 200 {
			t.Fatal("revoke refresh token failed")
		}
		for _, tok := range []string{at, at2} {
			if _, m := e.introspect(t, conf.ID, secret, tok); m["active"] != false {
				t.Errorf("opaque token of a revoked family: %v, want inactive", m)
			}
		}
		cs, _ := e.st.Changes(ctx, last, 10)
		if len(cs) != 2 {
			t.Errorf("family revocation recorded %+v, want two token_revoked changes", cs)
		}
		req, _ = http.NewRequest("GET", e.issuer+UserinfoPath, nil)
		req.Header.Set("Authorization", "Bearer "+at2)
		if st, _, _ := do(t, req); st != 401 {
			t.Errorf("userinfo with a revoked opaque token: %d, want 401", st)
		}
	})
}

func TestOpaqueExchange(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newExchangeEnv(t, open)
		// The app's tokens become opaque; svc-a exchanges one for B.
		e.app.AccessTokenFormat = store.AccessTokenOpaque
		user := e.userToken(t, "read", "write")
		checkOpaque(t, user)
		toB := e.exchange(t, e.svcA.ID, e.aSecret, exchangeForm(user, "https://b"))
		clB := e.verify(t, toB.AccessToken, "https://b")
		if clB.Subject != "user-42" || clB.ClientID != "svc-a" || actorJSON(clB.Actor) != `{"sub":"svc-a"}` || clB.Kind != "" {
			t.Errorf("exchanged from an opaque subject: %+v act %s", clB, actorJSON(clB.Actor))
		}
		// An exchanging client with opaque tokens gets an opaque one.
		e.svcB.AccessTokenFormat = store.AccessTokenOpaque
		if _, err := e.st.UpdateClient(context.Background(), e.svcB); err != nil {
			t.Fatal(err)
		}
		e.p.OnClientChange(context.Background(), []store.Change{{Kind: store.ChangeClient, Ref: e.svcB.ID}})
		toC := e.exchange(t, e.svcB.ID, e.bSec, exchangeForm(toB.AccessToken, "https://c"))
		checkOpaque(t, toC.AccessToken)
		cl, _, ok, err := e.p.resolveAccessToken(context.Background(), toC.AccessToken)
		if err != nil || !ok || cl.Subject != "user-42" || cl.Audience[0] != "https://c" || actorJSON(cl.Actor) != `{"sub":"svc-b","act":{"sub":"svc-a"}}` {
			t.Errorf("opaque exchanged token: %+v, %v, %v", cl, ok, err)
		}
		// A revoked opaque subject cannot be exchanged.
		if st, _, _ := e.post(t, RevokePath, url.Values{"token": {user}}, e.app.ID, e.appSecret); st != 200 {
			t.Fatal("revoke failed")
		}
		if st, _, body := e.post(t, TokenPath, exchangeForm(user, "https://b"), e.svcA.ID, e.aSecret); st != 400 || errorCode(t, body) != errInvalidRequest {
			t.Errorf("exchange of a revoked opaque token: %d %s, want invalid_request", st, body)
		}
	})
}
