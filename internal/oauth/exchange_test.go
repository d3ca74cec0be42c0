package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// exchangeEnv is a provider with an app that users sign in to (its tokens
// are for https://a) and two services: A (the resource server https://a,
// which may exchange for https://b) and B (https://b, which may exchange
// for https://c).
type exchangeEnv struct {
	*m2mEnv
	app, svcA, svcB          store.Client
	appSecret, aSecret, bSec string
}

func newExchangeEnv(t testing.TB, open func(testing.TB) *store.Store) *exchangeEnv {
	t.Helper()
	e := &exchangeEnv{m2mEnv: newM2MEnv(t, open, nil)}
	e.app, e.appSecret = e.newClient(t, store.Client{Scopes: []string{"read", "write", "delete"}, Audiences: []string{"https://a"}})
	e.svcA, e.aSecret = e.newClient(t, store.Client{ID: "svc-a", GrantTypes: []string{GrantTypeTokenExchange, "client_credentials"},
		Scopes: []string{"read", "write"}, Audiences: []string{"https://a"}, ExchangeAudiences: []string{"https://b"}})
	e.svcB, e.bSec = e.newClient(t, store.Client{ID: "svc-b", GrantTypes: []string{GrantTypeTokenExchange},
		Scopes: []string{"read", "write"}, Audiences: []string{"https://b"}, ExchangeAudiences: []string{"https://c"}})
	return e
}

// userToken is an access token of the app for user "user-42".
func (e *exchangeEnv) userToken(t testing.TB, scopes ...string) string {
	t.Helper()
	resp, err := e.p.issueTokens(context.Background(), &e.app, "user-42", scopes, e.clock.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return resp.AccessToken
}

// exchangeForm is a token-exchange request for subject to audience.
func exchangeForm(subject, audience string, kv ...string) url.Values {
	f := url.Values{
		"grant_type":         {GrantTypeTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {tokenTypeAccessToken},
		"audience":           {audience},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			f.Del(kv[i])
		} else {
			f.Set(kv[i], kv[i+1])
		}
	}
	return f
}

// exchange runs a successful exchange and returns the response.
func (e *exchangeEnv) exchange(t testing.TB, id, secret string, form url.Values) exchangeResponse {
	t.Helper()
	status, _, body := e.post(t, TokenPath, form, id, secret)
	if status != http.StatusOK {
		t.Fatalf("exchange by %s: status %d, body %s; want 200", id, status, body)
	}
	var resp exchangeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// verify checks raw with a token.Verifier for audience aud.
func (e *exchangeEnv) verify(t testing.TB, raw, aud string) *token.Claims {
	t.Helper()
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: e.issuer, Audience: aud, Keys: e.p.keys, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("Verify for %s: %v", aud, err)
	}
	return cl
}

func actorJSON(a *token.Actor) string {
	b, _ := json.Marshal(a)
	return string(b)
}

func TestTokenExchangeChain(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newExchangeEnv(t, open)
		user := e.userToken(t, "read", "write", "delete")

		// A exchanges the user's token for B: "delete" is not A's to pass on.
		toB := e.exchange(t, e.svcA.ID, e.aSecret, exchangeForm(user, "https://b"))
		if toB.IssuedTokenType != tokenTypeAccessToken || toB.TokenType != "Bearer" || toB.Scope != "read write" ||
			toB.ExpiresIn != int64(maxExchangeTTL/time.Second) {
			t.Errorf("A's exchange = %+v; want an access token, Bearer, scope \"read write\", %v", toB, maxExchangeTTL)
		}
		clB := e.verify(t, toB.AccessToken, "https://b")
		if clB.Subject != "user-42" || clB.ClientID != "svc-a" || !slices.Equal([]string(clB.Audience), []string{"https://b"}) ||
			clB.AuthTime == 0 || actorJSON(clB.Actor) != `{"sub":"svc-a"}` {
			t.Errorf("token for B: %+v act %s; want sub user-42, client_id svc-a, aud [https://b], auth_time, act svc-a", clB, actorJSON(clB.Actor))
		}

		// B exchanges that for C, narrowing to "read".
		toC := e.exchange(t, e.svcB.ID, e.bSec, exchangeForm(toB.AccessToken, "", "resource", "https://c", "scope", "read"))
		clC := e.verify(t, toC.AccessToken, "https://c")
		if want := `{"sub":"svc-b","act":{"sub":"svc-a"}}`; actorJSON(clC.Actor) != want {
			t.Errorf("token for C: act %s, want %s", actorJSON(clC.Actor), want)
		}
		if clC.Subject != "user-42" || clC.ClientID != "svc-b" || clC.Scope != "read" || toC.Scope != "read" {
			t.Errorf("token for C: %+v, response scope %q; want sub user-42, client_id svc-b, scope read", clC, toC.Scope)
		}
		// Never past the token it came from.
		if clC.ExpiresAt > clB.ExpiresAt {
			t.Errorf("token for C expires at %d, after the token for B (%d)", clC.ExpiresAt, clB.ExpiresAt)
		}
		// The exchanged token is not valid for anybody else.
		v, _ := token.NewVerifier(token.VerifierConfig{Issuer: e.issuer, Audience: "https://b", Keys: e.p.keys, Now: e.clock.Now})
		if _, err := v.Verify(context.Background(), toC.AccessToken); err == nil {
			t.Error("the token for C verifies for B")
		}
		// Introspection shows the chain to C's resource server.
		svcC, cSecret := e.newClient(t, store.Client{Audiences: []string{"https://c"}})
		if _, m := e.introspect(t, svcC.ID, cSecret, toC.AccessToken); m["active"] != true || m["act"] == nil {
			t.Errorf("introspection by C: %v, want active with act", m)
		}
	})
}

