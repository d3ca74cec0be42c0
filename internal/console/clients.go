package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Paths of the clients pages.
const clientsPath = Path + "/clients"

// registerClients adds the clients pages: list and search, create (the
// secret shown once), show and edit, rotate the secret, delete.
func (c *Console) registerClients(mux *http.ServeMux) {
	c.Handle(mux, "GET "+clientsPath, c.clientList)
	c.Handle(mux, "GET "+clientsPath+"/new", c.clientNew)
	c.Handle(mux, "POST "+clientsPath, c.clientCreate)
	c.Handle(mux, "GET "+clientsPath+"/{id}", c.clientShow)
	c.Handle(mux, "POST "+clientsPath+"/{id}", c.clientUpdate)
	c.Handle(mux, "POST "+clientsPath+"/{id}/rotate-secret", c.clientRotate)
	c.Handle(mux, "POST "+clientsPath+"/{id}/delete", c.clientDelete)
}

// clientListData fills console_clients.html.
type clientListData struct {
	Clients   []store.Client
	Cursor    Cursor
	NextURL   string
	FirstURL  string
	Searching bool
}

func (c *Console) clientList(w http.ResponseWriter, r *http.Request, op Operator) {
	cur := ReadCursor(r)
	cs, err := c.st.SearchClients(r.Context(), cur.Q, cur.After, PageSize+1)
	if err != nil {
		c.Fail(w, r, op, "list clients", err)
		return
	}
	if len(cs) > PageSize {
		cs = cs[:PageSize]
		cur.Next = cs[len(cs)-1].ID
	}
	c.Render(w, r, http.StatusOK, "clients", op, Page{Title: "Clients", Section: "clients",
		Data: clientListData{Clients: cs, Cursor: cur, NextURL: cur.NextURL(clientsPath),
			FirstURL: cur.FirstURL(clientsPath), Searching: cur.Q != ""}})
}

// clientForm is the client form as posted: text as typed, so that a
// refused form comes back as the operator left it.
type clientForm struct {
	ID, Name                  string
	Public                    bool
	GrantTypes                []string
	Scopes                    string // space-separated
	RedirectURIs              string // one per line
	Audiences                 string // one per line
	ExchangeAudiences         string // one per line
	Impersonate               bool
	AccessTTL, RefreshTTL     string // Go durations, "" for the default
	AccessAlg, IDAlg          string
	AuthMethod, JWKSURI, JWKS string
	HasSecret, SecretInGrace  bool      // shown on the edit page
	PrevSecretUntil           time.Time // the old secret's end, if in grace
	CreatedAt, UpdatedAt      time.Time
	Gateway                   bool
	TokenFormat               string // "" (JWT) or "opaque"
	RateLimit                 string // COUNT/WINDOW, "" for none
}

// clientFormData fills console_client.html (create, or show and edit).
type clientFormData struct {
	New         bool
	Form        clientForm
	Errors      map[string]string // field name → message
	GrantTypes  []string          // the choices
	Algs        []string
	AuthMethods []string
	Graces      []graceChoice
}

// graceChoice is an option of the rotate-secret form.
type graceChoice struct {
	Value, Label string
	Selected     bool
}

// formOf returns the form showing client cl.
func (c *Console) formOf(cl store.Client) clientForm {
	ttl := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	return clientForm{ID: cl.ID, Name: cl.Name, Public: cl.Public, GrantTypes: cl.GrantTypes,
		Scopes: strings.Join(cl.Scopes, " "), RedirectURIs: strings.Join(cl.RedirectURIs, "\n"),
		Audiences: strings.Join(cl.Audiences, "\n"), ExchangeAudiences: strings.Join(cl.ExchangeAudiences, "\n"),
		Impersonate: cl.MayImpersonate, AccessTTL: ttl(cl.AccessTokenTTL), RefreshTTL: ttl(cl.RefreshTokenTTL),
		AccessAlg: cl.AccessTokenAlg, IDAlg: cl.IDTokenAlg, AuthMethod: cl.TokenEndpointAuthMethod,
		JWKSURI: cl.JWKSURI, JWKS: string(cl.JWKS), HasSecret: len(cl.SecretHash) > 0,
		SecretInGrace:   len(cl.PrevSecretHash) > 0 && c.now().Before(cl.PrevSecretExpiresAt),
		PrevSecretUntil: cl.PrevSecretExpiresAt, CreatedAt: cl.CreatedAt, UpdatedAt: cl.UpdatedAt,
		Gateway: cl.Gateway, TokenFormat: cl.AccessTokenFormat, RateLimit: oauth.FormatRate(cl.RateLimit, cl.RateWindow)}
}

