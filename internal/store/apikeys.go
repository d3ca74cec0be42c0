package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ChangeAPIKey is the [Change] kind recorded when an API key is created,
// updated, rotated or revoked; the reference is the key ID.
const ChangeAPIKey = "api_key"

// APIKey is the stored record of one API key. It never holds the key
// itself, only its keyed hash; ID, Prefix, Env and Last4 are public parts of
// the key.
type APIKey struct {
	ID     string // public key ID, unique
	Prefix string // key type prefix, e.g. "gk"
	Env    string // "live" or "test"
	Last4  string // last four characters of the key, for display
	Hash   []byte // keyed hash of the whole key

	Name       string   // what the key is for, chosen by its owner
	Owner      string   // the user or service the key belongs to
	Scopes     []string // granted scopes; none may be empty or contain a space
	AllowedIPs []string // CIDRs the key may be used from; none means anywhere

	// RateLimit is the number of requests allowed per RateWindow (a token
	// bucket of that size, refilled evenly); zero means unlimited.
	RateLimit  int
	RateWindow time.Duration

	// Family is the ID of the first key of a rotation chain; keys rotated
	// from it share it. Empty on create means the key's own ID.
	Family string
	// ReplacedBy is the ID of the key this one was rotated to, or "".
	ReplacedBy string
	// GraceUntil is when a rotated key stops working; zero if not rotated.
	GraceUntil time.Time

	CreatedAt  time.Time
	UpdatedAt  time.Time
	ExpiresAt  time.Time // zero means no expiry
	RevokedAt  time.Time // zero means not revoked
	LastUsedAt time.Time // updated in batches by [Store.RecordAPIKeyUse]
	UseCount   int64     // successful verifications, carried over on rotation
	ExposedAt  time.Time // when the key was last seen somewhere public (a URL)
}

// APIKeyUse is a batch of successful verifications of one key, written by
// [Store.RecordAPIKeyUse].
type APIKeyUse struct {
	ID     string
	Count  int64     // verifications since the last batch
	LastAt time.Time // time of the newest of them
}

// APIKeyFilter selects keys for [Store.APIKeys].
type APIKeyFilter struct {
	// Owner, if not empty, selects the keys of one owner.
	Owner string
	// After is the ID to continue after, for paging; "" starts at the
	// beginning.
	After string
	// Limit bounds the number of keys returned; values outside 1..1000
	// mean 1000.
	Limit int
}

const apiKeyColumns = "id, prefix, env, last4, hash, name, owner, scopes, allowed_ips, rate_limit, rate_window, " +
	"family, replaced_by, grace_until, created_at, updated_at, expires_at, revoked_at, last_used_at, use_count, exposed_at"

// maxAPIKeysPage bounds one [Store.APIKeys] call.
const maxAPIKeysPage = 1000

// checkAPIKey validates the fields every stored key must have.
func checkAPIKey(k *APIKey) error {
	switch {
	case k.ID == "":
		return fmt.Errorf("%w: empty key ID", ErrInvalid)
	case k.Prefix == "" || k.Env == "":
		return fmt.Errorf("%w: empty key prefix or environment", ErrInvalid)
	case len(k.Hash) == 0:
		return fmt.Errorf("%w: empty key hash", ErrInvalid)
	case k.Name == "":
		return fmt.Errorf("%w: empty key name", ErrInvalid)
	case k.RateLimit < 0 || (k.RateLimit > 0 && k.RateWindow <= 0):
		return fmt.Errorf("%w: rate limit needs a positive count and window", ErrInvalid)
	}
	if err := checkWords("scope", k.Scopes); err != nil {
		return err
	}
	return checkWords("allowed IP", k.AllowedIPs)
}

// checkWords rejects values that cannot round-trip through a
// space-separated column.
func checkWords(what string, ws []string) error {
	for _, w := range ws {
		if w == "" || strings.ContainsAny(w, " \t\r\n") {
			return fmt.Errorf("%w: %s %q is empty or contains white space", ErrInvalid, what, w)
		}
	}
	return nil
}

func joinWords(ws []string) string { return strings.Join(ws, " ") }

