package oauth

import (
	"net/http"
	"net/url"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// logoutRequest is an RP-initiated logout request (OpenID Connect
// RP-Initiated Logout 1.0, section 2).
type logoutRequest struct {
	client   *store.Client
	redirect string // a checked post_logout_redirect_uri, or ""
	state    string
}

// parseLogout checks a logout request. The client is named by client_id
// or by a valid id_token_hint; post_logout_redirect_uri must be one of
// that client's registered redirect URIs (Gatehouse has no separate list),
// or the request is refused.
func (p *Provider) parseLogout(r *http.Request, q url.Values) (logoutRequest, string) {
	var req logoutRequest
	for name, vs := range q {
		if len(vs) > 1 {
			return req, "The request repeats the parameter " + printableName(name) + "."
		}
	}
	clientID := q.Get("client_id")
	if hint := q.Get("id_token_hint"); hint != "" {
		aud, ok := p.verifyIDTokenHint(r, hint)
		switch {
		case !ok && q.Get("post_logout_redirect_uri") != "" && clientID == "":
			return req, "The sign-out request carries an ID token that is not valid, or has expired."
		case ok && clientID != "" && aud != clientID:
			return req, "The sign-out request names two different applications."
		case ok:
			clientID = aud
		}
	}
	if clientID != "" && len(clientID) <= maxClientIDLen {
		if c, err := p.client(r.Context(), clientID); err == nil {
			req.client = c
		}
	}
	if uri := q.Get("post_logout_redirect_uri"); uri != "" {
		if req.client == nil || len(uri) > maxRedirectLen || !matchRedirectURI(req.client.RedirectURIs, uri) {
			return req, "The address to return to after signing out is not registered for the application."
		}
		req.redirect = uri
		if st := q.Get("state"); len(st) <= maxStateLen {
			req.state = st
		}
	}
	return req, ""
}

// serveLogout is the end_session_endpoint. GET shows a confirmation form
// (a link alone must not sign anyone out); the form's POST ends the
// session and returns to the client if it asked to.
func (p *Provider) serveLogout(w http.ResponseWriter, r *http.Request) {
	q, ok := authorizeParams(r)
	if !ok {
		p.renderError(w, http.StatusBadRequest, errInvalidRequest, "The request is malformed.")
		return
	}
	req, msg := p.parseLogout(r, q)
	if msg != "" {
		p.renderError(w, http.StatusBadRequest, errInvalidRequest, msg)
		return
	}
	clientName, clientID := "", ""
	if req.client != nil {
		clientName, clientID = req.client.Name, req.client.ID
	}
	continueURL := ""
	if req.redirect != "" {
		v := url.Values{}
		if req.state != "" {
			v.Set("state", req.state)
		}
		continueURL = req.redirect
		if len(v) > 0 {
			continueURL = withParams(req.redirect, v)
		}
	}
	sess, signedIn, err := p.currentSession(r)
	if err != nil {
		p.log.Error("logout: session", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	if r.Method == http.MethodGet && signedIn {
		p.flow.pages.Render(w, http.StatusOK, web.PageLogout, web.LogoutData{
			Title: "Sign out", Username: sess.user.Username, ClientName: clientName, ClientID: clientID,
			PostLogoutRedirectURI: req.redirect, State: req.state, CSRF: p.csrfToken(w, r),
		})
		return
	}
	if r.Method == http.MethodPost && signedIn {
		if !p.checkCSRF(r) {
			p.renderError(w, http.StatusForbidden, errInvalidRequest, "The form expired. Please try again.")
			return
		}
		if err := p.endSession(r.Context(), w, r); err != nil {
			p.log.Error("logout: end session", "err", err)
			p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
			return
		}
		p.log.Info("logout", "user_id", sess.user.ID)
	}
	if continueURL != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, continueURL, http.StatusSeeOther)
		return
	}
	p.flow.pages.Render(w, http.StatusOK, web.PageLogout, web.LogoutData{
		Title: "Signed out", Done: true, ClientName: clientName,
	})
}
