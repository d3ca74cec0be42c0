package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AuthCode is an authorization code (RFC 6749, section 4.1.2): one use,
// short-lived, bound to the client, the redirect URI and the PKCE
// challenge. The store keeps only its keyed hash.
type AuthCode struct {
	Hash          []byte // keyed hash of the code
	ClientID      string
	UserID        string
	RedirectURI   string // exactly as given to /authorize
	Scopes        []string
	Nonce         string // OpenID Connect nonce, for the ID token
	CodeChallenge string // PKCE S256 challenge (RFC 7636)
	AuthTime      time.Time
	CreatedAt     time.Time
	ExpiresAt     time.Time
	UsedAt        time.Time // zero until redeemed
	FamilyID      string    // the refresh family its redemption started
}

const authCodeColumns = `hash, client_id, user_id, redirect_uri, scopes, nonce, code_challenge,
	auth_time, created_at, expires_at, used_at, family_id`

func scanAuthCode(row scanner) (AuthCode, error) {
	var c AuthCode
	var scopes string
	var authTime, created, expires, used int64
	err := row.Scan(&c.Hash, &c.ClientID, &c.UserID, &c.RedirectURI, &scopes, &c.Nonce, &c.CodeChallenge,
		&authTime, &created, &expires, &used, &c.FamilyID)
	c.Scopes = decodeScopeList(scopes)
	c.AuthTime, c.CreatedAt, c.ExpiresAt, c.UsedAt = fromMillis(authTime), fromMillis(created), fromMillis(expires), fromMillis(used)
	return c, err
}

// CreateAuthCode inserts an unused code. Hash, ClientID, UserID,
// RedirectURI, CodeChallenge and ExpiresAt are required (else
// [ErrInvalid]); a zero CreatedAt becomes now.
func (s *Store) CreateAuthCode(ctx context.Context, c AuthCode) error {
	if err := s.checkAuthCode(&c); err != nil {
		return fmt.Errorf("store: create code: %w", err)
	}
	// Not waiting for the disk, as CreateAuthCodeWithConsent.
	if err := mapUserRef(s.relaxedExec(ctx, insertAuthCode, authCodeArgs(c)...)); err != nil {
		return fmt.Errorf("store: create code: %w", err)
	}
	return nil
}

const insertAuthCode = "INSERT INTO auth_codes (" + authCodeColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, '')"

// authCodeArgs are the arguments of insertAuthCode.
func authCodeArgs(c AuthCode) []any {
	return []any{c.Hash, c.ClientID, c.UserID, c.RedirectURI, encodeScopeList(c.Scopes), c.Nonce, c.CodeChallenge,
		millis(c.AuthTime), millis(c.CreatedAt), millis(c.ExpiresAt)}
}

// checkAuthCode checks the required fields of a new code and fills in a
// zero CreatedAt.
func (s *Store) checkAuthCode(c *AuthCode) error {
	if len(c.Hash) == 0 || c.ClientID == "" || c.UserID == "" || c.RedirectURI == "" ||
		c.CodeChallenge == "" || c.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: missing field", ErrInvalid)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	return nil
}

// CreateAuthCodeWithConsent stores the user's consent con (as
// [Store.PutConsent] does) and the code c it allows (as
// [Store.CreateAuthCode] does) in one transaction: the consent page's
// answer costs one durable commit, not two. Both records must name the
// same user and client (else [ErrInvalid]); an unknown user wraps
// [ErrNotFound].
func (s *Store) CreateAuthCodeWithConsent(ctx context.Context, c AuthCode, con Consent) error {
	if err := s.checkAuthCode(&c); err != nil {
		return fmt.Errorf("store: create code: %w", err)
	}
	if con.UserID != c.UserID || con.ClientID != c.ClientID {
		return fmt.Errorf("store: create code: %w: consent of another user or client", ErrInvalid)
	}
	// An unredeemed code or a remembered consent lost in a machine crash
	// means asking the user again; the redemption is what must be durable
	// (it is, and it makes this commit durable too): see relaxedTx.
	err := s.relaxedTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.txExec(ctx, tx, upsertConsent, con.UserID, con.ClientID, encodeScopeList(con.Scopes), millis(c.CreatedAt)); err != nil {
			return mapUserRef(err)
		}
		_, err := s.txExec(ctx, tx, insertAuthCode, authCodeArgs(c)...)
		return mapUserRef(err)
	})
	if err != nil {
		return fmt.Errorf("store: create code: %w", err)
	}
	return nil
}

// AuthCode returns the code whose hash is hash, used or not, expired or
// not, or an error wrapping [ErrNotFound].
func (s *Store) AuthCode(ctx context.Context, hash []byte) (AuthCode, error) {
	c, err := scanAuthCode(s.queryRow(ctx, selectAuthCode, hash))
	if err != nil {
		return AuthCode{}, fmt.Errorf("store: code: %w", mapErr(err))
	}
	return c, nil
}

const selectAuthCode = "SELECT " + authCodeColumns + " FROM auth_codes WHERE hash = $1"

