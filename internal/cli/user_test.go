package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// runUserCmd runs "gatehouse user ..." with stdin and returns stdout.
func runUserCmd(t *testing.T, dir, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(k string) string {
			if k == "GATEHOUSE_SECRET" {
				return strings.Repeat("s", 32)
			}
			return ""
		}}
	err := runUser(context.Background(), e, append(args, "--data", dir, "--log-level", "error"))
	return out.String(), err
}

func openTestStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, _, err := server.OpenStore(context.Background(), server.Config{DataDir: dir, Secret: strings.Repeat("s", 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	out, err := runUserCmd(t, dir, "hunter2hunter2\n", "create", "--username", "ada", "--email", "ada@example.com", "--admin", "--password-stdin", "--json")
	if err != nil {
		t.Fatalf("user create: %v", err)
	}
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create --json output %q: %v", out, err)
	}
	if created["username"] != "ada" || created["admin"] != true || created["id"] == "" || strings.Contains(out, "argon2") {
		t.Errorf("created = %v, want ada, admin, an id and no hash", created)
	}
	st := openTestStore(t, dir)
	u, err := st.UserByUsername(context.Background(), "ada")
	if err != nil || password.Check(u.PasswordHash, "hunter2hunter2") != nil || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Fatalf("stored user %+v, %v: want an argon2id hash of the password", u, err)
	}
	if _, err := runUserCmd(t, dir, "another-password\n", "create", "--username", "ada", "--password-stdin"); err == nil {
		t.Error("creating a duplicate user succeeded")
	}
	if _, err := runUserCmd(t, dir, "new-password-1\r\n", "set-password", "--username", "ada", "--password-stdin"); err != nil {
		t.Fatalf("set-password: %v", err)
	}
	u, _ = st.UserByUsername(context.Background(), "ada")
	if password.Check(u.PasswordHash, "new-password-1") != nil {
		t.Error("set-password did not change the password (CRLF line ending)")
	}
	if _, err := runUserCmd(t, dir, "bobspassword\n", "create", "--username", "bob", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	out, err = runUserCmd(t, dir, "", "list", "--json")
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0]["username"] != "ada" || list[1]["username"] != "bob" {
		t.Errorf("list --json = %q, %v; want ada, bob", out, err)
	}
	if _, err := runUserCmd(t, dir, "", "delete", "--username", "bob"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := st.UserByUsername(context.Background(), "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob after delete: %v, want ErrNotFound", err)
	}
	if _, err := runUserCmd(t, dir, "", "delete", "--username", "bob"); err == nil {
		t.Error("deleting a missing user succeeded")
	}
	out, _ = runUserCmd(t, dir, "", "list")
	if !strings.Contains(out, "ada") || strings.Contains(out, "bob") {
		t.Errorf("list = %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "gatehouse.db")); err != nil {
		t.Errorf("store file: %v", err)
	}
}

func TestUserUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		stdin string
		args  []string
	}{
		{"", nil},
		{"", []string{"frobnicate"}},
		{"password1\n", []string{"create", "--password-stdin"}},
		{"password1\n", []string{"create", "--username", "x"}},
		{"", []string{"create", "--username", "x", "--password-stdin"}},
		{"short\n", []string{"create", "--username", "x", "--password-stdin"}},
		{strings.Repeat("p", password.MaxLength+1) + "\n", []string{"create", "--username", "x", "--password-stdin"}},
		{"password1\n", []string{"create", "--username", " x", "--password-stdin"}},
		{"", []string{"delete"}},
		{"", []string{"list", "extra"}},
	}
	for _, tc := range cases {
		if _, err := runUserCmd(t, dir, tc.stdin, tc.args...); !errors.Is(err, ErrUsage) {
			t.Errorf("user %q: err = %v, want ErrUsage", tc.args, err)
		}
	}
}
