package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrReplay means a one-time credential (an authorization code, or a
	// refresh token that has been rotated) was presented again; the store
	// has revoked the family of tokens it belongs to.
	ErrReplay = errors.New("store: credential replayed")

	// ErrRevoked means the refresh family was revoked; nothing more may be
	// issued in it.
	ErrRevoked = errors.New("store: revoked")
)

// RefreshFamily is everything issued from one authorization code: the
// refresh tokens of its rotation chain and the access tokens issued with
// them. Revoking the family revokes all of them.
type RefreshFamily struct {
	ID        string
	ClientID  string
	UserID    string
	Scopes    []string // the scopes the user granted; refreshes may only narrow them
	AuthTime  time.Time
	CreatedAt time.Time
	RevokedAt time.Time // zero while the family is live
}

// RefreshToken is one refresh token of a family. The store keeps only its
// keyed hash.
type RefreshToken struct {
	Hash       []byte
	FamilyID   string
	Scopes     []string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	RotatedAt  time.Time // when it was exchanged for its successor; zero while current
	ReplacedBy []byte    // hash of the successor, once rotated
}

// IssuedToken names an access token issued in a family, so that revoking
// the family can put it on the denylist until it expires.
type IssuedToken struct {
	ID        string // "jti"
	ExpiresAt time.Time
}

// RefreshFamily returns the family with the given ID, or an error wrapping
// [ErrNotFound].
func (s *Store) RefreshFamily(ctx context.Context, id string) (RefreshFamily, error) {
	f, err := scanFamily(s.db.QueryRowContext(ctx, "SELECT "+familyColumns+" FROM refresh_families WHERE id = $1", id))
	if err != nil {
		return RefreshFamily{}, fmt.Errorf("store: refresh family: %w", mapErr(err))
	}
	return f, nil
}

const familyColumns = "id, client_id, user_id, scopes, auth_time, created_at, revoked_at"

func scanFamily(row scanner) (RefreshFamily, error) {
	var f RefreshFamily
	var scopes string
	var authTime, created, revoked int64
	err := row.Scan(&f.ID, &f.ClientID, &f.UserID, &scopes, &authTime, &created, &revoked)
	f.Scopes = decodeScopeList(scopes)
	f.AuthTime, f.CreatedAt, f.RevokedAt = fromMillis(authTime), fromMillis(created), fromMillis(revoked)
	return f, err
}

const refreshColumns = "hash, family_id, scopes, created_at, expires_at, rotated_at, replaced_by"

func scanRefresh(row scanner) (RefreshToken, error) {
	var t RefreshToken
	var scopes string
	var created, expires, rotated int64
	err := row.Scan(&t.Hash, &t.FamilyID, &scopes, &created, &expires, &rotated, &t.ReplacedBy)
	t.Scopes = decodeScopeList(scopes)
	t.CreatedAt, t.ExpiresAt, t.RotatedAt = fromMillis(created), fromMillis(expires), fromMillis(rotated)
	if len(t.ReplacedBy) == 0 {
		t.ReplacedBy = nil
	}
	return t, err
}

// RefreshToken returns the refresh token whose hash is hash, rotated or
// not, expired or not, with its family, or an error wrapping
// [ErrNotFound].
func (s *Store) RefreshToken(ctx context.Context, hash []byte) (RefreshToken, RefreshFamily, error) {
	t, err := scanRefresh(s.db.QueryRowContext(ctx, "SELECT "+refreshColumns+" FROM refresh_tokens WHERE hash = $1", hash))
	if err != nil {
		return RefreshToken{}, RefreshFamily{}, fmt.Errorf("store: refresh token: %w", mapErr(err))
	}
	f, err := s.RefreshFamily(ctx, t.FamilyID)
	if err != nil {
		return RefreshToken{}, RefreshFamily{}, err
	}
	return t, f, nil
}

// AddToFamily records what was issued in a live family: the access token
// at and, unless rt is nil, the refresh token *rt (FamilyID and CreatedAt
// are filled in). A revoked family wraps [ErrRevoked]; a missing one
// [ErrNotFound].
func (s *Store) AddToFamily(ctx context.Context, familyID string, rt *RefreshToken, at IssuedToken) error {
	if !validIssue(rt, at) {
		return fmt.Errorf("store: add to family: %w: missing token ID, hash or expiry", ErrInvalid)
	}
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		f, err := s.familyForUpdate(ctx, tx, familyID)
		if err != nil {
			return err
		}
		if !f.RevokedAt.IsZero() {
			return ErrRevoked
		}
		return s.insertIssuedTx(ctx, tx, familyID, rt, at, now)
	})
	if err != nil {
		return fmt.Errorf("store: add to family: %w", err)
	}
	return nil
}

// validIssue reports whether the tokens to record have IDs, hashes and
// expiry times.
func validIssue(rt *RefreshToken, at IssuedToken) bool {
	return at.ID != "" && !at.ExpiresAt.IsZero() && (rt == nil || (len(rt.Hash) > 0 && !rt.ExpiresAt.IsZero()))
}

