package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// Authorization error codes (RFC 6749 section 4.1.2.1, OpenID Connect
// Core section 3.1.2.6).
const (
	errAccessDenied            = "access_denied"
	errUnsupportedResponseType = "unsupported_response_type"
	errLoginRequired           = "login_required"
	errConsentRequired         = "consent_required"
	errRequestNotSupported     = "request_not_supported"
	errRequestURINotSupported  = "request_uri_not_supported"
)

// Limits on authorization request parameters.
const (
	maxStateLen    = 2048
	maxNonceLen    = 512
	maxRedirectLen = 2048
)

// authzRequest is a checked authorization request (RFC 6749 section
// 4.1.1, RFC 7636 section 4.3, OpenID Connect Core section 3.1.2.1).
type authzRequest struct {
	client        *store.Client
	redirectURI   string
	state         string
	nonce         string
	codeChallenge string
	scopes        []string
	promptNone    bool
	promptLogin   bool
	promptConsent bool
	maxAge        int64 // seconds; -1 when absent
	params        url.Values
}

// authzError is a refused authorization request. When redirect is false
// the client or redirect URI could not be trusted, so the error is shown
// to the user on a page and never sent anywhere (section 4.1.2.1).
type authzError struct {
	redirect    bool
	code        string
	description string
}

func pageError(desc string) *authzError {
	return &authzError{code: errInvalidRequest, description: desc}
}

func redirectError(code, desc string) *authzError {
	return &authzError{redirect: true, code: code, description: desc}
}

// clientLookup finds a client by ID; it returns an error wrapping
// store.ErrNotFound for an unknown one.
type clientLookup func(ctx context.Context, id string) (*store.Client, error)

// errLookup marks a store fault while looking the client up.
var errLookup = errors.New("oauth: client lookup failed")

// parseAuthorize checks an authorization request. The client and the
// redirect URI are checked first: until both are known to be good, errors
// are for a page. The request must use the authorization code flow with
// PKCE S256; every parameter may appear at most once. A store fault while
// looking the client up is returned as err (with a nil *authzError).
func parseAuthorize(ctx context.Context, q url.Values, lookup clientLookup) (authzRequest, *authzError, error) {
	req := authzRequest{maxAge: -1, params: q}
	clientID, ok := single(q, "client_id")
	switch {
	case !ok:
		return req, pageError("The request names its application more than once."), nil
	case clientID == "":
		return req, pageError("The request does not say which application it comes from (client_id is missing)."), nil
	case len(clientID) > maxClientIDLen:
		return req, pageError("The application identifier is too long."), nil
	}
	c, err := lookup(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return req, pageError("The application is not registered here."), nil
	}
	if err != nil {
		return req, nil, errors.Join(errLookup, err)
	}
	req.client = c
	redirect, ok := single(q, "redirect_uri")
	switch {
	case !ok:
		return req, pageError("The request names more than one redirect URI."), nil
	case redirect == "":
		return req, pageError("The request has no redirect_uri."), nil
	case len(redirect) > maxRedirectLen || !matchRedirectURI(c.RedirectURIs, redirect):
		return req, pageError("The redirect URI is not registered for this application."), nil
	}
	req.redirectURI = redirect

	// From here on errors go back to the client. state goes back too, so
	// it is checked first.
	state, ok := single(q, "state")
	if !ok || len(state) > maxStateLen {
		return req, redirectError(errInvalidRequest, "state is repeated or too long"), nil
	}
	req.state = state
	for name, vs := range q {
		if len(vs) > 1 {
			return req, redirectError(errInvalidRequest, "parameter "+printableName(name)+" is repeated"), nil
		}
	}
	switch {
	case q.Has("request"):
		return req, redirectError(errRequestNotSupported, "request objects are not supported"), nil
	case q.Has("request_uri"):
		return req, redirectError(errRequestURINotSupported, "request_uri is not supported"), nil
	}
	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		return req, redirectError(errInvalidRequest, "response_type is missing"), nil
	default:
		return req, redirectError(errUnsupportedResponseType, "only response_type=code is supported"), nil
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		return req, redirectError(errInvalidRequest, "only response_mode=query is supported"), nil
	}
	if !slices.Contains(c.GrantTypes, "authorization_code") {
		return req, redirectError(errUnauthorizedClient, "the client may not use the authorization code flow"), nil
	}
	switch m := q.Get("code_challenge_method"); m {
	case "S256":
	case "":
		return req, redirectError(errInvalidRequest, "PKCE is required: code_challenge_method must be S256"), nil
	default:
		return req, redirectError(errInvalidRequest, "code_challenge_method must be S256"), nil
	}
	req.codeChallenge = q.Get("code_challenge")
	if !validChallenge(req.codeChallenge) {
		return req, redirectError(errInvalidRequest, "code_challenge is missing or not a base64url SHA-256 value"), nil
	}
	if !q.Has("scope") {
		return req, redirectError(errInvalidScope, "scope is missing"), nil
	}
	scopes, oe := grantedScopes(q.Get("scope"), c.Scopes)
	if oe != nil {
		return req, redirectError(oe.Code, oe.Description), nil
	}
	req.scopes = scopes
	req.nonce = q.Get("nonce")
	if len(req.nonce) > maxNonceLen {
		return req, redirectError(errInvalidRequest, "nonce is too long"), nil
	}
	if q.Has("prompt") {
		for v := range strings.SplitSeq(q.Get("prompt"), " ") {
			switch v {
			case "none":
				req.promptNone = true
			case "login", "select_account":
				req.promptLogin = true
			case "consent":
				req.promptConsent = true
			default:
				return req, redirectError(errInvalidRequest, "unsupported prompt value"), nil
			}
		}
		if req.promptNone && (req.promptLogin || req.promptConsent) {
			return req, redirectError(errInvalidRequest, "prompt=none cannot be combined with other values"), nil
		}
	}
	if q.Has("max_age") {
		n, err := strconv.ParseInt(q.Get("max_age"), 10, 64)
		if err != nil || n < 0 {
			return req, redirectError(errInvalidRequest, "max_age must be a non-negative integer"), nil
		}
		req.maxAge = n
	}
	return req, nil, nil
}

