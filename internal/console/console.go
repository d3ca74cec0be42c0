// Package console is the operator console at /console: server-rendered
// pages where operators (users with the Admin flag) manage clients, users,
// API keys and signing keys, and read the audit log.
//
// The console has no logic of its own: every action calls the same domain
// function as the admin HTTP API and the CLI (internal/oauth for clients
// and users, internal/keyauth for API keys, internal/signing for signing
// keys). Operators sign in on the ordinary /login page; the console reads
// the session and the anti-CSRF token through a [keyauth.Browser].
//
// # Adding a page
//
// A page is a handler registered with [Console.Handle] plus a template
// internal/web/templates/console_NAME.html that defines "content" and is
// rendered inside the shared layout by [Console.Render]. Handle checks the
// operator on every request and, for POST, bounds the body, parses the
// form and checks its CSRF token before the handler runs.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/signing"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// Path is where the console lives.
const Path = "/console"

// MaxFormBytes bounds a console form post; a larger one is refused with
// 413 before anything is parsed.
const MaxFormBytes = 64 << 10

// PageSize is the number of rows on one page of a list.
const PageSize = 50

// Config is what the console needs. Store, Browser, Hasher and Keys are
// required; APIKeys is needed by the API keys page.
type Config struct {
	Store *store.Store
	// Browser gives the signed-in user and anti-CSRF tokens (the login
	// pages; internal/oauth's Provider is one).
	Browser keyauth.Browser
	// Hasher hashes new client secrets (the pepper's hasher, as the
	// provider's).
	Hasher *secret.Hasher
	// SecretGrace is how long a client's old secret keeps working after
	// a rotation.
	SecretGrace time.Duration
	// Keys is the signing-key manager.
	Keys *signing.Manager
	// APIKeys is the API-key service.
	APIKeys *keyauth.Service
	// Metrics is the server's own Prometheus registry, sampled in-process
	// for the dashboard while Run runs; nil means no charts.
	Metrics prometheus.Gatherer
	Logger  *slog.Logger
	Now     func() time.Time
}

// Console serves the operator console. Create it with [New].
type Console struct {
	cfg   Config
	st    *store.Store
	b     keyauth.Browser
	pages *web.ConsolePages
	log   *slog.Logger
	now   func() time.Time
	// sampler keeps the dashboard's recent metrics; nil without
	// Config.Metrics.
	sampler *sampler
	// The dashboard's last counts of the store (see counts).
	countsMu    sync.Mutex
	countsCache store.Counts
	countsAt    time.Time
}

// New returns the console for cfg, with its templates parsed.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil || cfg.Browser == nil || cfg.Hasher == nil || cfg.Keys == nil {
		return nil, errors.New("console: Store, Browser, Hasher and Keys are required")
	}
	pages, err := web.NewConsolePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, st: cfg.Store, b: cfg.Browser, pages: pages, log: cfg.Logger, now: cfg.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.Metrics != nil {
		c.sampler = &sampler{g: cfg.Metrics}
	}
	return c, nil
}

// Register adds every console page to mux.
func (c *Console) Register(mux *http.ServeMux) {
	c.Handle(mux, "GET "+Path, c.dashboard)
	c.registerClients(mux)
	c.registerUsers(mux)
	c.registerSigningKeys(mux)
	c.registerAPIKeys(mux)
	c.registerAudit(mux)
}

// Operator is the signed-in operator of a request.
type Operator struct {
	ID       string
	Username string
	IP       string // the request's source address, for the audit log
}

// Actor names the operator in the audit log, as the self-service pages
// name a user ("user:ID").
func (o Operator) Actor() string { return "user:" + o.ID }

// KeyActor is the operator as keyauth's audit log wants it.
func (o Operator) KeyActor() keyauth.Actor { return keyauth.Actor{Name: o.Actor(), IP: o.IP} }

// HandlerFunc is a console page handler, called only for an operator.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, op Operator)

