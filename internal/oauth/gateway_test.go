package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// gatewayEnv is a provider with the API-key service, a gateway client
// "edge" in front of the external API https://api.example (it may mint
// phantom tokens for https://orders.internal), an app whose tokens are for
// the external API, the same app with opaque tokens, and svc-a, an
// ordinary exchanging client.
type gatewayEnv struct {
	*m2mEnv
	keys                  *keyauth.Service
	edge, app, opaque     store.Client
	svcA                  store.Client
	edgeSecret, appSecret string
	aSecret               string
}

const (
	extAPI   = "https://api.example"
	upstream = "https://orders.internal"
)

func newGatewayEnv(t testing.TB, open func(testing.TB) *store.Store) *gatewayEnv {
	t.Helper()
	e := &gatewayEnv{}
	e.m2mEnv = newM2MEnv(t, open, func(c *Config) {
		h, err := apikey.NewHasher([]byte(strings.Repeat("p", apikey.MinPepperLen)))
		if err != nil {
			t.Fatal(err)
		}
		if e.keys, err = keyauth.New(keyauth.Config{Store: c.Store, Hasher: h, Now: c.Now}); err != nil {
			t.Fatal(err)
		}
		c.APIKeys = e.keys
	})
	e.edge, e.edgeSecret = e.newClient(t, store.Client{ID: "edge", Gateway: true, GrantTypes: []string{GrantTypeTokenExchange},
		Audiences: []string{extAPI}, ExchangeAudiences: []string{upstream}, AccessTokenTTL: DefaultGatewayTokenTTL,
		AccessTokenFormat: store.AccessTokenOpaque}) // the gateway's own format does not matter: phantoms are JWTs
	e.app, e.appSecret = e.newClient(t, store.Client{ID: "app", Scopes: []string{"orders:read", "orders:write"}, Audiences: []string{extAPI}})
	e.opaque = e.app
	e.opaque.AccessTokenFormat = store.AccessTokenOpaque
	e.svcA, e.aSecret = e.newClient(t, store.Client{ID: "svc-a", GrantTypes: []string{GrantTypeTokenExchange},
		Scopes: []string{"orders:read"}, Audiences: []string{"https://a"}, ExchangeAudiences: []string{extAPI, upstream}})
	return e
}

