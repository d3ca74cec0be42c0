package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// User management shared by the CLI (`gatehouse user`) and the operator
// console (internal/console).

// ErrInvalidUser means user settings were refused; the message says which
// and why, and never contains a password.
var ErrInvalidUser = errors.New("invalid user settings")

// MaxUsernameLen bounds usernames, as the login form does.
const MaxUsernameLen = maxUsernameLen

// UserParams are the settings of a new user.
type UserParams struct {
	Username string
	Email    string // optional
	Name     string // display name, optional
	Password string
	Admin    bool // an operator: may use the console
}

// CheckPassword checks a password a person chose: [password.MinLength] to
// [password.MaxLength] bytes. Errors wrap [ErrInvalidUser].
func CheckPassword(pw string) error {
	if len(pw) < password.MinLength || len(pw) > password.MaxLength {
		return fmt.Errorf("%w: the password must be %d to %d bytes long", ErrInvalidUser, password.MinLength, password.MaxLength)
	}
	return nil
}

// checkUserParams checks everything but the password.
func checkUserParams(p UserParams) error {
	bad := func(msg string) error { return fmt.Errorf("%w: %s", ErrInvalidUser, msg) }
	switch {
	case p.Username == "" || len(p.Username) > maxUsernameLen || strings.TrimSpace(p.Username) != p.Username ||
		!utf8.ValidString(p.Username) || !printableUnicode(p.Username):
		return bad(fmt.Sprintf("the username must be 1 to %d printable characters without surrounding spaces", maxUsernameLen))
	case len(p.Name) > 200 || !utf8.ValidString(p.Name) || (p.Name != "" && !printableUnicode(p.Name)):
		return bad("the display name must be at most 200 printable characters")
	case p.Email != "" && !validEmail(p.Email):
		return bad("the email address is not valid")
	}
	return nil
}

// validEmail reports whether s is a plain address (no display name).
func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 320
}

// CreateUser checks p, hashes the password (argon2id) and stores a new
// user with a random ID. Errors wrap [ErrInvalidUser], [store.ErrConflict]
// (the username is taken) or the store's error.
func CreateUser(ctx context.Context, st *store.Store, p UserParams) (store.User, error) {
	if err := checkUserParams(p); err != nil {
		return store.User{}, err
	}
	if err := CheckPassword(p.Password); err != nil {
		return store.User{}, err
	}
	hash, err := password.Hash(p.Password)
	if err != nil {
		return store.User{}, fmt.Errorf("create user: %w", err)
	}
	u := store.User{ID: secret.RandomString(16), Username: p.Username, Email: p.Email, Name: p.Name,
		PasswordHash: hash, Admin: p.Admin}
	if err := st.CreateUser(ctx, u); err != nil {
		return store.User{}, fmt.Errorf("create user: %w", err)
	}
	created, err := st.User(ctx, u.ID)
	if err != nil {
		return store.User{}, fmt.Errorf("create user: %w", err)
	}
	return created, nil
}

// SetUserPassword checks and sets the password of user id. The store ends
// the user's sessions and revokes their refresh tokens in the same
// transaction. Errors wrap [ErrInvalidUser], [store.ErrNotFound] or the
// store's error.
func SetUserPassword(ctx context.Context, st *store.Store, id, pw string) (store.User, error) {
	if err := CheckPassword(pw); err != nil {
		return store.User{}, err
	}
	u, err := st.User(ctx, id)
	if err != nil {
		return store.User{}, fmt.Errorf("set password: %w", err)
	}
	if u.PasswordHash, err = password.Hash(pw); err != nil {
		return store.User{}, fmt.Errorf("set password: %w", err)
	}
	if err := st.UpdateUser(ctx, u); err != nil {
		return store.User{}, fmt.Errorf("set password: %w", err)
	}
	return u, nil
}

// SetUserDisabled disables or enables user id. Disabling ends the user's
// sessions and revokes their refresh tokens in the same transaction (see
// [store.Store.UpdateUser]); a disabled user cannot sign in. Errors wrap
// [store.ErrNotFound] or the store's error.
func SetUserDisabled(ctx context.Context, st *store.Store, id string, disabled bool) (store.User, error) {
	u, err := st.User(ctx, id)
	if err != nil {
		return store.User{}, fmt.Errorf("disable user: %w", err)
	}
	if u.Disabled == disabled {
		return u, nil
	}
	u.Disabled = disabled
	if err := st.UpdateUser(ctx, u); err != nil {
		return store.User{}, fmt.Errorf("disable user: %w", err)
	}
	return u, nil
}