func splitWords(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// CreateAPIKey stores a new key and records a [ChangeAPIKey] change. An
// empty Family is set to the key's ID; CreatedAt and UpdatedAt, if zero,
// to the store's clock. A duplicate ID wraps [ErrConflict]; a key without
// ID, prefix, environment, hash or name wraps [ErrInvalid].
func (s *Store) CreateAPIKey(ctx context.Context, k APIKey) error {
	if k.Family == "" {
		k.Family = k.ID
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	if k.UpdatedAt.IsZero() {
		k.UpdatedAt = k.CreatedAt
	}
	if err := checkAPIKey(&k); err != nil {
		return fmt.Errorf("store: create API key: %w", err)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := insertAPIKey(ctx, tx, &k); err != nil {
			return err
		}
		_, err := s.recordChange(ctx, tx, ChangeAPIKey, k.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: create API key %q: %w", k.ID, err)
	}
	return nil
}

func insertAPIKey(ctx context.Context, tx *sql.Tx, k *APIKey) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO api_keys ("+apiKeyColumns+") VALUES "+
		"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
		k.ID, k.Prefix, k.Env, k.Last4, k.Hash, k.Name, k.Owner, joinWords(k.Scopes), joinWords(k.AllowedIPs),
		int64(k.RateLimit), k.RateWindow.Milliseconds(), k.Family, k.ReplacedBy, millis(k.GraceUntil),
		millis(k.CreatedAt), millis(k.UpdatedAt), millis(k.ExpiresAt), millis(k.RevokedAt),
		millis(k.LastUsedAt), k.UseCount, millis(k.ExposedAt))
	return err
}

func scanAPIKey(r scanner) (APIKey, error) {
	var k APIKey
	var scopes, ips string
	var rateLimit, rateWindow, grace, created, updated, expires, revoked, lastUsed, exposed int64
	err := r.Scan(&k.ID, &k.Prefix, &k.Env, &k.Last4, &k.Hash, &k.Name, &k.Owner, &scopes, &ips,
		&rateLimit, &rateWindow, &k.Family, &k.ReplacedBy, &grace, &created, &updated, &expires, &revoked,
		&lastUsed, &k.UseCount, &exposed)
	if err != nil {
		return APIKey{}, err
	}
	k.Scopes, k.AllowedIPs = splitWords(scopes), splitWords(ips)
	k.RateLimit, k.RateWindow = int(rateLimit), time.Duration(rateWindow)*time.Millisecond
	k.GraceUntil, k.CreatedAt, k.UpdatedAt = fromMillis(grace), fromMillis(created), fromMillis(updated)
	k.ExpiresAt, k.RevokedAt = fromMillis(expires), fromMillis(revoked)
	k.LastUsedAt, k.ExposedAt = fromMillis(lastUsed), fromMillis(exposed)
	return k, nil
}

// APIKey returns the key with the given ID, or an error wrapping
// [ErrNotFound].
func (s *Store) APIKey(ctx context.Context, id string) (APIKey, error) {
	k, err := scanAPIKey(s.db.QueryRowContext(ctx, "SELECT "+apiKeyColumns+" FROM api_keys WHERE id = $1", id))
	if err != nil {
		return APIKey{}, fmt.Errorf("store: API key %q: %w", id, mapErr(err))
	}
	return k, nil
}

// APIKeys returns keys ordered by ID, selected and paged by f.
func (s *Store) APIKeys(ctx context.Context, f APIKeyFilter) ([]APIKey, error) {
	if f.Limit <= 0 || f.Limit > maxAPIKeysPage {
		f.Limit = maxAPIKeysPage
	}
	q := "SELECT " + apiKeyColumns + " FROM api_keys WHERE id > $1"
	args := []any{f.After}
	if f.Owner != "" {
		q += " AND owner = $3"
		args = append(args, f.Limit, f.Owner)
	} else {
		args = append(args, f.Limit)
	}
	return queryAll(ctx, s, scanAPIKey, "API keys", q+" ORDER BY id LIMIT $2", args...)
}

// UpdateAPIKey changes the settings of the key k.ID: Name, Scopes,
// AllowedIPs, RateLimit, RateWindow and ExpiresAt; it sets UpdatedAt to the
// store's clock and records a [ChangeAPIKey] change. Other fields of k are
// ignored. It returns the updated record, or an error wrapping [ErrNotFound]
// or [ErrInvalid].
func (s *Store) UpdateAPIKey(ctx context.Context, k APIKey) (APIKey, error) {
	if k.Name == "" {
		return APIKey{}, fmt.Errorf("store: update API key %q: %w: empty name", k.ID, ErrInvalid)
	}
	if k.RateLimit < 0 || (k.RateLimit > 0 && k.RateWindow <= 0) {
		return APIKey{}, fmt.Errorf("store: update API key %q: %w: rate limit needs a positive count and window", k.ID, ErrInvalid)
	}
	if err := checkWords("scope", k.Scopes); err != nil {
		return APIKey{}, fmt.Errorf("store: update API key %q: %w", k.ID, err)
	}
	if err := checkWords("allowed IP", k.AllowedIPs); err != nil {
		return APIKey{}, fmt.Errorf("store: update API key %q: %w", k.ID, err)
	}
	var out APIKey
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanAPIKey(tx.QueryRowContext(ctx, `UPDATE api_keys SET name = $1, scopes = $2, allowed_ips = $3,
			rate_limit = $4, rate_window = $5, expires_at = $6, updated_at = $7 WHERE id = $8
			RETURNING `+apiKeyColumns,
			k.Name, joinWords(k.Scopes), joinWords(k.AllowedIPs), int64(k.RateLimit), k.RateWindow.Milliseconds(),
			millis(k.ExpiresAt), millis(s.now()), k.ID))
		if err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeAPIKey, k.ID)
		return err
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("store: update API key %q: %w", k.ID, err)
	}
	return out, nil
}

