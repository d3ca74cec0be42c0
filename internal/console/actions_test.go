package console_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// tokenWith gets a client-credentials token with id and secret, or an
// error.
func tokenWith(t *testing.T, ts *testServer, id, secret string) error {
	t.Helper()
	cfg := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: ts.base + "/token", Scopes: []string{"read"}}
	_, err := cfg.Token(t.Context())
	return err
}

// TestClientActions: create (secret shown once and usable), edit, refused
// edits re-rendered with the error next to the field and nothing stored,
// rotate with grace, delete.
func TestClientActions(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ts := startServer(t, be.db(t))
			ts.createUser(t, "op", opPassword, true)
			op := ts.signIn(t, "op", opPassword)
			ctx := t.Context()

			status, _, page := op.post("/console/clients", url.Values{"id": {"billing"}, "name": {"Billing"},
				"grant_types": {"client_credentials"}, "scopes": {"read write"}, "access_ttl": {"5m"}, "audiences": {"https://api.example\n"}})
			if status != http.StatusCreated || !strings.Contains(page, "you won’t see it again") {
				t.Fatalf("create: status %d", status)
			}
			secret := inputValue(t, page, "client-secret")
			if err := tokenWith(t, ts, "billing", secret); err != nil {
				t.Fatalf("token with the secret shown: %v", err)
			}
			c, err := ts.st.Client(ctx, "billing")
			if err != nil || c.AccessTokenTTL != 5*time.Minute || strings.Join(c.Scopes, " ") != "read write" ||
				strings.Join(c.Audiences, " ") != "https://api.example" {
				t.Fatalf("stored client = %+v, %v", c, err)
			}
			// The secret is never shown again.
			if _, _, page := op.get("/console/clients/billing"); strings.Contains(page, secret) {
				t.Error("the client page shows the secret")
			}
			// A taken ID.
			status, _, page = op.post("/console/clients", url.Values{"id": {"billing"}, "name": {"Again"}, "grant_types": {"client_credentials"}})
			if status != http.StatusConflict || !strings.Contains(page, `id="id-error"`) {
				t.Errorf("taken ID: status %d, want 409 with the error at the ID", status)
			}

			// Edit: a code-flow client gets redirect URIs.
			status, h, _ := op.post("/console/clients/billing", url.Values{"name": {"Billing app"},
				"grant_types": {"client_credentials", "authorization_code"}, "scopes": {"read"},
				"redirect_uris": {"https://app.example/cb\r\nhttp://127.0.0.1:8080/cb"}, "auth_method": {"client_secret_basic"}})
			if status != http.StatusSeeOther || h.Get("Location") != "/console/clients/billing?done=client-updated" {
				t.Fatalf("update: status %d, Location %q", status, h.Get("Location"))
			}
			if c, err = ts.st.Client(ctx, "billing"); err != nil || c.Name != "Billing app" ||
				strings.Join(c.RedirectURIs, " ") != "https://app.example/cb http://127.0.0.1:8080/cb" {
				t.Fatalf("after update: %+v, %v", c, err)
			}

			// Refused edits: the form comes back with the message at the
			// field, as typed, and nothing changes.
			for _, tc := range []struct {
				name  string
				form  url.Values
				field string
			}{
				{"http redirect", url.Values{"name": {"X"}, "grant_types": {"authorization_code"}, "redirect_uris": {"http://evil.example/cb"}}, "redirect_uris"},
				{"no redirect", url.Values{"name": {"X"}, "grant_types": {"authorization_code"}}, "redirect_uris"},
				{"empty name", url.Values{"name": {""}, "grant_types": {"client_credentials"}}, "name"},
				{"bad lifetime", url.Values{"name": {"X"}, "grant_types": {"client_credentials"}, "access_ttl": {"soon"}}, "access_ttl"},
				{"long lifetime", url.Values{"name": {"X"}, "grant_types": {"client_credentials"}, "access_ttl": {"48h"}}, "access_ttl"},
				{"bad scope", url.Values{"name": {"X"}, "grant_types": {"client_credentials"}, "scopes": {`a"b`}}, "scopes"},
				{"bad grant", url.Values{"name": {"X"}, "grant_types": {"password"}}, "grant_types"},
				{"bad alg", url.Values{"name": {"X"}, "grant_types": {"client_credentials"}, "access_alg": {"none"}}, "access_alg"},
			} {
				before, _ := ts.st.Client(ctx, "billing")
				status, _, page := op.post("/console/clients/billing", tc.form)
				if status != http.StatusBadRequest || !strings.Contains(page, `id="`+tc.field+`-error"`) {
					t.Errorf("%s: status %d, want 400 with an error at %s", tc.name, status, tc.field)
				}
				if v := tc.form.Get("name"); v != "" && !strings.Contains(page, `value="`+v+`"`) {
					t.Errorf("%s: the form does not keep what was typed", tc.name)
				}
				if after, _ := ts.st.Client(ctx, "billing"); !after.UpdatedAt.Equal(before.UpdatedAt) {
					t.Errorf("%s: the client changed", tc.name)
				}
			}

			// Rotate with a grace period: both secrets work; the new one is
			// shown once.
			status, _, page = op.post("/console/clients/billing/rotate-secret", url.Values{"grace": {"1h0m0s"}})
			if status != http.StatusOK {
				t.Fatalf("rotate: status %d", status)
			}
			// Servers see client changes through the change feed (100 ms
			// polls on SQLite): wait for the new secret to work.
			newSecret := inputValue(t, page, "client-secret")
			if newSecret == secret || !eventually(func() bool { return tokenWith(t, ts, "billing", newSecret) == nil }) ||
				tokenWith(t, ts, "billing", secret) != nil {
				t.Error("after a rotation with grace, both secrets must work")
			}
			// Without grace the old secret stops at once.
			_, _, page = op.post("/console/clients/billing/rotate-secret", url.Values{"grace": {"0s"}})
			third := inputValue(t, page, "client-secret")
			if !eventually(func() bool { return tokenWith(t, ts, "billing", third) == nil }) || tokenWith(t, ts, "billing", newSecret) == nil {
				t.Error("after a rotation without grace, only the new secret may work")
			}
			if status, _, _ := op.post("/console/clients/billing/rotate-secret", url.Values{"grace": {"forever"}}); status != http.StatusBadRequest {
				t.Errorf("bad grace: status %d", status)
			}

			// A public client has no secret: no secret page, no rotation.
			status, h, _ = op.post("/console/clients", url.Values{"id": {"spa"}, "name": {"SPA"}, "public": {"on"},
				"grant_types": {"authorization_code"}, "redirect_uris": {"https://spa.example/cb"}})
			if status != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/clients/spa") {
				t.Fatalf("create public client: status %d, Location %q", status, h.Get("Location"))
			}
			if status, _, _ := op.post("/console/clients/spa/rotate-secret", url.Values{"grace": {"0s"}}); status != http.StatusBadRequest {
				t.Errorf("rotate a public client: status %d, want 400", status)
			}

			// Delete.
			status, h, _ = op.post("/console/clients/billing/delete", nil)
			if status != http.StatusSeeOther || h.Get("Location") != "/console/clients?done=client-deleted" {
				t.Fatalf("delete: status %d, Location %q", status, h.Get("Location"))
			}
			if _, err := ts.st.Client(ctx, "billing"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("after delete: %v", err)
			}
			if !eventually(func() bool { return tokenWith(t, ts, "billing", third) != nil }) {
				t.Error("a deleted client still gets tokens")
			}
			if status, _, _ := op.post("/console/clients/billing/delete", nil); status != http.StatusNotFound {
				t.Errorf("delete twice: status %d, want 404", status)
			}
			// Every action is in the audit log, with the operator.
			evs, err := ts.st.AuditEvents(ctx, store.AuditFilter{Target: "billing"})
			if err != nil || len(evs) < 4 || !strings.HasPrefix(evs[0].Actor, "user:") {
				t.Errorf("audit events for billing: %d, %v", len(evs), err)
			}
		})
	}
}

