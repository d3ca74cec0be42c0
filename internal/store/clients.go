package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// ChangeClient is the [Change] kind recorded when a client is created,
// updated, deleted or gets a new secret; the reference is the client ID.
const ChangeClient = "client"

// maxClientsPage bounds one [Store.Clients] call.
const maxClientsPage = 1000

// Client is a registered OAuth client. Secrets are never stored, only their
// keyed hashes (see internal/secret.Hasher).
type Client struct {
	ID   string // client_id
	Name string // shown on the consent page
	// SecretHash is the keyed hash of the current secret; empty for public
	// clients and clients that authenticate with private_key_jwt.
	SecretHash []byte
	// PrevSecretHash is the hash of the secret replaced by the last
	// rotation, accepted until PrevSecretExpiresAt; empty if none.
	PrevSecretHash      []byte
	PrevSecretExpiresAt time.Time
	// Public clients cannot keep a secret (RFC 6749 section 2.1); they
	// authenticate with client_id only and must use PKCE.
	Public       bool
	GrantTypes   []string // allowed grant types
	Scopes       []string // scopes the client may request
	RedirectURIs []string // registered redirect URIs, compared exactly
	Audiences    []string // "aud" of its access tokens; empty means the issuer
	// AccessTokenTTL and RefreshTokenTTL are per-client lifetimes; 0 means
	// the server default.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	// AccessTokenAlg signs the client's access tokens ("" = ES256);
	// IDTokenAlg signs its ID tokens ("" = RS256).
	AccessTokenAlg string
	IDTokenAlg     string
	// JWKS (a JWK Set document) or JWKSURI holds the client's public keys
	// for private_key_jwt.
	JWKS    []byte
	JWKSURI string
	// TokenEndpointAuthMethod is the registered client authentication
	// method (RFC 7591 section 2), e.g. "client_secret_basic".
	TokenEndpointAuthMethod string
	// RegistrationTokenHash is the keyed hash of the RFC 7592 registration
	// access token of a dynamically registered client; empty otherwise.
	RegistrationTokenHash []byte
	// ExchangeAudiences are the audiences the client may get tokens for by
	// token exchange (RFC 8693); empty means it may exchange for none.
	ExchangeAudiences []string
	// MayImpersonate lets the client's token exchanges issue tokens that do
	// not name it as an actor (impersonation, RFC 8693 section 1.1).
	MayImpersonate bool
	// AccessTokenFormat is the form of the client's access tokens:
	// [AccessTokenJWT] (or "", the default) or [AccessTokenOpaque].
	AccessTokenFormat string
	// Gateway marks a trusted gateway client: its token exchanges may
	// present any Gatehouse credential, API keys included, and always get a
	// short-lived internal JWT (the "phantom" token).
	Gateway bool
	// RateLimit is the number of token-endpoint requests the client may
	// make per RateWindow; 0 means no limit.
	RateLimit  int
	RateWindow time.Duration
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Access-token formats of [Client.AccessTokenFormat].
const (
	AccessTokenJWT    = "jwt"    // signed JWT access tokens (RFC 9068); also ""
	AccessTokenOpaque = "opaque" // random strings resolved by introspection
)

// OpaqueAccessTokens reports whether the client's access tokens are opaque.
func (c *Client) OpaqueAccessTokens() bool {
	return c.AccessTokenFormat == AccessTokenOpaque
}

const clientColumns = `id, name, secret_hash, prev_secret_hash, prev_secret_expires_at, public,
	grant_types, scopes, redirect_uris, audiences, access_token_ttl, refresh_token_ttl,
	access_token_alg, id_token_alg, jwks, jwks_uri, token_endpoint_auth_method,
	registration_token_hash, created_at, updated_at, exchange_audiences, may_impersonate,
	access_token_format, gateway, rate_limit, rate_window`

// clientRow is a Client in stored form.
type clientRow struct {
	public, mayImpersonate, gateway             int64
	rateLimit, rateWindow                       int64
	grantTypes, scopes, redirectURIs, audiences string
	exchangeAudiences                           string
	accessTTL, refreshTTL                       int64
	prevExpires, created, updated               int64
}

func (c *Client) args() ([]any, error) {
	lists := make([]string, 5)
	for i, l := range [][]string{c.GrantTypes, c.Scopes, c.RedirectURIs, c.Audiences, c.ExchangeAudiences} {
		if l == nil {
			l = []string{}
		}
		b, err := json.Marshal(l)
		if err != nil {
			return nil, err
		}
		lists[i] = string(b)
	}
	public, impersonate, gateway := boolInt(c.Public), boolInt(c.MayImpersonate), boolInt(c.Gateway)
	return []any{
		c.ID, c.Name, nonNil(c.SecretHash), nonNil(c.PrevSecretHash), millis(c.PrevSecretExpiresAt), public,
		lists[0], lists[1], lists[2], lists[3], c.AccessTokenTTL.Milliseconds(), c.RefreshTokenTTL.Milliseconds(),
		c.AccessTokenAlg, c.IDTokenAlg, nonNil(c.JWKS), c.JWKSURI, c.TokenEndpointAuthMethod,
		nonNil(c.RegistrationTokenHash), millis(c.CreatedAt), millis(c.UpdatedAt), lists[4], impersonate,
		c.AccessTokenFormat, gateway, int64(c.RateLimit), c.RateWindow.Milliseconds(),
	}, nil
}

// boolInt stores a bool in an INTEGER column.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// nonNil turns a nil slice into an empty one: the columns are NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// emptyNil turns an empty slice into nil, so that unset byte fields read
// back the same on both backends.
func emptyNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func scanClient(sc scanner) (Client, error) {
	var c Client
	var r clientRow
	err := sc.Scan(&c.ID, &c.Name, &c.SecretHash, &c.PrevSecretHash, &r.prevExpires, &r.public,
		&r.grantTypes, &r.scopes, &r.redirectURIs, &r.audiences, &r.accessTTL, &r.refreshTTL,
		&c.AccessTokenAlg, &c.IDTokenAlg, &c.JWKS, &c.JWKSURI, &c.TokenEndpointAuthMethod,
		&c.RegistrationTokenHash, &r.created, &r.updated, &r.exchangeAudiences, &r.mayImpersonate,
		&c.AccessTokenFormat, &r.gateway, &r.rateLimit, &r.rateWindow)
	if err != nil {
		return Client{}, err
	}
	c.SecretHash, c.PrevSecretHash = emptyNil(c.SecretHash), emptyNil(c.PrevSecretHash)
	c.JWKS, c.RegistrationTokenHash = emptyNil(c.JWKS), emptyNil(c.RegistrationTokenHash)
	c.PrevSecretExpiresAt = fromMillis(r.prevExpires)
	c.Public = r.public != 0
	c.MayImpersonate = r.mayImpersonate != 0
	c.Gateway = r.gateway != 0
	c.RateLimit = int(r.rateLimit)
	c.RateWindow = time.Duration(r.rateWindow) * time.Millisecond
	for _, l := range []struct {
		raw string
		dst *[]string
	}{{r.grantTypes, &c.GrantTypes}, {r.scopes, &c.Scopes}, {r.redirectURIs, &c.RedirectURIs}, {r.audiences, &c.Audiences},
		{r.exchangeAudiences, &c.ExchangeAudiences}} {
		if err := json.Unmarshal([]byte(l.raw), l.dst); err != nil {
			return Client{}, fmt.Errorf("client %q: corrupt list column: %w", c.ID, err)
		}
		if len(*l.dst) == 0 {
			*l.dst = nil
		}
	}
	c.AccessTokenTTL = time.Duration(r.accessTTL) * time.Millisecond
	c.RefreshTokenTTL = time.Duration(r.refreshTTL) * time.Millisecond
	c.CreatedAt, c.UpdatedAt = fromMillis(r.created), fromMillis(r.updated)
	return c, nil
}

func checkClient(c *Client) error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: empty client ID", ErrInvalid)
	case len(c.ID) > 255:
		return fmt.Errorf("%w: client ID longer than 255 bytes", ErrInvalid)
	case c.AccessTokenTTL < 0 || c.RefreshTokenTTL < 0:
		return fmt.Errorf("%w: negative token lifetime", ErrInvalid)
	case c.Public && (len(c.SecretHash) > 0 || len(c.PrevSecretHash) > 0):
		return fmt.Errorf("%w: a public client has no secret", ErrInvalid)
	case c.AccessTokenFormat != "" && c.AccessTokenFormat != AccessTokenJWT && c.AccessTokenFormat != AccessTokenOpaque:
		return fmt.Errorf("%w: unknown access token format %q", ErrInvalid, c.AccessTokenFormat)
	case c.RateLimit < 0 || c.RateWindow < 0 || (c.RateLimit > 0 && c.RateWindow < time.Millisecond):
		return fmt.Errorf("%w: a rate limit needs a positive count and a window of at least 1ms", ErrInvalid)
	}
	return nil
}

