package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// maxSearchOwners bounds the owners one [Store.SearchAPIKeys] call looks
// for.
const maxSearchOwners = 4

// SearchAPIKeys returns up to limit keys (at most 1000; 0 means 1000),
// ordered by ID, after the ID after, whose ID starts with idPrefix or whose
// owner is one of owners (at most 4). With neither, it pages through every
// key, as [Store.APIKeys]. Each part is a keyset scan of an index (the
// primary key, or api_keys_owner), so a page costs the same however many
// keys there are; the parts are merged here.
func (s *Store) SearchAPIKeys(ctx context.Context, idPrefix string, owners []string, after string, limit int) ([]APIKey, error) {
	if limit <= 0 || limit > maxAPIKeysPage {
		limit = maxAPIKeysPage
	}
	if len(owners) > maxSearchOwners {
		return nil, fmt.Errorf("store: search API keys: %w: more than %d owners", ErrInvalid, maxSearchOwners)
	}
	if idPrefix == "" && len(owners) == 0 {
		return s.APIKeys(ctx, APIKeyFilter{After: after, Limit: limit})
	}
	var all []APIKey
	if idPrefix != "" {
		ks, err := queryAll(ctx, s, scanAPIKey, "search API keys",
			"SELECT "+apiKeyColumns+" FROM api_keys WHERE id > $1 AND id >= $2 AND id < $3 AND substr(id, 1, $4) = $2"+
				" ORDER BY id LIMIT $5",
			after, idPrefix, idPrefix+prefixEnd, int64(utf8.RuneCountInString(idPrefix)), limit)
		if err != nil {
			return nil, err
		}
		all = append(all, ks...)
	}
	for _, o := range owners {
		ks, err := s.APIKeys(ctx, APIKeyFilter{Owner: o, After: after, Limit: limit})
		if err != nil {
			return nil, err
		}
		all = append(all, ks...)
	}
	slices.SortFunc(all, func(a, b APIKey) int { return strings.Compare(a.ID, b.ID) })
	all = slices.CompactFunc(all, func(a, b APIKey) bool { return a.ID == b.ID })
	return all[:min(len(all), limit)], nil
}

// UsernamesByID returns the usernames of the users with the given IDs (at
// most 1000); IDs of no user are left out.
func (s *Store) UsernamesByID(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if len(ids) > maxUsersPage {
		return nil, fmt.Errorf("store: usernames: %w: more than %d IDs", ErrInvalid, maxUsersPage)
	}
	var b strings.Builder
	args := make([]any, len(ids))
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
		args[i] = id
	}
	type pair struct{ id, name string }
	ps, err := queryAll(ctx, s, func(row scanner) (pair, error) {
		var p pair
		err := row.Scan(&p.id, &p.name)
		return p, err
	}, "usernames", "SELECT id, username FROM users WHERE id IN ("+b.String()+")", args...)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		out[p.id] = p.name
	}
	return out, nil
}

// AuditQuery selects events for [Store.AuditLog]. Empty fields select
// everything.
type AuditQuery struct {
	Actor, Event string
	// From and To bound the time of the events: From <= At < To.
	From, To time.Time
	// Before is the event ID to continue before, for paging (0: the
	// newest).
	Before int64
	// Limit bounds the number of events; values outside 1..1000 mean 1000.
	Limit int
}

// AuditLog returns events newest first, selected and paged by q. Actor and
// event filters use the indexes of migration 7 ((actor, id) and
// (event, id)), so a page of a busy log stays cheap.
func (s *Store) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEvent, error) {
	if q.Limit <= 0 || q.Limit > maxAuditPage {
		q.Limit = maxAuditPage
	}
	query := "SELECT id, at, actor, event, target, outcome, reason, source_ip, details FROM audit_events WHERE 1 = 1"
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		query += fmt.Sprintf(" AND "+cond, len(args))
	}
	if q.Before > 0 {
		add("id < $%d", q.Before)
	}
	if q.Actor != "" {
		add("actor = $%d", q.Actor)
	}
	if q.Event != "" {
		add("event = $%d", q.Event)
	}
	if !q.From.IsZero() {
		add("at >= $%d", millis(q.From))
	}
	if !q.To.IsZero() {
		add("at < $%d", millis(q.To))
	}
	args = append(args, q.Limit)
	query += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	return queryAll(ctx, s, func(row scanner) (AuditEvent, error) {
		var e AuditEvent
		var at int64
		var details string
		err := row.Scan(&e.ID, &at, &e.Actor, &e.Event, &e.Target, &e.Outcome, &e.Reason, &e.SourceIP, &details)
		e.At, e.Details = fromMillis(at), json.RawMessage(details)
		return e, err
	}, "audit log", query, args...)
}

// Counts are the sizes the console's dashboard shows.
type Counts struct {
	Clients, Users, ActiveAPIKeys int
}

// Count returns the number of clients, users, and API keys that are
// neither revoked nor expired at now. It reads whole tables: call it every
// few seconds at most, not per request.
func (s *Store) Count(ctx context.Context, now time.Time) (Counts, error) {
	var c Counts
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM clients),
		(SELECT count(*) FROM users),
		(SELECT count(*) FROM api_keys WHERE revoked_at = 0 AND (expires_at = 0 OR expires_at > $1)
		 AND (replaced_by = '' OR grace_until > $1))`, millis(now)).Scan(&c.Clients, &c.Users, &c.ActiveAPIKeys)
	if err != nil {
		return Counts{}, fmt.Errorf("store: count: %w", mapErr(err))
	}
	return c, nil
}
