package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// Paths of the account pages a signed-in user manages their account on
// (besides ConsentsPath and APIKeysPagePath).
const (
	AccountPath  = "/account"
	SessionsPath = "/account/sessions"
	PasswordPath = "/account/password"
)

// sessionTouchInterval is how stale a session's last-seen time may get
// before a request refreshes it: one write per session every few minutes,
// not one per request.
const sessionTouchInterval = 5 * time.Minute

// maxSessionHandleLen bounds the session handle a form may post (a
// store.Session.Handle is 22 characters).
const maxSessionHandleLen = 64

// Audit events of the account pages (store.AuditEvent.Event).
const (
	EventSessionEnd       = "session.end"
	EventSessionEndOthers = "session.end_others"
	EventPasswordChange   = "user.password_change"
)

// Messages of the account pages.
const (
	msgFormExpired = "The form expired. Please go back, reload the page and try again."
	msgServerFault = "The server could not handle the request. Please try again later."
)

// registerAccount adds the account pages to mux.
func (p *Provider) registerAccount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+AccountPath, p.serveAccount)
	mux.HandleFunc("GET "+AccountPath+"/{$}", p.redirectAccount)
	mux.HandleFunc("GET "+SessionsPath, p.serveSessions)
	mux.HandleFunc("POST "+SessionsPath+"/end", p.serveEndSession)
	mux.HandleFunc("POST "+SessionsPath+"/end-others", p.serveEndOtherSessions)
	mux.HandleFunc("GET "+PasswordPath, p.servePasswordPage)
	mux.HandleFunc("POST "+PasswordPath, p.serveChangePassword)
}

// isAccountPath reports whether s is one of the account pages the login
// page may return to.
func isAccountPath(s string) bool {
	return s == AccountPath || s == SessionsPath || s == PasswordPath
}

// touchSession refreshes rec's last-seen time if it is older than
// sessionTouchInterval. A failure is logged, never shown: it only makes
// the sessions page less precise.
func (p *Provider) touchSession(ctx context.Context, rec store.Session) {
	now := p.now()
	last := rec.LastSeenAt
	if last.IsZero() {
		last = rec.CreatedAt
	}
	if now.Sub(last) < sessionTouchInterval {
		return
	}
	if err := p.store.TouchSession(ctx, rec.IDHash, now); err != nil {
		p.log.Warn("session: record last use", "err", err)
	}
}

// accountSession returns the browser's session for an account page. If
// there is none it shows the login page (returning to returnTo, with msg)
// and returns ok=false; a fault of the store is answered with 500.
func (p *Provider) accountSession(w http.ResponseWriter, r *http.Request, returnTo, msg string) (session, bool) {
	sess, ok, err := p.currentSession(r)
	if err != nil {
		p.log.Error("account: session", "path", r.URL.Path, "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return session{}, false
	}
	if !ok {
		p.renderLogin(w, r, http.StatusOK, "", "", msg, returnTo)
		return session{}, false
	}
	return sess, true
}

// accountPost checks an account form post (urlencoded, bounded, CSRF
// token and origin) and returns the session; else it answers and returns
// ok=false, having changed nothing.
func (p *Provider) accountPost(w http.ResponseWriter, r *http.Request, returnTo string) (session, bool) {
	if !parsePostForm(r) || !p.checkCSRF(r) {
		p.renderError(w, http.StatusForbidden, errInvalidRequest, msgFormExpired)
		return session{}, false
	}
	return p.accountSession(w, r, returnTo, "Your session ended. Please sign in again.")
}

// audit appends an event about the signed-in user's own account. The log
// is a record, not a gate: a failure is logged and the action stands.
func (p *Provider) audit(ctx context.Context, r *http.Request, userID, event string, details map[string]any) {
	ev := store.AuditEvent{At: p.now(), Actor: "user:" + userID, Event: event, Target: userID, Outcome: "success",
		SourceIP: clientIP(r)}
	if len(details) > 0 {
		ev.Details, _ = json.Marshal(details) // maps of numbers and strings always encode
	}
	if err := p.store.AppendAudit(ctx, ev); err != nil {
		p.log.Warn("account: audit", "event", event, "err", err)
	}
}

func (p *Provider) redirectAccount(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, AccountPath, http.StatusSeeOther)
}

