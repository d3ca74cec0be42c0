package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AuthCode is an authorization code (RFC 6749, section 4.1.2): one use,
// short-lived, bound to the client, the redirect URI and the PKCE
// challenge. The store keeps only its keyed hash.
type AuthCode struct {
	Hash          []byte // keyed hash of the code
	ClientID      string
	UserID        string
	RedirectURI   string // exactly as given to /authorize
	Scopes        []string
	Nonce         string // OpenID Connect nonce, for the ID token
	CodeChallenge string // PKCE S256 challenge (RFC 7636)
	AuthTime      time.Time
	CreatedAt     time.Time
	ExpiresAt     time.Time
	UsedAt        time.Time // zero until redeemed
	FamilyID      string    // the refresh family its redemption started
}

const authCodeColumns = `hash, client_id, user_id, redirect_uri, scopes, nonce, code_challenge,
	auth_time, created_at, expires_at, used_at, family_id`

func scanAuthCode(row interface{ Scan(...any) error }) (AuthCode, error) {
	var c AuthCode
	var scopes string
	var authTime, created, expires, used int64
	err := row.Scan(&c.Hash, &c.ClientID, &c.UserID, &c.RedirectURI, &scopes, &c.Nonce, &c.CodeChallenge,
		&authTime, &created, &expires, &used, &c.FamilyID)
	c.Scopes = decodeScopeList(scopes)
	c.AuthTime, c.CreatedAt, c.ExpiresAt, c.UsedAt = fromMillis(authTime), fromMillis(created), fromMillis(expires), fromMillis(used)
	return c, err
}

// CreateAuthCode inserts an unused code. Hash, ClientID, UserID,
// RedirectURI, CodeChallenge and ExpiresAt are required (else
// [ErrInvalid]); a zero CreatedAt becomes now.
func (s *Store) CreateAuthCode(ctx context.Context, c AuthCode) error {
	if len(c.Hash) == 0 || c.ClientID == "" || c.UserID == "" || c.RedirectURI == "" ||
		c.CodeChallenge == "" || c.ExpiresAt.IsZero() {
		return fmt.Errorf("store: create code: %w: missing field", ErrInvalid)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	_, err := s.db.ExecContext(ctx,
		"INSERT INTO auth_codes ("+authCodeColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, '')",
		c.Hash, c.ClientID, c.UserID, c.RedirectURI, encodeScopeList(c.Scopes), c.Nonce, c.CodeChallenge,
		millis(c.AuthTime), millis(c.CreatedAt), millis(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: create code: %w", mapErr(err))
	}
	return nil
}

// AuthCode returns the code whose hash is hash, used or not, expired or
// not, or an error wrapping [ErrNotFound].
func (s *Store) AuthCode(ctx context.Context, hash []byte) (AuthCode, error) {
	c, err := scanAuthCode(s.db.QueryRowContext(ctx, "SELECT "+authCodeColumns+" FROM auth_codes WHERE hash = $1", hash))
	if err != nil {
		return AuthCode{}, fmt.Errorf("store: code: %w", mapErr(err))
	}
	return c, nil
}

// RedeemAuthCode uses the code whose hash is hash, once, at time now
// (codes expired by then are refused): in one transaction it marks the
// code used, starts the refresh family familyID (client, user, scopes and
// auth time taken from the code) with what was issued for it, the access
// token at and, unless rt is nil, the refresh token *rt, and returns the
// code. The caller reads the code first ([Store.AuthCode]) to check its
// bindings and sign the tokens; one transaction then makes the redemption
// and the issue one durable step.
//
// A code that was already redeemed is a replay (RFC 6749, section 4.1.2):
// the family its first use started is revoked, with every access token
// issued in it (see [Store.RevokeFamily]), and the error wraps
// [ErrReplay]. An unknown or expired code wraps [ErrNotFound]. Of racing
// callers exactly one succeeds.
func (s *Store) RedeemAuthCode(ctx context.Context, hash []byte, familyID string, now time.Time, rt *RefreshToken, at IssuedToken) (AuthCode, error) {
	if familyID == "" || now.IsZero() || !validIssue(rt, at) {
		return AuthCode{}, fmt.Errorf("store: redeem code: %w: empty family ID, time, token ID, hash or expiry", ErrInvalid)
	}
	var c AuthCode
	var replay bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		replay = false
		res, err := tx.ExecContext(ctx,
			"UPDATE auth_codes SET used_at = $1, family_id = $2 WHERE hash = $3 AND used_at = 0 AND expires_at > $1",
			millis(now), familyID, hash)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		c, err = scanAuthCode(tx.QueryRowContext(ctx, "SELECT "+authCodeColumns+" FROM auth_codes WHERE hash = $1", hash))
		if err != nil {
			return err
		}
		if n == 0 {
			if c.UsedAt.IsZero() {
				return fmt.Errorf("%w: code expired", ErrNotFound)
			}
			replay = true
			if c.FamilyID == "" {
				return nil
			}
			denied, err := s.revokeFamiliesTx(ctx, tx, "id = $1", now, c.FamilyID)
			if err != nil {
				return err
			}
			return s.recordRevocationsTx(ctx, tx, denied)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO refresh_families (id, client_id, user_id, scopes, auth_time, created_at, revoked_at)
			 VALUES ($1, $2, $3, $4, $5, $6, 0)`,
			familyID, c.ClientID, c.UserID, encodeScopeList(c.Scopes), millis(c.AuthTime), millis(now))
		if err != nil {
			return err
		}
		return s.insertIssuedTx(ctx, tx, familyID, rt, at, now)
	})
	if err == nil && replay {
		err = fmt.Errorf("%w: authorization code used twice; its tokens are revoked", ErrReplay)
	}
	if err != nil {
		if errors.Is(err, ErrReplay) {
			return c, fmt.Errorf("store: redeem code: %w", err)
		}
		return AuthCode{}, fmt.Errorf("store: redeem code: %w", err)
	}
	return c, nil
}