// single returns the value of parameter name and false if it appears more
// than once.
func single(q url.Values, name string) (string, bool) {
	vs := q[name]
	if len(vs) > 1 {
		return "", false
	}
	if len(vs) == 0 {
		return "", true
	}
	return vs[0], true
}

// validChallenge reports whether s looks like BASE64URL(SHA256(verifier)):
// exactly 43 characters of the base64url alphabet (RFC 7636 section 4.2).
func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// matchRedirectURI reports whether uri is one of the registered redirect
// URIs, compared as exact strings, with one exception for native apps (RFC
// 8252 section 7.3): a registered http://127.0.0.1/... or http://[::1]/...
// without a port matches the same URI with any port.
func matchRedirectURI(registered []string, uri string) bool {
	if slices.Contains(registered, uri) {
		return true
	}
	for _, host := range []string{"http://127.0.0.1", "http://[::1]"} {
		rest, ok := strings.CutPrefix(uri, host+":")
		if !ok {
			continue
		}
		n := 0
		for n < len(rest) && n < 6 && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 0 || n > 5 {
			return false
		}
		if port, _ := strconv.Atoi(rest[:n]); port < 1 || port > 65535 {
			return false
		}
		tail := rest[n:]
		if tail != "" && tail[0] != '/' && tail[0] != '?' {
			return false
		}
		return slices.Contains(registered, host+tail)
	}
	return false
}

// withParams appends params to a redirect URI's query.
func withParams(uri string, params url.Values) string {
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + params.Encode()
}

// redirectStatus is 303 after a form post (so the browser follows with a
// GET), 302 otherwise.
func redirectStatus(r *http.Request) int {
	if r.Method == http.MethodPost {
		return http.StatusSeeOther
	}
	return http.StatusFound
}

// authorizeError answers a refused authorization request: a page when the
// client or redirect URI is not trusted, else a redirect carrying error,
// error_description, state and iss (RFC 9207).
func (p *Provider) authorizeError(w http.ResponseWriter, r *http.Request, req authzRequest, e *authzError) {
	if !e.redirect {
		p.renderError(w, http.StatusBadRequest, e.code, e.description)
		return
	}
	v := url.Values{"error": {e.code}, "iss": {p.cfg.Issuer}}
	if d := safeDescription(e.description); d != "" {
		v.Set("error_description", d)
	}
	if req.state != "" {
		v.Set("state", req.state)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, withParams(req.redirectURI, v), redirectStatus(r))
}

