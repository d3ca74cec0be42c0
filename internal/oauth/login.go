package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// maxUsernameLen bounds the username accepted by the login form.
const maxUsernameLen = 256

// renderLogin shows the login page.
func (p *Provider) renderLogin(w http.ResponseWriter, r *http.Request, status int, clientName, username, msg, returnTo string) {
	p.flow.pages.Render(w, status, web.PageLogin, web.LoginData{
		Title:      "Sign in",
		ClientName: clientName,
		Username:   username,
		Error:      msg,
		CSRF:       p.csrfToken(w, r),
		ReturnTo:   returnTo,
	})
}

// safeReturnTo returns where to go after signing in: a local path that is
// the authorization endpoint or the account page, never another site.
func safeReturnTo(s string) string {
	if s == AuthorizePath || strings.HasPrefix(s, AuthorizePath+"?") || s == ConsentsPath || s == APIKeysPagePath ||
		isConsolePath(s) || isAccountPath(s) {
		if !strings.ContainsAny(s, "\\\r\n") {
			return s
		}
	}
	return ConsentsPath
}

// ConsolePath is the operator console (internal/console); the login page
// may return to it or to one of its pages.
const ConsolePath = "/console"

// isConsolePath reports whether s is the console or a page of it: a
// plain local path of letters, digits, '-', '_' and '/', without "//".
func isConsolePath(s string) bool {
	if s != ConsolePath && !strings.HasPrefix(s, ConsolePath+"/") || strings.Contains(s, "//") || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '/') {
			return false
		}
	}
	return true
}

// serveLoginPage shows the login page on its own, for a user who comes to
// manage their account.
func (p *Provider) serveLoginPage(w http.ResponseWriter, r *http.Request) {
	p.renderLogin(w, r, http.StatusOK, "", "", "", safeReturnTo(r.URL.Query().Get("return_to")))
}