// TestListPaging: 50 rows a page, keyset cursors, prefix search.
func TestListPaging(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ts := startServer(t, be.db(t))
			ts.createUser(t, "op", opPassword, true)
			op := ts.signIn(t, "op", opPassword)
			ctx := t.Context()
			for i := range 120 {
				if _, err := ts.st.CreateClient(ctx, store.Client{ID: fmt.Sprintf("c%03d", i), Name: fmt.Sprintf("Name %03d", i)}); err != nil {
					t.Fatal(err)
				}
				u := store.User{ID: fmt.Sprintf("u%03d", i), Username: fmt.Sprintf("user%03d", i), PasswordHash: "x"}
				if err := ts.st.CreateUser(ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range []struct {
				path  string
				rows  []int // rows per page
				first string
			}{
				{"/console/clients", []int{50, 50, 20}, "c000"},
				{"/console/clients?q=c11", []int{10}, "c110"},
				{"/console/clients?q=" + url.QueryEscape("Name 05"), []int{10}, "c050"},
				{"/console/users", []int{50, 50, 21}, "op"}, // 120 users and the operator
				{"/console/users?q=user1", []int{20}, "user100"},
				{"/console/users?q=nobody", []int{0}, ""},
			} {
				path := tc.path
				for i, want := range tc.rows {
					status, _, page := op.get(path)
					if status != http.StatusOK {
						t.Fatalf("%s: status %d", path, status)
					}
					if got := strings.Count(page, `<th scope="row">`); got != want {
						t.Errorf("%s page %d: %d rows, want %d", tc.path, i+1, got, want)
					}
					if i == 0 && tc.first != "" && !strings.Contains(page, ">"+tc.first+"<") {
						t.Errorf("%s: first row is not %s", tc.path, tc.first)
					}
					next := ""
					if m := nextRE.FindStringSubmatch(page); m != nil {
						next = strings.ReplaceAll(m[1], "&amp;", "&")
					}
					if last := i == len(tc.rows)-1; last != (next == "") {
						t.Fatalf("%s page %d: next link %q", tc.path, i+1, next)
					}
					path = next
				}
			}
		})
	}
}