// Handle registers h for pattern (such as "GET /console/clients") behind
// the operator check: without a session the browser is sent to the login
// page, which returns to the console; a signed-in user who is not an
// operator gets 403 and nothing else. For POST, the body is bounded by
// [MaxFormBytes] (413 beyond it), the form is parsed and its CSRF token
// checked (403 if forged or missing) before h runs.
func (c *Console) Handle(mux *http.ServeMux, pattern string, h HandlerFunc) {
	post := strings.HasPrefix(pattern, http.MethodPost+" ")
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		op, ok := c.operator(w, r)
		if !ok {
			return
		}
		if post && !c.form(w, r, op) {
			return
		}
		h(w, r, op)
	})
}

// operator returns the signed-in operator, or answers the request itself
// (login redirect, 403, or 503) and returns ok=false.
func (c *Console) operator(w http.ResponseWriter, r *http.Request) (Operator, bool) {
	id, _, ok, err := c.b.SignedInUser(r)
	if err != nil {
		c.Fail(w, r, Operator{}, "session", err)
		return Operator{}, false
	}
	if !ok {
		returnTo := Path
		if r.Method == http.MethodGet && r.URL.Path != Path && strings.HasPrefix(r.URL.Path, Path+"/") {
			returnTo = r.URL.Path
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/login?return_to="+url.QueryEscape(returnTo), http.StatusSeeOther)
		return Operator{}, false
	}
	// The session's user is read again for the Admin flag: an operator
	// whose flag is taken away loses the console at the next request.
	u, err := c.st.User(r.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.Fail(w, r, Operator{}, "operator", err)
		return Operator{}, false
	}
	if err != nil || !u.Admin || u.Disabled {
		c.log.Info("console: refused a user who is not an operator", "user_id", id)
		c.pages.Render(w, http.StatusForbidden, "error", Page{Title: "You are not an operator",
			Data: "Only operators may use the console. Ask an operator to give your account the admin role."})
		return Operator{}, false
	}
	return Operator{ID: u.ID, Username: u.Username, IP: sourceIP(r)}, true
}

// form bounds, parses and checks a posted form, or answers 413 or 403.
func (c *Console) form(w http.ResponseWriter, r *http.Request, op Operator) bool {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			c.Error(w, r, op, http.StatusRequestEntityTooLarge, "Form too large",
				"The form is larger than the console accepts (64 KiB). Nothing was changed.")
			return false
		}
		c.Error(w, r, op, http.StatusBadRequest, "Bad request", "The form could not be read. Nothing was changed.")
		return false
	}
	if !c.b.CheckCSRF(r) {
		c.log.Warn("console: form with a wrong CSRF token", "path", r.URL.Path, "user_id", op.ID)
		c.Error(w, r, op, http.StatusForbidden, "The form expired",
			"The form expired or did not come from this console. Nothing was changed. Please reload the page and try again.")
		return false
	}
	return true
}

// Page is the data of every console page; Data is the page's own.
type Page struct {
	Title   string // the <title> and the <h1>
	Section string // the navigation entry marked current: dashboard, clients, users, apikeys, signing, audit
	// Operator is the signed-in operator's username; Render fills it and
	// CSRF in.
	Operator string
	CSRF     string
	Notice   string // a success message, shown as a status
	Error    string // a message about the whole form, shown as an alert
	Data     any
}

// Render writes the console page name (template console_NAME.html) with
// p and status, filling in the operator and the CSRF token.
func (c *Console) Render(w http.ResponseWriter, r *http.Request, status int, name string, op Operator, p Page) {
	p.Operator = op.Username
	p.CSRF = c.b.CSRFToken(w, r)
	if p.Notice == "" && r.Method == http.MethodGet {
		p.Notice = notices[r.URL.Query().Get("done")]
	}
	c.pages.Render(w, status, name, p)
}

// Error renders an error page with status; op may be the zero Operator
// (then no navigation is shown).
func (c *Console) Error(w http.ResponseWriter, r *http.Request, op Operator, status int, title, msg string) {
	p := Page{Title: title, Data: msg}
	if op.ID != "" {
		p.Operator, p.CSRF = op.Username, c.b.CSRFToken(w, r)
	}
	c.pages.Render(w, status, "error", p)
}

