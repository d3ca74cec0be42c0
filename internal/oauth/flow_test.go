package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

const (
	testRedirect = "http://127.0.0.1/cb" // loopback without port: any port matches
	testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	testPassword = "correct horse battery staple"
)

// testChallenge is the S256 challenge of testVerifier (RFC 7636 appendix B).
const testChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

// flowEnv is an m2mEnv with a user and a public code-flow client.
type flowEnv struct {
	*m2mEnv
	user   store.User
	client store.Client
}

func newFlowEnv(t testing.TB, open func(testing.TB) *store.Store, mod func(*Config)) *flowEnv {
	t.Helper()
	e := newM2MEnv(t, open, mod)
	h, err := password.Hash(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	u := store.User{ID: "user-1", Username: "ada", Email: "ada@example.com", EmailVerified: true, Name: "Ada Lovelace", PasswordHash: h}
	if err := e.st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	c, _ := e.newClient(t, store.Client{
		Name: "Notes App", Public: true, TokenEndpointAuthMethod: authNone,
		GrantTypes:   []string{"authorization_code", "refresh_token"},
		Scopes:       []string{"openid", "profile", "email", "notes:read"},
		RedirectURIs: []string{testRedirect, "https://app.example/cb"},
	})
	return &flowEnv{m2mEnv: e, user: u, client: c}
}

// browser is a cookie-keeping HTTP client that stops at redirects to a
// client (anything not on the issuer).
type browser struct {
	t      testing.TB
	hc     *http.Client
	issuer string
}

func (e *flowEnv) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, issuer: e.issuer}
	b.hc = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !strings.HasPrefix(req.URL.String(), e.issuer+"/") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

// page is a response as the browser saw it.
type page struct {
	status   int
	header   http.Header
	body     string
	location string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(body), resp.Header.Get("Location")}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.issuer+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// hidden returns the hidden form fields of a page.
func (pg page) hidden() url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(pg.body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// authorizeQuery is a good authorization request for e's client.
func (e *flowEnv) authorizeQuery() url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {e.client.ID}, "redirect_uri": {"http://127.0.0.1:8765/cb"},
		"scope": {"openid profile email notes:read"}, "state": {"st-123"}, "nonce": {"n-456"},
		"code_challenge": {testChallenge}, "code_challenge_method": {"S256"},
	}
}

// login submits the login page pg with the given password.
func (b *browser) login(pg page, username, pw string) page {
	b.t.Helper()
	form := pg.hidden()
	form.Set("username", username)
	form.Set("password", pw)
	return b.post(LoginPath, form)
}

// runToCode runs the browser part of the flow (login if needed, consent)
// and returns the code from the redirect to the client.
func (e *flowEnv) runToCode(t testing.TB, b *browser, q url.Values) url.Values {
	t.Helper()
	pg := b.get(AuthorizePath + "?" + q.Encode())
	if strings.Contains(pg.body, `name="password"`) {
		pg = b.login(pg, "ada", testPassword)
	}
	if strings.Contains(pg.body, `value="allow"`) {
		form := pg.hidden()
		form.Set("decision", "allow")
		pg = b.post(ConsentPath, form)
	}
	if pg.status != http.StatusFound && pg.status != http.StatusSeeOther {
		t.Fatalf("authorization ended with %d, want a redirect to the client; body %s", pg.status, pg.body)
	}
	loc, err := url.Parse(pg.location)
	if err != nil || !strings.HasPrefix(pg.location, q.Get("redirect_uri")+"?") {
		t.Fatalf("redirect to %q, want %s?...", pg.location, q.Get("redirect_uri"))
	}
	return loc.Query()
}

// exchange runs the token request for a code.
func (e *flowEnv) exchange(t testing.TB, code, verifier, redirect string) (int, map[string]any) {
	t.Helper()
	status, hdr, body := e.post(t, TokenPath, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {redirect}, "client_id": {e.client.ID},
	}, "", "")
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("token response Cache-Control = %q, want no-store", hdr.Get("Cache-Control"))
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("token response %s: %v", body, err)
	}
	return status, m
}

func (e *flowEnv) refresh(t testing.TB, rt, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {e.client.ID}}
	if scope != "" {
		form.Set("scope", scope)
	}
	_, _, body := e.post(t, TokenPath, form, "", "")
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("refresh response %s: %v", body, err)
	}
	status := http.StatusOK
	if _, ok := m["error"]; ok {
		status = http.StatusBadRequest
	}
	return status, m
}

