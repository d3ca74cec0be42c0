package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ChangeSigningKey is the [Change] kind recorded when a signing key is added
// or deleted; the reference is the key ID.
const ChangeSigningKey = "signing_key"

// SigningKey is one token-signing key. Keys of one algorithm form a chain:
// each new key activates when the previous one retires.
type SigningKey struct {
	ID          string    // key ID ("kid"), unique across algorithms
	Algorithm   string    // JOSE algorithm: "ES256", "RS256" or "EdDSA"
	Public      []byte    // PKIX DER public key
	Private     []byte    // sealed (encrypted) private key; opaque to the store
	CreatedAt   time.Time // when the key was generated
	ActivatesAt time.Time // starts signing
	RetiresAt   time.Time // stops signing; zero means not scheduled
	ExpiresAt   time.Time // leaves the JWKS; zero means not scheduled
}

const signingKeyColumns = "id, algorithm, public_key, private_key, created_at, activates_at, retires_at, expires_at"

// SigningKeys returns every signing key, ordered by algorithm, then
// activation time.
func (s *Store) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT "+signingKeyColumns+" FROM signing_keys ORDER BY algorithm, activates_at, id")
	if err != nil {
		return nil, fmt.Errorf("store: signing keys: %w", mapErr(err))
	}
	defer rows.Close()
	var keys []SigningKey
	for rows.Next() {
		var k SigningKey
		var created, activates, retires, expires int64
		err := rows.Scan(&k.ID, &k.Algorithm, &k.Public, &k.Private, &created, &activates, &retires, &expires)
		if err != nil {
			return nil, fmt.Errorf("store: signing keys: %w", mapErr(err))
		}
		k.CreatedAt, k.ActivatesAt = fromMillis(created), fromMillis(activates)
		k.RetiresAt, k.ExpiresAt = fromMillis(retires), fromMillis(expires)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: signing keys: %w", mapErr(err))
	}
	return keys, nil
}

// AddSigningKey adds next as the newest key of its algorithm, as one
// conditional write: under a lock that serialises rotations across
// processes, it finds the newest key (greatest ActivatesAt) of
// next.Algorithm, and if that key's ID is not expectNewest ("" meaning no key
// of the algorithm exists yet) it returns an error wrapping [ErrConflict] and
// changes nothing. Otherwise it schedules the previous key to retire at
// next.ActivatesAt and, if prevExpiresAt is not zero, to leave the JWKS at
// prevExpiresAt; inserts next; and records a [ChangeSigningKey] change.
//
// Of several callers racing with the same expectNewest, exactly one wins.
// next must activate after the previous key, and have an ID, an algorithm
// and both key halves, or the error wraps [ErrInvalid]. A duplicate ID wraps
// [ErrConflict].
func (s *Store) AddSigningKey(ctx context.Context, next SigningKey, expectNewest string, prevExpiresAt time.Time) error {
	switch {
	case next.ID == "":
		return fmt.Errorf("store: add signing key: %w: empty ID", ErrInvalid)
	case next.Algorithm == "":
		return fmt.Errorf("store: add signing key: %w: empty algorithm", ErrInvalid)
	case len(next.Public) == 0 || len(next.Private) == 0:
		return fmt.Errorf("store: add signing key: %w: missing key material", ErrInvalid)
	case next.ActivatesAt.IsZero():
		return fmt.Errorf("store: add signing key: %w: zero activation time", ErrInvalid)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.lock(ctx, tx, lockSigningKeys); err != nil {
			return err
		}
		var prevID string
		var prevActivates int64
		err := tx.QueryRowContext(ctx,
			`SELECT id, activates_at FROM signing_keys WHERE algorithm = $1
			 ORDER BY activates_at DESC, id DESC LIMIT 1`, next.Algorithm).Scan(&prevID, &prevActivates)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if prevID != expectNewest {
			return fmt.Errorf("%w: newest %s key is %q, not %q", ErrConflict, next.Algorithm, prevID, expectNewest)
		}
		if prevID != "" {
			if millis(next.ActivatesAt) <= prevActivates {
				return fmt.Errorf("%w: key %q must activate after %q", ErrInvalid, next.ID, prevID)
			}
			if prevExpiresAt.IsZero() {
				_, err = tx.ExecContext(ctx, "UPDATE signing_keys SET retires_at = $1 WHERE id = $2",
					millis(next.ActivatesAt), prevID)
			} else {
				_, err = tx.ExecContext(ctx, "UPDATE signing_keys SET retires_at = $1, expires_at = $2 WHERE id = $3",
					millis(next.ActivatesAt), millis(prevExpiresAt), prevID)
			}
			if err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx,
			"INSERT INTO signing_keys ("+signingKeyColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			next.ID, next.Algorithm, next.Public, next.Private, millis(next.CreatedAt),
			millis(next.ActivatesAt), millis(next.RetiresAt), millis(next.ExpiresAt))
		if err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeSigningKey, next.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: add signing key %q: %w", next.ID, err)
	}
	return nil
}

// DeleteExpiredSigningKeys deletes the keys whose ExpiresAt is set and
// before now, records a [ChangeSigningKey] change for each, and returns how
// many it deleted.
func (s *Store) DeleteExpiredSigningKeys(ctx context.Context, now time.Time) (int, error) {
	n, err := s.deleteSigningKeys(ctx, "expires_at <> 0 AND expires_at < $1", millis(now))
	if err != nil {
		return 0, fmt.Errorf("store: delete expired signing keys: %w", err)
	}
	return n, nil
}

// DeletePendingSigningKeys deletes the keys of algorithm alg that have not
// activated by now, so have never signed anything; an emergency rotation
// uses it to put a new key in front of a scheduled one. It records a
// [ChangeSigningKey] change for each and returns how many it deleted.
func (s *Store) DeletePendingSigningKeys(ctx context.Context, alg string, now time.Time) (int, error) {
	n, err := s.deleteSigningKeys(ctx, "algorithm = $1 AND activates_at > $2", alg, millis(now))
	if err != nil {
		return 0, fmt.Errorf("store: delete pending %s signing keys: %w", alg, err)
	}
	return n, nil
}

// deleteSigningKeys deletes the keys matching where, under the rotation
// lock, recording one change per deleted key.
func (s *Store) deleteSigningKeys(ctx context.Context, where string, args ...any) (int, error) {
	var ids []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		ids = ids[:0]
		if err := s.lock(ctx, tx, lockSigningKeys); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "DELETE FROM signing_keys WHERE "+where+" RETURNING id", args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := s.recordChange(ctx, tx, ChangeSigningKey, id); err != nil {
				return err
			}
		}
		return nil
	})
	return len(ids), err
}