// authCodeUserQuery reads a code and its user in one query.
var authCodeUserQuery = "SELECT c." + strings.ReplaceAll(authCodeColumns, ", ", ", c.") + ", u." +
	strings.ReplaceAll(userColumns, ", ", ", u.") +
	" FROM auth_codes c JOIN users u ON u.id = c.user_id WHERE c.hash = $1"

// AuthCodeUser returns what [Store.AuthCode] returns with the code's user,
// in one query: the token endpoint needs both to redeem a code. The user
// may be disabled: the caller decides.
func (s *Store) AuthCodeUser(ctx context.Context, hash []byte) (AuthCode, User, error) {
	var c AuthCode
	var u User
	var scopes string
	var authTime, created, expires, used, uCreated, uUpdated int64
	err := s.queryRow(ctx, authCodeUserQuery, hash).Scan(
		&c.Hash, &c.ClientID, &c.UserID, &c.RedirectURI, &scopes, &c.Nonce, &c.CodeChallenge,
		&authTime, &created, &expires, &used, &c.FamilyID,
		&u.ID, &u.Username, &u.Email, &u.EmailVerified, &u.Name, &u.PasswordHash, &u.Admin, &u.Disabled, &uCreated, &uUpdated)
	if err != nil {
		return AuthCode{}, User{}, fmt.Errorf("store: code: %w", mapErr(err))
	}
	c.Scopes = decodeScopeList(scopes)
	c.AuthTime, c.CreatedAt, c.ExpiresAt, c.UsedAt = fromMillis(authTime), fromMillis(created), fromMillis(expires), fromMillis(used)
	u.CreatedAt, u.UpdatedAt = fromMillis(uCreated), fromMillis(uUpdated)
	return c, u, nil
}

// RedeemAuthCode uses the code whose hash is hash, once, at time now
// (codes expired by then are refused): in one transaction it marks the
// code used, starts the refresh family familyID (client, user, scopes and
// auth time taken from the code) with what was issued for it, the access
// token at and, unless rt is nil, the refresh token *rt, and returns the
// code. The caller reads the code first ([Store.AuthCode]) to check its
// bindings and sign the tokens; one transaction then makes the redemption
// and the issue one durable step.
//
// A code that was already redeemed is a replay (RFC 6749, section 4.1.2):
// the family its first use started is revoked, with every access token
// issued in it (see [Store.RevokeFamily]), and the error wraps
// [ErrReplay]. An unknown or expired code wraps [ErrNotFound]. Of racing
// callers exactly one succeeds.
func (s *Store) RedeemAuthCode(ctx context.Context, hash []byte, familyID string, now time.Time, rt *RefreshToken, at IssuedToken) (AuthCode, error) {
	if familyID == "" || now.IsZero() || !validIssue(rt, at) {
		return AuthCode{}, fmt.Errorf("store: redeem code: %w: empty family ID, time, token ID, hash or expiry", ErrInvalid)
	}
	var c AuthCode
	var replay bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		replay = false
		// The update returns the code it redeemed, so the common case
		// needs no second read; only a refusal reads the code to tell a
		// replay from an unknown or expired code.
		var err error
		c, err = scanAuthCode(s.txQueryRow(ctx, tx,
			"UPDATE auth_codes SET used_at = $1, family_id = $2 WHERE hash = $3 AND used_at = 0 AND expires_at > $1 RETURNING "+authCodeColumns,
			millis(now), familyID, hash))
		if errors.Is(err, sql.ErrNoRows) {
			if c, err = scanAuthCode(s.txQueryRow(ctx, tx, selectAuthCode, hash)); err != nil {
				return err
			}
			if c.UsedAt.IsZero() {
				return fmt.Errorf("%w: code expired", ErrNotFound)
			}
			replay = true
			if c.FamilyID == "" {
				return nil
			}
			denied, err := s.revokeFamiliesTx(ctx, tx, "id = $1", now, c.FamilyID)
			if err != nil {
				return err
			}
			return s.recordRevocationsTx(ctx, tx, denied)
		}
		if err != nil {
			return err
		}
		_, err = s.txExec(ctx, tx,
			`INSERT INTO refresh_families (id, client_id, user_id, scopes, auth_time, created_at, revoked_at, expires_at)
			 VALUES ($1, $2, $3, $4, $5, $6, 0, $7)`,
			familyID, c.ClientID, c.UserID, encodeScopeList(c.Scopes), millis(c.AuthTime), millis(now),
			millis(issuedExpiry(rt, at)))
		if err != nil {
			return err
		}
		return s.insertTokensTx(ctx, tx, familyID, rt, at, now)
	})
	if err == nil && replay {
		err = fmt.Errorf("%w: authorization code used twice; its tokens are revoked", ErrReplay)
	}
	if err != nil {
		if errors.Is(err, ErrReplay) {
			return c, fmt.Errorf("store: redeem code: %w", err)
		}
		return AuthCode{}, fmt.Errorf("store: redeem code: %w", err)
	}
	return c, nil
}