// claimsOf decodes a JWT's payload without verifying it (tests only).
func claimsOf(t testing.TB, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCodeFlow(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newFlowEnv(t, open, nil)
		b := e.browser(t)
		q := e.authorizeQuery()

		pg := b.get(AuthorizePath + "?" + q.Encode())
		if pg.status != 200 || !strings.Contains(pg.body, `name="password"`) || !strings.Contains(pg.body, "Notes App") {
			t.Fatalf("first /authorize: %d, want the login page naming the client; body %s", pg.status, pg.body)
		}
		for k, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY"} {
			if got := pg.header.Get(k); got != want {
				t.Errorf("login page %s = %q, want %q", k, got, want)
			}
		}
		if csp := pg.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("login page CSP = %q, want frame-ancestors 'none'", csp)
		}
		pg = b.login(pg, "ada", testPassword)
		if pg.status != 200 || !strings.Contains(pg.body, `value="allow"`) {
			t.Fatalf("after login: %d, want the consent page; body %s", pg.status, pg.body)
		}
		for _, words := range []string{"Notes App", "See your email address", "See your name and username", "notes:read"} {
			if !strings.Contains(pg.body, html.EscapeString(words)) {
				t.Errorf("consent page lacks %q", words)
			}
		}
		form := pg.hidden()
		form.Set("decision", "allow")
		pg = b.post(ConsentPath, form)
		loc, _ := url.Parse(pg.location)
		got := loc.Query()
		if pg.status != http.StatusSeeOther || got.Get("state") != "st-123" || got.Get("iss") != e.issuer || got.Get("code") == "" {
			t.Fatalf("after consent: %d to %q, want 303 with code, state and iss", pg.status, pg.location)
		}

		status, tr := e.exchange(t, got.Get("code"), testVerifier, q.Get("redirect_uri"))
		if status != 200 {
			t.Fatalf("code exchange: %d %v", status, tr)
		}
		at, rt, idt := tr["access_token"].(string), tr["refresh_token"].(string), tr["id_token"].(string)
		if rt == "" || idt == "" {
			t.Fatalf("token response %v: want refresh_token and id_token", tr)
		}
		ac := claimsOf(t, at)
		if ac["sub"] != e.user.ID || ac["client_id"] != e.client.ID || ac["scope"] != "openid profile email notes:read" || ac["auth_time"] == nil {
			t.Errorf("access token claims %v", ac)
		}
		ic := claimsOf(t, idt)
		if ic["nonce"] != "n-456" || ic["aud"] != e.client.ID || ic["sub"] != e.user.ID || ic["at_hash"] != atHash(token.RS256, at) ||
			ic["email"] != "ada@example.com" || ic["preferred_username"] != "ada" || ic["auth_time"] != ac["auth_time"] {
			t.Errorf("ID token claims %v", ic)
		}

		// Userinfo answers for the access token.
		req, _ := http.NewRequest("GET", e.issuer+UserinfoPath, nil)
		req.Header.Set("Authorization", "Bearer "+at)
		st, _, body := do(t, req)
		var ui map[string]any
		json.Unmarshal(body, &ui)
		if st != 200 || ui["sub"] != e.user.ID || ui["name"] != "Ada Lovelace" || ui["email_verified"] != true {
			t.Errorf("userinfo: %d %s", st, body)
		}

		// Second visit: signed in and consented, straight back with a code.
		got = e.runToCode(t, b, q)
		if got.Get("code") == "" {
			t.Fatal("second authorization gave no code")
		}

		// Refresh rotates; scope may narrow but not widen.
		if st, m := e.refresh(t, rt, "openid notes:read admin"); st == 200 || m["error"] != errInvalidScope {
			t.Errorf("widening refresh: %d %v, want invalid_scope", st, m)
		}
		st, r2 := e.refresh(t, rt, "openid notes:read")
		if st != 200 || r2["scope"] != "openid notes:read" || r2["refresh_token"] == rt || r2["id_token"] == nil {
			t.Fatalf("refresh: %d %v", st, r2)
		}
		rt2 := r2["refresh_token"].(string)
		// Reusing the rotated token (after the grace window) revokes the family.
		e.clock.Advance(time.Minute)
		if st, m := e.refresh(t, rt, ""); st == 200 || m["error"] != errInvalidGrant {
			t.Errorf("reused refresh token: %d %v, want invalid_grant", st, m)
		}
		if st, m := e.refresh(t, rt2, ""); st == 200 || m["error"] != errInvalidGrant {
			t.Errorf("successor after reuse: %d %v, want invalid_grant (family revoked)", st, m)
		}
		jti := claimsOf(t, r2["access_token"].(string))["jti"].(string)
		if _, err := e.st.RevokedToken(context.Background(), jti); err != nil {
			t.Errorf("access token of the revoked family not denied: %v", err)
		}
	})
}

