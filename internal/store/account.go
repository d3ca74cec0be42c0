package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds on what a session records about its browser; longer values are
// cut (at a character boundary) rather than refused.
const (
	maxSessionUserAgent = 512
	maxSessionIP        = 64
)

// maxUserSessions bounds one [Store.SessionsByUser] call.
const maxUserSessions = 1000

// truncateUTF8 returns s cut to at most n bytes, without splitting a
// character, and with invalid UTF-8 replaced.
func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Handle is the public name of the session, for pages and forms that let
// its user (or an operator) end it: the first 128 bits of the SHA-256 of
// the stored ID hash, base64url. It is not a credential and cannot be
// turned back into the session ID or its hash.
func (sess Session) Handle() string {
	sum := sha256.Sum256(sess.IDHash)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// SessionsByUser returns the user's sessions that have not expired by now,
// newest first (at most 1000).
func (s *Store) SessionsByUser(ctx context.Context, userID string, now time.Time) ([]Session, error) {
	return queryAll(ctx, s, func(row scanner) (Session, error) {
		sess := Session{UserID: userID}
		var authTime, created, expires, seen int64
		err := row.Scan(&sess.IDHash, &authTime, &created, &expires, &sess.UserAgent, &sess.IP, &seen)
		sess.AuthTime, sess.CreatedAt, sess.ExpiresAt = fromMillis(authTime), fromMillis(created), fromMillis(expires)
		sess.LastSeenAt = fromMillis(seen)
		return sess, err
	}, "sessions by user",
		`SELECT id_hash, auth_time, created_at, expires_at, user_agent, ip, last_seen_at FROM sessions
		 WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id_hash LIMIT $3`,
		userID, millis(now), maxUserSessions)
}

// DeleteUserSession ends the user's session whose ID hashes to idHash. A
// session that does not exist or belongs to another user wraps
// [ErrNotFound], and nothing is deleted.
func (s *Store) DeleteUserSession(ctx context.Context, userID string, idHash []byte) error {
	res, err := s.exec(ctx, "DELETE FROM sessions WHERE id_hash = $1 AND user_id = $2", idHash, userID)
	if err != nil {
		return fmt.Errorf("store: delete user session: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: delete user session: %w", mapErr(err))
	}
	if n == 0 {
		return fmt.Errorf("store: delete user session: %w", ErrNotFound)
	}
	return nil
}

// DeleteUserSessionsExcept ends every session of the user but the one
// whose ID hashes to keep (pass nil to end them all), and returns how many
// it ended.
func (s *Store) DeleteUserSessionsExcept(ctx context.Context, userID string, keep []byte) (int, error) {
	if keep == nil {
		keep = []byte{}
	}
	res, err := s.exec(ctx, "DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2", userID, keep)
	if err != nil {
		return 0, fmt.Errorf("store: delete user sessions: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: delete user sessions: %w", mapErr(err))
	}
	return int(n), nil
}

// TouchSession records that the session whose ID hashes to idHash was used
// at at. Callers refresh it coarsely (every few minutes, not per request).
// A session that does not exist is not an error.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	if _, err := s.exec(ctx, "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1", idHash, millis(at)); err != nil {
		return fmt.Errorf("store: touch session: %w", mapErr(err))
	}
	return nil
}
