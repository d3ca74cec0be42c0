package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

func TestClientCredentials(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newM2MEnv(t, open, nil)
		c, secret := e.newClient(t, store.Client{Scopes: []string{"read", "write"}, Audiences: []string{"https://api.example"},
			AccessTokenTTL: 5 * time.Minute, AccessTokenAlg: "EdDSA"})
		plain, plainSecret := e.newClient(t, store.Client{Scopes: []string{"a"}})
		cases := []struct {
			name, id, secret, scope string
			wantScope               string
			wantAud                 []string
			wantTTL                 int64
			wantAlg                 string
		}{
			{"all scopes by default", c.ID, secret, "", "read write", []string{"https://api.example"}, 300, "EdDSA"},
			{"narrower scope", c.ID, secret, "write", "write", []string{"https://api.example"}, 300, "EdDSA"},
			{"duplicate scope tokens", c.ID, secret, "read  read", "read", []string{"https://api.example"}, 300, "EdDSA"},
			{"defaults: issuer audience, 15 min, ES256", plain.ID, plainSecret, "", "a", []string{e.issuer}, 900, "ES256"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				form := url.Values{"grant_type": {"client_credentials"}}
				if tc.scope != "" {
					form.Set("scope", tc.scope)
				}
				status, hdr, body := e.post(t, TokenPath, form, tc.id, tc.secret)
				if status != http.StatusOK {
					t.Fatalf("status %d, body %s; want 200", status, body)
				}
				if cc := hdr.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
				var tr map[string]any
				if err := json.Unmarshal(body, &tr); err != nil {
					t.Fatal(err)
				}
				if tr["token_type"] != "Bearer" || tr["scope"] != tc.wantScope || tr["expires_in"] != float64(tc.wantTTL) {
					t.Errorf("response %s: want token_type Bearer, scope %q, expires_in %d", body, tc.wantScope, tc.wantTTL)
				}
				if _, ok := tr["refresh_token"]; ok {
					t.Error("client_credentials response has a refresh_token")
				}
				raw := tr["access_token"].(string)
				v, err := token.NewVerifier(token.VerifierConfig{Issuer: e.issuer, Audience: tc.wantAud[0], Keys: e.p.keys})
				if err != nil {
					t.Fatal(err)
				}
				cl, err := v.Verify(context.Background(), raw)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if cl.Subject != tc.id || cl.ClientID != tc.id || cl.Scope != tc.wantScope ||
					!slices.Equal([]string(cl.Audience), tc.wantAud) || cl.ExpiresAt-cl.IssuedAt != tc.wantTTL || cl.ID == "" {
					t.Errorf("claims %+v: want sub = client_id = %s, scope %q, aud %v, lifetime %d, a jti", cl, tc.id, tc.wantScope, tc.wantAud, tc.wantTTL)
				}
				hdrJSON, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
				var h struct{ Alg, Typ string }
				json.Unmarshal(hdrJSON, &h)
				if h.Alg != tc.wantAlg || h.Typ != "at+jwt" {
					t.Errorf("header alg %q typ %q, want %q at+jwt", h.Alg, h.Typ, tc.wantAlg)
				}
			})
		}
	})
}

