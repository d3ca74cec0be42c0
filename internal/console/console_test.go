package console_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

const (
	opPassword   = "operator password 1"
	userPassword = "user password 1"
)

// TestAccess: anonymous browsers go to the login page (and come back),
// users who are not operators get 403 and nothing of the console, and
// operators get the console with the security headers of every page.
func TestAccess(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ts := startServer(t, be.db(t))
			ts.createUser(t, "op", opPassword, true)
			plain := ts.createUser(t, "plain", userPassword, false)
			anon := ts.browser(t)
			user := ts.signIn(t, "plain", userPassword)
			op := ts.signIn(t, "op", opPassword)

			for _, tc := range []struct {
				name       string
				b          *browser
				path       string
				wantStatus int
				wantLoc    string
				wantBody   string
			}{
				{"anonymous home", anon, "/console", http.StatusSeeOther, "/login?return_to=%2Fconsole", ""},
				{"anonymous page", anon, "/console/clients", http.StatusSeeOther, "/login?return_to=%2Fconsole%2Fclients", ""},
				{"anonymous user page", anon, "/console/users/" + plain.ID, http.StatusSeeOther, "/login?return_to=%2Fconsole%2Fusers%2F" + plain.ID, ""},
				{"user home", user, "/console", http.StatusForbidden, "", "You are not an operator"},
				{"user clients", user, "/console/clients", http.StatusForbidden, "", "You are not an operator"},
				{"user signing keys", user, "/console/signing-keys", http.StatusForbidden, "", "You are not an operator"},
				{"operator home", op, "/console", http.StatusOK, "", `href="/console/clients"`},
				{"operator clients", op, "/console/clients", http.StatusOK, "", `<h1>Clients</h1>`},
				{"operator users", op, "/console/users", http.StatusOK, "", `<h1>Users</h1>`},
				{"operator signing keys", op, "/console/signing-keys", http.StatusOK, "", `<h1>Signing keys</h1>`},
				{"operator unknown client", op, "/console/clients/nope", http.StatusNotFound, "", "no such client"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					status, h, body := tc.b.get(tc.path)
					if status != tc.wantStatus {
						t.Fatalf("status %d, want %d", status, tc.wantStatus)
					}
					if h.Get("Location") != tc.wantLoc {
						t.Errorf("Location %q, want %q", h.Get("Location"), tc.wantLoc)
					}
					if !strings.Contains(body, tc.wantBody) {
						t.Errorf("body lacks %q", tc.wantBody)
					}
					if status == http.StatusForbidden && (strings.Contains(body, `href="/console/clients"`) || strings.Contains(body, "plain")) {
						t.Error("the 403 page shows console content")
					}
					if status != http.StatusSeeOther {
						if cc := h.Get("Cache-Control"); cc != "no-store" {
							t.Errorf("Cache-Control %q, want no-store", cc)
						}
						csp := h.Get("Content-Security-Policy")
						if !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
							t.Errorf("Content-Security-Policy %q", csp)
						}
					}
				})
			}

			// The login page returns to the console page asked for, and to
			// nothing else.
			b := ts.browser(t)
			if _, h, _ := b.login("op", opPassword, "/console/users"); h.Get("Location") != "/console/users" {
				t.Errorf("login returned to %q, want /console/users", h.Get("Location"))
			}
			for _, bad := range []string{"/console//evil.example", "/console/../admin", "/consolex", "/console/%0d%0a"} {
				b := ts.browser(t)
				if _, h, _ := b.login("op", opPassword, bad); h.Get("Location") != oauth.ConsentsPath {
					t.Errorf("login with return_to %q returned to %q", bad, h.Get("Location"))
				}
			}

			// Taking the admin role away takes the console away at once.
			u, err := ts.st.UserByUsername(t.Context(), "op")
			if err != nil {
				t.Fatal(err)
			}
			u.Admin = false
			if err := ts.st.UpdateUser(t.Context(), u); err != nil {
				t.Fatal(err)
			}
			if status, _, _ := op.get("/console"); status != http.StatusForbidden {
				t.Errorf("former operator: status %d, want 403", status)
			}
		})
	}
}