// userToken issues an access token of client c for user-42.
func (e *gatewayEnv) userToken(t testing.TB, c *store.Client, scopes ...string) string {
	t.Helper()
	resp, err := e.p.issueTokens(context.Background(), c, "user-42", scopes, e.clock.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return resp.AccessToken
}

// apiKey creates an API key with p and returns its plaintext and ID.
func (e *gatewayEnv) apiKey(t testing.TB, p keyauth.Params) (string, string) {
	t.Helper()
	if p.Name == "" {
		p.Name = "test key"
	}
	rec, key, err := e.keys.Create(context.Background(), p, keyauth.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return key.Plaintext(), rec.ID
}

// gatewayForm is the gateway's exchange request for subject of type typ.
func gatewayForm(subject, typ string, kv ...string) url.Values {
	return exchangeForm(subject, upstream, append([]string{"subject_token_type", typ}, kv...)...)
}

// phantom runs a successful exchange by client id and verifies the token
// for the upstream audience.
func (e *gatewayEnv) phantom(t testing.TB, id, secret string, form url.Values) (exchangeResponse, *token.Claims) {
	t.Helper()
	status, _, body := e.post(t, TokenPath, form, id, secret)
	if status != http.StatusOK {
		t.Fatalf("exchange by %s: %d %s", id, status, body)
	}
	var resp exchangeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	aud := form.Get("audience")
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: e.issuer, Audience: aud, Keys: e.p.keys, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := v.Verify(context.Background(), resp.AccessToken)
	if err != nil {
		t.Fatalf("phantom token does not verify as a JWT for %s: %v", aud, err)
	}
	return resp, cl
}

func TestGatewayExchangeKinds(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newGatewayEnv(t, open)
		now := e.clock.Now().Unix()
		authTime := now - 60
		jwtTok := e.userToken(t, &e.app, "orders:read", "orders:write")
		opaqueTok := e.userToken(t, &e.opaque, "orders:read", "orders:write")
		checkOpaque(t, opaqueTok)
		key, keyID := e.apiKey(t, keyauth.Params{Owner: "svc-owner", Scopes: []string{"orders:read"}})

		subjectJTI := func(tok string) string {
			cl, _, ok, err := e.p.resolveAccessToken(context.Background(), tok)
			if !ok || err != nil {
				t.Fatalf("resolve subject: %v %v", ok, err)
			}
			return cl.ID
		}
		for _, tc := range []struct {
			name, subject, typ string
			want               token.Claims
		}{
			{"jwt", jwtTok, tokenTypeAccessToken, token.Claims{Subject: "user-42", ClientID: "app", Scope: "orders:read orders:write",
				AuthTime: authTime, Kind: token.KindJWT}},
			{"jwt type", jwtTok, tokenTypeJWT, token.Claims{Subject: "user-42", ClientID: "app", Scope: "orders:read orders:write",
				AuthTime: authTime, Kind: token.KindJWT}},
			{"opaque", opaqueTok, tokenTypeAccessToken, token.Claims{Subject: "user-42", ClientID: "app", Scope: "orders:read orders:write",
				AuthTime: authTime, Kind: token.KindOpaque}},
			{"apikey", key, TokenTypeAPIKey, token.Claims{Subject: "svc-owner", ClientID: "edge", Scope: "orders:read",
				Kind: token.KindAPIKey, KeyID: keyID}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, cl := e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(tc.subject, tc.typ))
				if resp.TokenType != "Bearer" || resp.IssuedTokenType != tokenTypeAccessToken || resp.ExpiresIn != 60 || resp.Scope != tc.want.Scope {
					t.Errorf("response %+v; want Bearer, access_token, 60 s, scope %q", resp, tc.want.Scope)
				}
				want := tc.want
				want.Issuer, want.Audience, want.IssuedAt, want.ExpiresAt = e.issuer, token.Audience{upstream}, now, now+60
				want.Actor = &token.Actor{Subject: "edge"}
				want.ID = cl.ID
				if cl.ID == "" || (tc.typ != TokenTypeAPIKey && cl.ID == subjectJTI(tc.subject)) {
					t.Errorf("phantom jti %q: want a new one", cl.ID)
				}
				got, _ := json.Marshal(cl)
				wantJSON, _ := json.Marshal(want)
				if string(got) != string(wantJSON) {
					t.Errorf("phantom claims\n%s\nwant\n%s", got, wantJSON)
				}
			})
		}

		// The scope parameter narrows.
		if resp, _ := e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(jwtTok, tokenTypeAccessToken, "scope", "orders:write")); resp.Scope != "orders:write" {
			t.Errorf("narrowed scope %q, want orders:write", resp.Scope)
		}
		if st, _, body := e.post(t, TokenPath, gatewayForm(key, TokenTypeAPIKey, "scope", "orders:write"), e.edge.ID, e.edgeSecret); st != 400 || errorCode(t, body) != errInvalidScope {
			t.Errorf("broadening scope: %d %s, want invalid_scope", st, body)
		}
	})
}

func TestGatewayExchangeChainAndLifetime(t *testing.T) {
	e := newGatewayEnv(t, nil)
	// svc-a exchanged a user token of its own audience for the external
	// API; the gateway adds itself on top of that chain.
	a := e.app
	a.Audiences = []string{"https://a"}
	toExt := e.exchangeOK(t, e.svcA.ID, e.aSecret, exchangeForm(e.userToken(t, &a, "orders:read"), extAPI))
	_, cl := e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(toExt, tokenTypeAccessToken))
	if actorJSON(cl.Actor) != `{"sub":"edge","act":{"sub":"svc-a"}}` || cl.ClientID != "svc-a" {
		t.Errorf("act %s client_id %s; want edge on top of svc-a, client_id svc-a", actorJSON(cl.Actor), cl.ClientID)
	}

	// Lifetime: never past the subject's expiry.
	short := e.app
	short.AccessTokenTTL = 20 * time.Second
	resp, cl := e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(e.userToken(t, &short, "orders:read"), tokenTypeAccessToken))
	if resp.ExpiresIn != 20 || cl.ExpiresAt != e.clock.Now().Unix()+20 {
		t.Errorf("expires_in %d, exp %d; want 20 s, the subject's expiry", resp.ExpiresIn, cl.ExpiresAt)
	}
	key, _ := e.apiKey(t, keyauth.Params{Scopes: []string{"orders:read"}, ExpiresAt: e.clock.Now().Add(30 * time.Second)})
	if resp, _ := e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(key, TokenTypeAPIKey)); resp.ExpiresIn != 30 {
		t.Errorf("API key expiring in 30 s: expires_in %d, want 30", resp.ExpiresIn)
	}
}

