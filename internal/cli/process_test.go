package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/proctest"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

func TestMain(m *testing.M) { proctest.Main(m, Main) }

// procTest starts gatehouse processes that share one store and one master
// secret.
type procTest struct {
	t      *testing.T
	env    []string // settings of every process
	dbArgs []string
}

const procAdminToken = "process-test-admin-token-0123456789abcdef"

func newProcTest(t *testing.T, db string) *procTest {
	t.Helper()
	env := []string{"GATEHOUSE_SECRET=" + strings.Repeat("two-process-secret-", 3),
		"GATEHOUSE_ADMIN_TOKEN=" + procAdminToken, "GATEHOUSE_LOG_FORMAT=json"}
	return &procTest{t: t, env: env, dbArgs: []string{"--db", db}}
}

// command returns a gatehouse command line on the shared store, with its
// own data directory.
func (p *procTest) command(args ...string) *exec.Cmd {
	args = append(append(args, p.dbArgs...), "--data", p.t.TempDir())
	return proctest.Command(p.t, p.env, args...)
}

// run runs one gatehouse command to completion and returns its stdout.
func (p *procTest) run(args ...string) string {
	p.t.Helper()
	cmd := p.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		p.t.Fatalf("gatehouse %s: %v\n%s", args[0], err, stderr.String())
	}
	return stdout.String()
}

// serveProc is a running `gatehouse serve` process.
type serveProc struct{ *proctest.Proc }

// serve starts `gatehouse serve` on a free loopback port; Wait waits until
// it is ready. The process is stopped when the test ends, whatever
// happens, and must then exit cleanly.
func (p *procTest) serve(name string) serveProc {
	p.t.Helper()
	return p.serveAt(name, "127.0.0.1:0", "http://127.0.0.1")
}

// serveAt is serve on a given address and issuer.
func (p *procTest) serveAt(name, addr, issuer string) serveProc {
	p.t.Helper()
	s := proctest.Start(p.t, name, p.command("serve", "--addr", addr, "--issuer", issuer))
	p.t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			p.t.Errorf("%s: %v", name, err)
		}
	})
	return serveProc{s}
}