// readClientForm reads the posted form.
func readClientForm(r *http.Request, isNew bool) clientForm {
	f := r.PostForm
	form := clientForm{Name: strings.TrimSpace(f.Get("name")), GrantTypes: f["grant_types"],
		Scopes: f.Get("scopes"), RedirectURIs: f.Get("redirect_uris"), Audiences: f.Get("audiences"),
		ExchangeAudiences: f.Get("exchange_audiences"), Impersonate: f.Get("impersonate") == "on",
		AccessTTL: strings.TrimSpace(f.Get("access_ttl")), RefreshTTL: strings.TrimSpace(f.Get("refresh_ttl")),
		AccessAlg: f.Get("access_alg"), IDAlg: f.Get("id_alg"), AuthMethod: f.Get("auth_method"),
		JWKSURI: strings.TrimSpace(f.Get("jwks_uri")), JWKS: strings.TrimSpace(f.Get("jwks")),
		Gateway: f.Get("gateway") == "on", TokenFormat: f.Get("token_format"), RateLimit: strings.TrimSpace(f.Get("rate_limit"))}
	if isNew {
		form.ID = strings.TrimSpace(f.Get("id"))
		form.Public = f.Get("public") == "on"
	}
	return form
}

// lines splits text into its non-empty trimmed lines (ended by LF, CR
// or CRLF).
func lines(s string) []string {
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// apply copies the form onto cl, or returns the field errors of values
// the form itself cannot read (lifetimes). Everything else is checked by
// oauth.CheckClient, in oauth.CreateClient or oauth.UpdateClient.
func (form clientForm) apply(cl *store.Client) map[string]string {
	errs := map[string]string{}
	dur := func(field, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			errs[field] = "Enter a duration such as 15m, 1h or 720h, or leave it empty for the server's default."
		}
		return d
	}
	cl.Name = form.Name
	cl.GrantTypes = form.GrantTypes
	cl.Scopes = strings.Fields(form.Scopes)
	cl.RedirectURIs = lines(form.RedirectURIs)
	cl.Audiences = lines(form.Audiences)
	cl.ExchangeAudiences = lines(form.ExchangeAudiences)
	cl.MayImpersonate = form.Impersonate
	cl.AccessTokenTTL = dur("access_ttl", form.AccessTTL)
	cl.RefreshTokenTTL = dur("refresh_ttl", form.RefreshTTL)
	cl.AccessTokenAlg, cl.IDTokenAlg = form.AccessAlg, form.IDAlg
	cl.TokenEndpointAuthMethod = form.AuthMethod
	if cl.Public {
		cl.TokenEndpointAuthMethod = "" // CheckClient fills in "none"
	}
	cl.JWKSURI = form.JWKSURI
	cl.JWKS = nil
	if form.JWKS != "" {
		cl.JWKS = []byte(form.JWKS)
	}
	cl.Gateway, cl.AccessTokenFormat = form.Gateway, form.TokenFormat
	n, window, err := keyauth.ParseRate(form.RateLimit)
	if err != nil {
		errs["rate_limit"] = "Enter COUNT/WINDOW, such as 100/m or 10/s, or leave it empty for no limit."
	}
	cl.RateLimit, cl.RateWindow = n, window
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// clientFieldOf maps oauth.CheckClient's message to the form field it is
// about, so the message is shown next to it; "" for the whole form.
func clientFieldOf(msg string) string {
	for _, m := range []struct{ prefix, field string }{
		{"client ID", "id"},
		{"name", "name"},
		{"redirect URI", "redirect_uris"},
		{"authorization_code needs at least one redirect", "redirect_uris"},
		{"scope", "scopes"},
		{"exchange audiences", "exchange_audiences"},
		{"audience", "audiences"},
		{"access token lifetime", "access_ttl"},
		{"refresh token lifetime", "refresh_ttl"},
		{"access token algorithm", "access_alg"},
		{"ID token algorithm", "id_alg"},
		{"jwks", "jwks"},
		{"private_key_jwt", "jwks"},
		{"unsupported token endpoint", "auth_method"},
		{"a confidential client needs", "auth_method"},
		{"a public client authenticates", "auth_method"},
		{"a gateway client", "gateway"},
		{"access token format", "token_format"},
		{"a rate limit", "rate_limit"},
		{"unsupported grant", "grant_types"},
		{"a public client", "grant_types"},
		{"refresh_token needs", "grant_types"},
	} {
		if strings.HasPrefix(msg, m.prefix) {
			return m.field
		}
	}
	return ""
}

// invalidClient turns a refused client into a field error.
func invalidClient(err error) map[string]string {
	_, msg, ok := strings.Cut(err.Error(), oauth.ErrInvalidClient.Error()+": ")
	if !ok || msg == "" {
		msg = "the settings are not valid"
	}
	return map[string]string{clientFieldOf(msg): strings.ToUpper(msg[:1]) + msg[1:] + "."}
}

// clientGraces are the grace periods the rotate-secret form offers.
var clientGraces = []struct {
	d     time.Duration
	label string
}{
	{0, "none: the old secret stops working now"},
	{time.Hour, "1 hour"},
	{24 * time.Hour, "1 day"},
	{7 * 24 * time.Hour, "7 days"},
}

// renderClientForm renders the create or edit page.
func (c *Console) renderClientForm(w http.ResponseWriter, r *http.Request, op Operator, status int, isNew bool,
	form clientForm, errs map[string]string) {
	data := clientFormData{New: isNew, Form: form, Errors: errs, GrantTypes: oauth.GrantTypes,
		Algs: []string{"ES256", "EdDSA", "RS256"}, AuthMethods: []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}}
	grace := c.secretGrace()
	for _, g := range clientGraces {
		data.Graces = append(data.Graces, graceChoice{Value: g.d.String(), Label: g.label, Selected: g.d == grace})
	}
	if !slices.ContainsFunc(data.Graces, func(g graceChoice) bool { return g.Selected }) {
		data.Graces = append(data.Graces, graceChoice{Value: grace.String(), Label: grace.String() + " (server default)", Selected: true})
	}
	p := Page{Title: "New client", Section: "clients", Data: data}
	if !isNew {
		p.Title = "Client " + form.Name
	}
	if len(errs) > 0 {
		p.Error = "The client was not saved: correct the fields marked below."
		if msg, ok := errs[""]; ok {
			p.Error = "The client was not saved. " + msg
		}
	}
	c.Render(w, r, status, "client", op, p)
}

