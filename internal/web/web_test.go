package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRenderEscapesAndSetsHeaders(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	evil := `<script>alert(1)</script>"`
	pages := []struct {
		name string
		data any
	}{
		{PageLogin, LoginData{Title: "Sign in", ClientName: evil, Username: evil, Error: evil, CSRF: evil, ReturnTo: evil}},
		{PageConsent, ConsentData{Title: "Allow", ClientName: evil, Username: evil, Scopes: DescribeScopes([]string{evil, "openid"}), CSRF: evil, Request: evil}},
		{PageError, ErrorData{Title: "Error", Message: evil, Code: evil}},
		{PageLogout, LogoutData{Title: "Sign out", Username: evil, ClientName: evil, State: evil, CSRF: evil}},
		{PageLogout, LogoutData{Title: "Signed out", Done: true, ContinueURL: "https://rp/?a=1&b=2", ClientName: evil}},
		{PageConsents, ConsentsData{Title: "Permissions", Username: evil, CSRF: evil,
			Consents: []ConsentEntry{{ClientID: evil, ClientName: evil, Scopes: DescribeScopes([]string{"email"}), Since: time.Unix(0, 0)}}}},
	}
	for _, pg := range pages {
		t.Run(pg.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			p.Render(rec, http.StatusOK, pg.name, pg.data)
			body := rec.Body.String()
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", rec.Code, body)
			}
			if strings.Contains(body, "<script>") {
				t.Errorf("body contains an unescaped <script>: %s", body)
			}
			if !strings.Contains(body, `<html lang="en">`) {
				t.Error(`body lacks <html lang="en">`)
			}
			for k, want := range map[string]string{
				"Cache-Control":           "no-store",
				"Content-Security-Policy": ContentSecurityPolicy,
				"X-Frame-Options":         "DENY",
				"Content-Type":            "text/html; charset=utf-8",
			} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	if !strings.Contains(ContentSecurityPolicy, "frame-ancestors 'none'") {
		t.Errorf("CSP %q lacks frame-ancestors 'none'", ContentSecurityPolicy)
	}
}

func TestRenderUnknownPage(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.Render(rec, http.StatusOK, "nope", nil)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", rec.Code)
	}
	rec = httptest.NewRecorder()
	p.Render(rec, http.StatusOK, PageLogin, 42) // wrong data type: template error
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "<form") {
		t.Errorf("wrong data: status = %d, body %q; want a plain 500", rec.Code, rec.Body.String())
	}
}

func TestDescribeScopes(t *testing.T) {
	got := DescribeScopes([]string{"email", "orders:read"})
	if got[0].Description != "See your email address" {
		t.Errorf("email = %q, want the known words", got[0].Description)
	}
	if !strings.Contains(got[1].Description, "orders:read") {
		t.Errorf("orders:read = %q, want it to name the scope", got[1].Description)
	}
}

func TestStatic(t *testing.T) {
	rec := httptest.NewRecorder()
	Static().ServeHTTP(rec, httptest.NewRequest("GET", "/static/gatehouse.css", nil))
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), "text/css") {
		t.Errorf("GET gatehouse.css = %d %q, want 200 text/css", rec.Code, rec.Header().Get("Content-Type"))
	}
}
