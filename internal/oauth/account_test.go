package oauth

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

var sessionHandleRe = regexp.MustCompile(`name="session" value="([^"]+)"`)

// signIn returns a new browser signed in as username with pw.
func (e *flowEnv) signIn(t *testing.T, username, pw string) *browser {
	t.Helper()
	b := e.browser(t)
	pg := b.login(b.get(LoginPath+"?return_to="+AccountPath), username, pw)
	if pg.status != http.StatusOK || !strings.Contains(pg.body, `id="signed-in-as"`) {
		t.Fatalf("sign in as %s: %d, want the account page; body %s", username, pg.status, pg.body)
	}
	return b
}

// signedIn reports whether b's session still works.
func (b *browser) signedIn() bool {
	b.t.Helper()
	pg := b.get(AccountPath)
	return pg.status == http.StatusOK && !strings.Contains(pg.body, `name="password"`)
}

// accountCSRF returns a fresh CSRF token from one of b's account pages.
func (b *browser) accountCSRF() string {
	b.t.Helper()
	return b.get(PasswordPath).hidden().Get("csrf_token")
}

func addUser(t *testing.T, st *store.Store, id, username, pw string) {
	t.Helper()
	h, err := password.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(context.Background(), store.User{ID: id, Username: username, PasswordHash: h}); err != nil {
		t.Fatal(err)
	}
}

func auditEvents(t *testing.T, st *store.Store, event string) []store.AuditEvent {
	t.Helper()
	evs, err := st.AuditEvents(context.Background(), store.AuditFilter{Event: event})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestAccountPagesNeedSignIn(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	b := e.browser(t)
	for _, path := range []string{AccountPath, SessionsPath, PasswordPath} {
		pg := b.get(path)
		if pg.status != http.StatusOK || !strings.Contains(pg.body, `name="password"`) ||
			!strings.Contains(pg.body, `name="return_to" value="`+path+`"`) {
			t.Errorf("GET %s signed out: %d, want the login page returning there; body %s", path, pg.status, pg.body)
		}
	}
	// A form posted without a session or CSRF token changes nothing.
	for _, path := range []string{SessionsPath + "/end", SessionsPath + "/end-others", PasswordPath} {
		if pg := b.post(path, url.Values{"session": {"x"}}); pg.status != http.StatusForbidden {
			t.Errorf("POST %s without CSRF token: %d, want 403", path, pg.status)
		}
	}
	if pg := b.get(AccountPath + "/"); pg.status != http.StatusOK || !strings.Contains(pg.body, `value="/account"`) {
		t.Errorf("GET /account/: %d, want a redirect to /account", pg.status)
	}
}

func TestAccountHome(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	b := e.signIn(t, "ada", testPassword)
	e.signIn(t, "ada", testPassword)
	pg := b.get(AccountPath)
	for _, want := range []string{"Ada Lovelace", "ada@example.com", "in 2 browsers", `aria-current="page">Account<`,
		`href="/account/sessions"`, `href="/account/password"`, `href="/account/apikeys"`, `href="/account/consents"`} {
		if !strings.Contains(pg.body, want) {
			t.Errorf("account page lacks %q; body %s", want, pg.body)
		}
	}
	if strings.Contains(pg.body, `href="/console"`) {
		t.Error("account page of a non-operator links to the console")
	}
	checkPageHeaders(t, pg)
	// Every account page carries the shared navigation.
	for _, path := range []string{SessionsPath, PasswordPath, ConsentsPath} {
		if pg := b.get(path); !strings.Contains(pg.body, `<nav class="account-nav" aria-label="Your account">`) ||
			!strings.Contains(pg.body, `aria-current="page"`) {
			t.Errorf("%s lacks the account navigation", path)
		}
	}
}

func checkPageHeaders(t *testing.T, pg page) {
	t.Helper()
	if cc := pg.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	if csp := pg.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}

func TestAccountSessions(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newFlowEnv(t, open, nil)
		addUser(t, e.st, "user-2", "bob", "bob's password")
		a := e.signIn(t, "ada", testPassword)
		b := e.signIn(t, "ada", testPassword)
		bob := e.signIn(t, "bob", "bob's password")

		pg := a.get(SessionsPath)
		checkPageHeaders(t, pg)
		handles := sessionHandleRe.FindAllStringSubmatch(pg.body, -1)
		if pg.status != 200 || len(handles) != 1 || strings.Count(pg.body, "(this session)") != 1 ||
			!strings.Contains(pg.body, "Go HTTP client") || !strings.Contains(pg.body, "127.0.0.1") {
			t.Fatalf("sessions page: %d, %d other sessions listed, want 1, this one marked; body %s", pg.status, len(handles), pg.body)
		}
		csrf := pg.hidden().Get("csrf_token")

		// Bob's session, a made-up one and a forged form: 404 or 403 and nothing changes.
		bobHandle := sessionHandleRe.FindStringSubmatch(bob.get(SessionsPath).body)
		if bobHandle != nil {
			t.Fatalf("bob has one session but the page offers to end %v", bobHandle)
		}
		bobSessions, err := e.st.SessionsByUser(context.Background(), "user-2", e.clock.Now())
		if err != nil || len(bobSessions) != 1 {
			t.Fatalf("bob's sessions: %v, %v", bobSessions, err)
		}
		for _, h := range []string{bobSessions[0].Handle(), "nonsense", strings.Repeat("A", 5000), ""} {
			if pg := a.post(SessionsPath+"/end", url.Values{"csrf_token": {csrf}, "session": {h}}); pg.status != http.StatusNotFound {
				t.Errorf("ending session %.30q: %d, want 404", h, pg.status)
			}
		}
		if pg := a.post(SessionsPath+"/end", url.Values{"csrf_token": {"forged" + csrf[6:]}, "session": {handles[0][1]}}); pg.status != http.StatusForbidden {
			t.Errorf("forged CSRF token: %d, want 403", pg.status)
		}
		if pg := b.post(SessionsPath+"/end-others", url.Values{"csrf_token": {csrf}}); pg.status != http.StatusForbidden {
			t.Errorf("another browser's CSRF token: %d, want 403", pg.status)
		}
		if !bob.signedIn() || !b.signedIn() {
			t.Fatal("a refused request signed someone out")
		}

		// End b from a: b's next request is signed out.
		pg = a.post(SessionsPath+"/end", url.Values{"csrf_token": {csrf}, "session": {handles[0][1]}})
		if pg.status != 200 || !strings.Contains(pg.body, "The session was signed out.") || sessionHandleRe.MatchString(pg.body) {
			t.Errorf("after ending b: %d; body %s", pg.status, pg.body)
		}
		if b.signedIn() {
			t.Error("b is still signed in after a ended its session")
		}
		if !a.signedIn() || !bob.signedIn() {
			t.Error("ending b signed out a or bob")
		}

		// Sign out every other session.
		c, d := e.signIn(t, "ada", testPassword), e.signIn(t, "ada", testPassword)
		pg = a.post(SessionsPath+"/end-others", url.Values{"csrf_token": {a.accountCSRF()}})
		if pg.status != 200 || !strings.Contains(pg.body, "2 other sessions were signed out.") ||
			!strings.Contains(pg.body, "You are not signed in anywhere else.") {
			t.Errorf("after ending the others: %d; body %s", pg.status, pg.body)
		}
		if c.signedIn() || d.signedIn() {
			t.Error("another session survived sign out other sessions")
		}
		if !a.signedIn() || !bob.signedIn() {
			t.Error("sign out other sessions signed out this session or bob")
		}
		if evs := auditEvents(t, e.st, EventSessionEndOthers); len(evs) != 1 || evs[0].Actor != "user:user-1" ||
			strings.ReplaceAll(string(evs[0].Details), " ", "") != `{"ended":2}` {
			t.Errorf("audit of end-others = %+v", evs)
		}
		if evs := auditEvents(t, e.st, EventSessionEnd); len(evs) != 1 || evs[0].Target != "user-1" {
			t.Errorf("audit of ending one session = %+v", evs)
		}
	})
}

