package oauth

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// APIKeyVerifier verifies API keys; internal/keyauth's Service is one. See
// Config.APIKeys.
type APIKeyVerifier interface {
	// Verify returns the key's principal, or the reason it is refused, or
	// an error when the answer cannot be known (the store is down).
	Verify(ctx context.Context, plaintext string, ip netip.Addr) (token.Principal, apikey.Reason, error)
	// ReportExposed flags plaintext, if it is a real key, as seen where
	// keys must never be: where is "url_query" for a URL query string.
	ReportExposed(ctx context.Context, plaintext string, ip netip.Addr, where string) (bool, error)
}

// flagKeysInQuery flags every API key in r's query string as exposed, so
// that its owner is told to rotate it. The endpoints that take tokens
// refuse a query string anyway (see parseForm); this is only about telling
// the owner.
func (p *Provider) flagKeysInQuery(r *http.Request) {
	if p.cfg.APIKeys == nil || r.URL.RawQuery == "" {
		return
	}
	raw, err := url.QueryUnescape(r.URL.RawQuery)
	if err != nil {
		raw = r.URL.RawQuery
	}
	keys := apikey.FindIn(raw)
	if len(keys) == 0 {
		return
	}
	ip, _ := netip.ParseAddr(clientIP(r))
	for _, k := range keys {
		if _, err := p.cfg.APIKeys.ReportExposed(r.Context(), k, ip.Unmap(), "url_query"); err != nil {
			p.log.Warn("API key in query: could not flag it", "path", r.URL.Path, "err", err)
		}
	}
}

// introspectAPIKey answers for tok if it has the shape of an API key, so
// that a gateway asks one endpoint about any credential. Any confidential
// client may introspect API keys (they have no audience). The key's IP
// allow-list is checked against no address, so keys restricted to
// addresses are reported inactive here; services should use
// POST /apikeys/verify with remote_ip for those.
func (p *Provider) introspectAPIKey(ctx context.Context, _ *store.Client, tok, _ string) (introspection, bool, error) {
	if p.cfg.APIKeys == nil || !apikey.LooksLikeKey(tok) {
		return introspection{}, false, nil
	}
	pr, reason, err := p.cfg.APIKeys.Verify(ctx, tok, netip.Addr{})
	if err != nil || reason != "" {
		return introspection{}, true, err
	}
	resp := introspection{Active: true, Scope: strings.Join(pr.Scopes, " "), TokenType: "api_key", Subject: pr.Subject,
		Issuer: p.cfg.Issuer}
	if !pr.ExpiresAt.IsZero() {
		resp.ExpiresAt = pr.ExpiresAt.Unix()
	}
	return resp, true, nil
}

// ClientAuthenticator returns a check of HTTP Basic client credentials
// (client_secret_basic) for endpoints outside this package, such as
// POST /apikeys/verify: it accepts a confidential client and returns its
// ID. It reads no request body. Faults of the store are errors.
func (p *Provider) ClientAuthenticator() func(r *http.Request) (string, bool, error) {
	return func(r *http.Request) (string, bool, error) {
		if r.Header.Get("Authorization") == "" {
			return "", false, nil
		}
		c, oe := p.authenticateClient(r.Context(), r, url.Values{}, p.cfg.Issuer)
		switch {
		case oe != nil && oe.Status >= 500:
			return "", false, oe
		case oe != nil || c == nil || c.Public:
			return "", false, nil
		}
		return c.ID, true, nil
	}
}

// APIKeysPagePath is the self-service API keys page (internal/keyauth);
// the login page may return there.
const APIKeysPagePath = "/account/apikeys"

// SignedInUser returns the ID and username of the browser's signed-in user,
// for pages outside this package; ok=false if there is none. err is for
// faults of the store only.
func (p *Provider) SignedInUser(r *http.Request) (id, username string, ok bool, err error) {
	sess, ok, err := p.currentSession(r)
	if !ok || err != nil {
		return "", "", false, err
	}
	return sess.user.ID, sess.user.Username, true, nil
}

// CSRFToken returns the anti-CSRF token for a page's forms (see csrfToken).
func (p *Provider) CSRFToken(w http.ResponseWriter, r *http.Request) string { return p.csrfToken(w, r) }

// CheckCSRF reports whether a posted form carries the browser's anti-CSRF
// token and comes from the issuer's origin. Parse the form first.
func (p *Provider) CheckCSRF(r *http.Request) bool { return p.checkCSRF(r) }

// RenderLogin shows the login page, returning to returnTo (a page the login
// handler accepts, such as APIKeysPagePath) after signing in.
func (p *Provider) RenderLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	p.renderLogin(w, r, http.StatusOK, "", "", "", returnTo)
}