// post sends an admin-authenticated request to the server and decodes the
// JSON answer into out.
func (s serveProc) post(t *testing.T, path string, header map[string]string, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest("POST", s.Base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+procAdminToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: POST %s: %v", s.Name, path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s: POST %s: status %d, body is not JSON: %v", s.Name, path, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// verifyAnswer is the part of the POST /apikeys/verify answer the test
// checks.
type verifyAnswer struct {
	Active bool     `json:"active"`
	KeyID  string   `json:"key_id"`
	Sub    string   `json:"sub"`
	Scopes []string `json:"scopes"`
}

// verify asks the server about key through POST /apikeys/verify.
func (s serveProc) verify(t *testing.T, key string) verifyAnswer {
	t.Helper()
	var v verifyAnswer
	if status := s.post(t, keyauth.VerifyPath, map[string]string{keyauth.HeaderAPIKey: key}, "", &v); status != http.StatusOK {
		t.Fatalf("%s: verify: status %d, want 200", s.Name, status)
	}
	return v
}

// waitRefused polls s until key is refused and returns how long after
// from that was; it fails the test if key is still accepted after limit.
func (s serveProc) waitRefused(t *testing.T, key string, from time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for s.verify(t, key).Active {
		if time.Since(from) > limit {
			t.Fatalf("%s still accepts the key %v after the change, want a refusal within %v", s.Name, time.Since(from), limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(from)
}

// TestAPIKeyPropagationAcrossProcesses runs two `gatehouse serve` processes
// against one PostgreSQL schema, as two machines would, and changes keys
// through a third process (the CLI) and through the admin API of the first
// server: the second server must see a revocation within 1 s, and must
// honour a rotated key's grace deadline to the millisecond.
func TestAPIKeyPropagationAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several gatehouse processes")
	}
	p := newProcTest(t, storetest.PostgresURL(t))

	// Both servers start at once on the empty schema: the migration and
	// the first signing keys must be created exactly once between them.
	a, b := p.serve("A"), p.serve("B")
	a.Wait(t)
	b.Wait(t)

	wantRefusal := map[string]string{} // key ID -> reason code of a refusal in its audit log

	t.Run("revoke", func(t *testing.T) {
		var created keyOut
		if err := json.Unmarshal([]byte(p.run("apikey", "create", "--name", "shared", "--owner", "svc-a",
			"--scope", "read write", "--json")), &created); err != nil || created.Key == "" {
			t.Fatalf("apikey create --json: %v, key %t", err, created.Key != "")
		}
		for _, s := range []serveProc{a, b} {
			got := s.verify(t, created.Key)
			if !got.Active || got.KeyID != created.ID || got.Sub != "svc-a" || strings.Join(got.Scopes, " ") != "read write" {
				t.Fatalf("%s: verify a new key = %+v, want active, id %s, sub svc-a, scopes read write", s.Name, got, created.ID)
			}
		}

		// The revocation commits just before the CLI process exits.
		started := time.Now()
		p.run("apikey", "revoke", created.ID)
		revoked := time.Now()
		tookB := b.waitRefused(t, created.Key, revoked, time.Second)
		tookA := a.waitRefused(t, created.Key, revoked, time.Second)
		t.Logf("revocation by a CLI process (which ran for %v) refused by server B %v after it exited, by server A after %v",
			revoked.Sub(started).Round(time.Millisecond), tookB, tookA)
		wantRefusal[created.ID] = "revoked"
	})

	t.Run("rotation grace", func(t *testing.T) {
		var created struct {
			ID  string `json:"id"`
			Key string `json:"key"`
		}
		if st := a.post(t, keyauth.AdminKeysPath, nil, `{"name":"rotating","owner":"svc-b","scopes":["read"]}`, &created); st != http.StatusCreated {
			t.Fatalf("create on A: status %d, want 201", st)
		}
		// B caches the key before the rotation, so only the change feed
		// can tell it about the rotation.
		if !b.verify(t, created.Key).Active {
			t.Fatal("B refuses a key created on A")
		}

		const grace = 2 * time.Second
		var rotated struct {
			ID       string `json:"id"`
			Key      string `json:"key"`
			Replaces struct {
				GraceUntil time.Time `json:"grace_until"`
			} `json:"replaces"`
		}
		sent := time.Now()
		if st := a.post(t, keyauth.AdminKeysPath+"/"+created.ID+"/rotate", nil, fmt.Sprintf(`{"grace":%q}`, grace), &rotated); st != http.StatusCreated {
			t.Fatalf("rotate on A: status %d, want 201", st)
		}
		deadline := rotated.Replaces.GraceUntil
		if d := deadline.Sub(sent); d < grace-time.Second || d > grace+time.Second {
			t.Fatalf("grace_until is %v after the rotation, want about %v", d, grace)
		}
		// Stored times have millisecond precision.
		earliest := deadline.Add(-time.Millisecond)

		// Until the deadline, B accepts the old key and the new one; once
		// it has passed, B refuses the old key within 1 s.
		var accepted, lastAccepted time.Time
		for {
			req := time.Now()
			ok := b.verify(t, created.Key).Active
			resp := time.Now()
			if ok {
				accepted, lastAccepted = req, resp
				if req.After(deadline.Add(time.Second)) {
					t.Fatalf("B still accepts the old key %v after its grace deadline", req.Sub(deadline))
				}
			} else {
				if resp.Before(earliest) {
					t.Fatalf("B refused the old key %v before its grace deadline", deadline.Sub(resp))
				}
				t.Logf("old key: last accepted by B %v before the grace deadline, refused %v after it",
					deadline.Sub(lastAccepted).Round(time.Millisecond), req.Sub(deadline).Round(time.Millisecond))
				break
			}
			if got := b.verify(t, rotated.Key); !got.Active || got.Sub != "svc-b" || strings.Join(got.Scopes, " ") != "read" {
				t.Fatalf("B: new key during the grace period = %+v, want active with the old key's owner and scopes", got)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if accepted.IsZero() {
			t.Fatal("B never accepted the old key during its grace period")
		}
		for _, s := range []serveProc{a, b} {
			if s.verify(t, created.Key).Active {
				t.Errorf("%s accepts the old key after its grace deadline", s.Name)
			}
			if !s.verify(t, rotated.Key).Active {
				t.Errorf("%s refuses the new key after the old key's grace deadline", s.Name)
			}
		}
		wantRefusal[created.ID] = "rotated"
	})

	// A graceful stop flushes the batched audit events; a third process
	// then finds each refusal in the shared audit log with its reason code
	// and the caller's address.
	for _, s := range []serveProc{a, b} {
		if err := s.Stop(); err != nil {
			t.Fatalf("stop %s: %v", s.Name, err)
		}
	}
	for id, want := range wantRefusal {
		var evs []struct {
			Event, Outcome, Reason string
			SourceIP               string `json:"source_ip"`
		}
		if err := json.Unmarshal([]byte(p.run("apikey", "events", id, "--json")), &evs); err != nil {
			t.Fatalf("apikey events --json: %v", err)
		}
		found := false
		for _, e := range evs {
			if e.Event == keyauth.EventVerify && e.Outcome == keyauth.OutcomeFailure && e.Reason == want && e.SourceIP == "127.0.0.1" {
				found = true
			}
		}
		if !found {
			t.Errorf("audit log of key %s: no refusal with reason %q from 127.0.0.1 in %+v", id, want, evs)
		}
	}
}
