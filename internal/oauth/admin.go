package oauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// maxJSONBytes bounds the JSON bodies of the admin API and registration.
const maxJSONBytes = 64 << 10

// registerAdmin adds the admin API for clients: the same operations as
// `gatehouse client`, over HTTP, for callers presenting the admin token.
//
//	GET    /admin/clients[?after=ID&limit=N]  list (paged)
//	POST   /admin/clients                     create; the answer has the secret
//	GET    /admin/clients/{id}                show
//	PUT    /admin/clients/{id}                replace the settings
//	DELETE /admin/clients/{id}                delete
//	POST   /admin/clients/{id}/rotate-secret  new secret; the old one works for SecretGrace
func (p *Provider) registerAdmin(mux *http.ServeMux) {
	mux.HandleFunc("GET "+AdminClientsPath, p.admin(p.adminList))
	mux.HandleFunc("POST "+AdminClientsPath, p.admin(p.adminCreate))
	mux.HandleFunc("GET "+AdminClientsPath+"/{id}", p.admin(p.adminShow))
	mux.HandleFunc("PUT "+AdminClientsPath+"/{id}", p.admin(p.adminUpdate))
	mux.HandleFunc("DELETE "+AdminClientsPath+"/{id}", p.admin(p.adminDelete))
	mux.HandleFunc("POST "+AdminClientsPath+"/{id}/rotate-secret", p.admin(p.adminRotate))
}

// admin wraps an admin handler with the admin-token check.
func (p *Provider) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r)
		if !ok {
			writeBearerError(w, http.StatusUnauthorized, "", "")
			return
		}
		if !tokenEqual(tok, p.cfg.AdminToken) {
			p.log.Warn("admin API: wrong admin token", "path", r.URL.Path)
			writeBearerError(w, http.StatusUnauthorized, errInvalidToken, "invalid admin token")
			return
		}
		h(w, r)
	}
}

// bearerToken returns the token of an "Authorization: Bearer" header (RFC
// 6750 section 2.1).
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// tokenEqual compares a presented token with the configured one in
// constant time; hashing first hides the length too.
func tokenEqual(presented, want string) bool {
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(want))
	return want != "" && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// readJSON decodes a JSON request body of at most maxJSONBytes into v. With
// strict, unknown members are an error (the admin API catches typos); RFC
// 7591 section 2 instead says unknown metadata is ignored.
func readJSON(r *http.Request, v any, strict bool) *oauthError {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return badRequest("content type must be application/json")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBytes+1))
	if err != nil || len(body) > maxJSONBytes {
		return badRequest("request body too large or unreadable")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON or wrongly typed member")
	}
	if dec.More() {
		return badRequest("trailing data after the JSON object")
	}
	return nil
}

// metadataError turns an error from ClientJSON.Apply or the store into the
// RFC 7591 section 3.2.2 answer, or a server error.
func (p *Provider) metadataError(err error) *oauthError {
	switch {
	case errors.Is(err, ErrInvalidClient) && strings.Contains(err.Error(), "redirect URI"):
		return &oauthError{http.StatusBadRequest, errInvalidRedirectURI, strings.TrimPrefix(err.Error(), ErrInvalidClient.Error()+": ")}
	case errors.Is(err, ErrInvalidClient):
		return &oauthError{http.StatusBadRequest, errInvalidClientMeta, strings.TrimPrefix(err.Error(), ErrInvalidClient.Error()+": ")}
	case errors.Is(err, store.ErrInvalid):
		return &oauthError{http.StatusBadRequest, errInvalidClientMeta, "settings not allowed for this client"}
	case errors.Is(err, store.ErrConflict):
		return &oauthError{http.StatusConflict, errInvalidClientMeta, "a client with this ID already exists"}
	}
	p.log.Error("client management", "err", err)
	return faultError(err)
}

// createClient checks and stores a new client with settings from j,
// generating its ID (unless j has one), secret (for a confidential client
// that does not use private_key_jwt) and, with withRegistration, its RFC
// 7592 registration access token. The answer holds the plain secrets.
func (p *Provider) createClient(ctx context.Context, j *ClientJSON, withRegistration bool) (ClientJSON, *oauthError) {
	c := store.Client{ID: j.ClientID}
	if c.ID == "" {
		c.ID = NewClientID()
	}
	if j.Gateway && j.AccessTokenTTL == 0 {
		j.AccessTokenTTL = int64(DefaultGatewayTokenTTL / time.Second)
	}
	if err := j.Apply(&c); err != nil {
		return ClientJSON{}, p.metadataError(err)
	}
	var regToken string
	if withRegistration {
		regToken = NewRegistrationToken()
		c.RegistrationTokenHash = p.hasher.Hash(hashDomainRegistration, regToken)
	}
	created, plain, err := CreateClient(ctx, p.store, p.hasher, c)
	if err != nil {
		return ClientJSON{}, p.metadataError(err)
	}
	out := NewClientJSON(&created)
	out.ClientSecret = plain
	out.RegistrationAccessToken = regToken
	return out, nil
}

