package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Session is a signed-in browser. The cookie holds a random session ID;
// the store keeps only its keyed hash, so a stolen database does not let
// anyone sign in.
type Session struct {
	IDHash    []byte    // keyed hash of the session ID in the cookie
	UserID    string    // who signed in
	AuthTime  time.Time // when the user last entered a password ("auth_time")
	CreatedAt time.Time
	ExpiresAt time.Time // the session ends then, whatever happens
	// UserAgent and IP describe the browser at sign-in, for the user's
	// list of sessions; LastSeenAt is when it was last used (refreshed
	// coarsely, see [Store.TouchSession]; zero if not since sign-in).
	UserAgent  string
	IP         string
	LastSeenAt time.Time
}

// CreateSession inserts sess. IDHash, UserID and ExpiresAt are required
// (else [ErrInvalid]); a zero CreatedAt becomes now. An unknown user wraps
// [ErrNotFound].
func (s *Store) CreateSession(ctx context.Context, sess Session) error {
	if len(sess.IDHash) == 0 || sess.UserID == "" || sess.ExpiresAt.IsZero() {
		return fmt.Errorf("store: create session: %w: missing ID hash, user or expiry", ErrInvalid)
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = s.now()
	}
	// One statement: the foreign key on user_id refuses an unknown user,
	// atomically with the insert. A session lost in a machine crash means
	// signing in again, so its commit does not wait for the disk
	// (relaxedTx).
	err := mapUserRef(s.relaxedExec(ctx, insertSession,
		sess.IDHash, sess.UserID, millis(sess.AuthTime), millis(sess.CreatedAt), millis(sess.ExpiresAt),
		truncateUTF8(sess.UserAgent, maxSessionUserAgent), truncateUTF8(sess.IP, maxSessionIP)))
	if err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	return nil
}

const insertSession = "INSERT INTO sessions (id_hash, user_id, auth_time, created_at, expires_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)"

// Session returns the session whose ID hashes to idHash if it has not
// expired by now, or an error wrapping [ErrNotFound].
func (s *Store) Session(ctx context.Context, idHash []byte, now time.Time) (Session, error) {
	sess := Session{IDHash: idHash}
	var authTime, created, expires, seen int64
	err := s.queryRow(ctx,
		"SELECT user_id, auth_time, created_at, expires_at, user_agent, ip, last_seen_at FROM sessions WHERE id_hash = $1 AND expires_at > $2",
		idHash, millis(now)).Scan(&sess.UserID, &authTime, &created, &expires, &sess.UserAgent, &sess.IP, &seen)
	if err != nil {
		return Session{}, fmt.Errorf("store: session: %w", mapErr(err))
	}
	sess.AuthTime, sess.CreatedAt, sess.ExpiresAt = fromMillis(authTime), fromMillis(created), fromMillis(expires)
	sess.LastSeenAt = fromMillis(seen)
	return sess, nil
}

// sessionUserQuery reads a live session and its user in one query.
var sessionUserQuery = "SELECT s.auth_time, s.created_at, s.expires_at, s.last_seen_at, u." +
	strings.ReplaceAll(userColumns, ", ", ", u.") +
	" FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1 AND s.expires_at > $2"

// SessionUser returns the session whose ID hashes to idHash if it has not
// expired by now, with its user, in one query; or an error wrapping
// [ErrNotFound]. The user may be disabled: the caller decides.
func (s *Store) SessionUser(ctx context.Context, idHash []byte, now time.Time) (Session, User, error) {
	sess := Session{IDHash: idHash}
	var u User
	var authTime, created, expires, seen, uCreated, uUpdated int64
	err := s.queryRow(ctx, sessionUserQuery, idHash, millis(now)).Scan(&authTime, &created, &expires, &seen,
		&u.ID, &u.Username, &u.Email, &u.EmailVerified, &u.Name, &u.PasswordHash, &u.Admin, &u.Disabled, &uCreated, &uUpdated)
	if err != nil {
		return Session{}, User{}, fmt.Errorf("store: session: %w", mapErr(err))
	}
	sess.UserID = u.ID
	sess.AuthTime, sess.CreatedAt, sess.ExpiresAt = fromMillis(authTime), fromMillis(created), fromMillis(expires)
	sess.LastSeenAt = fromMillis(seen)
	u.CreatedAt, u.UpdatedAt = fromMillis(uCreated), fromMillis(uUpdated)
	return sess, u, nil
}

// DeleteSession ends the session whose ID hashes to idHash. Ending a
// session that does not exist is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.exec(ctx, "DELETE FROM sessions WHERE id_hash = $1", idHash); err != nil {
		return fmt.Errorf("store: delete session: %w", mapErr(err))
	}
	return nil
}

// DeleteExpired deletes sessions and authorization codes that expired
// before now, and returns how many rows it deleted.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	return s.pruneTables(ctx, "delete expired", now, loginPrunes...)
}
