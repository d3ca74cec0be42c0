package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// storeArgs returns the flags that point a command at a fresh store of the
// backend: SQLite in a data directory, or a PostgreSQL schema.
func storeArgs(t *testing.T, backend string) []string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if backend == "postgres" {
		return []string{"--data", data, "--db", storetest.PostgresURL(t)}
	}
	return []string{"--data", data}
}

// run runs the gatehouse command line and returns its stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, &out, &errOut)
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("gatehouse %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, s)
	}
	return v
}

type keyOut struct {
	ID         string   `json:"id"`
	Key        string   `json:"key"`
	Name       string   `json:"name"`
	Owner      string   `json:"owner"`
	Status     string   `json:"status"`
	Scopes     []string `json:"scopes"`
	AllowedIPs []string `json:"allowed_ips"`
	RateLimit  *struct {
		Limit  int
		Window string
	} `json:"rate_limit"`
	ExpiresAt  *string `json:"expires_at"`
	ReplacedBy string  `json:"replaced_by"`
}

func TestAPIKeyCommands(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			sa := storeArgs(t, backend)
			cmd := func(args ...string) []string { return append(args, sa...) }

			out := mustRun(t, cmd("apikey", "create", "--name", "ci", "--owner", "team-a", "--scope", "read",
				"--scope", "deploy write", "--expires", "24h", "--allow-ip", "10.0.0.0/8", "--rate-limit", "100/m", "--json")...)
			created := decode[keyOut](t, out)
			k, err := apikey.Format{}.Parse(created.Key)
			if err != nil || k.ID != created.ID {
				t.Fatalf("create: key does not parse or has another ID (%v): %s", err, out)
			}
			if created.Owner != "team-a" || strings.Join(created.Scopes, " ") != "deploy read write" ||
				created.ExpiresAt == nil || created.RateLimit == nil || created.RateLimit.Limit != 100 || len(created.AllowedIPs) != 1 {
				t.Errorf("create output = %s", out)
			}
			// The scripted form from the issue.
			simple := decode[keyOut](t, mustRun(t, cmd("apikey", "create", "--name", "N", "--json")...))
			if simple.ID == "" || simple.Key == "" || strings.Join(simple.Scopes, " ") != "read" {
				t.Errorf("simple create = %+v, want id, key and the read scope", simple)
			}

			list := mustRun(t, cmd("apikey", "list", "--json")...)
			if strings.Contains(list, created.Key) || strings.Contains(list, simple.Key) || strings.Contains(list, `"key"`) {
				t.Errorf("list shows a key:\n%s", list)
			}
			if views := decode[[]keyOut](t, list); len(views) != 2 {
				t.Errorf("list: %d keys, want 2", len(views))
			}
			if views := decode[[]keyOut](t, mustRun(t, cmd("apikey", "list", "--owner", "team-a", "--json")...)); len(views) != 1 {
				t.Errorf("list --owner: %d keys, want 1", len(views))
			}
			text := mustRun(t, cmd("apikey", "list")...)
			if !strings.Contains(text, created.ID) || !strings.Contains(text, created.Key[len(created.Key)-4:]) ||
				strings.Contains(text, created.Key) {
				t.Errorf("list (text) must show ID and last 4, never the key:\n%s", text)
			}

			// ID before or after the flags.
			upd := decode[keyOut](t, mustRun(t, cmd("apikey", "update", created.ID, "--scope", "read", "--rate-limit", "0", "--json")...))
			if strings.Join(upd.Scopes, " ") != "read" || upd.RateLimit != nil || upd.Name != "ci" || len(upd.AllowedIPs) != 1 {
				t.Errorf("update = %+v, want scopes read, no rate limit, rest kept", upd)
			}
			upd = decode[keyOut](t, mustRun(t, append(cmd("apikey", "update", "--allow-ip", "any", "--json"), created.ID)...))
			if len(upd.AllowedIPs) != 0 {
				t.Errorf("update --allow-ip any: AllowedIPs = %v, want none", upd.AllowedIPs)
			}

			rot := decode[keyOut](t, mustRun(t, cmd("apikey", "rotate", created.ID, "--grace", "1h", "--json")...))
			if rot.Key == "" || rot.ID == created.ID || rot.Owner != "team-a" {
				t.Errorf("rotate = %+v, want a new key for the same owner", rot)
			}
			old := decode[keyOut](t, mustRun(t, cmd("apikey", "show", created.ID, "--json")...))
			if old.Status != "rotating" || old.ReplacedBy != rot.ID {
				t.Errorf("old key after rotate = %+v, want rotating, replaced by %s", old, rot.ID)
			}
			if _, err := run(t, cmd("apikey", "rotate", created.ID)...); err == nil {
				t.Error("rotating a rotated key: no error")
			}

			if out := mustRun(t, cmd("apikey", "revoke", rot.ID)...); !strings.Contains(out, "revoked") {
				t.Errorf("revoke output = %q", out)
			}
			if got := decode[keyOut](t, mustRun(t, cmd("apikey", "show", rot.ID, "--json")...)); got.Status != "revoked" {
				t.Errorf("after revoke: status %q, want revoked", got.Status)
			}
			events := mustRun(t, cmd("apikey", "events", created.ID)...)
			for _, ev := range []string{"apikey.create", "apikey.update", "apikey.rotate"} {
				if !strings.Contains(events, ev) {
					t.Errorf("events lack %s:\n%s", ev, events)
				}
			}
			if _, err := run(t, cmd("apikey", "show", "000000000000")...); err == nil || !strings.Contains(err.Error(), "no API key") {
				t.Errorf("show unknown: %v, want a not-found error", err)
			}
		})
	}
}

