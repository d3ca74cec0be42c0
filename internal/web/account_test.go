package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAccountPagesEscape(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewAPIKeysPage()
	if err != nil {
		t.Fatal(err)
	}
	evil := `<script>alert(1)</script>"`
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	pages := []struct {
		name, nav string
		data      any
	}{
		{PageAccount, "Account", AccountData{Title: "Your account", Username: evil, Name: evil, Email: evil, Admin: true,
			MemberSince: at, SignedInAt: at, Sessions: 2, Apps: 1}},
		{PageSessions, "Sessions", SessionsData{Title: "Your sessions", Username: evil, CSRF: evil, Notice: evil, Error: evil, Others: 1,
			Sessions: []SessionEntry{
				{Handle: "h1", Current: true, Browser: evil, UserAgent: evil, IP: evil, Created: at, Expires: at},
				{Handle: evil, Browser: evil, UserAgent: evil, IP: evil, Created: at, LastSeen: at, Expires: at},
			}}},
		{PagePassword, "Password", PasswordData{Title: "Change your password", Username: evil, CSRF: evil, Error: evil,
			MinLength: 8, MaxLength: 1024}},
		{PagePassword, "Password", PasswordData{Title: "Change your password", Done: true, Ended: 3}},
		{PageConsents, "Connected apps", ConsentsData{Title: "Your permissions", Username: evil}},
	}
	for _, pg := range pages {
		t.Run(pg.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			p.Render(rec, http.StatusOK, pg.name, pg.data)
			checkAccountPage(t, rec, pg.nav)
		})
	}
	t.Run("apikeys", func(t *testing.T) {
		rec := httptest.NewRecorder()
		keys.Render(rec, http.StatusOK, APIKeysData{Title: "Your API keys", Username: evil})
		checkAccountPage(t, rec, "API keys")
	})
}

func checkAccountPage(t *testing.T, rec *httptest.ResponseRecorder, nav string) {
	t.Helper()
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %s", rec.Code, body)
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("unescaped <script> in %s", body)
	}
	if !strings.Contains(body, `aria-current="page">`+nav+`</a>`) {
		t.Errorf("navigation does not mark %q as the current page: %s", nav, body)
	}
	if i, j := strings.Index(body, `class="skip-link"`), strings.Index(body, `<main id="content">`); i < 0 || j < i {
		t.Errorf("skip link missing or after main: %s", body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" || strings.Contains(rec.Header().Get("Content-Security-Policy"), "unsafe-inline") {
		t.Errorf("headers = %v", rec.Header())
	}
}

func TestDescribeUserAgent(t *testing.T) {
	for ua, want := range map[string]string{
		"": "Unknown browser",
		"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0":                                                    "Firefox on Linux",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36 Edg/138.0": "Edge on Windows",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Safari/605.1.15":     "Safari on macOS",
		"Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0 Mobile Safari/537.36":                  "Chrome on Android",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/138.0.0.0 Safari/537.36":             "Headless Chrome on Linux",
		"curl/8.5.0":   "curl on an unknown system",
		"<b>weird</b>": "Unknown browser on an unknown system",
	} {
		if got := DescribeUserAgent(ua); got != want {
			t.Errorf("DescribeUserAgent(%q) = %q, want %q", ua, got, want)
		}
	}
}

// FuzzDescribeUserAgent checks that any header yields a short description
// made only of the fixed words, never of the input.
func FuzzDescribeUserAgent(f *testing.F) {
	f.Add("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
	f.Add("")
	f.Add("\xff<script>Chrome/")
	f.Fuzz(func(t *testing.T, ua string) {
		got := DescribeUserAgent(ua)
		browser, system, ok := strings.Cut(got, " on ")
		if got == "Unknown browser" && strings.TrimSpace(ua) == "" {
			return
		}
		if !ok || !utf8.ValidString(got) || len(got) > 64 {
			t.Fatalf("DescribeUserAgent(%q) = %q", ua, got)
		}
		if !knownName(knownBrowsers, browser, "Unknown browser") || !knownName(knownSystems, system, "an unknown system") {
			t.Fatalf("DescribeUserAgent(%q) = %q: not from the fixed words", ua, got)
		}
	})
}

func knownName(list []uaToken, name, unknown string) bool {
	if name == unknown {
		return true
	}
	for _, e := range list {
		if e.name == name {
			return true
		}
	}
	return false
}
