package web

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

// APIKeysPolicy is the Content-Security-Policy of the API keys page: the
// others' policy plus the server's own copy-button script (static/copy.js),
// and nothing else; no inline script runs.
const APIKeysPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// APIKeysPage renders the self-service page where a signed-in user manages
// their API keys. It is safe for concurrent use.
type APIKeysPage struct {
	t *template.Template
}

// NewAPIKeysPage parses the embedded template of the page.
func NewAPIKeysPage() (*APIKeysPage, error) {
	t, err := template.ParseFS(templateFiles, "templates/layout.html", "templates/account_nav.html",
		"templates/apikeys.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse apikeys: %w", err)
	}
	return &APIKeysPage{t: t}, nil
}

// APIKeyEntry is one key in the page's list. It holds no secret.
type APIKeyEntry struct {
	ID         string
	Masked     string // prefix, ID and last four characters
	Name       string
	Scopes     []string
	Status     string // "active", "rotating", "rotated", "expired" or "revoked"
	Created    time.Time
	LastUsed   time.Time // zero if never
	Expires    time.Time // zero if never
	GraceUntil time.Time // for a rotated key
	Exposed    bool      // seen in a URL or a leak scan
}

// APIKeysData fills the API keys page.
type APIKeysData struct {
	Title    string
	Username string
	CSRF     string
	Keys     []APIKeyEntry
	// NewKey, when set, is a key just created or rotated, shown this once
	// with a copy button; NewKeyName names it.
	NewKey     string
	NewKeyName string
	Error      string
}

// Render writes the page with data and status, with the page's policy and
// the headers of every page (no caching: the page may hold a new key).
func (p *APIKeysPage) Render(w http.ResponseWriter, status int, data APIKeysData) {
	var buf bytes.Buffer
	if err := p.t.ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	SetHeaders(w.Header())
	w.Header().Set("Content-Security-Policy", APIKeysPolicy)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
