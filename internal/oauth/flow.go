package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// Paths of the browser-facing endpoints, relative to the issuer.
const (
	AuthorizePath = "/authorize"
	LoginPath     = "/login"
	ConsentPath   = "/consent"
	LogoutPath    = "/logout"
	UserinfoPath  = "/userinfo"
	ConsentsPath  = "/account/consents"
)

// Defaults of the browser flow.
const (
	DefaultSessionTTL   = 12 * time.Hour
	DefaultRefreshGrace = 10 * time.Second
)

// Hash domains of the secrets the browser flow generates (see
// secret.Hasher): a value of one kind never matches another kind's hash.
const (
	domainSession      = "session"
	domainCSRF         = "csrf"
	domainAuthCode     = "authorization_code"
	domainRefreshToken = "refresh_token"
)

// userFlow holds what the browser flow needs beyond the Provider: the
// pages, cookie names and the login throttle.
type userFlow struct {
	pages         *web.Pages
	secure        bool // the issuer is https: cookies get Secure and __Host-
	sessionCookie string
	csrfCookie    string
	throttle      *throttle
}

func newUserFlow(issuer string, now func() time.Time) (*userFlow, error) {
	pages, err := web.New()
	if err != nil {
		return nil, err
	}
	f := &userFlow{pages: pages, throttle: newThrottle(now)}
	f.secure = strings.HasPrefix(issuer, "https://")
	f.sessionCookie, f.csrfCookie = "gh_session", "gh_csrf"
	if f.secure {
		// The __Host- prefix pins the cookies to this exact host over
		// https, so a sibling subdomain cannot plant them.
		f.sessionCookie, f.csrfCookie = "__Host-gh_session", "__Host-gh_csrf"
	}
	return f, nil
}

// registerUserFlow adds the browser-facing endpoints to mux.
func (p *Provider) registerUserFlow(mux *http.ServeMux) {
	mux.HandleFunc("GET "+AuthorizePath, p.serveAuthorize)
	mux.HandleFunc("POST "+AuthorizePath, p.serveAuthorize)
	mux.HandleFunc("GET "+LoginPath, p.serveLoginPage)
	mux.HandleFunc("POST "+LoginPath, p.serveLogin)
	mux.HandleFunc("POST "+ConsentPath, p.serveConsent)
	mux.HandleFunc("GET "+LogoutPath, p.serveLogout)
	mux.HandleFunc("POST "+LogoutPath, p.serveLogout)
	mux.HandleFunc("GET "+ConsentsPath, p.serveConsentsPage)
	mux.HandleFunc("POST "+ConsentsPath, p.serveWithdrawConsent)
	mux.HandleFunc("GET "+UserinfoPath, p.serveUserinfo)
	mux.HandleFunc("POST "+UserinfoPath, p.serveUserinfo)
	mux.Handle("GET "+web.StaticPath, web.Static())
	p.registerAccount(mux)
}

// userMetadata adds what the browser flow implements to the discovery
// document.
func (p *Provider) userMetadata(md *Metadata) {
	iss := p.cfg.Issuer
	md.AuthorizationEndpoint = iss + AuthorizePath
	md.UserinfoEndpoint = iss + UserinfoPath
	md.EndSessionEndpoint = iss + LogoutPath
	md.ResponseTypesSupported = []string{"code"}
	md.ResponseModesSupported = []string{"query"}
	md.SubjectTypesSupported = []string{"public"}
	md.IDTokenSigningAlgValuesSupported = algNames()
	md.CodeChallengeMethodsSupported = []string{"S256"}
	md.AuthorizationResponseISSSupported = true
	md.ScopesSupported = []string{"openid", "profile", "email", "offline_access"}
	md.ClaimsSupported = []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
		"name", "preferred_username", "email", "email_verified"}
}

// setCookie sets a cookie for the whole issuer host: HttpOnly,
// SameSite=Lax (sent on the top-level navigation back from a client, not
// on cross-site subrequests), Secure when the issuer is https.
func (p *Provider) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   p.flow.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	} else if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// session is a signed-in browser.
type session struct {
	id   string // the raw session ID from the cookie
	rec  store.Session
	user store.User
}

// currentSession returns the browser's session, or ok=false if it has
// none (no cookie, unknown or expired session, disabled or deleted user).
// err is for faults of the store only.
func (p *Provider) currentSession(r *http.Request) (session, bool, error) {
	sess, _, ok, err := p.sessionConsent(r, "")
	return sess, ok, err
}