// serveAccount is the account home: who the user is and where to manage
// what.
func (p *Provider) serveAccount(w http.ResponseWriter, r *http.Request) {
	sess, ok := p.accountSession(w, r, AccountPath, "")
	if !ok {
		return
	}
	ctx := r.Context()
	sessions, err := p.store.SessionsByUser(ctx, sess.user.ID, p.now())
	if err != nil {
		p.log.Error("account: list sessions", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	consents, err := p.store.Consents(ctx, sess.user.ID)
	if err != nil {
		p.log.Error("account: list consents", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	u := sess.user
	p.flow.pages.Render(w, http.StatusOK, web.PageAccount, web.AccountData{
		Title: "Your account", Username: u.Username, Name: u.Name, Email: u.Email, EmailVerified: u.EmailVerified,
		Admin: u.Admin, MemberSince: u.CreatedAt, SignedInAt: sess.rec.AuthTime,
		Sessions: len(sessions), Apps: len(consents),
	})
}

// serveSessions lists the user's active sessions, this one marked.
func (p *Provider) serveSessions(w http.ResponseWriter, r *http.Request) {
	sess, ok := p.accountSession(w, r, SessionsPath, "")
	if !ok {
		return
	}
	notice := ""
	switch q := r.URL.Query(); {
	case q.Get("ended") == "one":
		notice = "The session was signed out."
	case q.Has("ended"):
		if n, err := strconv.Atoi(q.Get("ended")); err == nil && n >= 0 && n <= 1_000_000 {
			notice = fmt.Sprintf("%d other sessions were signed out.", n)
			if n == 1 {
				notice = "1 other session was signed out."
			}
		}
	}
	p.renderSessions(w, r, http.StatusOK, sess, notice, "")
}

func (p *Provider) renderSessions(w http.ResponseWriter, r *http.Request, status int, sess session, notice, msg string) {
	list, err := p.store.SessionsByUser(r.Context(), sess.user.ID, p.now())
	if err != nil {
		p.log.Error("account: list sessions", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	current := sess.rec.Handle()
	data := web.SessionsData{Title: "Your sessions", Username: sess.user.Username, CSRF: p.csrfToken(w, r),
		Notice: notice, Error: msg}
	for _, s := range list {
		e := web.SessionEntry{Handle: s.Handle(), Browser: web.DescribeUserAgent(s.UserAgent), UserAgent: s.UserAgent,
			IP: s.IP, Created: s.CreatedAt, LastSeen: s.LastSeenAt, Expires: s.ExpiresAt}
		e.Current = e.Handle == current
		if !e.Current {
			data.Others++
		}
		data.Sessions = append(data.Sessions, e)
	}
	p.flow.pages.Render(w, status, web.PageSessions, data)
}

// serveEndSession ends one of the user's other sessions, named by its
// handle. A handle that is not one of the user's live sessions (another
// user's, an expired one, garbage) is answered with 404 and nothing
// changes. Naming this browser's own session signs it out.
func (p *Provider) serveEndSession(w http.ResponseWriter, r *http.Request) {
	sess, ok := p.accountPost(w, r, SessionsPath)
	if !ok {
		return
	}
	handle := r.PostForm.Get("session")
	var target []byte
	if handle != "" && len(handle) <= maxSessionHandleLen {
		list, err := p.store.SessionsByUser(r.Context(), sess.user.ID, p.now())
		if err != nil {
			p.log.Error("account: list sessions", "err", err)
			p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
			return
		}
		for _, s := range list {
			if s.Handle() == handle {
				target = s.IDHash
				break
			}
		}
	}
	if target == nil {
		p.renderSessionsError(w, r, http.StatusNotFound, sess, "That session does not exist or has already ended.")
		return
	}
	err := p.store.DeleteUserSession(r.Context(), sess.user.ID, target)
	if errors.Is(err, store.ErrNotFound) {
		p.renderSessionsError(w, r, http.StatusNotFound, sess, "That session does not exist or has already ended.")
		return
	}
	if err != nil {
		p.log.Error("account: end session", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	p.audit(r.Context(), r, sess.user.ID, EventSessionEnd, map[string]any{"session": handle})
	if handle == sess.rec.Handle() {
		p.setCookie(w, p.flow.sessionCookie, "", -1)
		http.Redirect(w, r, LoginPath+"?return_to="+SessionsPath, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, SessionsPath+"?ended=one", http.StatusSeeOther)
}

// renderSessionsError shows the sessions page with an error.
func (p *Provider) renderSessionsError(w http.ResponseWriter, r *http.Request, status int, sess session, msg string) {
	p.renderSessions(w, r, status, sess, "", msg)
}

// serveEndOtherSessions ends every session of the user but this one.
func (p *Provider) serveEndOtherSessions(w http.ResponseWriter, r *http.Request) {
	sess, ok := p.accountPost(w, r, SessionsPath)
	if !ok {
		return
	}
	n, err := p.store.DeleteUserSessionsExcept(r.Context(), sess.user.ID, sess.rec.IDHash)
	if err != nil {
		p.log.Error("account: end other sessions", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	p.audit(r.Context(), r, sess.user.ID, EventSessionEndOthers, map[string]any{"ended": n})
	http.Redirect(w, r, SessionsPath+"?ended="+strconv.Itoa(n), http.StatusSeeOther)
}

func (p *Provider) renderPassword(w http.ResponseWriter, r *http.Request, status int, username string, data web.PasswordData) {
	data.Title, data.Username = "Change your password", username
	data.MinLength, data.MaxLength = password.MinLength, password.MaxLength
	data.CSRF = p.csrfToken(w, r)
	p.flow.pages.Render(w, status, web.PagePassword, data)
}

func (p *Provider) servePasswordPage(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		// Nothing on this page takes a query; a password pasted into the
		// URL must not be kept in the history.
		http.Redirect(w, r, PasswordPath, http.StatusSeeOther)
		return
	}
	sess, ok := p.accountSession(w, r, PasswordPath, "")
	if !ok {
		return
	}
	p.renderPassword(w, r, http.StatusOK, sess.user.Username, web.PasswordData{})
}

// serveChangePassword changes the user's password. The current password
// is checked under the login throttle (a wrong one counts as a failed
// sign-in of the account and the address). On success every session of
// the user ends and its refresh tokens are revoked (store.UpdateUser),
// and this browser gets a new session.
func (p *Provider) serveChangePassword(w http.ResponseWriter, r *http.Request) {
	sess, ok := p.accountPost(w, r, PasswordPath)
	if !ok {
		return
	}
	u := sess.user
	current, next, confirm := r.PostForm.Get("current_password"), r.PostForm.Get("new_password"), r.PostForm.Get("confirm_password")
	fail := func(status int, msg string) {
		p.renderPassword(w, r, status, u.Username, web.PasswordData{Error: msg})
	}
	switch {
	case current == "" || len(current) > password.MaxLength:
		fail(http.StatusBadRequest, "Enter your current password.")
		return
	case len(next) < password.MinLength:
		fail(http.StatusBadRequest, fmt.Sprintf("Choose a new password of at least %d characters.", password.MinLength))
		return
	case len(next) > password.MaxLength:
		fail(http.StatusBadRequest, fmt.Sprintf("Choose a new password of at most %d characters.", password.MaxLength))
		return
	case next != confirm:
		fail(http.StatusBadRequest, "The two new passwords differ. Type the same new password twice.")
		return
	}
	accountKey, ipKey := "u:"+u.Username, "ip:"+clientIP(r)
	if d := p.flow.throttle.wait(accountKey, ipKey); d > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(d.Round(time.Second)/time.Second)+1))
		fail(http.StatusTooManyRequests, fmt.Sprintf("Too many wrong passwords. Please wait %s and try again.", roundWait(d)))
		return
	}
	if err := password.Check(u.PasswordHash, current); err != nil {
		if !errors.Is(err, password.ErrMismatch) {
			p.log.Error("account: password check", "user_id", u.ID, "err", err)
		}
		p.flow.throttle.fail(accountKey, accountFreeFailures)
		p.flow.throttle.fail(ipKey, ipFreeFailures)
		p.log.Info("password change: wrong current password", "user_id", u.ID, "ip", clientIP(r))
		fail(http.StatusUnauthorized, "Your current password is wrong.")
		return
	}
	p.flow.throttle.succeed(accountKey)
	hash, err := password.Hash(next)
	if err != nil {
		p.log.Error("account: hash password", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	ctx := r.Context()
	others, err := p.store.SessionsByUser(ctx, u.ID, p.now())
	if err != nil {
		p.log.Error("account: list sessions", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	ended := max(len(others)-1, 0)
	u.PasswordHash = hash
	// UpdateUser ends every session of the user, this one too, and
	// revokes the user's refresh tokens, in one transaction.
	if err := p.store.UpdateUser(ctx, u); err != nil {
		p.log.Error("account: update password", "user_id", u.ID, "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, msgServerFault)
		return
	}
	p.audit(ctx, r, u.ID, EventPasswordChange, map[string]any{"sessions_ended": ended})
	p.log.Info("password changed", "user_id", u.ID)
	if err := p.startSession(w, r, u); err != nil {
		p.log.Error("account: new session after password change", "err", err)
		p.setCookie(w, p.flow.sessionCookie, "", -1)
		p.renderLogin(w, r, http.StatusOK, "", "", "Your password was changed. Please sign in with it.", AccountPath)
		return
	}
	p.renderPassword(w, r, http.StatusOK, u.Username, web.PasswordData{Done: true, Ended: ended})
}