func TestCodeReplayRevokes(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	b := e.browser(t)
	q := e.authorizeQuery()
	code := e.runToCode(t, b, q).Get("code")
	status, tr := e.exchange(t, code, testVerifier, q.Get("redirect_uri"))
	if status != 200 {
		t.Fatalf("first exchange: %d %v", status, tr)
	}
	status, again := e.exchange(t, code, testVerifier, q.Get("redirect_uri"))
	if status != 400 || again["error"] != errInvalidGrant {
		t.Fatalf("replayed code: %d %v, want 400 invalid_grant", status, again)
	}
	if st, m := e.refresh(t, tr["refresh_token"].(string), ""); st == 200 {
		t.Errorf("refresh token from a replayed code still works: %v", m)
	}
	jti := claimsOf(t, tr["access_token"].(string))["jti"].(string)
	if _, err := e.st.RevokedToken(context.Background(), jti); err != nil {
		t.Errorf("access token from a replayed code not revoked: %v", err)
	}
}

func TestCodeBindings(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	other, _ := e.newClient(t, store.Client{Name: "Other", Public: true, TokenEndpointAuthMethod: authNone,
		GrantTypes: []string{"authorization_code"}, Scopes: []string{"openid"}, RedirectURIs: []string{testRedirect}})
	b := e.browser(t)
	q := e.authorizeQuery()
	redirect := q.Get("redirect_uri")
	code := e.runToCode(t, b, q).Get("code")
	cases := []struct {
		name string
		form url.Values
		want string
	}{
		{"wrong verifier", url.Values{"code_verifier": {strings.Repeat("a", 43)}}, errInvalidGrant},
		{"no verifier", url.Values{"code_verifier": {""}}, errInvalidRequest},
		{"short verifier", url.Values{"code_verifier": {"abc"}}, errInvalidRequest},
		{"other redirect_uri", url.Values{"redirect_uri": {"http://127.0.0.1:9999/cb"}}, errInvalidGrant},
		{"other client", url.Values{"client_id": {other.ID}}, errInvalidGrant},
		{"unknown code", url.Values{"code": {"nope"}}, errInvalidGrant},
		{"no code", url.Values{"code": {""}}, errInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {testVerifier},
				"redirect_uri": {redirect}, "client_id": {e.client.ID}}
			for k, v := range tc.form {
				form[k] = v
			}
			status, _, body := e.post(t, TokenPath, form, "", "")
			if status != 400 || errorCode(t, body) != tc.want {
				t.Errorf("got %d %s, want 400 %s", status, body, tc.want)
			}
		})
	}
	// None of the failures used the code up.
	if status, tr := e.exchange(t, code, testVerifier, redirect); status != 200 {
		t.Errorf("exchange after failed attempts: %d %v, want 200", status, tr)
	}
	// An expired code fails.
	code = e.runToCode(t, b, q).Get("code")
	e.clock.Advance(2 * time.Minute)
	if status, tr := e.exchange(t, code, testVerifier, redirect); status != 400 || tr["error"] != errInvalidGrant {
		t.Errorf("expired code: %d %v, want invalid_grant", status, tr)
	}
}