// secretGrace is the default grace of a rotated client secret.
func (c *Console) secretGrace() time.Duration {
	if c.cfg.SecretGrace > 0 {
		return c.cfg.SecretGrace
	}
	return oauth.DefaultSecretGrace
}

func (c *Console) clientNew(w http.ResponseWriter, r *http.Request, op Operator) {
	c.renderClientForm(w, r, op, http.StatusOK, true,
		clientForm{GrantTypes: []string{"client_credentials"}, AuthMethod: "client_secret_basic"}, nil)
}

// secretData fills console_client_secret.html: a secret shown once.
type secretData struct {
	ClientID, Name, Secret string
	Rotated                bool
	GraceUntil             time.Time // the old secret's end, after a rotation
}

func (c *Console) clientCreate(w http.ResponseWriter, r *http.Request, op Operator) {
	form := readClientForm(r, true)
	cl := store.Client{ID: form.ID, Public: form.Public}
	if cl.ID == "" {
		cl.ID = oauth.NewClientID()
	}
	if errs := form.apply(&cl); errs != nil {
		c.renderClientForm(w, r, op, http.StatusBadRequest, true, form, errs)
		return
	}
	created, plain, err := oauth.CreateClient(r.Context(), c.st, c.cfg.Hasher, cl)
	switch {
	case errors.Is(err, oauth.ErrInvalidClient):
		c.renderClientForm(w, r, op, http.StatusBadRequest, true, form, invalidClient(err))
		return
	case errors.Is(err, store.ErrConflict):
		c.renderClientForm(w, r, op, http.StatusConflict, true, form, map[string]string{"id": "A client with this ID already exists."})
		return
	case errors.Is(err, store.ErrInvalid):
		c.renderClientForm(w, r, op, http.StatusBadRequest, true, form, map[string]string{"": "These settings are not allowed for this client."})
		return
	case err != nil:
		c.Fail(w, r, op, "create client", err)
		return
	}
	c.Audit(r.Context(), op, "client.create", created.ID, map[string]any{"name": created.Name})
	if plain == "" {
		Redirect(w, r, clientsPath+"/"+url.PathEscape(created.ID), "client-updated")
		return
	}
	c.Render(w, r, http.StatusCreated, "client_secret", op, Page{Title: "Client created", Section: "clients",
		Data: secretData{ClientID: created.ID, Name: created.Name, Secret: plain}})
}

