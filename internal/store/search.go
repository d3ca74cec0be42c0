package store

import (
	"context"
	"unicode/utf8"
)

// prefixEnd is appended to a prefix to bound a range scan: every string
// that starts with the prefix sorts below prefix+prefixEnd in code-point
// order (SQLite's BINARY collation, PostgreSQL's C and C.UTF-8), unless
// the prefix is followed by U+10FFFF itself.
const prefixEnd = "\U0010FFFF"

// SearchClients returns up to limit clients (at most 1000; 0 means 1000)
// whose ID or name starts with prefix (case-sensitive), ordered by ID,
// after the ID after. An empty prefix matches every client, as
// [Store.Clients]. Paging walks the primary key; the name test reads each
// client row, which suits a clients table (hundreds to thousands of rows).
func (s *Store) SearchClients(ctx context.Context, prefix, after string, limit int) ([]Client, error) {
	if prefix == "" {
		return s.Clients(ctx, after, limit)
	}
	if limit <= 0 || limit > maxClientsPage {
		limit = maxClientsPage
	}
	return queryAll(ctx, s, scanClient, "search clients",
		"SELECT "+clientColumns+" FROM clients WHERE id > $1 AND (substr(id, 1, $2) = $3 OR substr(name, 1, $2) = $3)"+
			" ORDER BY id LIMIT $4",
		after, int64(utf8.RuneCountInString(prefix)), prefix, limit)
}

// SearchUsers returns up to limit users (at most 1000; 0 means 1000)
// whose username starts with prefix (case-sensitive), ordered by
// username, after the username after. An empty prefix matches every user,
// as [Store.Users]. The query is a range scan of the username index, so
// a page costs the same whatever the size of the table.
func (s *Store) SearchUsers(ctx context.Context, prefix, after string, limit int) ([]User, error) {
	if prefix == "" {
		return s.Users(ctx, after, limit)
	}
	if limit <= 0 || limit > maxUsersPage {
		limit = maxUsersPage
	}
	// One lower bound, so the planner has a single range to scan: the
	// start of the prefix's range, or the cursor if it is inside it.
	from := "username >= $1"
	if after >= prefix {
		from = "username > $1"
	} else {
		after = prefix
	}
	return queryAll(ctx, s, scanUser, "search users",
		"SELECT "+userColumns+" FROM users WHERE "+from+" AND username < $2"+
			" AND substr(username, 1, $3) = $4 ORDER BY username LIMIT $5",
		after, prefix+prefixEnd, int64(utf8.RuneCountInString(prefix)), prefix, limit)
}