func (p *Provider) adminList(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeTokenError(w, http.StatusBadRequest, errInvalidRequest, "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	cs, err := p.store.Clients(r.Context(), r.URL.Query().Get("after"), limit)
	if err != nil {
		writeError(w, p.metadataError(err))
		return
	}
	out := struct {
		Clients []ClientJSON `json:"clients"`
		Next    string       `json:"next,omitempty"`
	}{Clients: make([]ClientJSON, 0, len(cs))}
	for i := range cs {
		out.Clients = append(out.Clients, NewClientJSON(&cs[i]))
	}
	if len(cs) == limit {
		out.Next = cs[len(cs)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *Provider) adminCreate(w http.ResponseWriter, r *http.Request) {
	var j ClientJSON
	if oe := readJSON(r, &j, true); oe != nil {
		writeError(w, oe)
		return
	}
	out, oe := p.createClient(r.Context(), &j, false)
	if oe != nil {
		writeError(w, oe)
		return
	}
	p.adminAudit(r, "client.create", out.ClientID, map[string]any{"name": out.ClientName})
	writeJSON(w, http.StatusCreated, out)
}

// adminClient loads the client named in the path, answering 404 itself.
func (p *Provider) adminClient(w http.ResponseWriter, r *http.Request) (store.Client, bool) {
	c, err := p.store.Client(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", ErrorDescription: "no such client"})
		return c, false
	} else if err != nil {
		writeError(w, p.metadataError(err))
		return c, false
	}
	return c, true
}

func (p *Provider) adminShow(w http.ResponseWriter, r *http.Request) {
	if c, ok := p.adminClient(w, r); ok {
		writeJSON(w, http.StatusOK, NewClientJSON(&c))
	}
}

func (p *Provider) adminUpdate(w http.ResponseWriter, r *http.Request) {
	var j ClientJSON
	if oe := readJSON(r, &j, true); oe != nil {
		writeError(w, oe)
		return
	}
	c, ok := p.adminClient(w, r)
	if !ok {
		return
	}
	if j.ClientID != "" && j.ClientID != c.ID {
		writeTokenError(w, http.StatusBadRequest, errInvalidRequest, "client_id does not match the path")
		return
	}
	if err := j.Apply(&c); err != nil {
		writeError(w, p.metadataError(err))
		return
	}
	updated, err := UpdateClient(r.Context(), p.store, c)
	if err != nil {
		writeError(w, p.metadataError(err))
		return
	}
	p.adminAudit(r, "client.update", updated.ID, nil)
	writeJSON(w, http.StatusOK, NewClientJSON(&updated))
}

func (p *Provider) adminDelete(w http.ResponseWriter, r *http.Request) {
	err := p.store.DeleteClient(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", ErrorDescription: "no such client"})
		return
	} else if err != nil {
		writeError(w, p.metadataError(err))
		return
	}
	p.adminAudit(r, "client.delete", r.PathValue("id"), nil)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (p *Provider) adminRotate(w http.ResponseWriter, r *http.Request) {
	rotated, plain, err := RotateClientSecret(r.Context(), p.store, p.hasher, r.PathValue("id"), p.now().Add(p.cfg.SecretGrace))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", ErrorDescription: "no such client"})
		return
	case errors.Is(err, ErrNoSecret):
		writeTokenError(w, http.StatusBadRequest, errInvalidRequest, "this client has no secret")
		return
	case err != nil:
		writeError(w, p.metadataError(err))
		return
	}
	p.adminAudit(r, "client.rotate_secret", rotated.ID,
		map[string]any{"grace_seconds": int64(p.cfg.SecretGrace / time.Second)})
	out := NewClientJSON(&rotated)
	out.ClientSecret = plain
	writeJSON(w, http.StatusOK, out)
}

// adminAudit writes an admin-API action to the audit log as actor
// "admin" (the event names are the console's); a failure is logged.
func (p *Provider) adminAudit(r *http.Request, event, target string, details map[string]any) {
	ev := store.AuditEvent{Actor: "admin", Event: event, Target: target, Outcome: "success", SourceIP: clientIP(r)}
	if details != nil {
		ev.Details = auditDetails(details)
	}
	p.log.Info("admin API: "+event, "target", target)
	p.auditNow(r.Context(), ev)
}