// clientIP is the address the request came from. Gatehouse does not trust
// forwarding headers here: behind a proxy, every user shares the proxy's
// address and the per-account limit does the work.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serveLogin checks a username and password. Failures are throttled per
// account and per address (see throttle), and take as long for an unknown
// username as for a known one.
func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	if !parsePostForm(r) {
		p.renderError(w, http.StatusBadRequest, errInvalidRequest, "The form could not be read.")
		return
	}
	returnTo := safeReturnTo(r.PostForm.Get("return_to"))
	clientName := p.returnToClientName(r, returnTo)
	if !p.checkCSRF(r) {
		p.renderLogin(w, r, http.StatusForbidden, clientName, "", "The form expired. Please sign in again.", returnTo)
		return
	}
	username := r.PostForm.Get("username")
	pw := r.PostForm.Get("password")
	if username == "" || pw == "" || len(username) > maxUsernameLen || len(pw) > password.MaxLength {
		p.renderLogin(w, r, http.StatusBadRequest, clientName, "", "Enter your username and password.", returnTo)
		return
	}
	accountKey, ipKey := "u:"+username, "ip:"+clientIP(r)
	if d := p.flow.throttle.wait(accountKey, ipKey); d > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(d.Round(time.Second)/time.Second)+1))
		p.renderLogin(w, r, http.StatusTooManyRequests, clientName, username,
			fmt.Sprintf("Too many failed attempts. Please wait %s and try again.", roundWait(d)), returnTo)
		return
	}
	u, err := p.store.UserByUsername(r.Context(), username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		password.CheckDummy(pw)
		err = password.ErrMismatch
	case err != nil:
		p.log.Error("login: user lookup", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	default:
		err = password.Check(u.PasswordHash, pw)
		if err == nil && u.Disabled {
			err = password.ErrMismatch
		}
	}
	if err != nil {
		if !errors.Is(err, password.ErrMismatch) {
			p.log.Error("login: password check", "user_id", u.ID, "err", err)
		}
		p.flow.throttle.fail(accountKey, accountFreeFailures)
		p.flow.throttle.fail(ipKey, ipFreeFailures)
		p.log.Info("login failed", "ip", clientIP(r))
		// The username as typed (bounded above), never the password.
		p.loginAudit.add(store.AuditEvent{At: p.now(), Event: EventLoginFailure, Target: u.ID, Outcome: "failure",
			Reason: "wrong_credentials", SourceIP: clientIP(r), Details: auditDetails(map[string]any{"username": username})})
		p.renderLogin(w, r, http.StatusUnauthorized, clientName, username, "Wrong username or password.", returnTo)
		return
	}
	p.flow.throttle.succeed(accountKey)
	// A new session ID at every sign-in: an ID planted before login is
	// worthless after it (session fixation).
	if err := p.endSession(r.Context(), w, r); err != nil {
		p.log.Warn("login: end previous session", "err", err)
	}
	if err := p.startSession(w, r, u); err != nil {
		p.log.Error("login: start session", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	// A new CSRF cookie too: a value planted in the browser before the
	// sign-in (a cookie set by a sibling host over http), with a token the
	// planter fetched for it, is worthless for the forms of the session.
	p.setCookie(w, p.flow.csrfCookie, secret.RandomString(32), 0)
	p.log.Info("login", "user_id", u.ID)
	p.loginAudit.add(store.AuditEvent{At: p.now(), Actor: "user:" + u.ID, Event: EventLoginSuccess, Target: u.ID,
		Outcome: "success", SourceIP: clientIP(r)})
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// returnToClientName names the client of the authorization request in
// returnTo, for the login page; "" if there is none.
func (p *Provider) returnToClientName(r *http.Request, returnTo string) string {
	_, query, ok := strings.Cut(returnTo, "?")
	if !ok {
		return ""
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return ""
	}
	c, err := p.client(r.Context(), q.Get("client_id"))
	if err != nil {
		return ""
	}
	return c.Name
}

// roundWait describes a wait for people.
func roundWait(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d seconds", int(d.Round(time.Second)/time.Second)+1)
	}
	return fmt.Sprintf("%d minutes", int(d.Round(time.Minute)/time.Minute)+1)
}

// Security events of the authorization server's audit log.
const (
	EventLoginSuccess = "login.success"
	EventLoginFailure = "login.failure" // details: the username tried
	EventRefreshReuse = "refresh.reuse" // a rotated refresh token came back; its family is revoked
)

// maxQueuedLogins bounds the sign-in events waiting for a flush; beyond
// it events are dropped, counted and logged, so a password-guessing flood
// cannot become a flood of writes or of memory.
const maxQueuedLogins = 4096

// loginFlushEvery is how often queued sign-in events are written.
const loginFlushEvery = time.Second

// auditQueue holds sign-in events until [Provider.RunAudit] writes them in
// one transaction.
type auditQueue struct {
	mu      sync.Mutex
	events  []store.AuditEvent
	dropped int
}

func (q *auditQueue) add(ev store.AuditEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.events) >= maxQueuedLogins {
		q.dropped++
		return
	}
	q.events = append(q.events, ev)
}

func (q *auditQueue) take() ([]store.AuditEvent, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs, dropped := q.events, q.dropped
	q.events, q.dropped = nil, 0
	return evs, dropped
}

// RunAudit writes queued sign-in events every second until ctx is done,
// then once more. The server runs it in the background.
func (p *Provider) RunAudit(ctx context.Context) {
	t := time.NewTicker(loginFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			p.flushAudit(fctx)
			cancel()
			return
		case <-t.C:
			p.flushAudit(ctx)
		}
	}
}

// flushAudit writes the queued sign-in events. Events the store cannot
// take are dropped with a log line: the audit log is a record, not a gate.
func (p *Provider) flushAudit(ctx context.Context) {
	evs, dropped := p.loginAudit.take()
	if dropped > 0 {
		p.log.Warn("audit: sign-in events dropped (queue full)", "dropped", dropped)
	}
	if len(evs) == 0 {
		return
	}
	if err := p.store.AppendAudit(ctx, evs...); err != nil {
		p.log.Error("audit: write sign-in events", "events", len(evs), "err", err)
	}
}

// auditNow writes one security event at once (they are rare and must not
// be lost in a crash); a failure is logged.
func (p *Provider) auditNow(ctx context.Context, ev store.AuditEvent) {
	if ev.At.IsZero() {
		ev.At = p.now()
	}
	if err := p.store.AppendAudit(context.WithoutCancel(ctx), ev); err != nil {
		p.log.Error("audit: write event", "event", ev.Event, "err", err)
	}
}

// auditDetails encodes an event's details (strings and numbers only).
func auditDetails(m map[string]any) json.RawMessage {
	b, _ := json.Marshal(m)
	return b
}