// exchangeOK runs a successful exchange and returns the access token.
func (e *gatewayEnv) exchangeOK(t testing.TB, id, secret string, form url.Values) string {
	t.Helper()
	st, _, body := e.post(t, TokenPath, form, id, secret)
	if st != 200 {
		t.Fatalf("exchange: %d %s", st, body)
	}
	var r exchangeResponse
	json.Unmarshal(body, &r)
	return r.AccessToken
}

func TestGatewayExchangeErrors(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		ctx := context.Background()
		e := newGatewayEnv(t, open)
		jwtTok := e.userToken(t, &e.app, "orders:read")
		revokedOpaque := e.userToken(t, &e.opaque, "orders:read")
		if st, _, _ := e.post(t, RevokePath, url.Values{"token": {revokedOpaque}}, e.app.ID, e.appSecret); st != 200 {
			t.Fatal("revoke failed")
		}
		short := e.app
		short.AccessTokenTTL = 10 * time.Second
		expiring := e.userToken(t, &short, "orders:read")
		elsewhere := e.app
		elsewhere.ID, elsewhere.Audiences = "other-app", []string{"https://elsewhere"}
		notForEdge := e.userToken(t, &elsewhere, "orders:read")
		key, _ := e.apiKey(t, keyauth.Params{Scopes: []string{"orders:read"}})
		revokedKey, revokedKeyID := e.apiKey(t, keyauth.Params{Name: "revoked"})
		if _, err := e.keys.Revoke(ctx, revokedKeyID, keyauth.Actor{Name: "test"}); err != nil {
			t.Fatal(err)
		}
		expiringKey, _ := e.apiKey(t, keyauth.Params{ExpiresAt: e.clock.Now().Add(5 * time.Second)})
		ipKey, _ := e.apiKey(t, keyauth.Params{Scopes: []string{"orders:read"}, AllowedIPs: []string{"10.0.0.0/8"}})
		limited, _ := e.apiKey(t, keyauth.Params{RateLimit: 1, RateWindow: time.Hour})
		e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(limited, TokenTypeAPIKey)) // uses the one request

		// Good requests, before the clock moves.
		e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(ipKey, TokenTypeAPIKey, ParamClientIP, "10.1.2.3"))
		e.phantom(t, e.edge.ID, e.edgeSecret, gatewayForm(ipKey, TokenTypeAPIKey, ParamClientIP, "::ffff:10.1.2.3"))
		e.clock.Advance(11 * time.Second) // expiring and expiringKey are now expired

		for _, tc := range []struct {
			name     string
			id, sec  string
			form     url.Values
			status   int
			code     string
			contains string
		}{
			{"non-gateway presents an API key", e.svcA.ID, e.aSecret, exchangeForm(key, upstream, "subject_token_type", TokenTypeAPIKey), 400, errUnauthorizedClient, ""},
			{"non-gateway sends a client IP", e.svcA.ID, e.aSecret, exchangeForm(jwtTok, upstream, ParamClientIP, "10.1.2.3"), 400, errInvalidRequest, ""},
			{"audience not allowed", e.edge.ID, e.edgeSecret, exchangeForm(jwtTok, "https://billing.internal"), 400, errInvalidTarget, ""},
			{"expired JWT", e.edge.ID, e.edgeSecret, gatewayForm(expiring, tokenTypeAccessToken), 400, errInvalidRequest, ""},
			{"revoked opaque", e.edge.ID, e.edgeSecret, gatewayForm(revokedOpaque, tokenTypeAccessToken), 400, errInvalidRequest, ""},
			{"token not for the gateway", e.edge.ID, e.edgeSecret, gatewayForm(notForEdge, tokenTypeAccessToken), 400, errInvalidRequest, ""},
			{"revoked API key", e.edge.ID, e.edgeSecret, gatewayForm(revokedKey, TokenTypeAPIKey), 400, errInvalidRequest, ""},
			{"expired API key", e.edge.ID, e.edgeSecret, gatewayForm(expiringKey, TokenTypeAPIKey), 400, errInvalidRequest, ""},
			{"API key as access token", e.edge.ID, e.edgeSecret, gatewayForm(key, tokenTypeAccessToken), 400, errInvalidRequest, ""},
			{"access token as API key", e.edge.ID, e.edgeSecret, gatewayForm(jwtTok, TokenTypeAPIKey), 400, errInvalidRequest, ""},
			{"IP-restricted key without client IP", e.edge.ID, e.edgeSecret, gatewayForm(ipKey, TokenTypeAPIKey), 400, errInvalidRequest, ""},
			{"IP-restricted key from outside", e.edge.ID, e.edgeSecret, gatewayForm(ipKey, TokenTypeAPIKey, ParamClientIP, "192.168.1.1"), 400, errInvalidRequest, ""},
			{"malformed client IP", e.edge.ID, e.edgeSecret, gatewayForm(ipKey, TokenTypeAPIKey, ParamClientIP, "10.1.2.3/8"), 400, errInvalidRequest, ParamClientIP},
			{"actor token", e.edge.ID, e.edgeSecret, gatewayForm(jwtTok, tokenTypeAccessToken, "actor_token", jwtTok, "actor_token_type", tokenTypeAccessToken), 400, errInvalidRequest, "actor_token"},
			{"rate-limited key", e.edge.ID, e.edgeSecret, gatewayForm(limited, TokenTypeAPIKey), 429, "rate_limited", ""},
			{"unknown token type", e.edge.ID, e.edgeSecret, gatewayForm(key, "urn:example:other"), 400, errInvalidRequest, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, _, body := e.post(t, TokenPath, tc.form, tc.id, tc.sec)
				if st != tc.status || errorCode(t, body) != tc.code || !strings.Contains(string(body), tc.contains) {
					t.Errorf("got %d %s; want %d %s", st, body, tc.status, tc.code)
				}
				if strings.Contains(string(body), key) || strings.Contains(string(body), "user-42") {
					t.Errorf("error body echoes the credential or its claims: %s", body)
				}
			})
		}
	})
}

