package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gatehouse.toml")
	os.WriteFile(cfgFile, []byte("addr = \"file:1\"\nissuer = \"https://file\"\ndata = \"/file\"\n"), 0o600)
	env := map[string]string{"GATEHOUSE_ISSUER": "https://env", "GATEHOUSE_DATA": "/env"}
	fs := flag.NewFlagSet("gatehouse serve", flag.ContinueOnError)
	fs.String("config", "", "")
	addr := fs.String("addr", "default:1", "")
	issuer := fs.String("issuer", "", "")
	data := fs.String("data", "", "")
	db := fs.String("db", "default-db", "")
	name := fs.String("name", "", "")
	env["GATEHOUSE_NAME"] = "from-env"
	if err := fs.Parse([]string{"--config", cfgFile, "--data", "/flag"}); err != nil {
		t.Fatal(err)
	}
	if err := bindSources(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"addr (file beats default)", *addr, "file:1"},
		{"name (not a setting: command line only)", *name, ""},
		{"issuer (env beats file)", *issuer, "https://env"},
		{"data (flag beats env)", *data, "/flag"},
		{"db (default)", *db, "default-db"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"unknown key":   "addr = \"x\"\nadress = \"typo\"\n",
		"not a setting": "name = \"x\"\n",
		"not toml":      "addr = \n",
		"bad value":     "key-rotation = \"soon\"\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
			os.WriteFile(f, []byte(content), 0o600)
			err := Run(context.Background(), []string{"serve", "--config", f, "--data", t.TempDir()}, io.Discard, io.Discard)
			if !errors.Is(err, ErrUsage) {
				t.Errorf("got %v, want ErrUsage", err)
			}
		})
	}
	err := Run(context.Background(), []string{"serve", "--config", filepath.Join(dir, "missing.toml")}, io.Discard, io.Discard)
	if err == nil {
		t.Error("missing config file: got nil error")
	}
}

func TestUsageErrors(t *testing.T) {
	cases := [][]string{
		{},
		{"nope"},
		{"serve", "--no-such-flag"},
		{"serve", "extra-arg"},
		{"serve", "--log-format", "xml"},
		{"serve", "--log-level", "loud"},
		{"keys"},
		{"keys", "shred"},
		{"keys", "rotate", "--alg", "HS256"},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			dir := t.TempDir()
			if len(args) > 1 && args[0] == "keys" {
				args = append(args, "--data", dir)
			}
			err := Run(context.Background(), args, io.Discard, io.Discard)
			if !errors.Is(err, ErrUsage) {
				t.Errorf("got %v, want ErrUsage", err)
			}
		})
	}
}

func TestServeRefusesInsecureIssuer(t *testing.T) {
	err := Run(context.Background(), []string{"serve", "--data", t.TempDir(), "--issuer", "http://auth.example.com"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("got %v, want an error about https", err)
	}
	err = Run(context.Background(), []string{"serve", "--data", t.TempDir(), "--addr", "0.0.0.0:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--issuer") {
		t.Errorf("non-loopback addr without issuer: got %v, want a hint to set --issuer", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServe runs `gatehouse serve` as a user would, on a fresh data dir,
// waits for it to be ready, reads discovery, then stops it as SIGTERM would.
func TestServe(t *testing.T) {
	for _, db := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return storetest.PostgresURL(t) }},
	} {
		t.Run(db.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "fresh")
			addr := freeAddr(t)
			args := []string{"serve", "--addr", addr, "--data", dir, "--log-format", "json"}
			dbURL := db.url(t)
			if dbURL != "" {
				args = append(args, "--db", dbURL)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stderr bytes.Buffer
			done := make(chan error, 1)
			begin := time.Now()
			go func() { done <- Run(ctx, args, io.Discard, &stderr) }()
			var ready time.Duration
			for {
				resp, err := http.Get("http://" + addr + "/readyz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ready = time.Since(begin)
						break
					}
				}
				select {
				case err := <-done:
					t.Fatalf("serve exited: %v\n%s", err, stderr.String())
				case <-time.After(10 * time.Millisecond):
				}
				if time.Since(begin) > 30*time.Second {
					t.Fatal("server not ready after 30 s")
				}
			}
			t.Logf("ready after %v", ready)
			resp, err := http.Get("http://" + addr + "/.well-known/openid-configuration")
			if err != nil {
				t.Fatal(err)
			}
			var md map[string]any
			json.NewDecoder(resp.Body).Decode(&md)
			resp.Body.Close()
			if md["issuer"] != "http://"+addr {
				t.Errorf("issuer: got %v, want http://%s", md["issuer"], addr)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve returned %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("serve did not stop")
			}
			if dbURL == "" {
				if _, err := os.Stat(filepath.Join(dir, "gatehouse.db")); err != nil {
					t.Errorf("no SQLite file in the data dir: %v", err)
				}
				fi, err := os.Stat(filepath.Join(dir, "master.key"))
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("master.key: %v, mode %v", err, fi.Mode())
				}
				if !strings.Contains(stderr.String(), "GATEHOUSE_SECRET") {
					t.Error("no warning about the generated master secret")
				}
			}
		})
	}
}

func TestKeysAndMigrateCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		var out bytes.Buffer
		if err := Run(context.Background(), append(args, "--data", dir), &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.Bytes()
	}
	var mig struct {
		Version int    `json:"schema_version"`
		Dialect string `json:"dialect"`
	}
	if err := json.Unmarshal(run("migrate", "--json"), &mig); err != nil {
		t.Fatal(err)
	}
	if mig.Version < 1 || mig.Dialect != "sqlite" {
		t.Errorf("migrate: %+v", mig)
	}

	var rotated []keyJSON
	if err := json.Unmarshal(run("keys", "rotate", "--alg", "ES256", "--json"), &rotated); err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 1 || rotated[0].Algorithm != "ES256" || rotated[0].State != "next" {
		t.Fatalf("rotate: %+v", rotated)
	}
	var listed []keyJSON
	if err := json.Unmarshal(run("keys", "list", "--json"), &listed); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	found := false
	for _, k := range listed {
		states[k.Algorithm+"/"+k.State]++
		found = found || k.ID == rotated[0].ID
	}
	if !found {
		t.Error("rotated key not listed")
	}
	want := map[string]int{"ES256/active": 1, "ES256/next": 1, "RS256/active": 1, "EdDSA/active": 1}
	for k, n := range want {
		if states[k] != n {
			t.Errorf("%s: got %d keys, want %d (all: %v)", k, states[k], n, states)
		}
	}
	text := string(run("keys", "list"))
	if !strings.Contains(text, rotated[0].ID) || !strings.Contains(text, "STATE") {
		t.Errorf("text listing:\n%s", text)
	}
}

// TestSharedConfigFile checks that one config file serves every command:
// an admin command ignores serve-only keys, and a client's own flags are
// never filled from the environment.
func TestSharedConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gatehouse.toml")
	os.WriteFile(cfg, []byte("addr = \"127.0.0.1:0\"\naccess-token-ttl = \"1m\"\ndata = \""+filepath.Join(dir, "data")+"\"\n"), 0o600)
	t.Setenv("GATEHOUSE_NAME", "from-env")
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"keys", "list", "--config", cfg, "--json"}, &out, io.Discard); err != nil {
		t.Fatalf("keys list with a shared config file: %v", err)
	}
	out.Reset()
	err := Run(context.Background(), []string{"client", "create", "--config", cfg, "--name", "cli", "--grant-type", "client_credentials", "--scope", "read", "--json"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	if c["client_name"] != "cli" && c["name"] != "cli" {
		t.Errorf("client name: got %v", c)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "gatehouse.db")); err != nil {
		t.Errorf("config file's data dir not used: %v", err)
	}
	// The server's access-token-ttl setting must not become the client's.
	if v, ok := c["access_token_ttl"]; ok && v != float64(0) && v != "" {
		t.Errorf("client got the server's access-token-ttl from the config file: %v", v)
	}
}
