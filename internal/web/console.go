package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ConsolePolicy is the Content-Security-Policy of the operator console:
// the others' policy plus the server's own scripts (static/copy.js,
// static/confirm.js), and nothing else; no inline script or style runs.
const ConsolePolicy = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// ConsolePages renders the operator console's pages. Every file
// templates/console_NAME.html except console_layout.html is a page named
// NAME, rendered inside the shared console layout (navigation, skip link,
// the signed-in operator). It is safe for concurrent use.
type ConsolePages struct {
	pages map[string]*template.Template
}

// consoleFuncs are the helpers console templates may use.
var consoleFuncs = template.FuncMap{
	// join joins strings with sep.
	"join": func(s []string, sep string) string { return strings.Join(s, sep) },
	// when formats a time for people, or "—" for the zero time.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	// pathseg escapes a value for one segment of a URL path (an ID may
	// hold '/', '?' or '#').
	"pathseg": url.PathEscape,
	// iso formats a time for a datetime attribute.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

// NewConsolePages parses the embedded console templates.
func NewConsolePages() (*ConsolePages, error) {
	names, err := fs.Glob(templateFiles, "templates/console_*.html")
	if err != nil {
		return nil, fmt.Errorf("web: console templates: %w", err)
	}
	p := &ConsolePages{pages: make(map[string]*template.Template)}
	for _, file := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(file, "templates/console_"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(consoleFuncs).ParseFS(templateFiles, "templates/console_layout.html", file)
		if err != nil {
			return nil, fmt.Errorf("web: parse console %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return p, nil
}

// Has reports whether a page named name exists.
func (p *ConsolePages) Has(name string) bool { return p.pages[name] != nil }

// Render writes page name with data and status, with the console's
// policy and the headers of every page (no caching, no framing). The page
// is rendered into a buffer first, so a template error becomes a plain
// 500, never a half-written page.
func (p *ConsolePages) Render(w http.ResponseWriter, status int, name string, data any) {
	t := p.pages[name]
	if t == nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "console_layout", data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	SetHeaders(w.Header())
	w.Header().Set("Content-Security-Policy", ConsolePolicy)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
