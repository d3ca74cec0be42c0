package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Housekeeping says what [Store.Housekeep] deletes and how.
type Housekeeping struct {
	// Now is the current time: rows that expired before it go. Zero means
	// the store's clock.
	Now time.Time
	// AuditBefore and ChangesBefore are the retention cut-offs: audit
	// events and change-feed rows recorded before them go. Zero keeps
	// them all.
	AuditBefore, ChangesBefore time.Time
	// BatchSize bounds the rows one DELETE statement removes. Zero means
	// [DefaultBatchSize].
	BatchSize int
	// Pause is the time between two batches of one table, so writers get
	// the database (the SQLite write lock) in between. Zero means
	// [DefaultBatchPause]; negative means no pause.
	Pause time.Duration
	// Deleted, if not nil, is called after every batch that deleted rows,
	// with the table's name and the number of rows.
	Deleted func(table string, n int)
}

// Defaults for [Housekeeping].
const (
	DefaultBatchSize  = 1000
	DefaultBatchPause = 20 * time.Millisecond
)

// Tables that [Store.Housekeep] prunes, as passed to Housekeeping.Deleted.
var HousekeepingTables = []string{
	"auth_codes", "sessions", "refresh_tokens", "family_access_tokens", "refresh_families",
	"opaque_tokens", "revoked_tokens", "used_assertions", "audit_events", "changes",
}

// prune is one table's batched delete: rows whose key is selected by
// where (placeholder $1 is the cut-off time in Unix milliseconds).
type prune struct {
	table, key, where string
}

// The prunes of expired rows ($1 is the current time). Refresh tokens and their
// families' access-token IDs are useless once expired (an expired refresh
// token is refused before replay detection, and only unexpired access
// tokens go on the denylist); a family goes when nothing is left in it,
// which deletes its last rows by cascade if one was added meanwhile. Only
// families past their expires_at (when the last thing issued in them
// expires, kept by every insert) are looked at, through an index, so the
// run costs what has expired, not what is live.
var (
	loginPrunes = []prune{
		{"auth_codes", "hash", "expires_at < $1"},
		{"sessions", "id_hash", "expires_at < $1"},
	}
	refreshPrunes = []prune{
		{"refresh_tokens", "hash", "expires_at < $1"},
		{"family_access_tokens", "jti", "expires_at < $1"},
		{"refresh_families", "id", "expires_at < $1" +
			" AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.id)" +
			" AND NOT EXISTS (SELECT 1 FROM family_access_tokens a WHERE a.family_id = refresh_families.id)"},
	}
	revocationPrunes = []prune{
		{"opaque_tokens", "hash", "expires_at < $1"},
		{"revoked_tokens", "jti", "expires_at < $1"},
		{"used_assertions", "(client_id, jti)", "expires_at < $1"},
	}
	expiredPrunes = slices.Concat(loginPrunes, refreshPrunes, revocationPrunes)
)

var (
	auditPrune = prune{"audit_events", "id", "at < $1"}
	// The newest change always stays, so LastChange never goes backwards.
	changesPrune = prune{"changes", "seq", "at < $1 AND seq < (SELECT max(seq) FROM changes)"}
)

// Housekeep deletes what has expired or outlived its retention (see
// [HousekeepingTables]) in batches of at most h.BatchSize rows, pausing
// between batches, so a large backlog never holds the database for long.
// It returns the rows deleted per table. It goes on with the other tables
// when one fails and returns the errors joined; any replica may run it at
// any time, as the deletes are idempotent.
func (s *Store) Housekeep(ctx context.Context, h Housekeeping) (map[string]int, error) {
	now := h.Now
	if now.IsZero() {
		now = s.now()
	}
	type job struct {
		p      prune
		cutoff time.Time
	}
	var jobs []job
	for _, p := range expiredPrunes {
		jobs = append(jobs, job{p, now})
	}
	if !h.AuditBefore.IsZero() {
		jobs = append(jobs, job{auditPrune, h.AuditBefore})
	}
	if !h.ChangesBefore.IsZero() {
		jobs = append(jobs, job{changesPrune, h.ChangesBefore})
	}
	deleted := make(map[string]int, len(jobs))
	var errs []error
	for _, j := range jobs {
		n, err := s.deleteBatched(ctx, j.p, j.cutoff, h)
		deleted[j.p.table] += n
		if err != nil {
			if ctx.Err() != nil {
				return deleted, fmt.Errorf("store: housekeeping: %w", err)
			}
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return deleted, fmt.Errorf("store: housekeeping: %w", err)
	}
	return deleted, nil
}

// deleteBatched deletes the rows of p older than cutoff, at most
// h.BatchSize per statement, until a batch comes back short. The one
// statement form, DELETE … WHERE key IN (SELECT key … LIMIT n), runs on
// SQLite and PostgreSQL alike (with a row value for composite keys).
func (s *Store) deleteBatched(ctx context.Context, p prune, cutoff time.Time, h Housekeeping) (int, error) {
	size, pause := h.BatchSize, h.Pause
	if size <= 0 {
		size = DefaultBatchSize
	}
	if pause == 0 {
		pause = DefaultBatchPause
	}
	q := "DELETE FROM " + p.table + " WHERE " + p.key + " IN (SELECT " + strings.Trim(p.key, "()") + " FROM " + p.table +
		" WHERE " + p.where + " LIMIT " + strconv.Itoa(size) + ")"
	total := 0
	for {
		res, err := s.exec(ctx, q, millis(cutoff))
		if err != nil {
			return total, fmt.Errorf("delete from %s: %w", p.table, mapErr(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("delete from %s: %w", p.table, mapErr(err))
		}
		total += int(n)
		if n > 0 && h.Deleted != nil {
			h.Deleted(p.table, int(n))
		}
		if n < int64(size) {
			return total, nil
		}
		if pause > 0 {
			if err := sleep(ctx, pause); err != nil {
				return total, err
			}
		} else if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// pruneTables runs the batched deletes of ps with cut-off cutoff and the
// default batch size and pause, and returns the rows deleted.
func (s *Store) pruneTables(ctx context.Context, what string, cutoff time.Time, ps ...prune) (int, error) {
	total := 0
	var errs []error
	for _, p := range ps {
		n, err := s.deleteBatched(ctx, p, cutoff, Housekeeping{})
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return total, fmt.Errorf("store: %s: %w", what, err)
	}
	return total, nil
}