// familyForUpdate reads a family, locking its row until the end of tx on
// PostgreSQL (SQLite transactions already hold the write lock).
func (s *Store) familyForUpdate(ctx context.Context, tx *sql.Tx, id string) (RefreshFamily, error) {
	q := "SELECT " + familyColumns + " FROM refresh_families WHERE id = $1"
	if s.dialect == DialectPostgres {
		q += " FOR UPDATE"
	}
	return scanFamily(tx.QueryRowContext(ctx, q, id))
}

// insertIssuedTx records rt (if not nil) and at in the family familyID and
// extends the family's expires_at to cover them.
func (s *Store) insertIssuedTx(ctx context.Context, tx *sql.Tx, familyID string, rt *RefreshToken, at IssuedToken, now time.Time) error {
	if err := s.insertTokensTx(ctx, tx, familyID, rt, at, now); err != nil {
		return err
	}
	// The family's expires_at bounds what is in it, for housekeeping.
	_, err := s.txExec(ctx, tx, "UPDATE refresh_families SET expires_at = $1 WHERE id = $2 AND expires_at < $1",
		millis(issuedExpiry(rt, at)), familyID)
	return err
}

// insertTokensTx records rt (if not nil) and at in the family familyID,
// whose expires_at the caller has set to cover them.
func (s *Store) insertTokensTx(ctx context.Context, tx *sql.Tx, familyID string, rt *RefreshToken, at IssuedToken, now time.Time) error {
	if rt != nil {
		rt.FamilyID, rt.CreatedAt = familyID, now
		_, err := s.txExec(ctx, tx,
			"INSERT INTO refresh_tokens ("+refreshColumns+") VALUES ($1, $2, $3, $4, $5, 0, NULL)",
			rt.Hash, familyID, encodeScopeList(rt.Scopes), millis(now), millis(rt.ExpiresAt))
		if err != nil {
			return err
		}
	}
	_, err := s.txExec(ctx, tx, "INSERT INTO family_access_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)",
		at.ID, familyID, millis(at.ExpiresAt))
	return err
}

// issuedExpiry is when the later of rt (if any) and at expires.
func issuedExpiry(rt *RefreshToken, at IssuedToken) time.Time {
	if rt != nil && rt.ExpiresAt.After(at.ExpiresAt) {
		return rt.ExpiresAt
	}
	return at.ExpiresAt
}

// RotateRefreshToken exchanges the refresh token whose hash is oldHash for
// next at time now (RFC 9700, section 4.14.2): in one transaction it marks the old
// token rotated, inserts next (with the access token at) in the same
// family, and returns the family. next.Scopes is stored as given; the
// caller checks they narrow the old token's.
//
// Presenting a rotated token again is a replay: the whole family is
// revoked, with its access tokens, and the error wraps [ErrReplay]. The
// one exception is a retry within grace of the rotation whose result the
// client never used (its successor was not rotated yet): the successor is
// then retired and next replaces it, so a client that lost the response
// to a network error can try again. An unknown or expired token wraps
// [ErrNotFound]; a revoked family [ErrRevoked].
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next RefreshToken, at IssuedToken, now time.Time, grace time.Duration) (RefreshFamily, error) {
	if len(next.Hash) == 0 || next.ExpiresAt.IsZero() || at.ID == "" || at.ExpiresAt.IsZero() || now.IsZero() {
		return RefreshFamily{}, fmt.Errorf("store: rotate refresh token: %w: missing hash, token ID, expiry or time", ErrInvalid)
	}
	var f RefreshFamily
	var replay bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		replay = false
		old, err := scanRefresh(tx.QueryRowContext(ctx, "SELECT "+refreshColumns+" FROM refresh_tokens WHERE hash = $1", oldHash))
		if err != nil {
			return err
		}
		// Lock the family first: every rotation in a family is serialised.
		if f, err = s.familyForUpdate(ctx, tx, old.FamilyID); err != nil {
			return err
		}
		if !f.RevokedAt.IsZero() {
			return ErrRevoked
		}
		if !old.ExpiresAt.After(now) {
			return fmt.Errorf("%w: refresh token expired", ErrNotFound)
		}
		// Re-read under the family lock: a concurrent rotation may have
		// committed between the first read and the lock.
		if old, err = scanRefresh(tx.QueryRowContext(ctx, "SELECT "+refreshColumns+" FROM refresh_tokens WHERE hash = $1", oldHash)); err != nil {
			return err
		}
		rotatedAt := now
		if !old.RotatedAt.IsZero() {
			ok, err := s.retireUnusedSuccessorTx(ctx, tx, old, grace, now)
			if err != nil {
				return err
			}
			if !ok {
				replay = true
				denied, err := s.revokeFamiliesTx(ctx, tx, "id = $1", now, f.ID)
				if err != nil {
					return err
				}
				return s.recordRevocationsTx(ctx, tx, denied)
			}
			// A retry does not extend the grace window.
			rotatedAt = old.RotatedAt
		}
		res, err := tx.ExecContext(ctx, "UPDATE refresh_tokens SET rotated_at = $1, replaced_by = $2 WHERE hash = $3",
			millis(rotatedAt), next.Hash, oldHash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(err, fmt.Errorf("%w: refresh token changed during rotation", ErrConflict))
		}
		return s.insertIssuedTx(ctx, tx, f.ID, &next, at, now)
	})
	if err == nil && replay {
		err = fmt.Errorf("%w: rotated refresh token used again; its family is revoked", ErrReplay)
	}
	if err != nil {
		return RefreshFamily{}, fmt.Errorf("store: rotate refresh token: %w", err)
	}
	return f, nil
}