func TestTokenEndpointErrors(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	c, secret := e.newClient(t, store.Client{Scopes: []string{"read"}})
	pub, _ := e.newClient(t, store.Client{Public: true, GrantTypes: []string{"authorization_code"},
		RedirectURIs: []string{"http://127.0.0.1/cb"}})
	codeOnly, codeSecret := e.newClient(t, store.Client{GrantTypes: []string{"authorization_code"},
		RedirectURIs: []string{"https://app.example/cb"}})
	cc := url.Values{"grant_type": {"client_credentials"}}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.ID+":"+secret))
	cases := []struct {
		name        string
		contentType string
		query       string
		body        string
		auth        string
		wantStatus  int
		wantCode    string
	}{
		{"json body", "application/json", "", `{"grant_type":"client_credentials"}`, basic, 400, errInvalidRequest},
		{"no content type", "", "", cc.Encode(), basic, 400, errInvalidRequest},
		{"latin1 charset", "application/x-www-form-urlencoded; charset=iso-8859-1", "", cc.Encode(), basic, 400, errInvalidRequest},
		{"secret in query", "", "client_secret=" + secret, cc.Encode(), basic, 400, errInvalidRequest},
		{"any query", "", "grant_type=client_credentials", cc.Encode(), basic, 400, errInvalidRequest},
		{"repeated grant_type", "", "", "grant_type=client_credentials&grant_type=client_credentials", basic, 400, errInvalidRequest},
		{"repeated scope", "", "", cc.Encode() + "&scope=read&scope=read", basic, 400, errInvalidRequest},
		{"malformed body", "", "", "grant_type=%zz", basic, 400, errInvalidRequest},
		{"invalid utf-8", "", "", cc.Encode() + "&scope=%ff", basic, 400, errInvalidRequest},
		{"oversized body", "", "", cc.Encode() + "&x=" + strings.Repeat("a", maxFormBytes), basic, 400, errInvalidRequest},
		{"missing grant_type", "", "", "scope=read", basic, 400, errInvalidRequest},
		{"empty grant_type", "", "", "grant_type=", basic, 400, errInvalidRequest},
		{"password grant", "", "", "grant_type=password&username=u&password=p", basic, 400, errUnsupportedGrantType},
		{"implicit", "", "", "grant_type=implicit", basic, 400, errUnsupportedGrantType},
		{"unknown grant", "", "", "grant_type=urn:x", basic, 400, errUnsupportedGrantType},
		{"no credentials", "", "", cc.Encode(), "", 401, errInvalidClient},
		{"wrong secret", "", "", cc.Encode(), "Basic " + base64.StdEncoding.EncodeToString([]byte(c.ID+":wrong")), 401, errInvalidClient},
		{"unknown client", "", "", cc.Encode(), "Basic " + base64.StdEncoding.EncodeToString([]byte("nobody:"+secret)), 401, errInvalidClient},
		{"bad base64", "", "", cc.Encode(), "Basic !!!", 401, errInvalidClient},
		{"no colon", "", "", cc.Encode(), "Basic " + base64.StdEncoding.EncodeToString([]byte(c.ID)), 401, errInvalidClient},
		{"bearer scheme", "", "", cc.Encode(), "Bearer x", 401, errInvalidClient},
		{"two methods", "", "", cc.Encode() + "&client_id=" + c.ID + "&client_secret=" + secret, basic, 400, errInvalidRequest},
		{"client_id mismatch", "", "", cc.Encode() + "&client_id=other", basic, 401, errInvalidClient},
		{"post with wrong secret", "", "", cc.Encode() + "&client_id=" + c.ID + "&client_secret=x", "", 401, errInvalidClient},
		{"confidential client without secret", "", "", cc.Encode() + "&client_id=" + c.ID, "", 401, errInvalidClient},
		{"public client", "", "", cc.Encode() + "&client_id=" + pub.ID, "", 400, errUnauthorizedClient},
		{"grant not allowed", "", "", cc.Encode(), "Basic " + base64.StdEncoding.EncodeToString([]byte(codeOnly.ID+":"+codeSecret)), 400, errUnauthorizedClient},
		{"scope not allowed", "", "", cc.Encode() + "&scope=admin", basic, 400, errInvalidScope},
		{"malformed scope", "", "", cc.Encode() + "&scope=" + url.QueryEscape(`re"ad`), basic, 400, errInvalidScope},
		{"oversized scope", "", "", cc.Encode() + "&scope=" + strings.Repeat("a", maxScopeLen+1), basic, 400, errInvalidScope},
		{"oversized client_id", "", "", cc.Encode() + "&client_id=" + strings.Repeat("a", 300) + "&client_secret=x", "", 401, errInvalidClient},
		{"unsupported assertion type", "", "", cc.Encode() + "&client_assertion_type=urn:x&client_assertion=a.b.c", "", 401, errInvalidClient},
		{"garbage assertion", "", "", cc.Encode() + "&client_assertion_type=" + url.QueryEscape(assertionTypeJWT) + "&client_assertion=a.b.c", "", 401, errInvalidClient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := e.srv.URL + TokenPath
			if tc.query != "" {
				u += "?" + tc.query
			}
			req, _ := http.NewRequest("POST", u, strings.NewReader(tc.body))
			ct := tc.contentType
			if ct == "" && tc.name != "no content type" {
				ct = "application/x-www-form-urlencoded"
			}
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			status, hdr, body := do(t, req)
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", status, tc.wantStatus, body)
			}
			if got := errorCode(t, body); got != tc.wantCode {
				t.Errorf("error = %q, want %q", got, tc.wantCode)
			}
			if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("headers Cache-Control %q, Content-Type %q; want no-store, application/json", hdr.Get("Cache-Control"), hdr.Get("Content-Type"))
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a Basic WWW-Authenticate challenge: %q", hdr.Get("WWW-Authenticate"))
			}
			if strings.Contains(string(body), secret) {
				t.Error("the error response contains the client secret")
			}
		})
	}
	// Only POST is routed.
	status, _, _ := do(t, mustRequest(t, "GET", e.srv.URL+TokenPath+"?grant_type=client_credentials"))
	if status != http.StatusMethodNotAllowed {
		t.Errorf("GET /token: status %d, want 405", status)
	}
}

