package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// AuditEvent is one entry of the audit log: who did what to which record,
// with what outcome, from where. It never holds a secret.
type AuditEvent struct {
	ID       int64     // assigned by the store; increases with insertion order
	At       time.Time // when it happened; zero on append means the store's clock
	Actor    string    // who acted: "admin", "cli", a user or client ID, or ""
	Event    string    // what happened, e.g. "apikey.create"; required
	Target   string    // the record acted on, e.g. an API key ID
	Outcome  string    // e.g. "success" or "failure"
	Reason   string    // a machine-readable reason code for a failure
	SourceIP string    // the caller's address, if known
	// Details is a JSON object with event-specific data, or nil. It is
	// stored as given; PostgreSQL may reorder its keys.
	Details json.RawMessage
}

// AuditFilter selects events for [Store.AuditEvents].
type AuditFilter struct {
	// Target and Event, if not empty, select events about one record or of
	// one kind.
	Target, Event string
	// After is the event ID to continue after, for paging.
	After int64
	// Limit bounds the number of events returned; values outside 1..1000
	// mean 1000.
	Limit int
}

const maxAuditPage = 1000

// AppendAudit adds events to the audit log in one transaction. An event
// without Event, or with Details that are not a JSON object, wraps
// [ErrInvalid] and nothing is written.
func (s *Store) AppendAudit(ctx context.Context, events ...AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	now := s.now()
	for _, e := range events {
		if e.Event == "" {
			return fmt.Errorf("store: append audit: %w: empty event", ErrInvalid)
		}
		if len(e.Details) > 0 {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(e.Details, &obj); err != nil || obj == nil {
				return fmt.Errorf("store: append audit: %w: details are not a JSON object", ErrInvalid)
			}
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events
			(at, actor, event, target, outcome, reason, source_ip, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range events {
			at := e.At
			if at.IsZero() {
				at = now
			}
			details := string(e.Details)
			if details == "" {
				details = "{}"
			}
			if _, err := stmt.ExecContext(ctx, millis(at), e.Actor, e.Event, e.Target, e.Outcome, e.Reason,
				e.SourceIP, details); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: append audit: %w", err)
	}
	return nil
}

// AuditEvents returns events in insertion order, selected and paged by f.
func (s *Store) AuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	if f.Limit <= 0 || f.Limit > maxAuditPage {
		f.Limit = maxAuditPage
	}
	q := "SELECT id, at, actor, event, target, outcome, reason, source_ip, details FROM audit_events WHERE id > $1"
	args := []any{f.After, f.Limit}
	if f.Target != "" {
		args = append(args, f.Target)
		q += fmt.Sprintf(" AND target = $%d", len(args))
	}
	if f.Event != "" {
		args = append(args, f.Event)
		q += fmt.Sprintf(" AND event = $%d", len(args))
	}
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY id LIMIT $2", args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit events: %w", mapErr(err))
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var at int64
		var details string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Event, &e.Target, &e.Outcome, &e.Reason, &e.SourceIP, &details); err != nil {
			return nil, fmt.Errorf("store: audit events: %w", mapErr(err))
		}
		e.At, e.Details = fromMillis(at), json.RawMessage(details)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit events: %w", mapErr(err))
	}
	return out, nil
}

// PruneAudit deletes events that happened before olderThan and returns how
// many it deleted.
func (s *Store) PruneAudit(ctx context.Context, olderThan time.Time) (int, error) {
	return s.pruneTables(ctx, "prune audit", olderThan, auditPrune)
}
