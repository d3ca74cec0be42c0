package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Consent records that a user allowed a client some scopes, so the consent
// page is not shown again for them.
type Consent struct {
	UserID    string
	ClientID  string
	Scopes    []string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// encodeScopeList joins scopes for storage; scopes never contain spaces
// (RFC 6749, section 3.3).
func encodeScopeList(scopes []string) string { return strings.Join(scopes, " ") }

// decodeScopeList is the inverse of encodeScopeList.
func decodeScopeList(s string) []string { return strings.Fields(s) }

// PutConsent stores c, replacing the scopes of an existing consent of the
// same user and client. UserID and ClientID are required (else
// [ErrInvalid]); an unknown user wraps [ErrNotFound].
func (s *Store) PutConsent(ctx context.Context, c Consent) error {
	if c.UserID == "" || c.ClientID == "" {
		return fmt.Errorf("store: put consent: %w: empty user or client", ErrInvalid)
	}
	_, err := s.exec(ctx, upsertConsent, c.UserID, c.ClientID, encodeScopeList(c.Scopes), millis(s.now()))
	if err != nil {
		return fmt.Errorf("store: put consent: %w", mapUserRef(err))
	}
	return nil
}

// upsertConsent inserts or replaces a consent ($1 user, $2 client, $3
// scopes, $4 time). The foreign key on user_id refuses an unknown user.
const upsertConsent = `INSERT INTO consents (user_id, client_id, scopes, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
	ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at`

// Consent returns the user's consent for the client, or an error wrapping
// [ErrNotFound].
func (s *Store) Consent(ctx context.Context, userID, clientID string) (Consent, error) {
	c := Consent{UserID: userID, ClientID: clientID}
	var scopes string
	var created, updated int64
	err := s.queryRow(ctx,
		"SELECT scopes, created_at, updated_at FROM consents WHERE user_id = $1 AND client_id = $2",
		userID, clientID).Scan(&scopes, &created, &updated)
	if err != nil {
		return Consent{}, fmt.Errorf("store: consent: %w", mapErr(err))
	}
	c.Scopes, c.CreatedAt, c.UpdatedAt = decodeScopeList(scopes), fromMillis(created), fromMillis(updated)
	return c, nil
}

// Consents returns every consent the user has given, ordered by client ID.
func (s *Store) Consents(ctx context.Context, userID string) ([]Consent, error) {
	scan := func(r scanner) (Consent, error) {
		c := Consent{UserID: userID}
		var scopes string
		var created, updated int64
		if err := r.Scan(&c.ClientID, &scopes, &created, &updated); err != nil {
			return Consent{}, err
		}
		c.Scopes, c.CreatedAt, c.UpdatedAt = decodeScopeList(scopes), fromMillis(created), fromMillis(updated)
		return c, nil
	}
	return queryAll(ctx, s, scan, "consents",
		"SELECT client_id, scopes, created_at, updated_at FROM consents WHERE user_id = $1 ORDER BY client_id", userID)
}

// DeleteConsent withdraws the user's consent for the client and, in the
// same transaction, revokes every refresh-token family the client holds
// for the user (see [Store.RevokeFamily]): withdrawing consent takes back
// what it allowed. A missing consent wraps [ErrNotFound].
func (s *Store) DeleteConsent(ctx context.Context, userID, clientID string) error {
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM consents WHERE user_id = $1 AND client_id = $2", userID, clientID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		denied, err := s.revokeFamiliesTx(ctx, tx, "user_id = $1 AND client_id = $2", now, userID, clientID)
		if err != nil {
			return err
		}
		return s.recordRevocationsTx(ctx, tx, denied)
	})
	if err != nil {
		return fmt.Errorf("store: delete consent: %w", err)
	}
	return nil
}

// sessionUserConsentQuery reads a live session, its user and the user's
// consent for one client (NULLs if none) in one query.
var sessionUserConsentQuery = "SELECT s.auth_time, s.created_at, s.expires_at, s.last_seen_at, u." +
	strings.ReplaceAll(userColumns, ", ", ", u.") +
	", c.scopes, c.created_at, c.updated_at FROM sessions s JOIN users u ON u.id = s.user_id" +
	" LEFT JOIN consents c ON c.user_id = s.user_id AND c.client_id = $3 WHERE s.id_hash = $1 AND s.expires_at > $2"

// SessionUserConsent is [Store.SessionUser] that also returns the user's
// consent for clientID, in the same query: every authorization request of
// a signed-in browser needs all three. The consent is the zero Consent if
// the user has given none.
func (s *Store) SessionUserConsent(ctx context.Context, idHash []byte, now time.Time, clientID string) (Session, User, Consent, error) {
	sess := Session{IDHash: idHash}
	var u User
	var authTime, created, expires, seen, uCreated, uUpdated int64
	var scopes sql.NullString
	var cCreated, cUpdated sql.NullInt64
	err := s.queryRow(ctx, sessionUserConsentQuery, idHash, millis(now), clientID).Scan(&authTime, &created, &expires, &seen,
		&u.ID, &u.Username, &u.Email, &u.EmailVerified, &u.Name, &u.PasswordHash, &u.Admin, &u.Disabled, &uCreated, &uUpdated,
		&scopes, &cCreated, &cUpdated)
	if err != nil {
		return Session{}, User{}, Consent{}, fmt.Errorf("store: session: %w", mapErr(err))
	}
	sess.UserID = u.ID
	sess.AuthTime, sess.CreatedAt, sess.ExpiresAt = fromMillis(authTime), fromMillis(created), fromMillis(expires)
	sess.LastSeenAt = fromMillis(seen)
	u.CreatedAt, u.UpdatedAt = fromMillis(uCreated), fromMillis(uUpdated)
	var c Consent
	if scopes.Valid {
		c = Consent{UserID: u.ID, ClientID: clientID, Scopes: decodeScopeList(scopes.String),
			CreatedAt: fromMillis(cCreated.Int64), UpdatedAt: fromMillis(cUpdated.Int64)}
	}
	return sess, u, c, nil
}