// sessionConsent is currentSession that also returns, for a clientID
// other than "", the user's consent for that client (the zero Consent if
// none). One query reads the session, its user and the consent: every
// authorization request of a signed-in browser needs all three.
func (p *Provider) sessionConsent(r *http.Request, clientID string) (session, store.Consent, bool, error) {
	ck, err := r.Cookie(p.flow.sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return session{}, store.Consent{}, false, nil
	}
	idHash := p.hasher.Hash(domainSession, ck.Value)
	var rec store.Session
	var u store.User
	var consent store.Consent
	if clientID == "" {
		rec, u, err = p.store.SessionUser(r.Context(), idHash, p.now())
	} else {
		rec, u, consent, err = p.store.SessionUserConsent(r.Context(), idHash, p.now(), clientID)
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled) {
		return session{}, store.Consent{}, false, nil
	}
	if err != nil {
		return session{}, store.Consent{}, false, err
	}
	p.touchSession(r.Context(), rec)
	return session{id: ck.Value, rec: rec, user: u}, consent, true, nil
}

// startSession creates a session for u, noting r's browser and address
// for the user's list of sessions, and sets its cookie.
func (p *Provider) startSession(w http.ResponseWriter, r *http.Request, u store.User) error {
	id := secret.RandomString(32)
	now := p.now()
	ttl := p.cfg.SessionTTL
	err := p.store.CreateSession(r.Context(), store.Session{
		IDHash: p.hasher.Hash(domainSession, id), UserID: u.ID, AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(ttl),
		UserAgent: r.UserAgent(), IP: clientIP(r),
	})
	if err != nil {
		return err
	}
	p.setCookie(w, p.flow.sessionCookie, id, 0) // a browser-session cookie; the server enforces the TTL
	return nil
}

// endSession deletes the browser's session, if any, and its cookie.
func (p *Provider) endSession(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	p.setCookie(w, p.flow.sessionCookie, "", -1)
	ck, err := r.Cookie(p.flow.sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	return p.store.DeleteSession(ctx, p.hasher.Hash(domainSession, ck.Value))
}

// csrfToken returns the anti-CSRF token for the browser's forms, setting
// the CSRF cookie if the browser has none. The token is the keyed hash of
// the cookie's random value (a signed double-submit cookie): a page on
// another site can make the browser send the cookie but can neither read
// it nor compute the token.
func (p *Provider) csrfToken(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if ck, err := r.Cookie(p.flow.csrfCookie); err == nil && len(ck.Value) >= 32 && len(ck.Value) <= 64 {
		v = ck.Value
	} else {
		v = secret.RandomString(32)
		p.setCookie(w, p.flow.csrfCookie, v, 0)
	}
	return encodeCSRF(p.hasher.Hash(domainCSRF, v))
}

// checkCSRF reports whether the posted form carries the token that
// matches the browser's CSRF cookie, and that the request, if it names
// its origin, comes from the issuer's own origin.
func (p *Provider) checkCSRF(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && o != issuerOrigin(p.cfg.Issuer) {
		return false
	}
	ck, err := r.Cookie(p.flow.csrfCookie)
	if err != nil || len(ck.Value) < 32 || len(ck.Value) > 64 {
		return false
	}
	sent, ok := decodeCSRF(r.PostFormValue("csrf_token"))
	return ok && p.hasher.Equal(domainCSRF, ck.Value, sent)
}

func encodeCSRF(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeCSRF(s string) ([]byte, bool) {
	if len(s) != 43 {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return b, err == nil
}

// issuerOrigin is the scheme://host[:port] of the issuer.
func issuerOrigin(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// renderError shows an error page: for requests that cannot be answered
// with a redirect to the client (RFC 6749, section 4.1.2.1).
func (p *Provider) renderError(w http.ResponseWriter, status int, code, msg string) {
	p.flow.pages.Render(w, status, web.PageError, web.ErrorData{Title: "Something went wrong", Message: msg, Code: code})
}

// parsePostForm parses a browser form post (bounded, urlencoded only).
func parsePostForm(r *http.Request) bool {
	mt := r.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	if strings.TrimSpace(strings.ToLower(mt)) != "application/x-www-form-urlencoded" {
		return false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
	return r.ParseForm() == nil
}