func TestAccountSessionEndsOwn(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	a := e.signIn(t, "ada", testPassword)
	sessions, err := e.st.SessionsByUser(context.Background(), "user-1", e.clock.Now())
	if err != nil || len(sessions) != 1 {
		t.Fatal(sessions, err)
	}
	pg := a.post(SessionsPath+"/end", url.Values{"csrf_token": {a.accountCSRF()}, "session": {sessions[0].Handle()}})
	if pg.status != 200 || !strings.Contains(pg.body, `name="password"`) || a.signedIn() {
		t.Errorf("ending this session: %d, want the login page and no session", pg.status)
	}
}

func TestSessionLastSeen(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	a := e.signIn(t, "ada", testPassword)
	e.clock.Advance(time.Second) // b is the newer session
	b := e.signIn(t, "ada", testPassword)
	last := func() time.Time {
		t.Helper()
		ss, err := e.st.SessionsByUser(context.Background(), "user-1", e.clock.Now())
		if err != nil || len(ss) != 2 {
			t.Fatal(ss, err)
		}
		return ss[1].LastSeenAt // a's: the older one
	}
	a.get(AccountPath)
	if got := last(); !got.IsZero() {
		t.Errorf("last seen right after sign-in = %v, want not recorded yet", got)
	}
	e.clock.Advance(6 * time.Minute)
	a.get(AccountPath)
	want := e.clock.Now().Truncate(time.Millisecond)
	if got := last(); !got.Equal(want) {
		t.Errorf("last seen after use = %v, want %v", got, want)
	}
	if pg := b.get(SessionsPath); !strings.Contains(pg.body, "<time datetime=\""+want.UTC().Format(time.RFC3339)+"\"") {
		t.Errorf("sessions page does not show a's last use at %v; body %s", want, pg.body)
	}
}