func TestTokenExchangeImpersonationAndActor(t *testing.T) {
	e := newExchangeEnv(t, nil)
	imp, impSecret := e.newClient(t, store.Client{GrantTypes: []string{GrantTypeTokenExchange, "client_credentials"}, Scopes: []string{"read"},
		Audiences: []string{"https://a", "https://b"}, ExchangeAudiences: []string{"https://b", "https://c"}, MayImpersonate: true})
	user := e.userToken(t, "read", "write")

	// No actor token: impersonation, no act claim.
	got := e.verify(t, e.exchange(t, imp.ID, impSecret, exchangeForm(user, "https://b")).AccessToken, "https://b")
	if got.Actor != nil || got.Subject != "user-42" || got.Scope != "read" {
		t.Errorf("impersonation: act %s sub %q scope %q; want no act, user-42, read", actorJSON(got.Actor), got.Subject, got.Scope)
	}
	// Impersonating a delegated token keeps the chain.
	toB := e.exchange(t, e.svcA.ID, e.aSecret, exchangeForm(user, "https://b")).AccessToken
	got = e.verify(t, e.exchange(t, imp.ID, impSecret, exchangeForm(toB, "https://c")).AccessToken, "https://c")
	if actorJSON(got.Actor) != `{"sub":"svc-a"}` {
		t.Errorf("impersonating a delegated token: act %s, want the chain kept", actorJSON(got.Actor))
	}

	// An actor token of the calling client names the actor, even for a
	// client that may impersonate.
	actor := e.token(t, imp.ID, impSecret, "")
	got = e.verify(t, e.exchange(t, imp.ID, impSecret, exchangeForm(user, "https://b",
		"actor_token", actor, "actor_token_type", tokenTypeJWT)).AccessToken, "https://b")
	if want := `{"sub":"` + imp.ID + `"}`; actorJSON(got.Actor) != want {
		t.Errorf("with an actor token: act %s, want %s", actorJSON(got.Actor), want)
	}
}

func TestTokenExchangeExpiryCapped(t *testing.T) {
	e := newExchangeEnv(t, nil)
	user := e.userToken(t, "read")
	e.clock.Advance(DefaultAccessTokenTTL - 90*time.Second) // 90 s left
	resp := e.exchange(t, e.svcA.ID, e.aSecret, exchangeForm(user, "https://b"))
	cl := e.verify(t, resp.AccessToken, "https://b")
	sub := e.verify(t, user, "https://a")
	if cl.ExpiresAt != sub.ExpiresAt || resp.ExpiresIn != 90 {
		t.Errorf("exp %d, expires_in %d; want the subject token's exp %d, 90", cl.ExpiresAt, resp.ExpiresIn, sub.ExpiresAt)
	}
}