// CreateClient stores a new client and records a [ChangeClient] change. It
// sets CreatedAt and UpdatedAt to now and returns the client as stored. An
// existing ID wraps [ErrConflict]; an empty ID, a negative lifetime or a
// public client with a secret wraps [ErrInvalid].
func (s *Store) CreateClient(ctx context.Context, c Client) (Client, error) {
	if err := checkClient(&c); err != nil {
		return Client{}, fmt.Errorf("store: create client: %w", err)
	}
	now := s.now()
	c.CreatedAt, c.UpdatedAt = now, now
	args, err := c.args()
	if err != nil {
		return Client{}, fmt.Errorf("store: create client: %w", err)
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO clients ("+clientColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
			$23, $24, $25, $26)`, args...)
		if err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeClient, c.ID)
		return err
	})
	if err != nil {
		return Client{}, fmt.Errorf("store: create client %q: %w", c.ID, err)
	}
	return s.Client(ctx, c.ID)
}

// Client returns the client with the given ID, or an error wrapping
// [ErrNotFound].
func (s *Store) Client(ctx context.Context, id string) (Client, error) {
	c, err := scanClient(s.db.QueryRowContext(ctx, "SELECT "+clientColumns+" FROM clients WHERE id = $1", id))
	if err != nil {
		return Client{}, fmt.Errorf("store: client %q: %w", id, mapErr(err))
	}
	return c, nil
}

// Clients returns up to limit clients whose IDs sort after after, in ID
// order; pass the last ID of one page as after to get the next. A limit
// outside 1..1000 means 1000.
func (s *Store) Clients(ctx context.Context, after string, limit int) ([]Client, error) {
	if limit <= 0 || limit > maxClientsPage {
		limit = maxClientsPage
	}
	return queryAll(ctx, s, scanClient, "clients",
		"SELECT "+clientColumns+" FROM clients WHERE id > $1 ORDER BY id LIMIT $2", after, limit)
}

// UpdateClient replaces the stored settings of client c.ID with c's, sets
// UpdatedAt to now, records a [ChangeClient] change and returns the client
// as stored. It does not change the ID, CreatedAt or the secret fields
// (SecretHash, PrevSecretHash, PrevSecretExpiresAt): secrets change only
// through [Store.RotateClientSecret]. A missing client wraps [ErrNotFound].
func (s *Store) UpdateClient(ctx context.Context, c Client) (Client, error) {
	if err := checkClient(&c); err != nil {
		return Client{}, fmt.Errorf("store: update client: %w", err)
	}
	c.UpdatedAt = s.now()
	args, err := c.args()
	if err != nil {
		return Client{}, fmt.Errorf("store: update client: %w", err)
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var public int64
		var secret []byte
		err := tx.QueryRowContext(ctx, "SELECT public, secret_hash FROM clients WHERE id = $1", c.ID).Scan(&public, &secret)
		if err != nil {
			return err
		}
		if c.Public && len(secret) > 0 {
			return fmt.Errorf("%w: client %q has a secret and cannot become public", ErrInvalid, c.ID)
		}
		// args: 0 id, 1 name, 5 public, 6..9 lists, 10..11 ttls, 12..16
		// algs, jwks, jwks_uri, auth method, 17 registration token, 19 updated,
		// 20 exchange audiences, 21 may impersonate, 22 access token format,
		// 23 gateway, 24..25 rate limit and window.
		_, err = tx.ExecContext(ctx, `UPDATE clients SET name = $2, public = $3, grant_types = $4, scopes = $5,
			redirect_uris = $6, audiences = $7, access_token_ttl = $8, refresh_token_ttl = $9,
			access_token_alg = $10, id_token_alg = $11, jwks = $12, jwks_uri = $13,
			token_endpoint_auth_method = $14, registration_token_hash = $15, updated_at = $16,
			exchange_audiences = $17, may_impersonate = $18, access_token_format = $19, gateway = $20,
			rate_limit = $21, rate_window = $22
			WHERE id = $1`,
			args[0], args[1], args[5], args[6], args[7], args[8], args[9], args[10], args[11],
			args[12], args[13], args[14], args[15], args[16], args[17], args[19], args[20], args[21],
			args[22], args[23], args[24], args[25])
		if err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeClient, c.ID)
		return err
	})
	if err != nil {
		return Client{}, fmt.Errorf("store: update client %q: %w", c.ID, err)
	}
	return s.Client(ctx, c.ID)
}

// DeleteClient deletes the client with the given ID and records a
// [ChangeClient] change. A missing client wraps [ErrNotFound].
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM clients WHERE id = $1", id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		_, err = s.recordChange(ctx, tx, ChangeClient, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: delete client %q: %w", id, err)
	}
	return nil
}

// RotateClientSecret makes newHash the hash of the client's secret and
// keeps the current one as the previous secret until prevExpiresAt (the
// grace period; a zero time ends it at once). The previous secret of an
// earlier rotation is forgotten. It records a [ChangeClient] change and
// returns the client as stored. A missing client wraps [ErrNotFound]; an
// empty newHash or a public client wraps [ErrInvalid].
func (s *Store) RotateClientSecret(ctx context.Context, id string, newHash []byte, prevExpiresAt time.Time) (Client, error) {
	if len(newHash) == 0 {
		return Client{}, fmt.Errorf("store: rotate client secret: %w: empty hash", ErrInvalid)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var public int64
		var current []byte
		err := tx.QueryRowContext(ctx, "SELECT public, secret_hash FROM clients WHERE id = $1", id).Scan(&public, &current)
		if err != nil {
			return err
		}
		if public != 0 {
			return fmt.Errorf("%w: client %q is public and has no secret", ErrInvalid, id)
		}
		prevExpires := millis(prevExpiresAt)
		if len(current) == 0 {
			prevExpires = 0
		}
		_, err = tx.ExecContext(ctx, `UPDATE clients SET prev_secret_hash = secret_hash,
			prev_secret_expires_at = $2, secret_hash = $3, updated_at = $4 WHERE id = $1`,
			id, prevExpires, newHash, millis(s.now()))
		if err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeClient, id)
		return err
	})
	if err != nil {
		return Client{}, fmt.Errorf("store: rotate secret of client %q: %w", id, err)
	}
	return s.Client(ctx, id)
}