func mustRequest(t testing.TB, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestClientSecretPostAndEncoding(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	// A client ID with characters that Basic form-encoding must escape.
	c, secret := e.newClient(t, store.Client{ID: "svc+a/b%c", TokenEndpointAuthMethod: authSecretPost})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ID}, "client_secret": {secret}}
	if status, _, body := e.post(t, TokenPath, form, "", ""); status != 200 {
		t.Errorf("client_secret_post: status %d, body %s", status, body)
	}
	// Basic with form-encoded ID (RFC 6749 section 2.3.1) works too.
	if status, _, body := e.post(t, TokenPath, url.Values{"grant_type": {"client_credentials"}}, c.ID, secret); status != 200 {
		t.Errorf("client_secret_basic with escaped ID: status %d, body %s", status, body)
	}
}

func TestSecretRotationGrace(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newM2MEnv(t, open, nil)
		c, oldSecret := e.newClient(t, store.Client{})
		newSecret, hash := NewClientSecret(e.hasher)
		ctx := context.Background()
		if _, err := e.st.RotateClientSecret(ctx, c.ID, hash, e.clock.Now().Add(e.p.cfg.SecretGrace)); err != nil {
			t.Fatal(err)
		}
		e.p.OnClientChange(ctx, []store.Change{{Kind: store.ChangeClient, Ref: c.ID}})
		try := func(secret string) int {
			status, _, _ := e.post(t, TokenPath, url.Values{"grant_type": {"client_credentials"}}, c.ID, secret)
			return status
		}
		for _, tc := range []struct {
			name     string
			advance  time.Duration
			old, new int
		}{
			{"during grace", 0, 200, 200},
			{"just before the end", 24*time.Hour - time.Minute, 200, 200},
			{"after grace", 2 * time.Minute, 401, 200},
		} {
			e.clock.Advance(tc.advance)
			if got := try(oldSecret); got != tc.old {
				t.Errorf("%s: old secret status %d, want %d", tc.name, got, tc.old)
			}
			if got := try(newSecret); got != tc.new {
				t.Errorf("%s: new secret status %d, want %d", tc.name, got, tc.new)
			}
		}
	})
}

func TestClientCacheFollowsChanges(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	ctx := context.Background()
	c, secret := e.newClient(t, store.Client{})
	e.token(t, c.ID, secret, "") // cached now
	if err := e.st.DeleteClient(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	// Until the change arrives the cached client still works; after it, not.
	e.token(t, c.ID, secret, "")
	e.p.OnClientChange(ctx, []store.Change{{Kind: store.ChangeClient, Ref: c.ID}})
	status, _, _ := e.post(t, TokenPath, url.Values{"grant_type": {"client_credentials"}}, c.ID, secret)
	if status != 401 {
		t.Errorf("deleted client after the change: status %d, want 401", status)
	}
}

func TestParseScope(t *testing.T) {
	cases := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"a", []string{"a"}, false},
		{"a b  c", []string{"a", "b", "c"}, false},
		{"b a b", []string{"b", "a"}, false},
		{"x:y/z!", []string{"x:y/z!"}, false},
		{"   ", nil, true},
		{"a\tb", nil, true},
		{`a"b`, nil, true},
		{`a\b`, nil, true},
		{"é", nil, true},
		{manyScopes(maxScopes + 1), nil, true},
	}
	for _, tc := range cases {
		got, err := parseScope(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseScope(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func manyScopes(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "s%d ", i)
	}
	return b.String()
}

// TestConcurrentGrants issues, introspects and revokes tokens from many
// goroutines while the client cache is invalidated (run with -race).
func TestConcurrentGrants(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	c, secret := e.newClient(t, store.Client{Scopes: []string{"read"}})
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for w := range 8 {
		wg.Go(func() {
			for range 10 {
				tok := e.token(t, c.ID, secret, "")
				if _, m := e.introspect(t, c.ID, secret, tok); m["active"] != true {
					errs <- fmt.Sprintf("worker %d: fresh token inactive", w)
				}
				if w%2 == 0 {
					e.post(t, RevokePath, url.Values{"token": {tok}}, c.ID, secret)
					if _, m := e.introspect(t, c.ID, secret, tok); m["active"] != false {
						errs <- fmt.Sprintf("worker %d: revoked token active", w)
					}
				}
				e.p.OnClientChange(context.Background(), []store.Change{{Kind: store.ChangeClient, Ref: c.ID}})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