// client loads the client of the path, or answers 404 or 503.
func (c *Console) client(w http.ResponseWriter, r *http.Request, op Operator) (store.Client, bool) {
	cl, err := c.st.Client(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		c.NotFound(w, r, op, "client")
		return cl, false
	} else if err != nil {
		c.Fail(w, r, op, "load client", err)
		return cl, false
	}
	return cl, true
}

func (c *Console) clientShow(w http.ResponseWriter, r *http.Request, op Operator) {
	if cl, ok := c.client(w, r, op); ok {
		c.renderClientForm(w, r, op, http.StatusOK, false, c.formOf(cl), nil)
	}
}

func (c *Console) clientUpdate(w http.ResponseWriter, r *http.Request, op Operator) {
	cl, ok := c.client(w, r, op)
	if !ok {
		return
	}
	form := readClientForm(r, false)
	shown := func() clientForm { // the posted form, with what it cannot change
		f := c.formOf(cl)
		form.ID, form.Public, form.HasSecret, form.SecretInGrace = f.ID, f.Public, f.HasSecret, f.SecretInGrace
		form.PrevSecretUntil, form.CreatedAt, form.UpdatedAt = f.PrevSecretUntil, f.CreatedAt, f.UpdatedAt
		return form
	}
	if errs := form.apply(&cl); errs != nil {
		c.renderClientForm(w, r, op, http.StatusBadRequest, false, shown(), errs)
		return
	}
	_, err := oauth.UpdateClient(r.Context(), c.st, cl)
	switch {
	case errors.Is(err, oauth.ErrInvalidClient):
		c.renderClientForm(w, r, op, http.StatusBadRequest, false, shown(), invalidClient(err))
		return
	case errors.Is(err, store.ErrInvalid):
		c.renderClientForm(w, r, op, http.StatusBadRequest, false, shown(), map[string]string{"": "These settings are not allowed for this client."})
		return
	case errors.Is(err, store.ErrNotFound):
		c.NotFound(w, r, op, "client")
		return
	case err != nil:
		c.Fail(w, r, op, "update client", err)
		return
	}
	c.Audit(r.Context(), op, "client.update", cl.ID, nil)
	Redirect(w, r, clientsPath+"/"+url.PathEscape(cl.ID), "client-updated")
}

func (c *Console) clientRotate(w http.ResponseWriter, r *http.Request, op Operator) {
	grace, err := time.ParseDuration(r.PostForm.Get("grace"))
	if err != nil || grace < 0 || grace > 30*24*time.Hour {
		c.Error(w, r, op, http.StatusBadRequest, "Bad request", "Choose a grace period from the list. Nothing was changed.")
		return
	}
	until := c.now().Add(grace)
	shownUntil := until
	if grace == 0 {
		shownUntil = time.Time{}
	}
	rotated, plain, err := oauth.RotateClientSecret(r.Context(), c.st, c.cfg.Hasher, r.PathValue("id"), until)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.NotFound(w, r, op, "client")
		return
	case errors.Is(err, oauth.ErrNoSecret):
		c.Error(w, r, op, http.StatusBadRequest, "No secret to rotate",
			"This client has no secret: it is public or authenticates with private_key_jwt. Nothing was changed.")
		return
	case err != nil:
		c.Fail(w, r, op, "rotate client secret", err)
		return
	}
	c.Audit(r.Context(), op, "client.rotate_secret", rotated.ID, map[string]any{"grace_seconds": int64(grace / time.Second)})
	c.Render(w, r, http.StatusOK, "client_secret", op, Page{Title: "New client secret", Section: "clients",
		Data: secretData{ClientID: rotated.ID, Name: rotated.Name, Secret: plain, Rotated: true, GraceUntil: shownUntil}})
}

func (c *Console) clientDelete(w http.ResponseWriter, r *http.Request, op Operator) {
	id := r.PathValue("id")
	err := c.st.DeleteClient(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		c.NotFound(w, r, op, "client")
		return
	} else if err != nil {
		c.Fail(w, r, op, "delete client", err)
		return
	}
	c.Audit(r.Context(), op, "client.delete", id, nil)
	Redirect(w, r, clientsPath, "client-deleted")
}
