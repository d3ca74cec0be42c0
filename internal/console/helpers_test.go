package console_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// testServer is a whole Gatehouse server on a loopback port: the console
// is tested behind the real login pages, sessions and CSRF tokens.
type testServer struct {
	base string
	srv  *server.Server
	st   *store.Store
}

// backends are the stores the handler tests run on.
var backends = []struct {
	name string
	db   func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return "" }},
	{"postgres", func(t *testing.T) string { return storetest.PostgresURL(t) }},
}

// startServer runs a server on dbURL ("" for SQLite in a temporary
// directory).
func startServer(t *testing.T, dbURL string) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := server.New(context.Background(), server.Config{Issuer: base, DataDir: filepath.Join(t.TempDir(), "data"),
		DBURL: dbURL, Logger: log, AdminToken: "console-test-admin-token-0123456789"})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return &testServer{base: base, srv: srv, st: srv.Store()}
}

// createUser creates a user through the same function as the CLI.
func (ts *testServer) createUser(t *testing.T, username, pw string, admin bool) store.User {
	t.Helper()
	u, err := oauth.CreateUser(t.Context(), ts.st, oauth.UserParams{Username: username, Password: pw, Admin: admin})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", username, err)
	}
	return u
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see every 303.
type browser struct {
	t    *testing.T
	ts   *testServer
	hc   *http.Client
	csrf string
}

func (ts *testServer) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, ts: ts, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// signIn signs in on the login page as a browser would, returning to
// returnTo, and returns the browser with the console's CSRF token.
func (ts *testServer) signIn(t *testing.T, username, pw string) *browser {
	t.Helper()
	b := ts.browser(t)
	status, h, _ := b.login(username, pw, "/console")
	if status != http.StatusSeeOther || h.Get("Location") != "/console" {
		t.Fatalf("sign in as %s: status %d, Location %q", username, status, h.Get("Location"))
	}
	// Signing in replaces the CSRF cookie (as Django's login does): take
	// the token from a page rendered after it, as a browser would (the
	// password page: every signed-in user may see it).
	status, _, body := b.get(oauth.PasswordPath)
	m := csrfRE.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		t.Fatalf("password page after sign-in: status %d, no CSRF token", status)
	}
	b.csrf = m[1]
	return b
}

// login posts the login form; it returns the answer to the post.
func (b *browser) login(username, pw, returnTo string) (int, http.Header, string) {
	b.t.Helper()
	status, _, body := b.get("/login?return_to=" + url.QueryEscape(returnTo))
	m := csrfRE.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		b.t.Fatalf("login page: status %d, no CSRF token", status)
	}
	b.csrf = m[1]
	return b.post("/login", url.Values{"username": {username}, "password": {pw}, "return_to": {returnTo}})
}

func (b *browser) do(req *http.Request) (int, http.Header, string) {
	b.t.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// get fetches path.
func (b *browser) get(path string) (int, http.Header, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.ts.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post posts form to path, adding the browser's CSRF token unless the
// form has a csrf_token of its own.
func (b *browser) post(path string, form url.Values) (int, http.Header, string) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if !form.Has("csrf_token") {
		form.Set("csrf_token", b.csrf)
	}
	return b.postRaw(path, form.Encode())
}

func (b *browser) postRaw(path, body string) (int, http.Header, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.ts.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.ts.base)
	return b.do(req)
}

// inputValue returns the value of the input with the given id in page.
func inputValue(t *testing.T, page, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		m = regexp.MustCompile(`value="([^"]*)"[^>]*id="` + regexp.QuoteMeta(id) + `"`).FindStringSubmatch(page)
	}
	if m == nil {
		t.Fatalf("no input #%s with a value in the page", id)
	}
	return m[1]
}

var (
	nextRE   = regexp.MustCompile(`<a href="([^"]+)" rel="next"`)
	handleRE = regexp.MustCompile(`id="session-([A-Za-z0-9_-]{22})"`)
)

// bodyOf fetches path and returns the page.
func bodyOf(b *browser, path string) string {
	b.t.Helper()
	_, _, body := b.get(path)
	return body
}

// eventually polls cond for up to 5 s (the change feed's delay is 100 ms;
// the machine may be loaded).
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
