package console

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

const apiKeysPath = Path + "/apikeys"

// registerAPIKeys adds the API keys page and its revoke and rotate forms:
// the same keyauth.Service calls as the admin API (DELETE and
// POST .../rotate on /admin/apikeys) and `gatehouse apikey revoke|rotate`.
func (c *Console) registerAPIKeys(mux *http.ServeMux) {
	if c.cfg.APIKeys == nil {
		return
	}
	c.Handle(mux, "GET "+apiKeysPath, c.apiKeys)
	c.Handle(mux, "POST "+apiKeysPath+"/{id}/revoke", c.revokeAPIKey)
	c.Handle(mux, "POST "+apiKeysPath+"/{id}/rotate", c.rotateAPIKey)
}

// apiKeyRow is one key on the page. It holds no secret.
type apiKeyRow struct {
	ID, Masked, Name   string
	Owner, OwnerName   string // the owner as stored, and the username if it is a user's ID
	Scopes             []string
	Status             string
	LastUsed, Expires  time.Time
	Created, GraceEnds time.Time
	Exposed            bool
}

// apiKeysData fills console_apikeys.html.
type apiKeysData struct {
	Keys      []apiKeyRow
	Cursor    Cursor
	NextURL   string
	FirstURL  string
	Searching bool
}

// keyIDLen is the length of a key ID (see internal/apikey).
const keyIDLen = 12

// keyShape matches the start of a masked or full key: prefix, environment
// and the body, whose first 12 characters are the ID.
var keyShape = regexp.MustCompile(`^[a-z0-9]{2,8}_(?:live|test)_([0-9A-Za-z]+)`)

// base62 matches what can be (the start of) a key ID.
var base62 = regexp.MustCompile(`^[0-9A-Za-z]{1,12}$`)

// searchTerms turns the search box into an ID prefix and owners: a key
// (masked or whole) means its ID; anything else is tried as the start of a
// key ID, as an owner, and as a username whose keys to show. full reports
// that q held more than an ID (a whole key, perhaps with its secret).
func (c *Console) searchTerms(r *http.Request, q string) (idPrefix string, owners []string, full bool, err error) {
	if m := keyShape.FindStringSubmatch(q); m != nil {
		id := m[1]
		if len(id) > keyIDLen {
			id, full = id[:keyIDLen], true
		}
		return id, nil, full || len(q) > len(m[0]), nil
	}
	if base62.MatchString(q) {
		idPrefix = q
	}
	owners = []string{q}
	u, err := c.st.UserByUsername(r.Context(), q)
	switch {
	case err == nil && u.ID != q:
		owners = append(owners, u.ID)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return "", nil, false, err
	}
	return idPrefix, owners, false, nil
}

func (c *Console) apiKeys(w http.ResponseWriter, r *http.Request, op Operator) {
	cur := ReadCursor(r)
	idPrefix, owners, full, err := c.searchTerms(r, cur.Q)
	if err != nil {
		c.Fail(w, r, op, "API keys: search", err)
		return
	}
	if full {
		// A whole key in the address: search by its ID instead, so the
		// secret does not stay in the history or the next page's links.
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, apiKeysPath+"?"+url.Values{"q": {idPrefix}}.Encode(), http.StatusSeeOther)
		return
	}
	keys, err := c.st.SearchAPIKeys(r.Context(), idPrefix, owners, cur.After, PageSize+1)
	if err != nil {
		c.Fail(w, r, op, "API keys: list", err)
		return
	}
	if len(keys) > PageSize {
		keys = keys[:PageSize]
		cur.Next = keys[len(keys)-1].ID
	}
	seen := map[string]bool{}
	var ownerIDs []string
	for _, k := range keys {
		if k.Owner != "" && !seen[k.Owner] {
			seen[k.Owner] = true
			ownerIDs = append(ownerIDs, k.Owner)
		}
	}
	names, err := c.st.UsernamesByID(r.Context(), ownerIDs)
	if err != nil {
		c.Fail(w, r, op, "API keys: owners", err)
		return
	}
	now := c.now()
	data := apiKeysData{Cursor: cur, NextURL: cur.NextURL(apiKeysPath), FirstURL: cur.FirstURL(apiKeysPath), Searching: cur.Q != ""}
	for _, k := range keys {
		data.Keys = append(data.Keys, apiKeyRow{ID: k.ID, Masked: keyauth.Masked(k), Name: k.Name, Owner: k.Owner,
			OwnerName: names[k.Owner], Scopes: k.Scopes, Status: keyauth.Status(k, now), LastUsed: k.LastUsedAt,
			Expires: k.ExpiresAt, Created: k.CreatedAt, GraceEnds: k.GraceUntil, Exposed: !k.ExposedAt.IsZero()})
	}
	c.Render(w, r, http.StatusOK, "apikeys", op, Page{Title: "API keys", Section: "apikeys", Data: data})
}

// apiKey loads the key named in the path, or answers 404.
func (c *Console) apiKey(w http.ResponseWriter, r *http.Request, op Operator) (store.APIKey, bool) {
	id := r.PathValue("id")
	if !base62.MatchString(id) {
		c.NotFound(w, r, op, "API key")
		return store.APIKey{}, false
	}
	k, err := c.cfg.APIKeys.Show(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		c.NotFound(w, r, op, "API key")
		return store.APIKey{}, false
	}
	if err != nil {
		c.Fail(w, r, op, "API keys: load", err)
		return store.APIKey{}, false
	}
	return k, true
}

func (c *Console) revokeAPIKey(w http.ResponseWriter, r *http.Request, op Operator) {
	k, ok := c.apiKey(w, r, op)
	if !ok {
		return
	}
	if _, err := c.cfg.APIKeys.Revoke(r.Context(), k.ID, op.KeyActor()); err != nil {
		c.Fail(w, r, op, "API keys: revoke", err)
		return
	}
	Redirect(w, r, apiKeysPath, "key-revoked")
}

// apiKeyRotatedData fills console_apikey_rotated.html: the new key, shown
// once.
type apiKeyRotatedData struct {
	OldID, NewID, Name string
	Key                string
	GraceUntil         time.Time
}

func (c *Console) rotateAPIKey(w http.ResponseWriter, r *http.Request, op Operator) {
	k, ok := c.apiKey(w, r, op)
	if !ok {
		return
	}
	old, created, key, err := c.cfg.APIKeys.Rotate(r.Context(), k.ID, 0, op.KeyActor())
	if errors.Is(err, store.ErrConflict) {
		c.Error(w, r, op, http.StatusConflict, "Already rotated",
			"This key was already rotated or revoked. Nothing was changed.")
		return
	}
	if err != nil {
		c.Fail(w, r, op, "API keys: rotate", err)
		return
	}
	c.Render(w, r, http.StatusOK, "apikey_rotated", op, Page{Title: "API key rotated", Section: "apikeys",
		Data: apiKeyRotatedData{OldID: old.ID, NewID: created.ID, Name: created.Name, Key: key.Plaintext(),
			GraceUntil: old.GraceUntil}})
}
