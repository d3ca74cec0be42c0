package oauth

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// serveConsent takes the user's answer on the consent page. The
// authorization request travels in the form and is checked again in full,
// so a tampered form can at most ask for what the request could have.
func (p *Provider) serveConsent(w http.ResponseWriter, r *http.Request) {
	if !parsePostForm(r) {
		p.renderError(w, http.StatusBadRequest, errInvalidRequest, "The form could not be read.")
		return
	}
	q, err := url.ParseQuery(r.PostForm.Get("request"))
	if err != nil {
		p.renderError(w, http.StatusBadRequest, errInvalidRequest, "The form is malformed.")
		return
	}
	req, aerr, err := parseAuthorize(r.Context(), q, p.client)
	if err != nil {
		p.log.Error("consent: client lookup", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	if aerr != nil {
		p.authorizeError(w, r, req, aerr)
		return
	}
	if !p.checkCSRF(r) {
		p.renderError(w, http.StatusForbidden, errInvalidRequest, "The form expired. Go back to the application and try again.")
		return
	}
	sess, prev, ok, err := p.sessionConsent(r, req.client.ID)
	if err != nil {
		p.log.Error("consent: session", "err", err)
		p.authorizeError(w, r, req, redirectError(errServerError, "internal error"))
		return
	}
	if !ok {
		p.renderLogin(w, r, http.StatusOK, req.client.Name, "", "Your session ended. Please sign in again.", AuthorizePath+"?"+q.Encode())
		return
	}
	switch r.PostForm.Get("decision") {
	case "allow":
	case "deny":
		p.authorizeError(w, r, req, redirectError(errAccessDenied, "the user denied the request"))
		return
	default:
		p.renderError(w, http.StatusBadRequest, errInvalidRequest, "The form is malformed.")
		return
	}
	scopes := slices.Clone(prev.Scopes)
	for _, s := range req.scopes {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	// The consent and the code it allows are stored in one transaction.
	p.issueCode(w, r, req, sess, &store.Consent{UserID: sess.user.ID, ClientID: req.client.ID, Scopes: scopes})
}

// serveConsentsPage lists the applications the user has allowed, each
// with a button to withdraw.
func (p *Provider) serveConsentsPage(w http.ResponseWriter, r *http.Request) {
	sess, ok, err := p.currentSession(r)
	if err != nil {
		p.log.Error("consents: session", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	if !ok {
		p.renderLogin(w, r, http.StatusOK, "", "", "", ConsentsPath)
		return
	}
	cs, err := p.store.Consents(r.Context(), sess.user.ID)
	if err != nil {
		p.log.Error("consents: list", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	data := web.ConsentsData{Title: "Your permissions", Username: sess.user.Username, CSRF: p.csrfToken(w, r)}
	for _, c := range cs {
		name := c.ClientID
		if cl, err := p.client(r.Context(), c.ClientID); err == nil {
			name = cl.Name
		}
		data.Consents = append(data.Consents, web.ConsentEntry{
			ClientID: c.ClientID, ClientName: name, Scopes: web.DescribeScopes(c.Scopes), Since: c.CreatedAt,
		})
	}
	p.flow.pages.Render(w, http.StatusOK, web.PageConsents, data)
}

// serveWithdrawConsent withdraws the user's consent for one client, which
// also revokes the refresh tokens (and their access tokens) the client
// holds for the user.
func (p *Provider) serveWithdrawConsent(w http.ResponseWriter, r *http.Request) {
	if !parsePostForm(r) || !p.checkCSRF(r) {
		p.renderError(w, http.StatusForbidden, errInvalidRequest, "The form expired. Please try again.")
		return
	}
	sess, ok, err := p.currentSession(r)
	if err != nil {
		p.log.Error("consents: session", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	if !ok {
		p.renderLogin(w, r, http.StatusOK, "", "", "Your session ended. Please sign in again.", ConsentsPath)
		return
	}
	err = p.store.DeleteConsent(r.Context(), sess.user.ID, r.PostForm.Get("client_id"))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		p.log.Error("consents: withdraw", "err", err)
		p.renderError(w, http.StatusInternalServerError, errServerError, "The server could not handle the request. Please try again later.")
		return
	}
	http.Redirect(w, r, ConsentsPath, http.StatusSeeOther)
}
