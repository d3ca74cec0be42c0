package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// ChangeUser is the [Change] kind recorded when a user is created, updated
// or deleted; the reference is the user ID.
const ChangeUser = "user"

// User is a person who signs in on the login page.
type User struct {
	ID            string // opaque, stable subject identifier ("sub")
	Username      string // unique login name
	Email         string // optional
	EmailVerified bool
	Name          string // display name, optional ("name" claim)
	PasswordHash  string // argon2id in the PHC string format; opaque to the store
	Admin         bool   // may use the admin pages
	Disabled      bool   // may not sign in; sessions and tokens stop working
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const userColumns = "id, username, email, email_verified, name, password_hash, admin, disabled, created_at, updated_at"

// maxUsersPage bounds one [Store.Users] call.
const maxUsersPage = 1000

func scanUser(row scanner) (User, error) {
	var u User
	var created, updated int64
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.EmailVerified, &u.Name, &u.PasswordHash,
		&u.Admin, &u.Disabled, &created, &updated)
	u.CreatedAt, u.UpdatedAt = fromMillis(created), fromMillis(updated)
	return u, err
}

func checkUser(u User) error {
	switch {
	case u.ID == "":
		return fmt.Errorf("%w: empty user ID", ErrInvalid)
	case u.Username == "" || strings.TrimSpace(u.Username) != u.Username:
		return fmt.Errorf("%w: username empty or with surrounding spaces", ErrInvalid)
	case u.PasswordHash == "":
		return fmt.Errorf("%w: empty password hash", ErrInvalid)
	}
	return nil
}

// CreateUser inserts u and records a [ChangeUser] change. ID, Username and
// PasswordHash are required (else [ErrInvalid]); a taken ID or username
// wraps [ErrConflict]. Zero CreatedAt and UpdatedAt are set to now.
func (s *Store) CreateUser(ctx context.Context, u User) error {
	if err := checkUser(u); err != nil {
		return fmt.Errorf("store: create user: %w", err)
	}
	now := s.now()
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.CreatedAt
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO users ("+userColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
			u.ID, u.Username, u.Email, u.EmailVerified, u.Name, u.PasswordHash, u.Admin, u.Disabled,
			millis(u.CreatedAt), millis(u.UpdatedAt))
		if err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeUser, u.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: create user %q: %w", u.Username, err)
	}
	return nil
}

// User returns the user with the given ID, or an error wrapping
// [ErrNotFound].
func (s *Store) User(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", id))
	if err != nil {
		return User{}, fmt.Errorf("store: user: %w", mapErr(err))
	}
	return u, nil
}

// UserByUsername returns the user with the given username (compared
// exactly), or an error wrapping [ErrNotFound].
func (s *Store) UserByUsername(ctx context.Context, username string) (User, error) {
	u, err := scanUser(s.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE username = $1", username))
	if err != nil {
		return User{}, fmt.Errorf("store: user by username: %w", mapErr(err))
	}
	return u, nil
}

// Users returns up to limit users whose username sorts after after, in
// username order; pass the last username of a page to get the next. A
// limit outside 1..1000 means 1000.
func (s *Store) Users(ctx context.Context, after string, limit int) ([]User, error) {
	if limit <= 0 || limit > maxUsersPage {
		limit = maxUsersPage
	}
	return queryAll(ctx, s, scanUser, "users",
		"SELECT "+userColumns+" FROM users WHERE username > $1 ORDER BY username LIMIT $2", after, limit)
}

// UpdateUser replaces the stored user with ID u.ID (every field but
// CreatedAt; UpdatedAt becomes now) and records a [ChangeUser] change. A
// changed password hash, or disabling the user, also ends every session
// of the user and revokes its refresh-token families (see
// [Store.RevokeFamily]), in the same transaction. A missing user wraps
// [ErrNotFound]; a taken username [ErrConflict].
func (s *Store) UpdateUser(ctx context.Context, u User) error {
	if err := checkUser(u); err != nil {
		return fmt.Errorf("store: update user: %w", err)
	}
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := scanUser(tx.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", u.ID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE users SET username = $1, email = $2, email_verified = $3, name = $4, password_hash = $5,
			 admin = $6, disabled = $7, updated_at = $8 WHERE id = $9`,
			u.Username, u.Email, u.EmailVerified, u.Name, u.PasswordHash, u.Admin, u.Disabled, millis(now), u.ID)
		if err != nil {
			return err
		}
		var denied []string
		if old.PasswordHash != u.PasswordHash || (u.Disabled && !old.Disabled) {
			if denied, err = s.signOutUserTx(ctx, tx, u.ID, now); err != nil {
				return err
			}
		}
		if err := s.recordRevocationsTx(ctx, tx, denied); err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeUser, u.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: update user %q: %w", u.ID, err)
	}
	return nil
}

// DeleteUser deletes the user with the given ID together with its
// sessions, consents, codes and refresh tokens, after revoking the access
// tokens issued in its families; it records a [ChangeUser] change. A
// missing user wraps [ErrNotFound].
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		denied, err := s.signOutUserTx(ctx, tx, id, now)
		if err != nil {
			return err
		}
		// Deleted explicitly rather than relying on ON DELETE CASCADE, so
		// nothing depends on foreign keys being enforced.
		for _, q := range []string{
			"DELETE FROM family_access_tokens WHERE family_id IN (SELECT id FROM refresh_families WHERE user_id = $1)",
			"DELETE FROM refresh_tokens WHERE family_id IN (SELECT id FROM refresh_families WHERE user_id = $1)",
			"DELETE FROM refresh_families WHERE user_id = $1",
			"DELETE FROM auth_codes WHERE user_id = $1",
			"DELETE FROM consents WHERE user_id = $1",
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM users WHERE id = $1", id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		if err := s.recordRevocationsTx(ctx, tx, denied); err != nil {
			return err
		}
		_, err = s.recordChange(ctx, tx, ChangeUser, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: delete user %q: %w", id, err)
	}
	return nil
}

// signOutUserTx ends every session of the user and revokes all its
// refresh-token families; see revokeFamiliesTx for the result.
func (s *Store) signOutUserTx(ctx context.Context, tx *sql.Tx, userID string, now time.Time) ([]string, error) {
	if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE user_id = $1", userID); err != nil {
		return nil, err
	}
	return s.revokeFamiliesTx(ctx, tx, "user_id = $1", now, userID)
}
