package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// userJSON is the stable --json form of a user. The password hash is
// never printed.
type userJSON struct {
	ID            string    `json:"id"`
	Username      string    `json:"username"`
	Email         string    `json:"email,omitempty"`
	EmailVerified bool      `json:"email_verified"`
	Name          string    `json:"name,omitempty"`
	Admin         bool      `json:"admin"`
	Disabled      bool      `json:"disabled"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func toUserJSON(u store.User) userJSON {
	return userJSON{ID: u.ID, Username: u.Username, Email: u.Email, EmailVerified: u.EmailVerified, Name: u.Name,
		Admin: u.Admin, Disabled: u.Disabled, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// readPassword reads a password from the first line of r (without its
// line ending). Passwords are never taken from flags, which other users of
// the machine can see in the process list.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, password.MaxLength+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case pw == "":
		return "", fmt.Errorf("%w: no password on stdin", ErrUsage)
	case len(pw) > password.MaxLength:
		return "", fmt.Errorf("%w: password longer than %d bytes", ErrUsage, password.MaxLength)
	case len(pw) < 8:
		return "", fmt.Errorf("%w: password shorter than 8 characters", ErrUsage)
	}
	return pw, nil
}

func runUser(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: user needs a subcommand: create, list, delete or set-password", ErrUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("user "+sub, e)
	var sf storeFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var username, email, name *string
	var admin, pwStdin *bool
	switch sub {
	case "create":
		username = fs.String("username", "", "login `name` (required)")
		email = fs.String("email", "", "email `address`")
		name = fs.String("display-name", "", "display `name` (the \"name\" claim)")
		admin = fs.Bool("admin", false, "the user may administer Gatehouse")
		pwStdin = fs.Bool("password-stdin", false, "read the password from the first line of stdin (required)")
	case "set-password":
		username = fs.String("username", "", "login `name` (required)")
		pwStdin = fs.Bool("password-stdin", false, "read the new password from the first line of stdin (required)")
	case "delete":
		username = fs.String("username", "", "login `name` (required)")
	case "list":
	default:
		return fmt.Errorf("%w: unknown user subcommand %q: want create, list, delete or set-password", ErrUsage, sub)
	}
	if err := parse(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: user %s takes no arguments", ErrUsage, sub)
	}
	if username != nil && *username == "" {
		return fmt.Errorf("%w: --username is required", ErrUsage)
	}
	if username != nil && (strings.TrimSpace(*username) != *username || len(*username) > 256) {
		return fmt.Errorf("%w: --username must not have surrounding spaces or exceed 256 bytes", ErrUsage)
	}
	var pw string
	if pwStdin != nil {
		if !*pwStdin {
			return fmt.Errorf("%w: --password-stdin is required (passwords are never taken from flags)", ErrUsage)
		}
		var err error
		if pw, err = readPassword(e.stdin); err != nil {
			return err
		}
	}
	st, _, _, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()

	switch sub {
	case "create":
		u, err := oauth.CreateUser(ctx, st, oauth.UserParams{Username: *username, Email: *email, Name: *name,
			Password: pw, Admin: *admin})
		switch {
		case errors.Is(err, oauth.ErrInvalidUser):
			return fmt.Errorf("%w: %v", ErrUsage, err)
		case errors.Is(err, store.ErrConflict):
			return fmt.Errorf("user %q already exists", *username)
		case err != nil:
			return err
		}
		cliAudit(ctx, e, st, "user.create", u.ID, map[string]any{"username": u.Username, "admin": u.Admin})
		if *asJSON {
			return writeJSON(e.stdout, toUserJSON(u))
		}
		fmt.Fprintf(e.stdout, "created user %s (id %s)\n", u.Username, u.ID)
		return nil
	case "set-password":
		u, err := userByName(ctx, st, *username)
		if err != nil {
			return err
		}
		if u, err = oauth.SetUserPassword(ctx, st, u.ID, pw); errors.Is(err, oauth.ErrInvalidUser) {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		} else if err != nil {
			return err
		}
		cliAudit(ctx, e, st, "user.reset_password", u.ID, map[string]any{"username": u.Username})
		if *asJSON {
			return writeJSON(e.stdout, map[string]any{"id": u.ID, "username": u.Username, "password_changed": true})
		}
		fmt.Fprintf(e.stdout, "changed the password of %s; their sessions and refresh tokens are revoked\n", u.Username)
		return nil
	case "delete":
		u, err := userByName(ctx, st, *username)
		if err != nil {
			return err
		}
		if err := st.DeleteUser(ctx, u.ID); err != nil {
			return err
		}
		cliAudit(ctx, e, st, "user.delete", u.ID, map[string]any{"username": u.Username})
		if *asJSON {
			return writeJSON(e.stdout, map[string]any{"id": u.ID, "username": u.Username, "deleted": true})
		}
		fmt.Fprintf(e.stdout, "deleted user %s\n", u.Username)
		return nil
	}

	out := []userJSON{}
	for after := ""; ; {
		page, err := st.Users(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, u := range page {
			out = append(out, toUserJSON(u))
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Username
	}
	if *asJSON {
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tEMAIL\tADMIN\tDISABLED\tCREATED")
	for _, u := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\n", u.Username, u.ID, u.Email, u.Admin, u.Disabled, u.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func userByName(ctx context.Context, st *store.Store, username string) (store.User, error) {
	u, err := st.UserByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, fmt.Errorf("no user %q", username)
	}
	return u, err
}
