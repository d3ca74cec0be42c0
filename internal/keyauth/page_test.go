package keyauth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// fakeBrowser signs in the user named by the X-Test-User header and
// accepts the CSRF token "good".
type fakeBrowser struct{}

func (fakeBrowser) SignedInUser(r *http.Request) (string, string, bool, error) {
	u := r.Header.Get("X-Test-User")
	return "id-" + u, u, u != "", nil
}

func (fakeBrowser) CSRFToken(http.ResponseWriter, *http.Request) string { return "good" }

func (fakeBrowser) CheckCSRF(r *http.Request) bool { return r.PostForm.Get("csrf_token") == "good" }

func (fakeBrowser) RenderLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	io.WriteString(w, "LOGIN PAGE, return to "+returnTo)
}

var keyPattern = regexp.MustCompile(`gk_live_[0-9A-Za-z]{50}`)

func TestSelfServicePage(t *testing.T) {
	st := storetest.OpenSQLite(t)
	f := newFixture(t, st)
	mux := http.NewServeMux()
	if err := f.svc.RegisterPage(mux, fakeBrowser{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := func(method, path, user string, form url.Values) (int, http.Header, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if user != "" {
			req.Header.Set("X-Test-User", user)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	form := func(kv ...string) url.Values {
		v := url.Values{"csrf_token": {"good"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}

	if _, _, body := page("GET", PagePath, "", nil); !strings.Contains(body, "LOGIN PAGE, return to "+PagePath) {
		t.Errorf("signed out: got %q, want the login page returning here", body)
	}
	status, h, body := page("GET", PagePath, "ada", nil)
	if status != 200 || !strings.Contains(body, "You have no API keys") {
		t.Fatalf("empty page: %d %s", status, body)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	if h.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", h.Get("Cache-Control"))
	}

	status, _, body = page("POST", PagePath, "ada", form("name", "laptop", "scopes", "read write", "expires", "720h"))
	key := keyPattern.FindString(body)
	if status != 200 || key == "" || !strings.Contains(body, `id="copy-key"`) {
		t.Fatalf("create: %d, key %q, page %s", status, key, body)
	}
	p, reason, err := f.svc.Verify(context.Background(), key, ipInside)
	if err != nil || reason != "" || p.Subject != "id-ada" || strings.Join(p.Scopes, " ") != "read write" || p.ExpiresAt.IsZero() {
		t.Errorf("created key verifies as %+v, %q, %v; want owner id-ada, scopes read write, an expiry", p, reason, err)
	}
	_, _, body = page("GET", PagePath, "ada", nil)
	if strings.Contains(body, key) || !strings.Contains(body, "laptop") || !strings.Contains(body, key[len(key)-4:]) {
		t.Errorf("list page must show the key's name and last 4, never the key:\n%s", body)
	}
	if _, _, body := page("GET", PagePath, "bob", nil); strings.Contains(body, "laptop") {
		t.Error("bob sees ada's key")
	}

	keys, _ := st.APIKeys(context.Background(), store.APIKeyFilter{Owner: "id-ada"})
	id := keys[0].ID
	tests := []struct {
		name       string
		method     string
		path, user string
		form       url.Values
		want       int
	}{
		{"bad CSRF", "POST", PagePath, "ada", url.Values{"csrf_token": {"bad"}, "name": {"x"}}, 403},
		{"no CSRF on revoke", "POST", PagePath + "/" + id + "/revoke", "ada", url.Values{}, 403},
		{"invalid scope", "POST", PagePath, "ada", form("name", "x", "scopes", `a"b`), 400},
		{"no name", "POST", PagePath, "ada", form("name", " "), 400},
		{"bad expiry", "POST", PagePath, "ada", form("name", "x", "expires", "forever"), 400},
		{"bob rotates ada's key", "POST", PagePath + "/" + id + "/rotate", "bob", form(), 404},
		{"bob revokes ada's key", "POST", PagePath + "/" + id + "/revoke", "bob", form(), 404},
		{"unknown key", "POST", PagePath + "/000000000000/revoke", "ada", form(), 404},
		{"query string", "GET", PagePath + "?key=" + key, "ada", nil, 303},
	}
	for _, tc := range tests {
		if status, _, _ := page(tc.method, tc.path, tc.user, tc.form); status != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.want)
		}
	}

	status, _, body = page("POST", PagePath+"/"+id+"/rotate", "ada", form())
	newKey := keyPattern.FindString(body)
	if status != 200 || newKey == "" || newKey == key || !strings.Contains(body, "rotating") {
		t.Fatalf("rotate: %d, new key %q; page %s", status, newKey, body)
	}
	if status, h, _ := page("POST", PagePath+"/"+id+"/revoke", "ada", form()); status != 303 || h.Get("Location") != PagePath {
		t.Errorf("revoke: %d to %q, want 303 to the page", status, h.Get("Location"))
	}
	if _, reason, _ := f.svc.Verify(context.Background(), key, ipInside); reason != "revoked" {
		t.Errorf("revoked key: reason %q", reason)
	}
	if _, reason, _ := f.svc.Verify(context.Background(), newKey, ipInside); reason != "" {
		t.Errorf("rotated-to key: reason %q, want accepted", reason)
	}
	evs, _ := st.AuditEvents(context.Background(), store.AuditFilter{Target: id})
	if len(evs) < 3 || evs[0].Actor != "user:id-ada" {
		t.Errorf("audit events = %+v, want create, rotate, revoke by user:id-ada", evs)
	}
}