func TestAPIKeyUsageErrors(t *testing.T) {
	sa := storeArgs(t, "sqlite")
	cases := [][]string{
		{"apikey"},
		{"apikey", "frobnicate"},
		{"apikey", "create"},
		{"apikey", "create", "--name", "x", "--rate-limit", "fast"},
		{"apikey", "create", "--name", "x", "--expires", "soon"},
		{"apikey", "create", "--name", "x", "--scope", `a"b`},
		{"apikey", "create", "--name", "x", "--allow-ip", "10.0.0.0/99"},
		{"apikey", "create", "--name", "x", "--apikey-env", "prod"},
		{"apikey", "show"},
		{"apikey", "revoke", "a", "b"},
		{"apikey", "rotate", "x", "--grace", "-1h"},
		{"scan", "--offline", "--revoke"},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if _, err := run(t, append(args, sa...)...); !errors.Is(err, ErrUsage) {
				t.Errorf("got %v, want ErrUsage", err)
			}
		})
	}
}

func TestScan(t *testing.T) {
	sa := storeArgs(t, "sqlite")
	cmd := func(args ...string) []string { return append(args, sa...) }
	live := decode[keyOut](t, mustRun(t, cmd("apikey", "create", "--name", "live", "--json")...))
	dead := decode[keyOut](t, mustRun(t, cmd("apikey", "create", "--name", "dead", "--json")...))
	mustRun(t, cmd("apikey", "revoke", dead.ID)...)
	unknown, _ := apikey.Format{}.Generate()
	// A string with the live key's ID and a valid checksum but another
	// secret: it must not count as live, nor be revoked.
	forged := forgeSecret(live.Key)

	dir := t.TempDir()
	files := map[string]string{
		"config.env":      "API_KEY=" + live.Key + "\n",
		"sub/old.txt":     "line one\nold = \"" + dead.Key + "\"\n",
		"sub/notes.md":    "unknown " + unknown.Plaintext() + " and forged " + forged + "\n",
		"clean/main.go":   "package main\n",
		"sub/typo.txt":    live.Key[:len(live.Key)-1] + "x\n", // bad checksum: not a finding
		"clean/empty.txt": "",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	out, err := run(t, cmd("scan", dir, "--json")...)
	if !errors.Is(err, ErrLiveKey) {
		t.Fatalf("scan: %v, want ErrLiveKey", err)
	}
	res := decode[struct {
		Findings []scanFinding `json:"findings"`
		LiveKeys int           `json:"live_keys"`
	}](t, out)
	status := map[string]string{}
	for _, f := range res.Findings {
		status[filepath.Base(f.Path)+":"+f.KeyID+":"+f.Status] = f.Status
		if strings.Contains(out, live.Key) {
			t.Error("scan output contains a key")
		}
	}
	want := []string{
		"config.env:" + live.ID + ":active",
		"old.txt:" + dead.ID + ":revoked",
		"notes.md:" + unknown.ID + ":unknown",
		"notes.md:" + live.ID + ":forged",
	}
	for _, w := range want {
		if _, ok := status[w]; !ok {
			t.Errorf("finding %s missing; got %v", w, status)
		}
	}
	if len(res.Findings) != len(want) || res.LiveKeys != 1 {
		t.Errorf("findings = %d, live = %d; want %d, 1", len(res.Findings), res.LiveKeys, len(want))
	}
	for _, f := range res.Findings {
		if f.Path == filepath.Join(dir, "sub", "old.txt") && (f.Line != 2 || f.Column != 8) {
			t.Errorf("old.txt finding at %d:%d, want 2:8", f.Line, f.Column)
		}
	}
	shown := decode[struct {
		ExposedAt *string `json:"exposed_at"`
	}](t, mustRun(t, cmd("apikey", "show", live.ID, "--json")...))
	if shown.ExposedAt == nil {
		t.Error("the live key found by the scan is not marked exposed")
	}

	// Text output names file:line and says LIVE.
	out, _ = run(t, cmd("scan", dir)...)
	if !strings.Contains(out, filepath.Join(dir, "config.env")+":1:9: key "+live.ID+" LIVE") {
		t.Errorf("text output lacks the live finding:\n%s", out)
	}

	// --revoke revokes the live key; a second scan finds nothing live.
	if _, err := run(t, cmd("scan", dir, "--revoke")...); !errors.Is(err, ErrLiveKey) {
		t.Fatalf("scan --revoke: %v, want ErrLiveKey (the key was live when found)", err)
	}
	if got := decode[keyOut](t, mustRun(t, cmd("apikey", "show", live.ID, "--json")...)); got.Status != "revoked" {
		t.Errorf("after scan --revoke: status %q, want revoked", got.Status)
	}
	if out, err := run(t, cmd("scan", dir)...); err != nil {
		t.Errorf("scan after revoking: %v, want nil\n%s", err, out)
	}
	// A clean tree passes; --offline counts every key found.
	if _, err := run(t, cmd("scan", filepath.Join(dir, "clean"))...); err != nil {
		t.Errorf("scan of a clean tree: %v", err)
	}
	if _, err := run(t, "scan", "--offline", filepath.Join(dir, "sub")); !errors.Is(err, ErrLiveKey) {
		t.Errorf("scan --offline: %v, want ErrLiveKey", err)
	}
	if _, err := run(t, "scan", "--offline", filepath.Join(dir, "clean")); err != nil {
		t.Errorf("scan --offline of a clean tree: %v", err)
	}
	// Without a store (and without --offline) the scan refuses to guess.
	if _, err := run(t, "scan", "--data", filepath.Join(t.TempDir(), "none"), dir); err == nil || errors.Is(err, ErrLiveKey) {
		t.Errorf("scan without a store: %v, want an error asking for --db or --offline", err)
	}
	if _, err := run(t, cmd("scan", filepath.Join(dir, "missing"))...); err == nil || errors.Is(err, ErrLiveKey) {
		t.Errorf("scan of a missing path: %v, want an error", err)
	}
}

func TestScanGitHistory(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	sa := storeArgs(t, "sqlite")
	cmd := func(args ...string) []string { return append(args, sa...) }
	live := decode[keyOut](t, mustRun(t, cmd("apikey", "create", "--name", "in-history", "--json")...))
	repo := t.TempDir()
	gitRun := func(args ...string) {
		t.Helper()
		c := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		c.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	gitRun("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(repo, "secrets.env"), []byte("KEY="+live.Key+"\n"), 0o644)
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "oops")
	os.WriteFile(filepath.Join(repo, "secrets.env"), []byte("KEY=from-vault\n"), 0o644)
	gitRun("commit", "-q", "-am", "remove key")

	if _, err := run(t, cmd("scan", repo)...); err != nil {
		t.Errorf("scan of the work tree: %v, want nil (the key is only in history)", err)
	}
	out, err := run(t, cmd("scan", repo, "--git", "--json")...)
	if !errors.Is(err, ErrLiveKey) {
		t.Fatalf("scan --git: %v, want ErrLiveKey\n%s", err, out)
	}
	res := decode[struct{ Findings []scanFinding }](t, out)
	if len(res.Findings) != 1 || res.Findings[0].KeyID != live.ID || res.Findings[0].Commit == "" ||
		res.Findings[0].Path != "secrets.env" {
		t.Errorf("findings = %+v, want the key in secrets.env with its commit", res.Findings)
	}
}

// forgeSecret returns key with another secret and a recomputed, valid
// checksum.
func forgeSecret(key string) string {
	body := []byte(key[:len(key)-6])
	if body[len(body)-1] == '0' {
		body[len(body)-1] = '1'
	} else {
		body[len(body)-1] = '0'
	}
	return string(body) + checksum62(string(body))
}

// checksum62 is the key format's checksum: CRC32 (IEEE) as 6 base62 digits.
func checksum62(body string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	var out [6]byte
	for i := 5; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return string(out[:])
}