// NotFound renders a 404 page saying what was not found.
func (c *Console) NotFound(w http.ResponseWriter, r *http.Request, op Operator, what string) {
	c.Error(w, r, op, http.StatusNotFound, "Not found", "There is no such "+what+". It may have been deleted.")
}

// Fail logs err (what says what failed) and renders a 503 page that tells
// nothing about the fault.
func (c *Console) Fail(w http.ResponseWriter, r *http.Request, op Operator, what string, err error) {
	c.log.Error("console: "+what, "path", r.URL.Path, "err", err)
	c.Error(w, r, op, http.StatusServiceUnavailable, "Something went wrong",
		"The server could not handle the request. Please try again later.")
}

// notices are the messages a page shows after a redirect with ?done=CODE.
// Only these fixed texts are shown: the URL cannot put words on the page.
var notices = map[string]string{
	"client-updated":   "The client was saved.",
	"client-deleted":   "The client was deleted.",
	"user-created":     "The user was created.",
	"user-deleted":     "The user was deleted.",
	"password-reset":   "The password was changed; the user's sessions and refresh tokens are revoked.",
	"user-disabled":    "The user was disabled and signed out everywhere.",
	"user-enabled":     "The user was enabled.",
	"session-ended":    "The session was ended.",
	"sessions-ended":   "All of the user's sessions were ended.",
	"consent-revoked":  "The consent was revoked.",
	"keys-rotated":     "A new signing key was published.",
	"keys-rotated-now": "A new signing key was published and signs from now on.",
	"key-revoked":      "The API key was revoked; it is refused from now on.",
}

// Redirect answers a successful POST with 303 to path; done, if not
// empty, is a key of the console's notices shown on the next page.
func Redirect(w http.ResponseWriter, r *http.Request, path, done string) {
	if done != "" {
		path += "?done=" + url.QueryEscape(done)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// Audit writes an administrative event to the audit log. A failure is
// logged: the action itself has already happened.
func (c *Console) Audit(ctx context.Context, op Operator, event, target string, details map[string]any) {
	ev := store.AuditEvent{At: c.now(), Actor: op.Actor(), Event: event, Target: target, Outcome: "success",
		SourceIP: op.IP}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			ev.Details = b
		}
	}
	c.log.Info("console: "+event, "target", target, "actor", ev.Actor)
	if err := c.st.AppendAudit(context.WithoutCancel(ctx), ev); err != nil {
		c.log.Error("console: audit", "event", event, "err", err)
	}
}

// sourceIP is the request's peer address (forwarding headers are not
// trusted).
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Cursor is the paging state of a list: the search prefix and the key of
// the last row shown.
type Cursor struct {
	Q     string // the search prefix, "" for all
	After string // the keyset cursor: continue after this key
	Next  string // the cursor of the next page, "" on the last page
}

// maxQueryLen bounds search prefixes and cursors.
const maxQueryLen = 256

// ReadCursor reads ?q= and ?after= of a list page, trimmed and bounded.
func ReadCursor(r *http.Request) Cursor {
	q := r.URL.Query()
	cut := func(s string) string {
		if len(s) > maxQueryLen {
			s = s[:maxQueryLen]
		}
		return strings.ToValidUTF8(s, "")
	}
	return Cursor{Q: cut(strings.TrimSpace(q.Get("q"))), After: cut(q.Get("after"))}
}

// NextURL is the link to the next page of path, or "" on the last page.
func (cur Cursor) NextURL(path string) string {
	if cur.Next == "" {
		return ""
	}
	v := url.Values{}
	if cur.Q != "" {
		v.Set("q", cur.Q)
	}
	v.Set("after", cur.Next)
	return path + "?" + v.Encode()
}

// FirstURL is the link to the first page of path with the same search,
// or "" when this is the first page.
func (cur Cursor) FirstURL(path string) string {
	if cur.After == "" {
		return ""
	}
	if cur.Q == "" {
		return path
	}
	return path + "?" + url.Values{"q": {cur.Q}}.Encode()
}