func TestGatewayClientSettings(t *testing.T) {
	e := newM2MEnv(t, nil, func(c *Config) { c.AdminToken, c.InitialAccessToken = testAdminToken, testIAT })
	// Admin API: gateway, format and rate limit; a gateway gets 60 s.
	status, _, c := e.jsonRequest(t, "POST", AdminClientsPath, testAdminToken, `{"client_name":"Edge","gateway":true,
		"grant_types":["`+GrantTypeTokenExchange+`"],"exchange_audiences":["`+upstream+`"],"rate_limit":"100/m","access_token_format":"opaque"}`)
	if status != 201 || c["gateway"] != true || c["access_token_ttl"] != float64(60) || c["rate_limit"] != "100/m" || c["access_token_format"] != "opaque" {
		t.Fatalf("admin create gateway: %d %v", status, c)
	}
	id := c["client_id"].(string)
	stored, err := e.st.Client(context.Background(), id)
	if err != nil || !stored.Gateway || stored.RateLimit != 100 || stored.RateWindow != time.Minute || !stored.OpaqueAccessTokens() {
		t.Errorf("stored gateway client %+v, %v", stored, err)
	}
	status, _, c = e.jsonRequest(t, "PUT", AdminClientsPath+"/"+id, testAdminToken, `{"client_name":"Edge","gateway":true,
		"grant_types":["`+GrantTypeTokenExchange+`"],"exchange_audiences":["`+upstream+`"],"rate_limit":"30/10s","access_token_ttl":30}`)
	if status != 200 || c["rate_limit"] != "30/10s" || c["access_token_ttl"] != float64(30) || c["access_token_format"] != nil {
		t.Errorf("admin update: %d %v", status, c)
	}
	for name, body := range map[string]string{
		"unknown format":         `{"client_name":"x","grant_types":["client_credentials"],"access_token_format":"paseto"}`,
		"bad rate":               `{"client_name":"x","grant_types":["client_credentials"],"rate_limit":"lots"}`,
		"gateway without grant":  `{"client_name":"x","grant_types":["client_credentials"],"gateway":true}`,
		"gateway without target": `{"client_name":"x","grant_types":["` + GrantTypeTokenExchange + `"],"gateway":true}`,
	} {
		if status, _, m := e.jsonRequest(t, "POST", AdminClientsPath, testAdminToken, body); status != 400 || m["error"] != errInvalidClientMeta {
			t.Errorf("admin create, %s: %d %v; want 400 invalid_client_metadata", name, status, m)
		}
	}

	// DCR: the format is the registrant's; gateway and rate limit are not.
	status, _, r := e.jsonRequest(t, "POST", RegisterPath, testIAT, `{"client_name":"Reg","grant_types":["client_credentials"],"access_token_format":"opaque"}`)
	if status != 201 || r["access_token_format"] != "opaque" {
		t.Fatalf("DCR with access_token_format opaque: %d %v", status, r)
	}
	for name, body := range map[string]string{
		"unknown format": `{"client_name":"x","grant_types":["client_credentials"],"access_token_format":"paseto"}`,
		"gateway":        `{"client_name":"x","grant_types":["` + GrantTypeTokenExchange + `"],"gateway":true,"exchange_audiences":["https://x"]}`,
		"rate limit":     `{"client_name":"x","grant_types":["client_credentials"],"rate_limit":"1000/s"}`,
	} {
		if status, _, m := e.jsonRequest(t, "POST", RegisterPath, testIAT, body); status != 400 || m["error"] != errInvalidClientMeta {
			t.Errorf("DCR, %s: %d %v; want 400 invalid_client_metadata", name, status, m)
		}
	}
	// RFC 7592 update keeps the administrator's settings.
	regID, regTok := r["client_id"].(string), r["registration_access_token"].(string)
	rec, _ := e.st.Client(context.Background(), regID)
	rec.RateLimit, rec.RateWindow = 5, time.Second
	if _, err := e.st.UpdateClient(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	status, _, r = e.jsonRequest(t, "PUT", RegisterPath+"/"+regID, regTok, `{"client_id":"`+regID+`","client_name":"Reg2",
		"grant_types":["client_credentials"],"gateway":true,"rate_limit":"0"}`)
	if status != 200 || r["gateway"] != nil || r["rate_limit"] != "5/s" || r["access_token_format"] != nil {
		t.Errorf("RFC 7592 update: %d %v; want gateway unset, rate limit kept, format reset to the default", status, r)
	}
}

func TestFormatRate(t *testing.T) {
	for _, tc := range []struct {
		n    int
		w    time.Duration
		want string
	}{{0, 0, ""}, {10, time.Second, "10/s"}, {100, time.Minute, "100/m"}, {5, time.Hour, "5/h"}, {30, 10 * time.Second, "30/10s"}, {7, 1500 * time.Millisecond, "7/1.5s"}} {
		got := FormatRate(tc.n, tc.w)
		if got != tc.want {
			t.Errorf("FormatRate(%d, %v) = %q, want %q", tc.n, tc.w, got, tc.want)
		}
		if n, w, err := keyauth.ParseRate(got); err != nil || n != tc.n || w != tc.w {
			t.Errorf("ParseRate(%q) = %d, %v, %v; want the round trip", got, n, w, err)
		}
	}
}
