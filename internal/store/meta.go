package store

import (
	"context"
	"fmt"
)

// Meta returns the value of the setting key, or an error wrapping
// [ErrNotFound]. Settings are small strings such as the master-secret check
// value; they are not secret themselves.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = $1", key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("store: meta %q: %w", key, mapErr(err))
	}
	return v, nil
}

// PutMetaIfAbsent stores value under key unless key already has a value, and
// returns the value now stored: value if it was absent, the existing value
// otherwise. It is atomic: when processes race, all of them get the value of
// the one that won.
func (s *Store) PutMetaIfAbsent(ctx context.Context, key, value string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("store: put meta: %w: empty key", ErrInvalid)
	}
	// The no-op update makes RETURNING yield the existing row on conflict.
	var stored string
	err := s.db.QueryRowContext(ctx,
		`INSERT INTO meta (key, value) VALUES ($1, $2)
		 ON CONFLICT (key) DO UPDATE SET value = meta.value
		 RETURNING value`, key, value).Scan(&stored)
	if err != nil {
		return "", fmt.Errorf("store: put meta %q: %w", key, mapErr(err))
	}
	return stored, nil
}