func TestTokenExchangeErrors(t *testing.T) {
	e := newExchangeEnv(t, nil)
	user := e.userToken(t, "read", "write")
	noGrant, noGrantSecret := e.newClient(t, store.Client{Audiences: []string{"https://a"}})
	// A token for another resource server, not issued to A.
	other, otherSecret := e.newClient(t, store.Client{Scopes: []string{"read"}, Audiences: []string{"https://x"}})
	foreign := e.token(t, other.ID, otherSecret, "")
	// An actor token issued to someone else.
	otherActor := foreign
	// A token revoked by its client.
	revoked := e.userToken(t, "read")
	if status, _, _ := e.post(t, RevokePath, url.Values{"token": {revoked}}, e.app.ID, e.appSecret); status != 200 {
		t.Fatalf("revoke: status %d", status)
	}
	// A token expiring in a second, and one with an over-long act chain.
	short := e.userToken(t, "read")
	deep := &token.Actor{Subject: "s0"}
	for i := range maxActorDepth - 1 {
		deep = &token.Actor{Subject: "s" + string(rune('1'+i)), Actor: deep}
	}
	deepTok, _, err := e.p.issuers[token.ES256].Issue(token.Claims{Subject: "u", Audience: token.Audience{"https://a"},
		ExpiresAt: e.clock.Now().Add(time.Minute).Unix(), ClientID: e.app.ID, Scope: "read", Actor: deep})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(user, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	algNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + "."

	cases := []struct {
		name         string
		id, secret   string
		form         url.Values
		wantStatus   int
		wantCode     string
		advanceFirst time.Duration
	}{
		{"no grant type", noGrant.ID, noGrantSecret, exchangeForm(user, "https://b"), 400, errUnauthorizedClient, 0},
		{"missing subject_token", e.svcA.ID, e.aSecret, exchangeForm("", "https://b"), 400, errInvalidRequest, 0},
		{"missing subject_token_type", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "subject_token_type", ""), 400, errInvalidRequest, 0},
		{"saml2 subject", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "subject_token_type", "urn:ietf:params:oauth:token-type:saml2"), 400, errInvalidRequest, 0},
		{"refresh token subject type", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), 400, errInvalidRequest, 0},
		{"actor type without actor", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "actor_token_type", tokenTypeJWT), 400, errInvalidRequest, 0},
		{"actor without type", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "actor_token", user), 400, errInvalidRequest, 0},
		{"requested id_token", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "requested_token_type", "urn:ietf:params:oauth:token-type:id_token"), 400, errInvalidRequest, 0},
		{"no target", e.svcA.ID, e.aSecret, exchangeForm(user, ""), 400, errInvalidRequest, 0},
		{"target not allowed", e.svcA.ID, e.aSecret, exchangeForm(user, "https://c"), 400, errInvalidTarget, 0},
		{"own audience not allowed", e.svcA.ID, e.aSecret, exchangeForm(user, "https://a"), 400, errInvalidTarget, 0},
		{"two targets", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "resource", "https://c"), 400, errInvalidTarget, 0},
		{"relative resource", e.svcA.ID, e.aSecret, exchangeForm(user, "", "resource", "/b"), 400, errInvalidTarget, 0},
		{"resource with fragment", e.svcA.ID, e.aSecret, exchangeForm(user, "", "resource", "https://b#x"), 400, errInvalidTarget, 0},
		{"garbage subject", e.svcA.ID, e.aSecret, exchangeForm("not-a-token", "https://b"), 400, errInvalidRequest, 0},
		{"tampered signature", e.svcA.ID, e.aSecret, exchangeForm(tampered, "https://b"), 400, errInvalidRequest, 0},
		{"alg none", e.svcA.ID, e.aSecret, exchangeForm(algNone, "https://b"), 400, errInvalidRequest, 0},
		{"wrong audience, other client", e.svcA.ID, e.aSecret, exchangeForm(foreign, "https://b"), 400, errInvalidRequest, 0},
		{"revoked", e.svcA.ID, e.aSecret, exchangeForm(revoked, "https://b"), 400, errInvalidRequest, 0},
		{"chain too long", e.svcA.ID, e.aSecret, exchangeForm(deepTok, "https://b"), 400, errInvalidRequest, 0},
		{"actor of another client", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "actor_token", otherActor, "actor_token_type", tokenTypeAccessToken), 400, errInvalidRequest, 0},
		{"garbage actor", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "actor_token", "x.y.z", "actor_token_type", tokenTypeAccessToken), 400, errInvalidRequest, 0},
		{"scope not in subject", e.svcA.ID, e.aSecret, exchangeForm(e.userToken(t, "read"), "https://b", "scope", "write"), 400, errInvalidScope, 0},
		{"scope not allowed for client", e.svcA.ID, e.aSecret, exchangeForm(e.userToken(t, "read", "delete"), "https://b", "scope", "delete"), 400, errInvalidScope, 0},
		{"malformed scope", e.svcA.ID, e.aSecret, exchangeForm(user, "https://b", "scope", `a"b`), 400, errInvalidScope, 0},
		{"wrong secret", e.svcA.ID, "wrong", exchangeForm(user, "https://b"), 401, errInvalidClient, 0},
		// Last: moves the clock past the short token's expiry (but within
		// the verifier's leeway, which an exchange does not grant).
		{"expired", e.svcA.ID, e.aSecret, exchangeForm(short, "https://b"), 400, errInvalidRequest, DefaultAccessTokenTTL + time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(tc.advanceFirst)
			status, _, body := e.post(t, TokenPath, tc.form, tc.id, tc.secret)
			if status != tc.wantStatus || errorCode(t, body) != tc.wantCode {
				t.Errorf("got %d %s, want %d %s", status, body, tc.wantStatus, tc.wantCode)
			}
			if strings.Contains(string(body), user) {
				t.Error("the error echoes the subject token")
			}
		})
	}
	// Far past expiry too.
	e.clock.Advance(time.Hour)
	if status, _, body := e.post(t, TokenPath, exchangeForm(user, "https://b"), e.svcA.ID, e.aSecret); status != 400 || errorCode(t, body) != errInvalidRequest {
		t.Errorf("expired long ago: %d %s, want 400 invalid_request", status, body)
	}
}

