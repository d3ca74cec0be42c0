// Package proctest runs real gatehouse processes in tests. A test binary
// whose TestMain calls [Main] re-executes itself as the gatehouse command,
// so tests start `gatehouse serve` and the CLI without `go build`; a
// lifeline on each server's standard input stops it when its test ends or
// the test process dies in any way, so no server outlives its test.
//
// It is imported by tests only (internal/cli, internal/replicatest).
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables that turn the test binary into the gatehouse
// command.
const (
	// EnvAsCLI, when "1", makes the test binary run the gatehouse main
	// function given to [Main] and exit with its code.
	EnvAsCLI = "GATEHOUSE_TEST_AS_CLI"
	// EnvLifeline, when "1", makes such a process stop (as on SIGTERM)
	// when its standard input reaches end of file: when the test closes
	// the pipe, or when the test process dies.
	EnvLifeline = "GATEHOUSE_TEST_LIFELINE"
)

// Main is the body of TestMain: the gatehouse command when the binary was
// started as one ([EnvAsCLI]), else the tests. gatehouse is cli.Main,
// passed in because the cli package's own tests use this package.
func Main(m *testing.M, gatehouse func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	if os.Getenv(EnvAsCLI) != "1" {
		os.Exit(m.Run())
	}
	ctx := context.Background()
	if os.Getenv(EnvLifeline) == "1" {
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
	os.Exit(gatehouse(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Command returns a gatehouse command line run by the test binary, with
// the test's environment minus every GATEHOUSE_ setting (the parent's
// configuration must not leak in), the switch that makes the binary the
// gatehouse command, and env (NAME=value).
func Command(t testing.TB, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("cannot re-execute the test binary: %v", err)
	}
	cmd := exec.Command(exe, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, EnvAsCLI+"=1"), env...)
	return cmd
}

// Proc is a running `gatehouse serve` process.
type Proc struct {
	// Name names the process in failure messages.
	Name string
	// Base is http://ADDR, the address it listens on, once [Proc.Wait]
	// has returned.
	Base string

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

// Start starts cmd, a `gatehouse serve` command line logging JSON, with a
// lifeline, and reads its log. When the test ends the process is stopped
// (its exit status is the caller's to judge, with [Proc.Stop]) and, if the
// test failed, its log is printed.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	cmd.Env = append(cmd.Env, EnvLifeline+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, stdin: stdin, ready: make(chan string, 1), done: make(chan struct{})}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.Log())
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.log.Write(line)
			p.log.WriteByte('\n')
			p.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "gatehouse ready" {
				select {
				case p.ready <- rec.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// Wait waits until the process has logged that it is ready and sets Base.
func (p *Proc) Wait(t testing.TB) {
	t.Helper()
	select {
	case addr := <-p.ready:
		p.Base = "http://" + addr
	case <-p.done:
		t.Fatalf("%s exited before it was ready: %v\n%s", p.Name, p.err, p.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready after 30s", p.Name)
	}
}

// Ready receives the listen address once the process has logged that it
// is ready (once; [Proc.Wait] takes it too).
func (p *Proc) Ready() <-chan string { return p.ready }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit status, once Done is closed.
func (p *Proc) Err() error { return p.err }

// Log returns what the process has logged so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Stop closes the process's lifeline, so it shuts down gracefully, and
// kills it if it has not exited 10 s later. It returns an error unless the
// process exited cleanly (or was killed by [Proc.Kill9]).
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		p.stdin.Close()
		select {
		case <-p.done:
			p.stopErr = p.err
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			p.stopErr = errors.New("did not stop within 10s; killed")
		}
		if p.stopErr != nil {
			p.stopErr = fmt.Errorf("exit: %w", p.stopErr)
		}
	})
	return p.stopErr
}

// Kill9 sends SIGKILL, calls then (to stop the load at once) and waits
// for the process to be gone.
func (p *Proc) Kill9(t testing.TB, then func()) {
	t.Helper()
	p.stopOnce.Do(func() {
		if err := p.cmd.Process.Kill(); err != nil {
			t.Errorf("kill %s: %v", p.Name, err)
		}
		then()
		<-p.done
		p.stdin.Close()
	})
}