// TestDisabledOperatorCannotSignIn: a disabled user is refused at the
// login page with the same answer as a wrong password.
func TestDisabledOperatorCannotSignIn(t *testing.T) {
	ts := startServer(t, "")
	u := ts.createUser(t, "op", opPassword, true)
	if _, err := oauth.SetUserDisabled(t.Context(), ts.st, u.ID, true); err != nil {
		t.Fatal(err)
	}
	status, _, body := ts.browser(t).login("op", opPassword, "/console")
	if status != http.StatusUnauthorized || !strings.Contains(body, "Wrong username or password") {
		t.Errorf("disabled operator: status %d, want 401 and the wrong-password message", status)
	}
}

// fixture is what the forged-form tests act on.
type fixture struct {
	ts     *testServer
	op     *browser
	victim store.User
	victB  *browser
	client store.Client
}

func newFixture(t *testing.T, dbURL string) *fixture {
	ts := startServer(t, dbURL)
	ts.createUser(t, "op", opPassword, true)
	f := &fixture{ts: ts}
	f.victim = ts.createUser(t, "victim", userPassword, false)
	f.victB = ts.signIn(t, "victim", userPassword)
	f.op = ts.signIn(t, "op", opPassword)
	var err error
	f.client, _, err = oauth.CreateClient(t.Context(), ts.st, testHasher(t, ts), store.Client{ID: "svc", Name: "Service",
		GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.st.PutConsent(t.Context(), store.Consent{UserID: f.victim.ID, ClientID: "svc", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	return f
}

// snapshot is the state forged forms must not change.
func (f *fixture) snapshot(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	var b strings.Builder
	cs, err := f.ts.st.Clients(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		b.WriteString(c.ID + " " + c.Name + " " + strings.Join(c.RedirectURIs, ",") + " " + string(c.SecretHash) + "\n")
	}
	us, err := f.ts.st.Users(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		b.WriteString(u.ID + " " + u.Username + " " + u.PasswordHash + " " + boolStr(u.Disabled) + "\n")
	}
	ss, err := f.ts.st.SessionsByUser(ctx, f.victim.ID, timeNow())
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("sessions " + string(rune('0'+len(ss))) + "\n")
	cons, err := f.ts.st.Consents(ctx, f.victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("consents " + string(rune('0'+len(cons))) + "\n")
	for _, k := range f.ts.srv.Keys().Keys() {
		b.WriteString(k.ID + "\n")
	}
	return b.String()
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// postActions are every console form, with valid values.
func (f *fixture) postActions(t *testing.T) []struct {
	name string
	path string
	form url.Values
} {
	ss, err := f.ts.st.SessionsByUser(t.Context(), f.victim.ID, timeNow())
	if err != nil || len(ss) == 0 {
		t.Fatalf("victim's sessions: %v, %d", err, len(ss))
	}
	uid := f.victim.ID
	return []struct {
		name string
		path string
		form url.Values
	}{
		{"create client", "/console/clients", url.Values{"name": {"New"}, "grant_types": {"client_credentials"}}},
		{"update client", "/console/clients/svc", url.Values{"name": {"Renamed"}, "grant_types": {"client_credentials"}}},
		{"rotate secret", "/console/clients/svc/rotate-secret", url.Values{"grace": {"1h0m0s"}}},
		{"delete client", "/console/clients/svc/delete", nil},
		{"create user", "/console/users", url.Values{"username": {"new"}, "password": {"long enough 1"}, "password2": {"long enough 1"}}},
		{"reset password", "/console/users/" + uid + "/password", url.Values{"password": {"another one 1"}, "password2": {"another one 1"}}},
		{"disable user", "/console/users/" + uid + "/disable", nil},
		{"delete user", "/console/users/" + uid + "/delete", nil},
		{"end session", "/console/users/" + uid + "/sessions/" + ss[0].Handle() + "/delete", nil},
		{"end all sessions", "/console/users/" + uid + "/sessions/delete", nil},
		{"revoke consent", "/console/users/" + uid + "/consents/svc/revoke", nil},
		{"rotate signing key", "/console/signing-keys/rotate", url.Values{"alg": {"ES256"}, "mode": {"immediate"}}},
	}
}

// TestForgedForms: every console form with a forged, missing or
// cross-origin CSRF token, or posted by a user who is not an operator, is
// refused and changes nothing.
func TestForgedForms(t *testing.T) {
	f := newFixture(t, "")
	before := f.snapshot(t)
	forged := strings.Repeat("A", 43)
	for _, a := range f.postActions(t) {
		t.Run(a.name, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				b      *browser
				token  *string
				origin string
				want   int
			}{
				{"forged token", f.op, &forged, "", http.StatusForbidden},
				{"no token", f.op, new(""), "", http.StatusForbidden},
				{"other origin", f.op, nil, "https://evil.example", http.StatusForbidden},
				{"not an operator", f.victB, nil, "", http.StatusForbidden},
			} {
				form := url.Values{}
				for k, v := range a.form {
					form[k] = v
				}
				if tc.token != nil {
					form.Set("csrf_token", *tc.token)
				} else {
					form.Set("csrf_token", tc.b.csrf)
				}
				req, _ := http.NewRequest(http.MethodPost, f.ts.base+a.path, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if tc.origin != "" {
					req.Header.Set("Origin", tc.origin)
				}
				status, _, body := tc.b.do(req)
				if status != tc.want {
					t.Errorf("%s: status %d, want %d", tc.name, status, tc.want)
				}
				if tc.b == f.op && !strings.Contains(body, "Nothing was changed") {
					t.Errorf("%s: the page does not say nothing was changed", tc.name)
				}
			}
			if after := f.snapshot(t); after != before {
				t.Fatalf("state changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
	// The same forms with the operator's token do work (so the test above
	// can fail): each changes the state of a fresh fixture.
	for i := range f.postActions(t) {
		f := newFixture(t, "")
		a := f.postActions(t)[i]
		before := f.snapshot(t)
		if status, _, _ := f.op.post(a.path, a.form); status >= 400 {
			t.Errorf("%s with a valid token: status %d", a.name, status)
		} else if f.snapshot(t) == before {
			t.Errorf("%s with a valid token changed nothing", a.name)
		}
	}
}

// TestOversizedForm: a form post over 64 KiB is refused with 413 and a
// clear message, and nothing is stored.
func TestOversizedForm(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	op := ts.signIn(t, "op", opPassword)
	form := url.Values{"csrf_token": {op.csrf}, "name": {strings.Repeat("x", 70<<10)}, "grant_types": {"client_credentials"}}
	status, _, body := op.postRaw("/console/clients", form.Encode())
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than the console accepts") {
		t.Errorf("status %d, want 413 with a message", status)
	}
	if cs, err := ts.st.Clients(t.Context(), "", 0); err != nil || len(cs) != 0 {
		t.Errorf("clients after the oversized post: %d, %v", len(cs), err)
	}
}

// TestEscaping: HTML in names, usernames and searches is shown as text.
func TestEscaping(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	op := ts.signIn(t, "op", opPassword)
	const evil = `<script>alert(1)</script><img src=x onerror=alert(2)>`
	status, _, body := op.post("/console/clients", url.Values{"name": {evil}, "grant_types": {"client_credentials"}})
	if status != http.StatusCreated {
		t.Fatalf("create client: status %d", status)
	}
	id := inputValue(t, body, "client-id")
	u := ts.createUser(t, "<b>bold</b>", userPassword, false)
	for _, path := range []string{"/console/clients", "/console/clients/" + id, "/console/clients?q=" + url.QueryEscape(evil),
		"/console/users", "/console/users/" + u.ID, "/console/users?q=" + url.QueryEscape("<b>")} {
		_, _, body := op.get(path)
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") || strings.Contains(body, "<b>bold") {
			t.Errorf("%s renders HTML from data", path)
		}
		if !strings.Contains(body, "&lt;") {
			t.Errorf("%s does not show the escaped text", path)
		}
	}
}

// TestNoticeIsFixedText: ?done= shows only the console's own messages.
func TestNoticeIsFixedText(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	op := ts.signIn(t, "op", opPassword)
	if _, _, body := op.get("/console/clients?done=" + url.QueryEscape("Send your password to evil.example")); strings.Contains(body, "evil.example") {
		t.Error("the page shows text from the URL")
	}
	if _, _, body := op.get("/console/clients?done=client-deleted"); !strings.Contains(body, "The client was deleted.") {
		t.Error("the page does not show a known notice")
	}
}

// testHasher hashes the secrets of clients made outside the server in
// tests (their secrets are never used).
func testHasher(t *testing.T, _ *testServer) *secret.Hasher {
	h, err := secret.NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func timeNow() time.Time { return time.Now() }