func TestAuthorizeErrors(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	b := e.browser(t)
	good := e.authorizeQuery()
	with := func(mod func(q url.Values)) url.Values {
		q := cloneValues(good)
		mod(q)
		return q
	}
	pageCases := []struct {
		name string
		q    url.Values
	}{
		{"no client_id", with(func(q url.Values) { q.Del("client_id") })},
		{"unknown client", with(func(q url.Values) { q.Set("client_id", "nope") })},
		{"two client_ids", with(func(q url.Values) { q.Add("client_id", "x") })},
		{"no redirect_uri", with(func(q url.Values) { q.Del("redirect_uri") })},
		{"unregistered redirect_uri", with(func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") })},
		{"redirect_uri prefix", with(func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb/x") })},
		{"loopback other path", with(func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:8765/other") })},
		{"localhost is not loopback IP", with(func(q url.Values) { q.Set("redirect_uri", "http://localhost:8765/cb") })},
		{"two redirect_uris", with(func(q url.Values) { q.Add("redirect_uri", "https://app.example/cb") })},
	}
	for _, tc := range pageCases {
		t.Run(tc.name, func(t *testing.T) {
			pg := b.get(AuthorizePath + "?" + tc.q.Encode())
			if pg.status != 400 || pg.location != "" || !strings.Contains(pg.body, `role="alert"`) {
				t.Errorf("got %d, Location %q; want 400 and an error page, no redirect", pg.status, pg.location)
			}
		})
	}
	redirectCases := []struct {
		name, want string
		q          url.Values
		wantState  bool
	}{
		{"implicit", errUnsupportedResponseType, with(func(q url.Values) { q.Set("response_type", "token") }), true},
		{"hybrid", errUnsupportedResponseType, with(func(q url.Values) { q.Set("response_type", "code id_token") }), true},
		{"no response_type", errInvalidRequest, with(func(q url.Values) { q.Del("response_type") }), true},
		{"no PKCE", errInvalidRequest, with(func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }), true},
		{"PKCE plain", errInvalidRequest, with(func(q url.Values) { q.Set("code_challenge_method", "plain") }), true},
		{"PKCE method missing", errInvalidRequest, with(func(q url.Values) { q.Del("code_challenge_method") }), true},
		{"PKCE unknown method", errInvalidRequest, with(func(q url.Values) { q.Set("code_challenge_method", "S512") }), true},
		{"bad challenge", errInvalidRequest, with(func(q url.Values) { q.Set("code_challenge", "short") }), true},
		{"scope not allowed", errInvalidScope, with(func(q url.Values) { q.Set("scope", "openid admin") }), true},
		{"no scope", errInvalidScope, with(func(q url.Values) { q.Del("scope") }), true},
		{"duplicated scope", errInvalidRequest, with(func(q url.Values) { q.Add("scope", "openid") }), true},
		{"duplicated state", errInvalidRequest, with(func(q url.Values) { q.Add("state", "x") }), false},
		{"request object", errRequestNotSupported, with(func(q url.Values) { q.Set("request", "eyJ") }), true},
		{"request_uri", errRequestURINotSupported, with(func(q url.Values) { q.Set("request_uri", "urn:x") }), true},
		{"fragment mode", errInvalidRequest, with(func(q url.Values) { q.Set("response_mode", "fragment") }), true},
		{"prompt none signed out", errLoginRequired, with(func(q url.Values) { q.Set("prompt", "none") }), true},
		{"prompt none and login", errInvalidRequest, with(func(q url.Values) { q.Set("prompt", "none login") }), true},
		{"bad max_age", errInvalidRequest, with(func(q url.Values) { q.Set("max_age", "-1") }), true},
	}
	for _, tc := range redirectCases {
		t.Run(tc.name, func(t *testing.T) {
			pg := b.get(AuthorizePath + "?" + tc.q.Encode())
			loc, err := url.Parse(pg.location)
			if pg.status != http.StatusFound || err != nil || !strings.HasPrefix(pg.location, good.Get("redirect_uri")+"?") {
				t.Fatalf("got %d to %q, want 302 to the client", pg.status, pg.location)
			}
			got := loc.Query()
			if got.Get("error") != tc.want || got.Get("iss") != e.issuer || got.Has("code") {
				t.Errorf("redirect query %v, want error %s and iss, no code", got, tc.want)
			}
			if (got.Get("state") == "st-123") != tc.wantState {
				t.Errorf("state = %q, want passed through: %v", got.Get("state"), tc.wantState)
			}
		})
	}
	// A client not allowed the code flow.
	// (It has no redirect URIs, so the error is a page.)
	m2m, _ := e.newClient(t, store.Client{Scopes: []string{"openid"}})
	pg := b.get(AuthorizePath + "?" + with(func(q url.Values) { q.Set("client_id", m2m.ID); q.Set("scope", "openid") }).Encode())
	if pg.status != 400 || pg.location != "" {
		t.Errorf("client without authorization_code: %d %q, want an error page", pg.status, pg.location)
	}
	// Nothing was stored by any of the refused requests.
	if cs, err := e.st.Consents(context.Background(), e.user.ID); err != nil || len(cs) != 0 {
		t.Errorf("consents after refused requests: %v %v", cs, err)
	}
}

func TestDenyAndPrompt(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	b := e.browser(t)
	q := e.authorizeQuery()
	pg := b.login(b.get(AuthorizePath+"?"+q.Encode()), "ada", testPassword)
	form := pg.hidden()
	form.Set("decision", "deny")
	pg = b.post(ConsentPath, form)
	loc, _ := url.Parse(pg.location)
	if loc == nil || loc.Query().Get("error") != errAccessDenied || loc.Query().Get("state") != "st-123" {
		t.Fatalf("deny: %d %q, want access_denied with state", pg.status, pg.location)
	}
	// prompt=none while signed in but without consent: consent_required.
	q.Set("prompt", "none")
	pg = b.get(AuthorizePath + "?" + q.Encode())
	if loc, _ := url.Parse(pg.location); loc == nil || loc.Query().Get("error") != errConsentRequired {
		t.Errorf("prompt=none without consent: %q, want consent_required", pg.location)
	}
	// After consenting, prompt=none gives a code without any page.
	q.Del("prompt")
	e.runToCode(t, b, q)
	q.Set("prompt", "none")
	if got := e.runToCode(t, b, q); got.Get("code") == "" {
		t.Errorf("prompt=none with session and consent: %v, want a code", got)
	}
	// prompt=login asks for the password again.
	q.Set("prompt", "login")
	if pg := b.get(AuthorizePath + "?" + q.Encode()); !strings.Contains(pg.body, `name="password"`) {
		t.Errorf("prompt=login: %d, want the login page", pg.status)
	}
	// max_age=0 likewise, once a second has passed since sign-in.
	q.Del("prompt")
	q.Set("max_age", "0")
	e.clock.Advance(2 * time.Second)
	if pg := b.get(AuthorizePath + "?" + q.Encode()); !strings.Contains(pg.body, `name="password"`) {
		t.Errorf("max_age=0: %d, want the login page", pg.status)
	}
	// prompt=consent shows the consent page despite the stored consent.
	q.Del("max_age")
	q.Set("prompt", "consent")
	if pg := b.get(AuthorizePath + "?" + q.Encode()); !strings.Contains(pg.body, `value="allow"`) {
		t.Errorf("prompt=consent: %d, want the consent page", pg.status)
	}
}

func TestLoginCSRFAndThrottle(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	b := e.browser(t)
	pg := b.get(LoginPath)
	form := pg.hidden()
	form.Set("username", "ada")
	form.Set("password", testPassword)
	bad := cloneValues(form)
	bad.Set("csrf_token", strings.Repeat("A", 43))
	if got := b.post(LoginPath, bad); got.status != http.StatusForbidden {
		t.Errorf("login with a wrong CSRF token: %d, want 403", got.status)
	}
	other := e.browser(t) // another browser has no CSRF cookie
	if got := other.post(LoginPath, form); got.status != http.StatusForbidden {
		t.Errorf("login without the CSRF cookie: %d, want 403", got.status)
	}
	req, _ := http.NewRequest("POST", e.issuer+LoginPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if got := b.do(req); got.status != http.StatusForbidden {
		t.Errorf("login from another origin: %d, want 403", got.status)
	}

	wrong := cloneValues(form)
	wrong.Set("password", "guess")
	for i := range accountFreeFailures {
		if got := b.post(LoginPath, wrong); got.status != http.StatusUnauthorized || !strings.Contains(got.body, "Wrong username or password") {
			t.Fatalf("wrong password #%d: %d, want 401", i+1, got.status)
		}
	}
	b.post(LoginPath, wrong) // the first failure beyond the free ones starts the delay
	got := b.post(LoginPath, form)
	if got.status != http.StatusTooManyRequests || got.header.Get("Retry-After") == "" {
		t.Fatalf("right password while throttled: %d, want 429 with Retry-After", got.status)
	}
	// Never a permanent lock-out: after the delay the right password works.
	e.clock.Advance(maxThrottleDelay)
	got = b.post(LoginPath, form)
	if got.status != http.StatusOK || !strings.Contains(got.body, "Your permissions") {
		t.Errorf("right password after the delay: %d, want the account page; body %s", got.status, got.body)
	}
	// An unknown user is answered like a wrong password.
	nb := e.browser(t)
	if got := nb.login(nb.get(LoginPath), "nobody", "guess"); got.status != http.StatusUnauthorized || !strings.Contains(got.body, "Wrong username or password") {
		t.Errorf("unknown user: %d, want 401 with the wrong-password message", got.status)
	}
}

func TestConsentWithdrawAndLogout(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	b := e.browser(t)
	q := e.authorizeQuery()
	code := e.runToCode(t, b, q).Get("code")
	_, tr := e.exchange(t, code, testVerifier, q.Get("redirect_uri"))

	pg := b.get(ConsentsPath)
	if !strings.Contains(pg.body, "Notes App") {
		t.Fatalf("permissions page lacks the client: %s", pg.body)
	}
	form := hiddenIn(pg, e.client.ID)
	pg = b.post(ConsentsPath, form)
	if pg.status != 200 || strings.Contains(pg.body, "Notes App") {
		t.Errorf("after withdrawing: %d, client still listed", pg.status)
	}
	if st, _ := e.refresh(t, tr["refresh_token"].(string), ""); st == 200 {
		t.Error("refresh token still works after consent was withdrawn")
	}

	// RP-initiated logout with an ID token hint and a registered return URI.
	code = e.runToCode(t, b, q).Get("code")
	_, tr = e.exchange(t, code, testVerifier, q.Get("redirect_uri"))
	lq := url.Values{"id_token_hint": {tr["id_token"].(string)}, "post_logout_redirect_uri": {"https://app.example/cb"}, "state": {"bye"}}
	pg = b.get(LogoutPath + "?" + lq.Encode())
	if pg.status != 200 || !strings.Contains(pg.body, "Notes App") || !strings.Contains(pg.body, `id="sign-out"`) {
		t.Fatalf("logout page: %d %s", pg.status, pg.body)
	}
	pg = b.post(LogoutPath, pg.hidden())
	if pg.status != http.StatusSeeOther || pg.location != "https://app.example/cb?state=bye" {
		t.Errorf("logout: %d to %q, want 303 to the registered URI with state", pg.status, pg.location)
	}
	if pg := b.get(AuthorizePath + "?" + q.Encode()); !strings.Contains(pg.body, `name="password"`) {
		t.Error("still signed in after logout")
	}
	lq.Set("post_logout_redirect_uri", "https://evil.example/")
	if pg := b.get(LogoutPath + "?" + lq.Encode()); pg.status != 400 || pg.location != "" {
		t.Errorf("logout to an unregistered URI: %d %q, want 400 page", pg.status, pg.location)
	}
}

// hiddenIn returns the hidden fields of the withdraw form for clientID.
func hiddenIn(pg page, clientID string) url.Values {
	i := strings.Index(pg.body, `value="`+clientID+`"`)
	start := strings.LastIndex(pg.body[:i], "<form")
	end := i + strings.Index(pg.body[i:], "</form>")
	return page{body: pg.body[start:end]}.hidden()
}

func TestUserinfoErrors(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	c, secret := e.newClient(t, store.Client{Scopes: []string{"read"}})
	m2mToken := e.token(t, c.ID, secret, "read")
	for _, tc := range []struct {
		name, authz string
		status      int
	}{
		{"none", "", 401},
		{"garbage", "Bearer x.y.z", 401},
		{"basic", "Basic YTpi", 401},
		{"no openid scope", "Bearer " + m2mToken, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.issuer+UserinfoPath, nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			st, hdr, _ := do(t, req)
			if st != tc.status || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("got %d %q, want %d with a Bearer challenge", st, hdr.Get("WWW-Authenticate"), tc.status)
			}
		})
	}
}

func TestRefreshTokenRevokeAndIntrospect(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	// A confidential code-flow client, so it can introspect.
	conf, secret := e.newClient(t, store.Client{Name: "Conf", GrantTypes: []string{"authorization_code", "refresh_token"},
		Scopes: []string{"openid"}, RedirectURIs: []string{testRedirect}})
	b := e.browser(t)
	q := e.authorizeQuery()
	q.Set("client_id", conf.ID)
	q.Set("scope", "openid")
	code := e.runToCode(t, b, q).Get("code")
	st, _, body := e.post(t, TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {testVerifier}, "redirect_uri": {q.Get("redirect_uri")}}, conf.ID, secret)
	if st != 200 {
		t.Fatalf("exchange: %d %s", st, body)
	}
	var tr map[string]string
	json.Unmarshal(body, &tr)
	intro := func(tok string) map[string]any {
		_, _, body := e.post(t, IntrospectPath, url.Values{"token": {tok}}, conf.ID, secret)
		var m map[string]any
		json.Unmarshal(body, &m)
		return m
	}
	if m := intro(tr["refresh_token"]); m["active"] != true || m["token_type"] != "refresh_token" || m["sub"] != e.user.ID || m["client_id"] != conf.ID {
		t.Errorf("introspect refresh token: %v", m)
	}
	// Another client learns nothing about it.
	other, otherSecret := e.newClient(t, store.Client{Scopes: []string{"read"}})
	_, _, ob := e.post(t, IntrospectPath, url.Values{"token": {tr["refresh_token"]}}, other.ID, otherSecret)
	if !strings.Contains(string(ob), `"active":false`) || strings.Contains(string(ob), e.user.ID) {
		t.Errorf("introspection by another client: %s", ob)
	}
	if st, _, _ := e.post(t, RevokePath, url.Values{"token": {tr["refresh_token"]}}, conf.ID, secret); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	if m := intro(tr["refresh_token"]); m["active"] != false {
		t.Errorf("revoked refresh token introspects as %v", m)
	}
	if m := intro(tr["access_token"]); m["active"] != false {
		// The family's access token is denied via the change feed; the
		// provider here is not following it, so apply the change by hand.
		cs, _ := e.st.Changes(context.Background(), 0, 0)
		e.p.OnRevocationChange(context.Background(), slices.DeleteFunc(cs, func(c store.Change) bool { return c.Kind != store.ChangeTokenRevoked }))
		if m := intro(tr["access_token"]); m["active"] != false {
			t.Errorf("access token of a revoked refresh family introspects as %v", m)
		}
	}
}

func TestMatchRedirectURI(t *testing.T) {
	reg := []string{"https://app.example/cb", "http://127.0.0.1/cb", "http://[::1]/native?x=1", "http://127.0.0.1:3000/fixed"}
	cases := []struct {
		uri  string
		want bool
	}{
		{"https://app.example/cb", true},
		{"https://app.example/cb/", false},
		{"https://APP.example/cb", false},
		{"https://app.example/cb?x=1", false},
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:5000/cb", true},
		{"http://127.0.0.1:65535/cb", true},
		{"http://127.0.0.1:65536/cb", false},
		{"http://127.0.0.1:0/cb", false},
		{"http://127.0.0.1:5000/cb2", false},
		{"http://127.0.0.1:5000@evil.example/cb", false},
		{"http://127.0.0.1:5000", false},
		{"http://[::1]:8080/native?x=1", true},
		{"http://[::1]:8080/native", false},
		{"http://127.0.0.1:3000/fixed", true},
		{"http://127.0.0.1:3001/fixed", false},
		{"http://localhost:5000/cb", false},
	}
	for _, tc := range cases {
		if got := matchRedirectURI(reg, tc.uri); got != tc.want {
			t.Errorf("matchRedirectURI(%q) = %v, want %v", tc.uri, got, tc.want)
		}
	}
}

func TestThrottleBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	th := newThrottle(func() time.Time { return now })
	for range 3 {
		th.fail("k", 3)
	}
	if d := th.wait("k"); d != 0 {
		t.Errorf("wait after the free failures = %v, want 0", d)
	}
	th.fail("k", 3)
	if d := th.wait("k", "other"); d != time.Second {
		t.Errorf("wait after 1 extra failure = %v, want 1s", d)
	}
	th.fail("k", 3)
	if d := th.wait("k"); d != 2*time.Second {
		t.Errorf("wait after 2 extra failures = %v, want 2s", d)
	}
	for range 40 {
		th.fail("k", 3)
	}
	if d := th.wait("k"); d != maxThrottleDelay {
		t.Errorf("wait after many failures = %v, want the cap %v", d, maxThrottleDelay)
	}
	now = now.Add(throttleForget + maxThrottleDelay)
	th.fail("k", 3)
	if d := th.wait("k"); d != 0 {
		t.Errorf("wait after a quiet hour and one failure = %v, want 0 (counts forgotten)", d)
	}
	th.succeed("k")
	if _, ok := th.m["k"]; ok {
		t.Error("succeed kept the entry")
	}
}

func FuzzParseAuthorize(f *testing.F) {
	c := &store.Client{ID: "c1", GrantTypes: []string{"authorization_code"}, Scopes: []string{"openid", "read"},
		RedirectURIs: []string{"https://app.example/cb", "http://127.0.0.1/cb"}}
	lookup := func(_ context.Context, id string) (*store.Client, error) {
		if id == c.ID {
			return c, nil
		}
		return nil, store.ErrNotFound
	}
	f.Add("response_type=code&client_id=c1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=openid&state=s&code_challenge=" + testChallenge + "&code_challenge_method=S256")
	f.Add("client_id=c1&redirect_uri=http%3A%2F%2F127.0.0.1%3A99%2Fcb&response_type=token&prompt=none%20login&max_age=x")
	f.Add("client_id=c1&client_id=c2")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, aerr, err := parseAuthorize(context.Background(), q, lookup)
		if err != nil {
			t.Fatalf("lookup fault from a fake lookup: %v", err)
		}
		if aerr == nil {
			if req.client != c || !matchRedirectURI(c.RedirectURIs, req.redirectURI) || !validChallenge(req.codeChallenge) ||
				q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || !coversAll(c.Scopes, req.scopes) {
				t.Fatalf("accepted a bad request %q: %+v", raw, req)
			}
			return
		}
		if aerr.redirect && (req.client == nil || !matchRedirectURI(c.RedirectURIs, req.redirectURI)) {
			t.Fatalf("error for %q would redirect to an unchecked URI %q", raw, req.redirectURI)
		}
		if aerr.code == "" {
			t.Fatalf("error without a code for %q", raw)
		}
	})
}