func TestChangePassword(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newFlowEnv(t, open, nil)
		a := e.signIn(t, "ada", testPassword)
		other := e.signIn(t, "ada", testPassword)
		q := e.authorizeQuery()
		code := e.runToCode(t, a, q).Get("code")
		_, tr := e.exchange(t, code, testVerifier, q.Get("redirect_uri"))

		pg := a.get(PasswordPath)
		checkPageHeaders(t, pg)
		for _, want := range []string{`<label for="current-password">`, `<label for="new-password">`, `<label for="confirm-password">`,
			`autocomplete="new-password"`, `minlength="8"`} {
			if !strings.Contains(pg.body, want) {
				t.Errorf("password page lacks %q", want)
			}
		}
		csrf := pg.hidden().Get("csrf_token")
		const newPW = "a much better passphrase"
		for _, tc := range []struct {
			name                  string
			current, next, repeat string
			status                int
			msg                   string
		}{
			{"no current", "", newPW, newPW, 400, "Enter your current password."},
			{"short", testPassword, "short", "short", 400, "at least 8 characters"},
			{"long", testPassword, strings.Repeat("x", 1025), strings.Repeat("x", 1025), 400, "at most 1024"},
			{"differ", testPassword, newPW, newPW + "!", 400, "The two new passwords differ."},
			{"wrong current", "guess", newPW, newPW, 401, "Your current password is wrong."},
		} {
			pg := a.post(PasswordPath, url.Values{"csrf_token": {csrf}, "current_password": {tc.current},
				"new_password": {tc.next}, "confirm_password": {tc.repeat}})
			if pg.status != tc.status || !strings.Contains(pg.body, tc.msg) {
				t.Errorf("%s: %d, want %d with %q; body %s", tc.name, pg.status, tc.status, tc.msg, pg.body)
			}
		}
		if pg := a.post(PasswordPath, url.Values{"csrf_token": {"x"}, "current_password": {testPassword},
			"new_password": {newPW}, "confirm_password": {newPW}}); pg.status != http.StatusForbidden {
			t.Errorf("forged CSRF token: %d, want 403", pg.status)
		}
		if !other.signedIn() {
			t.Fatal("a refused password change signed out the other session")
		}

		// Success: other sessions end, this one continues, tokens are revoked.
		pg = a.post(PasswordPath, url.Values{"csrf_token": {csrf}, "current_password": {testPassword},
			"new_password": {newPW}, "confirm_password": {newPW}})
		if pg.status != 200 || !strings.Contains(pg.body, "Your password was changed. Your other session was signed out.") {
			t.Fatalf("change password: %d; body %s", pg.status, pg.body)
		}
		if other.signedIn() {
			t.Error("the other session survived the password change")
		}
		if !a.signedIn() {
			t.Error("the browser that changed the password was signed out")
		}
		if st, _ := e.refresh(t, tr["refresh_token"].(string), ""); st == 200 {
			t.Error("refresh token still works after the password change")
		}
		if nb := e.browser(t); nb.login(nb.get(LoginPath), "ada", testPassword).status != http.StatusUnauthorized {
			t.Error("the old password still signs in")
		}
		e.signIn(t, "ada", newPW)
		if evs := auditEvents(t, e.st, EventPasswordChange); len(evs) != 1 || evs[0].Actor != "user:user-1" {
			t.Errorf("audit of password change = %+v", evs)
		}
	})
}

func TestChangePasswordThrottled(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	a := e.signIn(t, "ada", testPassword)
	csrf := a.accountCSRF()
	form := func(current string) url.Values {
		return url.Values{"csrf_token": {csrf}, "current_password": {current},
			"new_password": {"a new password"}, "confirm_password": {"a new password"}}
	}
	for i := range accountFreeFailures + 1 {
		if pg := a.post(PasswordPath, form("guess")); pg.status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d, want 401", i+1, pg.status)
		}
	}
	pg := a.post(PasswordPath, form(testPassword))
	if pg.status != http.StatusTooManyRequests || pg.header.Get("Retry-After") == "" {
		t.Errorf("right password while throttled: %d, want 429 with Retry-After", pg.status)
	}
	// The same throttle guards the login page.
	if nb := e.browser(t); nb.login(nb.get(LoginPath), "ada", testPassword).status != http.StatusTooManyRequests {
		t.Error("login while the password page is throttled: want 429")
	}
	e.clock.Advance(time.Minute)
	if pg := a.post(PasswordPath, form(testPassword)); pg.status != 200 || !strings.Contains(pg.body, "Your password was changed.") {
		t.Errorf("after the wait: %d; body %s", pg.status, pg.body)
	}
}
