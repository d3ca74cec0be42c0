package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OpaqueToken is an opaque access token: a random string handed to the
// client, resolved by introspection. The store keeps only its keyed hash,
// with the claims a JWT access token would carry.
type OpaqueToken struct {
	Hash     []byte // keyed hash of the token (see internal/secret.Hasher)
	ID       string // "jti", unique; the denylist and change feed name the token by it
	ClientID string // the client it was issued to
	// FamilyID is the refresh family the token was issued in ("" if none):
	// revoking the family revokes the token.
	FamilyID string
	// Claims is the JSON claim set, as the JWT would carry it. The store
	// does not interpret it.
	Claims    []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero while live
}

const (
	opaqueColumns = "hash, jti, client_id, family_id, claims, created_at, expires_at, revoked_at"
	selectOpaque  = "SELECT " + opaqueColumns + " FROM opaque_tokens WHERE hash = $1"
)

func scanOpaque(row scanner) (OpaqueToken, error) {
	var t OpaqueToken
	var claims string
	var created, expires, revoked int64
	err := row.Scan(&t.Hash, &t.ID, &t.ClientID, &t.FamilyID, &claims, &created, &expires, &revoked)
	t.Claims = []byte(claims)
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromMillis(created), fromMillis(expires), fromMillis(revoked)
	return t, err
}

// CreateOpaqueToken stores the opaque token t; CreatedAt is set to now and
// RevokedAt is ignored. A missing hash, jti, client ID, claims or expiry
// wraps [ErrInvalid]; a hash or jti already stored wraps [ErrConflict].
func (s *Store) CreateOpaqueToken(ctx context.Context, t OpaqueToken) error {
	if len(t.Hash) == 0 || t.ID == "" || t.ClientID == "" || len(t.Claims) == 0 || t.ExpiresAt.IsZero() {
		return fmt.Errorf("store: create opaque token: %w: missing hash, jti, client ID, claims or expiry", ErrInvalid)
	}
	_, err := s.exec(ctx, "INSERT INTO opaque_tokens ("+opaqueColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
		t.Hash, t.ID, t.ClientID, t.FamilyID, string(t.Claims), millis(s.now()), millis(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: create opaque token: %w", mapErr(err))
	}
	return nil
}

// OpaqueToken returns the opaque token whose hash is hash, revoked or
// not, expired or not (until pruned), or an error wrapping [ErrNotFound].
// It is one lookup by primary key.
func (s *Store) OpaqueToken(ctx context.Context, hash []byte) (OpaqueToken, error) {
	t, err := scanOpaque(s.queryRow(ctx, selectOpaque, hash))
	if err != nil {
		return OpaqueToken{}, fmt.Errorf("store: opaque token: %w", mapErr(err))
	}
	return t, nil
}

// RevokeOpaqueToken revokes the opaque token whose hash is hash: in one
// transaction it marks the token revoked, puts its jti on the access-token
// denylist until it expires (see [Store.RevokeToken]) and records a
// [ChangeTokenRevoked] change with the jti, so guards and gateways that
// cached the token evict it. It returns the token. Revoking a revoked
// token changes and records nothing; an unknown hash wraps [ErrNotFound].
func (s *Store) RevokeOpaqueToken(ctx context.Context, hash []byte) (OpaqueToken, error) {
	var t OpaqueToken
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanOpaque(tx.QueryRowContext(ctx, selectOpaque, hash))
		if err != nil {
			return err
		}
		if !t.RevokedAt.IsZero() {
			return nil
		}
		now := s.now()
		res, err := tx.ExecContext(ctx, "UPDATE opaque_tokens SET revoked_at = $1 WHERE hash = $2 AND revoked_at = 0", millis(now), hash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // revoked concurrently: that transaction recorded the change
		}
		t.RevokedAt = now.Truncate(time.Millisecond).UTC()
		res, err = tx.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, client_id, expires_at, revoked_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING`, t.ID, t.ClientID, millis(t.ExpiresAt), millis(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // already denied (its family was revoked)
		}
		_, err = s.recordChange(ctx, tx, ChangeTokenRevoked, t.ID)
		return err
	})
	if err != nil {
		return OpaqueToken{}, fmt.Errorf("store: revoke opaque token: %w", err)
	}
	return t, nil
}