func FuzzParseTokenForm(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "", "grant_type=authorization_code&code=x&code_verifier=y")
	f.Add("application/x-www-form-urlencoded; charset=utf-8", "", "grant_type=refresh_token&refresh_token=a&refresh_token=b")
	f.Add("application/json", "", "{}")
	f.Add("application/x-www-form-urlencoded", "client_secret=x", "grant_type=client_credentials")
	f.Fuzz(func(t *testing.T, ct, rawQuery, body string) {
		form, err := parseForm(ct, rawQuery, []byte(body))
		if err != nil {
			return
		}
		if rawQuery != "" {
			t.Fatalf("accepted parameters in the query string %q", rawQuery)
		}
		for k, vs := range form {
			if len(vs) != 1 {
				t.Fatalf("accepted a repeated parameter %q", k)
			}
		}
		_ = validVerifier(form.Get("code_verifier"))
	})
}

func TestSafeReturnTo(t *testing.T) {
	for in, want := range map[string]string{
		"":                              ConsentsPath,
		AuthorizePath + "?client_id=x":  AuthorizePath + "?client_id=x",
		ConsentsPath:                    ConsentsPath,
		"https://evil.example/":         ConsentsPath,
		"//evil.example/authorize":      ConsentsPath,
		"/authorize/../../evil":         ConsentsPath,
		"/authorizex":                   ConsentsPath,
		"/authorize?x=1\r\nSet-Cookie:": ConsentsPath,
		"/authorize?\\evil":             ConsentsPath,
	} {
		if got := safeReturnTo(in); got != want {
			t.Errorf("safeReturnTo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDiscoveryListsBrowserFlow(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	md := e.p.Metadata()
	if md.AuthorizationEndpoint != e.issuer+AuthorizePath || md.UserinfoEndpoint != e.issuer+UserinfoPath ||
		md.EndSessionEndpoint != e.issuer+LogoutPath || !md.AuthorizationResponseISSSupported {
		t.Errorf("metadata endpoints %+v", md)
	}
	if !slices.Equal(md.CodeChallengeMethodsSupported, []string{"S256"}) || !slices.Equal(md.ResponseTypesSupported, []string{"code"}) {
		t.Errorf("code_challenge_methods %v, response_types %v; want [S256], [code]", md.CodeChallengeMethodsSupported, md.ResponseTypesSupported)
	}
	for _, g := range []string{"authorization_code", "refresh_token", "client_credentials"} {
		if !slices.Contains(md.GrantTypesSupported, g) {
			t.Errorf("grant_types_supported %v lacks %s", md.GrantTypesSupported, g)
		}
	}
	if slices.Contains(md.GrantTypesSupported, "password") || slices.Contains(md.GrantTypesSupported, "implicit") {
		t.Errorf("grant_types_supported %v lists a refused grant", md.GrantTypesSupported)
	}
}

// TestLoginRotatesCSRFCookie checks that signing in replaces the CSRF
// cookie: a value planted in the browser beforehand, with the token the
// planter fetched for it, no longer passes the check afterwards.
func TestLoginRotatesCSRFCookie(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	issuer, _ := url.Parse(e.issuer)
	csrfCookie := func(b *browser) string {
		for _, c := range b.hc.Jar.Cookies(issuer) {
			if c.Name == e.p.flow.csrfCookie {
				return c.Value
			}
		}
		return ""
	}
	attacker := e.browser(t)
	plantedForm := attacker.get(LoginPath).hidden()
	planted := csrfCookie(attacker)
	if planted == "" || plantedForm.Get("csrf_token") == "" {
		t.Fatal("the login page set no CSRF cookie or token")
	}

	victim := e.browser(t)
	victim.hc.Jar.SetCookies(issuer, []*http.Cookie{{Name: e.p.flow.csrfCookie, Value: planted, Path: "/"}})
	if pg := victim.login(victim.get(LoginPath), "ada", testPassword); pg.status != http.StatusOK {
		t.Fatalf("login: %d", pg.status)
	}
	if now := csrfCookie(victim); now == "" || now == planted {
		t.Fatalf("CSRF cookie after login = %q, want a new value", now)
	}
	plantedForm.Set("username", "ada")
	plantedForm.Set("password", testPassword)
	if got := victim.post(LoginPath, plantedForm); got.status != http.StatusForbidden {
		t.Errorf("form with the planted token after login: %d, want 403", got.status)
	}
	if got := victim.login(victim.get(LoginPath), "ada", testPassword); got.status != http.StatusOK {
		t.Errorf("form from a page after login: %d, want 200", got.status)
	}
}
