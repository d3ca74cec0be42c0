package keyauth

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/web"
)

// PagePath is the self-service page where a signed-in user manages their
// own API keys.
const PagePath = "/account/apikeys"

// Browser is what the self-service page needs from the login pages: the
// signed-in user and anti-CSRF tokens. internal/oauth's Provider is one.
type Browser interface {
	// SignedInUser returns the user of the browser's session; ok=false if
	// there is none; err for faults.
	SignedInUser(r *http.Request) (id, username string, ok bool, err error)
	// CSRFToken returns the token the page's forms carry.
	CSRFToken(w http.ResponseWriter, r *http.Request) string
	// CheckCSRF checks a posted, parsed form's token.
	CheckCSRF(r *http.Request) bool
	// RenderLogin shows the login page, returning to returnTo.
	RenderLogin(w http.ResponseWriter, r *http.Request, returnTo string)
}

// RegisterPage adds the self-service page: GET and POST (create)
// /account/apikeys, and POST /account/apikeys/{id}/rotate and .../revoke.
// A user sees and changes only keys whose Owner is their user ID; a new
// key is shown once, on the page that answers the create or rotate form.
func (s *Service) RegisterPage(mux *http.ServeMux, b Browser) error {
	page, err := web.NewAPIKeysPage()
	if err != nil {
		return err
	}
	p := &pageHandler{svc: s, b: b, page: page}
	mux.HandleFunc("GET "+PagePath, p.show)
	mux.HandleFunc("POST "+PagePath, p.create)
	mux.HandleFunc("POST "+PagePath+"/{id}/rotate", p.rotate)
	mux.HandleFunc("POST "+PagePath+"/{id}/revoke", p.revoke)
	return nil
}

type pageHandler struct {
	svc  *Service
	b    Browser
	page *web.APIKeysPage
}

const pageTitle = "Your API keys"

// user returns the signed-in user, or answers with the login page (or an
// error page) and ok=false.
func (p *pageHandler) user(w http.ResponseWriter, r *http.Request) (id, name string, ok bool) {
	id, name, ok, err := p.b.SignedInUser(r)
	switch {
	case err != nil:
		p.svc.log.Error("API keys page: session", "err", err)
		http.Error(w, "The server could not handle the request. Please try again later.", http.StatusServiceUnavailable)
		return "", "", false
	case !ok:
		p.b.RenderLogin(w, r, PagePath)
		return "", "", false
	}
	return id, name, true
}

// post checks a form post: size, CSRF token, signed-in user.
func (p *pageHandler) post(w http.ResponseWriter, r *http.Request) (id, name string, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil || !p.b.CheckCSRF(r) {
		web.SetHeaders(w.Header())
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("The form expired. Please go back, reload the page and try again.\n"))
		return "", "", false
	}
	return p.user(w, r)
}

func (p *pageHandler) render(w http.ResponseWriter, r *http.Request, status int, userID, username string, data web.APIKeysData) {
	keys, err := p.svc.List(r.Context(), store.APIKeyFilter{Owner: userID})
	if err != nil {
		p.svc.log.Error("API keys page: list", "err", err)
		http.Error(w, "The server could not handle the request. Please try again later.", http.StatusServiceUnavailable)
		return
	}
	now := p.svc.now()
	data.Title, data.Username, data.CSRF = pageTitle, username, p.b.CSRFToken(w, r)
	for _, k := range keys {
		data.Keys = append(data.Keys, web.APIKeyEntry{ID: k.ID, Masked: Masked(k), Name: k.Name, Scopes: k.Scopes,
			Status: Status(k, now), Created: k.CreatedAt, LastUsed: k.LastUsedAt, Expires: k.ExpiresAt,
			GraceUntil: k.GraceUntil, Exposed: !k.ExposedAt.IsZero()})
	}
	p.page.Render(w, status, data)
}

