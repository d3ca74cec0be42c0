package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// Environment variables that turn the test binary into the gatehouse
// command, so tests can run real gatehouse processes without `go build`.
const (
	// envAsCLI, when "1", makes the test binary run Run(os.Args[1:]) and
	// exit with the exit code cmd/gatehouse would use.
	envAsCLI = "GATEHOUSE_TEST_AS_CLI"
	// envLifeline, when "1", makes such a process stop (as on SIGTERM)
	// when its standard input reaches end of file: when the test closes
	// the pipe, or when the test process dies in any way, so no server
	// outlives its test.
	envLifeline = "GATEHOUSE_TEST_LIFELINE"
)

func TestMain(m *testing.M) {
	if os.Getenv(envAsCLI) == "1" {
		os.Exit(runAsCLI())
	}
	os.Exit(m.Run())
}

// runAsCLI is the main function of a test binary started as gatehouse.
func runAsCLI() int {
	ctx := context.Background()
	if os.Getenv(envLifeline) == "1" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
			time.Sleep(10 * time.Second) // time for a graceful stop, then give up
			fmt.Fprintln(os.Stderr, "gatehouse (test): did not stop within 10s of losing its parent")
			os.Exit(4)
		}()
	}
	return Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// procTest starts gatehouse processes that share one store and one master
// secret.
type procTest struct {
	t      *testing.T
	exe    string
	env    []string
	dbArgs []string
}

const procAdminToken = "process-test-admin-token-0123456789abcdef"

func newProcTest(t *testing.T, db string) *procTest {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-execute the test binary: %v", err)
	}
	// The parent's GATEHOUSE_* settings must not leak into the processes.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			env = append(env, kv)
		}
	}
	env = append(env, envAsCLI+"=1", "GATEHOUSE_SECRET="+strings.Repeat("two-process-secret-", 3),
		"GATEHOUSE_ADMIN_TOKEN="+procAdminToken, "GATEHOUSE_LOG_FORMAT=json")
	return &procTest{t: t, exe: exe, env: env, dbArgs: []string{"--db", db}}
}

// command returns a gatehouse command line on the shared store, with its
// own data directory.
func (p *procTest) command(args ...string) *exec.Cmd {
	args = append(append(args, p.dbArgs...), "--data", p.t.TempDir())
	cmd := exec.Command(p.exe, args...)
	cmd.Env = p.env
	return cmd
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
type serveProc struct {
	name  string
	base  string
	cmd   *exec.Cmd
	stdin io.Closer
	ready chan string   // receives the listen address once ready
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status, once done is closed

	mu  sync.Mutex
	log bytes.Buffer // its standard error: the JSON log

	stopOnce sync.Once
	stopErr  error
}

// serve starts `gatehouse serve` on a free loopback port; [serveProc.wait]
// waits until it is ready. The process is stopped when the test ends,
// whatever happens.
func (p *procTest) serve(name string) *serveProc {
	p.t.Helper()
	return p.serveAt(name, "127.0.0.1:0", "http://127.0.0.1")
}

// serveAt is serve on a given address and issuer.
func (p *procTest) serveAt(name, addr, issuer string) *serveProc {
	p.t.Helper()
	cmd := p.command("serve", "--addr", addr, "--issuer", issuer)
	cmd.Env = append(cmd.Env, envLifeline+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", name, err)
	}
	s := &serveProc{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{}), ready: make(chan string, 1)}
	p.t.Cleanup(func() {
		if err := s.stop(); err != nil {
			p.t.Errorf("%s: %v", name, err)
		}
		if p.t.Failed() {
			s.mu.Lock()
			p.t.Logf("%s log:\n%s", name, s.log.String())
			s.mu.Unlock()
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.log.Write(line)
			s.log.WriteByte('\n')
			s.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "gatehouse ready" {
				select {
				case s.ready <- rec.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s
}

// wait waits until the server has logged that it is ready.
func (s *serveProc) wait(t *testing.T) {
	t.Helper()
	select {
	case addr := <-s.ready:
		s.base = "http://" + addr
	case <-s.done:
		t.Fatalf("%s exited before it was ready: %v", s.name, s.err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready after 30s", s.name)
	}
}

// stop closes the process's lifeline, so it shuts down gracefully, and
// kills it if it has not exited 10 s later. It returns an error unless the
// process exited cleanly.
func (s *serveProc) stop() error {
	s.stopOnce.Do(func() {
		s.stdin.Close()
		select {
		case <-s.done:
			s.stopErr = s.err
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
			s.stopErr = errors.New("did not stop within 10s; killed")
		}
		if s.stopErr != nil {
			s.stopErr = fmt.Errorf("exit: %w", s.stopErr)
		}
	})
	return s.stopErr
}

// post sends an admin-authenticated request to the server and decodes the
// JSON answer into out.
func (s *serveProc) post(t *testing.T, path string, header map[string]string, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest("POST", s.base+path, strings.NewReader(body))
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
		t.Fatalf("%s: POST %s: %v", s.name, path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s: POST %s: status %d, body is not JSON: %v", s.name, path, resp.StatusCode, err)
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
func (s *serveProc) verify(t *testing.T, key string) verifyAnswer {
	t.Helper()
	var v verifyAnswer
	if status := s.post(t, keyauth.VerifyPath, map[string]string{keyauth.HeaderAPIKey: key}, "", &v); status != http.StatusOK {
		t.Fatalf("%s: verify: status %d, want 200", s.name, status)
	}
	return v
}

// waitRefused polls s until key is refused and returns how long after
// from that was; it fails the test if key is still accepted after limit.
func (s *serveProc) waitRefused(t *testing.T, key string, from time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for s.verify(t, key).Active {
		if time.Since(from) > limit {
			t.Fatalf("%s still accepts the key %v after the change, want a refusal within %v", s.name, time.Since(from), limit)
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
	a.wait(t)
	b.wait(t)

	wantRefusal := map[string]string{} // key ID -> reason code of a refusal in its audit log

	t.Run("revoke", func(t *testing.T) {
		var created keyOut
		if err := json.Unmarshal([]byte(p.run("apikey", "create", "--name", "shared", "--owner", "svc-a",
			"--scope", "read write", "--json")), &created); err != nil || created.Key == "" {
			t.Fatalf("apikey create --json: %v, key %t", err, created.Key != "")
		}
		for _, s := range []*serveProc{a, b} {
			got := s.verify(t, created.Key)
			if !got.Active || got.KeyID != created.ID || got.Sub != "svc-a" || strings.Join(got.Scopes, " ") != "read write" {
				t.Fatalf("%s: verify a new key = %+v, want active, id %s, sub svc-a, scopes read write", s.name, got, created.ID)
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
		for _, s := range []*serveProc{a, b} {
			if s.verify(t, created.Key).Active {
				t.Errorf("%s accepts the old key after its grace deadline", s.name)
			}
			if !s.verify(t, rotated.Key).Active {
				t.Errorf("%s refuses the new key after the old key's grace deadline", s.name)
			}
		}
		wantRefusal[created.ID] = "rotated"
	})

	// A graceful stop flushes the batched audit events; a third process
	// then finds each refusal in the shared audit log with its reason code
	// and the caller's address.
	for _, s := range []*serveProc{a, b} {
		if err := s.stop(); err != nil {
			t.Fatalf("stop %s: %v", s.name, err)
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
