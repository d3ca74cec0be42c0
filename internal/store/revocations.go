package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// ChangeTokenRevoked is the [Change] kind recorded when an access token is
// revoked; the reference is the token's "jti". Servers, guards and
// gateways follow it to reject the token at once.
const ChangeTokenRevoked = "token_revoked"

// RevokedToken is an entry of the access-token denylist.
type RevokedToken struct {
	ID        string    // the token's "jti"
	ClientID  string    // the client the token was issued to
	ExpiresAt time.Time // the token's "exp": after it the entry can go
	RevokedAt time.Time
}

// RevokeToken adds the access token with "jti" id to the denylist until
// expiresAt and records a [ChangeTokenRevoked] change. Revoking a token
// that is already revoked succeeds and records nothing. An empty id or a
// zero expiresAt wraps [ErrInvalid].
func (s *Store) RevokeToken(ctx context.Context, id, clientID string, expiresAt time.Time) error {
	if id == "" || expiresAt.IsZero() {
		return fmt.Errorf("store: revoke token: %w: empty jti or expiry", ErrInvalid)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, client_id, expires_at, revoked_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING`,
			id, clientID, millis(expiresAt), millis(s.now()))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeTokenRevoked, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	return nil
}

// RevokedToken returns the denylist entry for "jti" id, or an error
// wrapping [ErrNotFound].
func (s *Store) RevokedToken(ctx context.Context, id string) (RevokedToken, error) {
	var r RevokedToken
	var exp, at int64
	err := s.db.QueryRowContext(ctx,
		"SELECT jti, client_id, expires_at, revoked_at FROM revoked_tokens WHERE jti = $1", id).
		Scan(&r.ID, &r.ClientID, &exp, &at)
	if err != nil {
		return RevokedToken{}, fmt.Errorf("store: revoked token: %w", mapErr(err))
	}
	r.ExpiresAt, r.RevokedAt = fromMillis(exp), fromMillis(at)
	return r, nil
}

// RevokedTokens returns every denylist entry that has not expired at now,
// for loading a server's in-memory denylist at start.
func (s *Store) RevokedTokens(ctx context.Context, now time.Time) ([]RevokedToken, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT jti, client_id, expires_at, revoked_at FROM revoked_tokens WHERE expires_at > $1 ORDER BY jti",
		millis(now))
	if err != nil {
		return nil, fmt.Errorf("store: revoked tokens: %w", mapErr(err))
	}
	defer rows.Close()
	var out []RevokedToken
	for rows.Next() {
		var r RevokedToken
		var exp, at int64
		if err := rows.Scan(&r.ID, &r.ClientID, &exp, &at); err != nil {
			return nil, fmt.Errorf("store: revoked tokens: %w", mapErr(err))
		}
		r.ExpiresAt, r.RevokedAt = fromMillis(exp), fromMillis(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: revoked tokens: %w", mapErr(err))
	}
	return out, nil
}

// UseAssertion records that the client assertion "jti" id of clientID has
// been used; it is remembered until expiresAt. If the same client used the
// same jti before (a replay, RFC 7523 section 3), it returns an error
// wrapping [ErrConflict]. Of racing callers exactly one succeeds.
func (s *Store) UseAssertion(ctx context.Context, clientID, id string, expiresAt time.Time) error {
	if clientID == "" || id == "" {
		return fmt.Errorf("store: use assertion: %w: empty client ID or jti", ErrInvalid)
	}
	res, err := s.exec(ctx, `INSERT INTO used_assertions (client_id, jti, expires_at)
		VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING`, clientID, id, millis(expiresAt))
	if err != nil {
		return fmt.Errorf("store: use assertion: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: use assertion: %w", mapErr(err))
	}
	if n == 0 {
		return fmt.Errorf("store: use assertion: %w: jti already used", ErrConflict)
	}
	return nil
}

// PruneRevocations deletes denylist entries, used assertions and opaque
// access tokens that expired before now, and returns how many rows it
// deleted.
func (s *Store) PruneRevocations(ctx context.Context, now time.Time) (int, error) {
	return s.pruneTables(ctx, "prune revocations", now, revocationPrunes...)
}