func (p *pageHandler) show(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		// Nothing on this page takes a query; a key pasted into the URL
		// must not be rendered back or kept in the history.
		http.Redirect(w, r, PagePath, http.StatusSeeOther)
		return
	}
	id, name, ok := p.user(w, r)
	if !ok {
		return
	}
	p.render(w, r, http.StatusOK, id, name, web.APIKeysData{})
}

func (p *pageHandler) create(w http.ResponseWriter, r *http.Request) {
	userID, username, ok := p.post(w, r)
	if !ok {
		return
	}
	params := Params{Name: strings.TrimSpace(r.PostForm.Get("name")), Owner: userID,
		Scopes: strings.Fields(r.PostForm.Get("scopes"))}
	if exp := r.PostForm.Get("expires"); exp != "" {
		d, err := time.ParseDuration(exp)
		if err != nil || d <= 0 || d > 10*365*24*time.Hour {
			p.render(w, r, http.StatusBadRequest, userID, username, web.APIKeysData{Error: "Choose an expiry from the list."})
			return
		}
		params.ExpiresAt = p.svc.now().Add(d)
	}
	rec, key, err := p.svc.Create(r.Context(), params, Actor{Name: "user:" + userID, IP: remoteAddr(r).String()})
	if errors.Is(err, ErrInvalid) {
		p.render(w, r, http.StatusBadRequest, userID, username,
			web.APIKeysData{Error: "The key was not created: " + strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ") + "."})
		return
	}
	if err != nil {
		p.svc.log.Error("API keys page: create", "err", err)
		http.Error(w, "The server could not handle the request. Please try again later.", http.StatusServiceUnavailable)
		return
	}
	p.render(w, r, http.StatusOK, userID, username, web.APIKeysData{NewKey: key.Plaintext(), NewKeyName: rec.Name})
}

// ownKey returns the user's key named in the path, or answers 404.
func (p *pageHandler) ownKey(w http.ResponseWriter, r *http.Request, userID string) (store.APIKey, bool) {
	rec, err := p.svc.Show(r.Context(), r.PathValue("id"))
	if err == nil && rec.Owner == userID {
		return rec, true
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		p.svc.log.Error("API keys page: load key", "err", err)
		http.Error(w, "The server could not handle the request. Please try again later.", http.StatusServiceUnavailable)
		return store.APIKey{}, false
	}
	http.Error(w, "No such key.", http.StatusNotFound)
	return store.APIKey{}, false
}

func (p *pageHandler) rotate(w http.ResponseWriter, r *http.Request) {
	userID, username, ok := p.post(w, r)
	if !ok {
		return
	}
	rec, ok := p.ownKey(w, r, userID)
	if !ok {
		return
	}
	_, created, key, err := p.svc.Rotate(r.Context(), rec.ID, 0, Actor{Name: "user:" + userID, IP: remoteAddr(r).String()})
	if errors.Is(err, store.ErrConflict) {
		p.render(w, r, http.StatusConflict, userID, username, web.APIKeysData{Error: "This key was already rotated or revoked."})
		return
	}
	if err != nil {
		p.svc.log.Error("API keys page: rotate", "err", err)
		http.Error(w, "The server could not handle the request. Please try again later.", http.StatusServiceUnavailable)
		return
	}
	p.render(w, r, http.StatusOK, userID, username, web.APIKeysData{NewKey: key.Plaintext(), NewKeyName: created.Name})
}

func (p *pageHandler) revoke(w http.ResponseWriter, r *http.Request) {
	userID, _, ok := p.post(w, r)
	if !ok {
		return
	}
	rec, ok := p.ownKey(w, r, userID)
	if !ok {
		return
	}
	if _, err := p.svc.Revoke(r.Context(), rec.ID, Actor{Name: "user:" + userID, IP: remoteAddr(r).String()}); err != nil {
		p.svc.log.Error("API keys page: revoke", "err", err)
		http.Error(w, "The server could not handle the request. Please try again later.", http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}