// TestUserActions: create with field errors, reset password, disable and
// enable, end sessions (the user's next request is signed out), revoke a
// consent, delete; an operator cannot lock themselves out.
func TestUserActions(t *testing.T) {
	ts := startServer(t, "")
	opUser := ts.createUser(t, "op", opPassword, true)
	op := ts.signIn(t, "op", opPassword)
	ctx := t.Context()

	for _, tc := range []struct {
		name  string
		form  url.Values
		field string
	}{
		{"mismatch", url.Values{"username": {"ann"}, "password": {"long enough 1"}, "password2": {"long enough 2"}}, "password2"},
		{"short password", url.Values{"username": {"ann"}, "password": {"short"}, "password2": {"short"}}, "password"},
		{"spaces", url.Values{"username": {" ann"}, "password": {"long enough 1"}, "password2": {"long enough 1"}}, "username"},
		{"bad email", url.Values{"username": {"ann"}, "email": {"not an address"}, "password": {"long enough 1"}, "password2": {"long enough 1"}}, "email"},
		{"taken", url.Values{"username": {"op"}, "password": {"long enough 1"}, "password2": {"long enough 1"}}, "username"},
	} {
		status, _, page := op.post("/console/users", tc.form)
		if status < 400 || !strings.Contains(page, `id="`+tc.field+`-error"`) {
			t.Errorf("%s: status %d, want an error at %s", tc.name, status, tc.field)
		}
	}
	if us, _ := ts.st.Users(ctx, "", 0); len(us) != 1 {
		t.Fatalf("refused forms stored users: %d", len(us))
	}
	status, h, _ := op.post("/console/users", url.Values{"username": {"ann"}, "email": {"ann@example.com"},
		"password": {"ann password 1"}, "password2": {"ann password 1"}})
	if status != http.StatusSeeOther {
		t.Fatalf("create user: status %d", status)
	}
	ann, err := ts.st.UserByUsername(ctx, "ann")
	if err != nil || ann.Admin || ann.Email != "ann@example.com" || h.Get("Location") != "/console/users/"+ann.ID+"?done=user-created" {
		t.Fatalf("created user %+v, %v; Location %q", ann, err, h.Get("Location"))
	}

	// Ann's two browsers; the operator ends one session, then all.
	ann1, ann2 := ts.signIn(t, "ann", "ann password 1"), ts.signIn(t, "ann", "ann password 1")
	signedIn := func(b *browser) bool {
		status, _, _ := b.get("/account/apikeys")
		return status == http.StatusOK && !strings.Contains(bodyOf(b, "/account/apikeys"), `action="/login"`)
	}
	if !signedIn(ann1) || !signedIn(ann2) {
		t.Fatal("ann is not signed in")
	}
	_, _, page := op.get("/console/users/" + ann.ID)
	handles := handleRE.FindAllStringSubmatch(page, -1)
	if len(handles) != 2 {
		t.Fatalf("user page lists %d sessions, want 2", len(handles))
	}
	ss, _ := ts.st.SessionsByUser(ctx, ann.ID, time.Now())
	// The newest session is ann2's.
	if status, _, _ := op.post("/console/users/"+ann.ID+"/sessions/"+ss[0].Handle()+"/delete", nil); status != http.StatusSeeOther {
		t.Fatalf("end session: status %d", status)
	}
	if signedIn(ann2) || !signedIn(ann1) {
		t.Error("ending one session must sign out that browser only")
	}
	if status, _, _ := op.post("/console/users/"+ann.ID+"/sessions/"+ss[0].Handle()+"/delete", nil); status != http.StatusNotFound {
		t.Errorf("end an ended session: status %d, want 404", status)
	}
	// Another user's session handle under ann's ID is not found.
	opSessions, _ := ts.st.SessionsByUser(ctx, opUser.ID, time.Now())
	if status, _, _ := op.post("/console/users/"+ann.ID+"/sessions/"+opSessions[0].Handle()+"/delete", nil); status != http.StatusNotFound {
		t.Errorf("someone else's session: status %d, want 404", status)
	}
	if status, _, _ := op.post("/console/users/"+ann.ID+"/sessions/delete", nil); status != http.StatusSeeOther || signedIn(ann1) {
		t.Error("ending all sessions must sign ann out")
	}
	if !signedIn(op) {
		t.Error("the operator was signed out too")
	}

	// Reset password: the old one stops working.
	status, _, page = op.post("/console/users/"+ann.ID+"/password", url.Values{"password": {"short"}, "password2": {"short"}})
	if status != http.StatusBadRequest || !strings.Contains(page, `id="password-error"`) {
		t.Errorf("short reset: status %d", status)
	}
	if status, _, _ := op.post("/console/users/"+ann.ID+"/password", url.Values{"password": {"new ann pass 1"}, "password2": {"new ann pass 1"}}); status != http.StatusSeeOther {
		t.Fatalf("reset: status %d", status)
	}
	if status, _, _ := ts.browser(t).login("ann", "ann password 1", "/console"); status != http.StatusUnauthorized {
		t.Errorf("old password after reset: status %d", status)
	}
	ann1 = ts.signIn(t, "ann", "new ann pass 1")

	// Disable: signed out and cannot sign in; enable again.
	if status, _, _ := op.post("/console/users/"+ann.ID+"/disable", nil); status != http.StatusSeeOther {
		t.Fatalf("disable: status %d", status)
	}
	if signedIn(ann1) {
		t.Error("a disabled user is still signed in")
	}
	if status, _, _ := ts.browser(t).login("ann", "new ann pass 1", "/console"); status != http.StatusUnauthorized {
		t.Errorf("disabled user signs in: status %d", status)
	}
	if status, _, _ := op.post("/console/users/"+ann.ID+"/enable", nil); status != http.StatusSeeOther {
		t.Fatalf("enable: status %d", status)
	}
	ts.signIn(t, "ann", "new ann pass 1")

	// Consents.
	if _, err := ts.st.CreateClient(ctx, store.Client{ID: "app", Name: "App"}); err != nil {
		t.Fatal(err)
	}
	if err := ts.st.PutConsent(ctx, store.Consent{UserID: ann.ID, ClientID: "app", Scopes: []string{"openid"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, page := op.get("/console/users/" + ann.ID); !strings.Contains(page, "/consents/app/revoke") {
		t.Error("the user page does not list the consent")
	}
	if status, _, _ := op.post("/console/users/"+ann.ID+"/consents/app/revoke", nil); status != http.StatusSeeOther {
		t.Errorf("revoke consent: status %d", status)
	}
	if _, err := ts.st.Consent(ctx, ann.ID, "app"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("consent after revoke: %v", err)
	}

	// The operator cannot disable or delete their own account.
	for _, action := range []string{"disable", "delete"} {
		if status, _, _ := op.post("/console/users/"+opUser.ID+"/"+action, nil); status != http.StatusBadRequest {
			t.Errorf("%s self: status %d, want 400", action, status)
		}
	}
	if u, err := ts.st.User(ctx, opUser.ID); err != nil || u.Disabled {
		t.Errorf("operator after self-lockout attempts: %+v, %v", u, err)
	}

	// Delete.
	if status, _, _ := op.post("/console/users/"+ann.ID+"/delete", nil); status != http.StatusSeeOther {
		t.Fatalf("delete: status %d", status)
	}
	if _, err := ts.st.User(ctx, ann.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

// TestSigningKeyRotation: "rotate now" publishes a next key; "immediately"
// makes a new key active at once, as `gatehouse keys rotate`.
func TestSigningKeyRotation(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	op := ts.signIn(t, "op", opPassword)
	state := func(alg string) map[string]int {
		n := map[string]int{}
		for _, k := range ts.srv.Keys().Keys() {
			if string(k.Algorithm) == alg {
				n[k.State(time.Now())]++
			}
		}
		return n
	}
	if n := state("ES256"); n["active"] != 1 || n["next"] != 0 {
		t.Fatalf("ES256 keys at start: %v", n)
	}
	_, _, page := op.get("/console/signing-keys")
	if strings.Count(page, `class="key-active"`) != 3 {
		t.Errorf("page shows %d active keys, want 3", strings.Count(page, `class="key-active"`))
	}
	if status, h, _ := op.post("/console/signing-keys/rotate", url.Values{"alg": {"ES256"}, "mode": {"scheduled"}}); status != http.StatusSeeOther ||
		h.Get("Location") != "/console/signing-keys?done=keys-rotated" {
		t.Fatalf("rotate: status %d", status)
	}
	if n := state("ES256"); n["next"] != 1 {
		t.Errorf("ES256 after rotate now: %v, want a next key", n)
	}
	if _, _, page := op.get("/console/signing-keys"); !strings.Contains(page, `class="key-next"`) {
		t.Error("the page does not show the next key")
	}
	before, _ := ts.srv.Keys().Active("RS256")
	if status, _, _ := op.post("/console/signing-keys/rotate", url.Values{"alg": {"RS256"}, "mode": {"immediate"}}); status != http.StatusSeeOther {
		t.Fatalf("rotate immediately: status %d", status)
	}
	if after, _ := ts.srv.Keys().Active("RS256"); after.ID == before.ID {
		t.Error("an immediate rotation did not replace the active RS256 key")
	}
	for _, form := range []url.Values{{"alg": {"HS256"}, "mode": {"scheduled"}}, {"alg": {"ES256"}, "mode": {"later"}}} {
		if status, _, _ := op.post("/console/signing-keys/rotate", form); status != http.StatusBadRequest {
			t.Errorf("rotate %v: status %d, want 400", form, status)
		}
	}
}

// TestClientNewerFields: the token format, rate limit and gateway fields
// are stored, and refused values come back at their field.
func TestClientNewerFields(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	op := ts.signIn(t, "op", opPassword)
	ctx := t.Context()
	status, _, _ := op.post("/console/clients", url.Values{"id": {"gw"}, "name": {"Gateway"}, "gateway": {"on"},
		"grant_types": {"client_credentials", oauth.GrantTypeTokenExchange}, "exchange_audiences": {"https://internal.example"},
		"token_format": {"opaque"}, "rate_limit": {"100/m"}})
	if status != http.StatusCreated {
		t.Fatalf("create gateway client: status %d", status)
	}
	c, err := ts.st.Client(ctx, "gw")
	if err != nil || !c.Gateway || c.AccessTokenFormat != "opaque" || c.RateLimit != 100 || c.RateWindow != time.Minute ||
		c.AccessTokenTTL != oauth.DefaultGatewayTokenTTL {
		t.Fatalf("stored gateway client = %+v, %v", c, err)
	}
	if _, _, page := op.get("/console/clients/gw"); !strings.Contains(page, `value="100/m"`) {
		t.Error("the edit form does not show the rate limit")
	}
	for _, tc := range []struct {
		form  url.Values
		field string
	}{
		{url.Values{"name": {"G"}, "grant_types": {"client_credentials"}, "rate_limit": {"lots"}}, "rate_limit"},
		{url.Values{"name": {"G"}, "grant_types": {"client_credentials"}, "token_format": {"paseto"}}, "token_format"},
		{url.Values{"name": {"G"}, "grant_types": {"client_credentials"}, "gateway": {"on"}}, "gateway"},
	} {
		if status, _, page := op.post("/console/clients/gw", tc.form); status != http.StatusBadRequest || !strings.Contains(page, `id="`+tc.field+`-error"`) {
			t.Errorf("%v: status %d, want 400 with an error at %s", tc.form, status, tc.field)
		}
	}
}