func TestTokenExchangeMetadataAndRegistration(t *testing.T) {
	e := newM2MEnv(t, nil, func(c *Config) { c.InitialAccessToken = testIAT })
	if !slices.Contains(e.p.Metadata().GrantTypesSupported, GrantTypeTokenExchange) {
		t.Errorf("grant_types_supported = %v, want %s", e.p.Metadata().GrantTypesSupported, GrantTypeTokenExchange)
	}
	// Dynamic registration cannot grant itself exchange rights.
	for _, body := range []string{
		`{"client_name":"x","grant_types":["` + GrantTypeTokenExchange + `"],"exchange_audiences":["https://b"]}`,
		`{"client_name":"x","grant_types":["` + GrantTypeTokenExchange + `"],"may_impersonate":true}`,
	} {
		if status, _, m := e.jsonRequest(t, "POST", RegisterPath, testIAT, body); status != 400 || m["error"] != errInvalidClientMeta {
			t.Errorf("register %s: %d %v, want 400 %s", body, status, m, errInvalidClientMeta)
		}
	}
	status, _, reg := e.jsonRequest(t, "POST", RegisterPath, testIAT, `{"client_name":"x","grant_types":["`+GrantTypeTokenExchange+`"]}`)
	if status != 201 {
		t.Fatalf("register: %d %v", status, reg)
	}
	id, regTok := reg["client_id"].(string), reg["registration_access_token"].(string)
	// An administrator allows https://b; the client's own update keeps that
	// and cannot widen it.
	c, err := e.st.Client(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c.ExchangeAudiences = []string{"https://b"}
	if _, err := e.st.UpdateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	upd := `{"client_id":"` + id + `","client_name":"y","grant_types":["` + GrantTypeTokenExchange + `"],"exchange_audiences":["https://evil"],"may_impersonate":true}`
	if status, _, m := e.jsonRequest(t, "PUT", RegisterPath+"/"+id, regTok, upd); status != 200 {
		t.Fatalf("update: %d %v", status, m)
	}
	c, err = e.st.Client(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "y" || !slices.Equal(c.ExchangeAudiences, []string{"https://b"}) || c.MayImpersonate {
		t.Errorf("after the client's update: name %q, exchange audiences %v, impersonate %v; want y, [https://b], false",
			c.Name, c.ExchangeAudiences, c.MayImpersonate)
	}
}

func TestCheckClientExchange(t *testing.T) {
	cases := []struct {
		name string
		c    store.Client
		ok   bool
	}{
		{"exchange client", store.Client{ID: "a", Name: "n", GrantTypes: []string{GrantTypeTokenExchange}, ExchangeAudiences: []string{"https://b"}}, true},
		{"impersonating", store.Client{ID: "a", Name: "n", GrantTypes: []string{GrantTypeTokenExchange}, MayImpersonate: true}, true},
		{"audiences without grant", store.Client{ID: "a", Name: "n", GrantTypes: []string{"client_credentials"}, ExchangeAudiences: []string{"https://b"}}, false},
		{"impersonation without grant", store.Client{ID: "a", Name: "n", GrantTypes: []string{"client_credentials"}, MayImpersonate: true}, false},
		{"bad audience", store.Client{ID: "a", Name: "n", GrantTypes: []string{GrantTypeTokenExchange}, ExchangeAudiences: []string{"a b"}}, false},
		{"public", store.Client{ID: "a", Name: "n", Public: true, GrantTypes: []string{"authorization_code", GrantTypeTokenExchange},
			RedirectURIs: []string{"http://127.0.0.1/cb"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckClient(&tc.c); (err == nil) != tc.ok {
				t.Errorf("CheckClient = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestExchangeScopes(t *testing.T) {
	cases := []struct {
		name                        string
		subject, requested, allowed []string
		want                        []string
		wantErr                     bool
	}{
		{"intersection", []string{"a", "b", "c"}, nil, []string{"c", "a"}, []string{"a", "c"}, false},
		{"requested subset", []string{"a", "b"}, []string{"b"}, []string{"a", "b"}, []string{"b"}, false},
		{"nothing in common", []string{"a"}, nil, []string{"b"}, nil, false},
		{"requested beyond subject", []string{"a"}, []string{"b"}, []string{"a", "b"}, nil, true},
		{"requested beyond client", []string{"a", "b"}, []string{"b"}, []string{"a"}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, oe := exchangeScopes(tc.subject, tc.requested, tc.allowed)
			if (oe != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v, error %v", got, oe, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParseExchange(f *testing.F) {
	f.Add(exchangeForm("a.b.c", "https://b").Encode())
	f.Add(exchangeForm("a.b.c", "", "resource", "https://b/x?y", "scope", "read write").Encode())
	f.Add(exchangeForm("t", "x", "actor_token", "u", "actor_token_type", tokenTypeJWT, "requested_token_type", tokenTypeAccessToken).Encode())
	f.Add("subject_token=%00&subject_token_type=" + tokenTypeJWT + "&audience=%20")
	f.Add(exchangeForm("gk_live_x", "https://b", "subject_token_type", TokenTypeAPIKey, ParamClientIP, "10.1.2.3").Encode())
	f.Add(exchangeForm("gho_x", "https://b", ParamClientIP, "fe80::1%eth0").Encode())
	f.Add(exchangeForm("gho_x", "https://b", ParamClientIP, "::ffff:10.0.0.1").Encode())
	f.Fuzz(func(t *testing.T, body string) {
		form, err := parseForm("application/x-www-form-urlencoded", "", []byte(body))
		if err != nil {
			return
		}
		req, oe := parseExchange(form)
		if oe != nil {
			if oe.Status != http.StatusBadRequest || safeDescription(oe.Description) != oe.Description {
				t.Fatalf("error %+v: want 400 with a safe description", oe)
			}
			return
		}
		if req.subject == "" || req.target == "" || (req.target != form.Get("audience") && req.target != form.Get("resource")) {
			t.Fatalf("parseExchange(%q) = %+v: want a subject and the requested target", body, req)
		}
		if req.apiKey != (form.Get("subject_token_type") == TokenTypeAPIKey) {
			t.Fatalf("apiKey = %v for subject_token_type %q", req.apiKey, form.Get("subject_token_type"))
		}
		if req.ip.IsValid() != form.Has(ParamClientIP) || req.ip.Is4In6() || req.ip.Zone() != "" {
			t.Fatalf("client IP %v from %q: want a valid, unmapped address without zone exactly when the parameter is sent", req.ip, form.Get(ParamClientIP))
		}
		if req.actor != "" && !jwtTokenType(form.Get("actor_token_type")) {
			t.Fatalf("actor token accepted with type %q", form.Get("actor_token_type"))
		}
		for _, s := range req.scope {
			if !validScopeToken(s) {
				t.Fatalf("invalid scope token %q accepted", s)
			}
		}
	})
}

// BenchmarkTokenExchange measures one token exchange in process: form
// parsing, client authentication, verification of the subject token (the
// verifier cache answers after the first), an ES256 signature and the JSON
// answer.
func BenchmarkTokenExchange(b *testing.B) {
	e := newExchangeEnv(b, nil)
	mux := http.NewServeMux()
	e.p.Register(mux)
	body := exchangeForm(e.userToken(b, "read", "write"), "https://b").Encode()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", TokenPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(e.svcA.ID, e.aSecret)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}