// RevokeAPIKey revokes the key id at time at and records a [ChangeAPIKey]
// change, and returns the record. Revoking a revoked key changes nothing and
// returns it as it is. An unknown id wraps [ErrNotFound].
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) (APIKey, error) {
	if at.IsZero() {
		at = s.now()
	}
	var out APIKey
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanAPIKey(tx.QueryRowContext(ctx, `UPDATE api_keys SET revoked_at = $1, updated_at = $1
			WHERE id = $2 AND revoked_at = 0 RETURNING `+apiKeyColumns, millis(at), id))
		if errors.Is(err, sql.ErrNoRows) {
			// Unknown, or already revoked.
			out, err = scanAPIKey(tx.QueryRowContext(ctx, "SELECT "+apiKeyColumns+" FROM api_keys WHERE id = $1", id))
			return err
		}
		if err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeAPIKey, id)
		return err
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("store: revoke API key %q: %w", id, err)
	}
	return out, nil
}

// RotateAPIKey replaces the key oldID with next, as one write. next needs
// its own ID, Prefix, Env, Last4, Hash and CreatedAt (zero: the store's
// clock); everything else (name, owner, scopes, allowed IPs, rate limit,
// expiry, use count, family) is copied from the old key. The old key keeps
// working until graceUntil and then is refused; a zero graceUntil ends it at
// once. Both keys get a [ChangeAPIKey] change. It returns the old and new
// records.
//
// A revoked key, or one already rotated, cannot be rotated: the error wraps
// [ErrConflict], so of several racing rotations exactly one wins. An unknown
// oldID wraps [ErrNotFound].
func (s *Store) RotateAPIKey(ctx context.Context, oldID string, next APIKey, graceUntil time.Time) (old, created APIKey, err error) {
	now := s.now()
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	if graceUntil.IsZero() {
		graceUntil = now
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		o, err := scanAPIKey(tx.QueryRowContext(ctx, "SELECT "+apiKeyColumns+" FROM api_keys WHERE id = $1", oldID))
		if err != nil {
			return err
		}
		switch {
		case !o.RevokedAt.IsZero():
			return fmt.Errorf("%w: key %q is revoked", ErrConflict, oldID)
		case o.ReplacedBy != "":
			return fmt.Errorf("%w: key %q was already rotated", ErrConflict, oldID)
		}
		n := o
		n.ID, n.Prefix, n.Env, n.Last4, n.Hash = next.ID, next.Prefix, next.Env, next.Last4, next.Hash
		n.CreatedAt, n.UpdatedAt = next.CreatedAt, next.CreatedAt
		n.ReplacedBy, n.GraceUntil, n.LastUsedAt, n.ExposedAt = "", time.Time{}, time.Time{}, time.Time{}
		if err := checkAPIKey(&n); err != nil {
			return err
		}
		// Conditional on the state read above, so a concurrent rotation
		// in another process (PostgreSQL) cannot also succeed.
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET replaced_by = $1, grace_until = $2, updated_at = $3
			WHERE id = $4 AND replaced_by = '' AND revoked_at = 0`, n.ID, millis(graceUntil), millis(now), oldID)
		if err != nil {
			return err
		}
		if c, err := res.RowsAffected(); err != nil || c != 1 {
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: key %q was rotated or revoked concurrently", ErrConflict, oldID)
		}
		if err := insertAPIKey(ctx, tx, &n); err != nil {
			return err
		}
		o.ReplacedBy, o.GraceUntil, o.UpdatedAt = n.ID, graceUntil, now
		old, created = o, n
		if _, err := s.recordChange(ctx, tx, ChangeAPIKey, oldID); err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeAPIKey, n.ID)
		return err
	})
	if err != nil {
		return APIKey{}, APIKey{}, fmt.Errorf("store: rotate API key %q: %w", oldID, err)
	}
	return fromDB(old), fromDB(created), nil
}

// fromDB normalises the times of a record built in memory to what a read
// returns: millisecond precision, UTC.
func fromDB(k APIKey) APIKey {
	for _, t := range []*time.Time{&k.GraceUntil, &k.CreatedAt, &k.UpdatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &k.ExposedAt} {
		*t = fromMillis(millis(*t))
	}
	return k
}

// RecordAPIKeyUse adds a batch of verifications to the keys' use counts
// and moves their LastUsedAt forward (never back). It records no change:
// nothing else depends on it. Unknown IDs are ignored.
func (s *Store) RecordAPIKeyUse(ctx context.Context, uses []APIKeyUse) error {
	if len(uses) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE api_keys SET use_count = use_count + $1,
			last_used_at = CASE WHEN last_used_at < $2 THEN $2 ELSE last_used_at END WHERE id = $3`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, u := range uses {
			if _, err := stmt.ExecContext(ctx, u.Count, millis(u.LastAt), u.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: record API key use: %w", err)
	}
	return nil
}

// MarkAPIKeyExposed records that the key id was seen somewhere public (sent
// in a URL query string, found by a leak scan) at time at, so that its owner
// can be told to rotate it. It records no change. An unknown id wraps
// [ErrNotFound].
func (s *Store) MarkAPIKeyExposed(ctx context.Context, id string, at time.Time) error {
	res, err := s.exec(ctx, "UPDATE api_keys SET exposed_at = $1 WHERE id = $2", millis(at), id)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("store: mark API key %q exposed: %w", id, mapErr(err))
	}
	return nil
}
