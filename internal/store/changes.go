package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Change is one entry of the change feed: something other processes must
// notice, such as a new signing key or a revocation.
type Change struct {
	Seq  int64     // position in the feed; increases in commit order, never reused
	Kind string    // what changed, e.g. [ChangeSigningKey]
	Ref  string    // which record changed (an ID), or ""
	At   time.Time // when the change was recorded (UTC, millisecond precision)
}

// maxChangesBatch bounds one [Store.Changes] call.
const maxChangesBatch = 10000

// RecordChange appends a change to the feed in a transaction of its own and
// returns its sequence number. Methods of this package that write records
// record their changes themselves; RecordChange is for other writers.
func (s *Store) RecordChange(ctx context.Context, kind, ref string) (int64, error) {
	var seq int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		seq, err = s.recordChange(ctx, tx, kind, ref)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: record change: %w", err)
	}
	return seq, nil
}

// recordChange inserts a change in tx. It must be the last statement of the
// transaction (only further recordChange calls may follow): on PostgreSQL it
// takes a lock, held until commit, that makes sequence order equal commit
// order, so a follower that has seen seq n never later finds a row below n.
func (s *Store) recordChange(ctx context.Context, tx *sql.Tx, kind, ref string) (int64, error) {
	if kind == "" {
		return 0, fmt.Errorf("%w: empty change kind", ErrInvalid)
	}
	if err := s.lock(ctx, tx, lockChanges); err != nil {
		return 0, err
	}
	var seq int64
	err := tx.QueryRowContext(ctx, "INSERT INTO changes (kind, ref, at) VALUES ($1, $2, $3) RETURNING seq",
		kind, ref, s.now().UnixMilli()).Scan(&seq)
	return seq, mapErr(err)
}

// LastChange returns the sequence number of the newest change, or 0 when
// there is none. It is one indexed lookup, cheap enough to poll.
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM changes").Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: last change: %w", mapErr(err))
	}
	return seq, nil
}

// Changes returns up to limit changes with sequence numbers greater than
// after, oldest first. A limit outside 1..10000 means 10000.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	if limit <= 0 || limit > maxChangesBatch {
		limit = maxChangesBatch
	}
	rows, err := s.db.QueryContext(ctx,
		"SELECT seq, kind, ref, at FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2", after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", mapErr(err))
	}
	defer rows.Close()
	var cs []Change
	for rows.Next() {
		var c Change
		var at int64
		if err := rows.Scan(&c.Seq, &c.Kind, &c.Ref, &at); err != nil {
			return nil, fmt.Errorf("store: changes: %w", mapErr(err))
		}
		c.At = fromMillis(at)
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: changes: %w", mapErr(err))
	}
	return cs, nil
}

// PruneChanges deletes changes recorded before olderThan and returns how
// many it deleted. It always keeps the newest change, so [Store.LastChange]
// never goes backwards. A follower that falls further behind than the
// retention period misses the pruned changes and should reload its caches.
func (s *Store) PruneChanges(ctx context.Context, olderThan time.Time) (int, error) {
	return s.pruneTables(ctx, "prune changes", olderThan, changesPrune)
}
