package cli

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// TestCLIAudit: every administrative client and user command is in the
// audit log with actor "cli", as the admin API's and the console's are,
// and no event carries a secret.
func TestCLIAudit(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GATEHOUSE_SECRET", strings.Repeat("s", 32)) // as runUserCmd's
	if _, err := runUserCmd(t, dir, "hunter2hunter2\n", "create", "--username", "ada", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := runUserCmd(t, dir, "another-password\n", "set-password", "--username", "ada", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := runUserCmd(t, dir, "", "delete", "--username", "ada"); err != nil {
		t.Fatal(err)
	}
	data := []string{"--data", dir}
	var c clientOut
	runJSON(t, &c, append([]string{"client", "create", "--name", "svc", "--grant-type", "client_credentials", "--scope", "read"}, data...)...)
	var rotated clientOut
	runJSON(t, &rotated, append([]string{"client", "rotate-secret", c.ClientID}, data...)...)
	var updated clientOut
	runJSON(t, &updated, append([]string{"client", "update", c.ClientID, "--scope", "read write"}, data...)...)
	var deleted map[string]any
	runJSON(t, &deleted, append([]string{"client", "delete", c.ClientID}, data...)...)

	evs, err := openTestStore(t, dir).AuditEvents(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Actor != "cli" || ev.Outcome != "success" || ev.Target == "" {
			t.Errorf("event %+v: want actor cli, outcome success, a target", ev)
		}
		for _, secret := range []string{"hunter2hunter2", "another-password", c.ClientSecret, rotated.ClientSecret} {
			if strings.Contains(string(ev.Details), secret) {
				t.Errorf("event %s carries a secret", ev.Event)
			}
		}
		if ev.Details != nil && !json.Valid(ev.Details) {
			t.Errorf("event %s: details %q are not JSON", ev.Event, ev.Details)
		}
		got = append(got, ev.Event)
	}
	slices.Sort(got)
	want := []string{"client.create", "client.delete", "client.rotate_secret", "client.update",
		"user.create", "user.delete", "user.reset_password"}
	if !slices.Equal(got, want) {
		t.Errorf("audit events = %v, want %v", got, want)
	}
}
