package replicatest

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/cli"
)

// Environment variables that turn the test binary into the gatehouse
// command (as in internal/cli's process tests).
const (
	// envAsCLI, when "1", makes the test binary run cli.Run(os.Args[1:]).
	envAsCLI = "GATEHOUSE_TEST_AS_CLI"
	// envLifeline, when "1", makes the process stop (as on SIGTERM) when
	// its standard input reaches end of file, so no server outlives its
	// test.
	envLifeline = "GATEHOUSE_TEST_LIFELINE"
	// envLong enables the longer variants of the tests.
	envLong = "GATEHOUSE_LONG_TESTS"
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
			time.Sleep(10 * time.Second)
			fmt.Fprintln(os.Stderr, "gatehouse (test): did not stop within 10s of losing its parent")
			os.Exit(4)
		}()
	}
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// longTests reports whether the long variants were asked for.
func longTests() bool { return os.Getenv(envLong) == "1" }