// authorizeParams returns the parameters of an authorization request sent
// with GET (query) or POST (form body, OpenID Connect Core section
// 3.1.2.1).
func authorizeParams(r *http.Request) (url.Values, bool) {
	if r.Method == http.MethodPost {
		if !parsePostForm(r) {
			return nil, false
		}
		return r.PostForm, true
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	return q, err == nil
}

// serveAuthorize is the authorization endpoint (RFC 6749 section 3.1). A
// good request from a signed-in user who has consented gets a code at
// once; otherwise the login or consent page is shown first.
func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q, ok := authorizeParams(r)
	if !ok {
		p.renderError(w, http.StatusBadRequest, errInvalidRequest, "The request is malformed.")
		return
	}
	req, aerr, err := parseAuthorize(r.Context(), q, p.client)
	if err != nil {
		p.log.Error("authorize: client lookup", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	if aerr != nil {
		p.authorizeError(w, r, req, aerr)
		return
	}
	p.continueAuthorize(w, r, req)
}

// continueAuthorize takes a checked request on: to the login page, the
// consent page, or the client with a code.
func (p *Provider) continueAuthorize(w http.ResponseWriter, r *http.Request, req authzRequest) {
	sess, consent, ok, err := p.sessionConsent(r, req.client.ID)
	if err != nil {
		p.log.Error("authorize: session", "err", err)
		p.authorizeError(w, r, req, redirectError(errServerError, "internal error"))
		return
	}
	now := p.now()
	if !ok || req.promptLogin || (req.maxAge >= 0 && now.Sub(sess.rec.AuthTime) > time.Duration(req.maxAge)*time.Second) {
		if req.promptNone {
			p.authorizeError(w, r, req, redirectError(errLoginRequired, "the user is not signed in"))
			return
		}
		// After signing in, the request runs again without prompt=login,
		// which the fresh sign-in has satisfied.
		again := cloneValues(req.params)
		again.Del("prompt")
		if req.promptConsent {
			again.Set("prompt", "consent")
		}
		p.renderLogin(w, r, http.StatusOK, req.client.Name, "", "", AuthorizePath+"?"+again.Encode())
		return
	}
	if req.promptConsent || !coversAll(consent.Scopes, req.scopes) {
		if req.promptNone {
			p.authorizeError(w, r, req, redirectError(errConsentRequired, "the user has not consented"))
			return
		}
		again := cloneValues(req.params)
		again.Del("prompt")
		p.flow.pages.Render(w, http.StatusOK, web.PageConsent, web.ConsentData{
			Title:      "Allow access?",
			ClientName: req.client.Name,
			Username:   sess.user.Username,
			Scopes:     web.DescribeScopes(req.scopes),
			CSRF:       p.csrfToken(w, r),
			Request:    again.Encode(),
		})
		return
	}
	p.issueCode(w, r, req, sess, nil)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// coversAll reports whether every scope in want is in have.
func coversAll(have, want []string) bool {
	for _, s := range want {
		if !slices.Contains(have, s) {
			return false
		}
	}
	return true
}

// issueCode creates an authorization code for the signed-in user and
// sends the browser back to the client with it (RFC 6749 section 4.1.2,
// RFC 9207). A non-nil consent, the user's answer on the consent page, is
// stored in the same transaction as the code.
func (p *Provider) issueCode(w http.ResponseWriter, r *http.Request, req authzRequest, sess session, consent *store.Consent) {
	code := secret.RandomString(32)
	now := p.now()
	ac := store.AuthCode{
		Hash:          p.hasher.Hash(domainAuthCode, code),
		ClientID:      req.client.ID,
		UserID:        sess.user.ID,
		RedirectURI:   req.redirectURI,
		Scopes:        req.scopes,
		Nonce:         req.nonce,
		CodeChallenge: req.codeChallenge,
		AuthTime:      sess.rec.AuthTime,
		CreatedAt:     now,
		ExpiresAt:     now.Add(p.cfg.CodeTTL),
	}
	var err error
	if consent != nil {
		err = p.store.CreateAuthCodeWithConsent(r.Context(), ac, *consent)
	} else {
		err = p.store.CreateAuthCode(r.Context(), ac)
	}
	if err != nil {
		p.log.Error("authorize: create code", "err", err)
		p.authorizeError(w, r, req, redirectError(errServerError, "internal error"))
		return
	}
	v := url.Values{"code": {code}, "iss": {p.cfg.Issuer}}
	if req.state != "" {
		v.Set("state", req.state)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, withParams(req.redirectURI, v), redirectStatus(r))
}