// retireUnusedSuccessorTx reports whether a second rotation of old is an
// allowed retry: old was rotated less than grace ago and its successor has
// not been used. If so it retires the successor.
func (s *Store) retireUnusedSuccessorTx(ctx context.Context, tx *sql.Tx, old RefreshToken, grace time.Duration, now time.Time) (bool, error) {
	if grace <= 0 || now.Sub(old.RotatedAt) > grace || old.ReplacedBy == nil {
		return false, nil
	}
	succ, err := scanRefresh(tx.QueryRowContext(ctx, "SELECT "+refreshColumns+" FROM refresh_tokens WHERE hash = $1", old.ReplacedBy))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !succ.RotatedAt.IsZero() || bytes.Equal(succ.Hash, old.Hash) {
		return false, nil
	}
	// The successor was never used: retire it. It has no successor of its
	// own, so presenting it later counts as a replay.
	_, err = tx.ExecContext(ctx, "UPDATE refresh_tokens SET rotated_at = $1 WHERE hash = $2", millis(now), succ.Hash)
	return err == nil, err
}

// RevokeFamily revokes the family with the given ID: its refresh tokens
// stop working, and each access token issued in it that has not expired
// goes on the denylist (see [Store.RevokeToken]) with a
// [ChangeTokenRevoked] change, all in one transaction. Revoking a revoked
// family succeeds; a missing one wraps [ErrNotFound].
func (s *Store) RevokeFamily(ctx context.Context, id string) error {
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.familyForUpdate(ctx, tx, id); err != nil {
			return err
		}
		denied, err := s.revokeFamiliesTx(ctx, tx, "id = $1", now, id)
		if err != nil {
			return err
		}
		return s.recordRevocationsTx(ctx, tx, denied)
	})
	if err != nil {
		return fmt.Errorf("store: revoke family %q: %w", id, err)
	}
	return nil
}

// revokeFamiliesTx revokes the live families matching where (whose
// placeholders start at $1; $n+1 is taken by the time), puts their
// unexpired access tokens on the denylist and returns those tokens' IDs.
// The caller must pass them to recordRevocationsTx at the end of tx.
func (s *Store) revokeFamiliesTx(ctx context.Context, tx *sql.Tx, where string, now time.Time, args ...any) ([]string, error) {
	timeArg := fmt.Sprintf("$%d", len(args)+1)
	rows, err := tx.QueryContext(ctx,
		"UPDATE refresh_families SET revoked_at = "+timeArg+" WHERE ("+where+") AND revoked_at = 0 RETURNING id, client_id",
		append(args, millis(now))...)
	if err != nil {
		return nil, err
	}
	type fam struct{ id, client string }
	var fams []fam
	for rows.Next() {
		var f fam
		if err := rows.Scan(&f.id, &f.client); err != nil {
			rows.Close()
			return nil, err
		}
		fams = append(fams, f)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	var denied []string
	for _, f := range fams {
		// Opaque access tokens of the family are marked revoked too (their
		// jti also goes on the denylist below, through family_access_tokens).
		if _, err := tx.ExecContext(ctx, "UPDATE opaque_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at = 0",
			millis(now), f.id); err != nil {
			return nil, err
		}
		rows, err := tx.QueryContext(ctx,
			`INSERT INTO revoked_tokens (jti, client_id, expires_at, revoked_at)
			 SELECT jti, $1, expires_at, $2 FROM family_access_tokens WHERE family_id = $3 AND expires_at > $2
			 ON CONFLICT (jti) DO NOTHING RETURNING jti`,
			f.client, millis(now), f.id)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var jti string
			if err := rows.Scan(&jti); err != nil {
				rows.Close()
				return nil, err
			}
			denied = append(denied, jti)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return denied, nil
}

// recordRevocationsTx records a [ChangeTokenRevoked] change per denied
// token. Like recordChange it must come last in the transaction.
func (s *Store) recordRevocationsTx(ctx context.Context, tx *sql.Tx, denied []string) error {
	for _, jti := range denied {
		if _, err := s.recordChange(ctx, tx, ChangeTokenRevoked, jti); err != nil {
			return err
		}
	}
	return nil
}
