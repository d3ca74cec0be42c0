package store

import "context"

// SetListenHook makes s call fn with the backend PID of each LISTEN
// connection Follow opens (PostgreSQL).
func SetListenHook(s *Store, fn func(pid uint32)) { s.onListen = fn }

// ExecForTest runs a statement directly on s's database.
func ExecForTest(ctx context.Context, s *Store, query string, args ...any) error {
	_, err := s.db.ExecContext(ctx, query, args...)
	return err
}
