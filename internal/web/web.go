// Package web renders Gatehouse's HTML pages: login, consent, logout, the
// account's permissions page and error pages. Pages are html/template
// files embedded in the binary; they need no JavaScript and load one
// stylesheet from the server itself.
//
// Every page is sent with headers that keep it out of frames and caches:
// a strict Content-Security-Policy with frame-ancestors 'none',
// X-Frame-Options DENY and Cache-Control no-store.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// StaticPath is the URL path prefix of the stylesheet and other static
// files.
const StaticPath = "/static/"

// ContentSecurityPolicy is the policy of every page: nothing but the
// server's own stylesheet may load, no script runs, and no site may frame
// the pages (clickjacking). form-action is left out on purpose: browsers
// apply it to the redirect that follows the consent form, which goes to
// the client's redirect URI.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// Pages renders the HTML pages. It is safe for concurrent use.
type Pages struct {
	pages map[string]*template.Template
}

// Page names for [Pages.Render].
const (
	PageLogin    = "login"
	PageConsent  = "consent"
	PageError    = "error"
	PageLogout   = "logout"
	PageConsents = "consents"
)

// New parses the embedded templates.
func New() (*Pages, error) {
	p := &Pages{pages: make(map[string]*template.Template)}
	for _, name := range []string{PageLogin, PageConsent, PageError, PageLogout, PageConsents,
		PageAccount, PageSessions, PagePassword} {
		t, err := template.ParseFS(templateFiles, "templates/layout.html", "templates/account_nav.html",
			"templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return p, nil
}

// SetHeaders sets the security and caching headers every page carries.
func SetHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// Render writes page name with data and the given status. data must be
// the page's data type (LoginData for PageLogin, and so on). Rendering
// into a buffer first means a template error becomes a plain 500, never a
// half-written page.
func (p *Pages) Render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	t := p.pages[name]
	if t == nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	SetHeaders(w.Header())
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// Static serves the embedded static files under [StaticPath].
func Static() http.Handler {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	files := http.StripPrefix(StaticPath, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// LoginData fills the login page.
type LoginData struct {
	Title      string
	ClientName string // the application the user signs in to, if any
	Username   string // kept after a failed attempt
	Error      string // why the last attempt failed
	CSRF       string
	ReturnTo   string // where to go after signing in (a local path)
}

// Scope is one requested scope, with words a person understands.
type Scope struct {
	Name        string
	Description string
}

// ConsentData fills the consent page.
type ConsentData struct {
	Title      string
	ClientName string
	Username   string
	Scopes     []Scope
	CSRF       string
	Request    string // the authorization request, re-checked when the form comes back
}

// ErrorData fills an error page.
type ErrorData struct {
	Title   string
	Message string
	Code    string // an OAuth error code, if any
}

// LogoutData fills the logout page: a confirmation form, or (Done) the
// signed-out notice.
type LogoutData struct {
	Title                 string
	Done                  bool
	Username              string
	ClientName            string
	ClientID              string
	PostLogoutRedirectURI string
	State                 string
	ContinueURL           string // where the "return" link goes after signing out
	CSRF                  string
}

// ConsentEntry is one row of the permissions page.
type ConsentEntry struct {
	ClientID   string
	ClientName string
	Scopes     []Scope
	Since      time.Time
}

// ConsentsData fills the permissions page.
type ConsentsData struct {
	Title    string
	Username string
	Consents []ConsentEntry
	CSRF     string
}

// describedScopes are the words shown for well-known scopes.
var describedScopes = map[string]string{
	"openid":         "Confirm who you are",
	"profile":        "See your name and username",
	"email":          "See your email address",
	"offline_access": "Keep access while you are away",
}

// DescribeScopes returns each scope with its description: a known
// scope's words, or for another scope a generic sentence naming it.
func DescribeScopes(scopes []string) []Scope {
	out := make([]Scope, len(scopes))
	for i, s := range scopes {
		d, ok := describedScopes[s]
		if !ok {
			d = "Use the permission “" + s + "”"
		}
		out[i] = Scope{Name: s, Description: d}
	}
	return out
}
