// Package cli implements the gatehouse command and its subcommands. Run is
// the whole program; main only calls it, so tests can run any command
// in-process.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// ErrUsage marks errors caused by a bad command line; main exits with code
// 2 for them.
var ErrUsage = errors.New("usage")

type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what every command gets: its output streams and environment.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() map[string]command {
	return map[string]command{
		"serve":   {"run the authorization server", runServe},
		"migrate": {"apply database migrations and exit", runMigrate},
		"keys":    {"list or rotate signing keys (keys list|rotate)", runKeys},
		"client":  {"manage OAuth clients (client create|list|show|update|delete|rotate-secret)", runClient},
		"user":    {"manage users (user create|list|delete|set-password)", runUser},
		"version": {"print the version", runVersion},
		"apikey":  {"manage API keys (apikey create|list|show|update|revoke|rotate|events)", runAPIKey},
		"scan":    {"scan files and git history for leaked API keys", runScan},
		"gateway": {"run the phantom-token reverse proxy (gateway --config FILE)", runGateway},
	}
}

// Version is the program version, set at build time with
// -ldflags "-X github.com/gatehouse-dev/gatehouse/internal/cli.Version=…".
var Version = "dev"

// Run runs the gatehouse command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return fmt.Errorf("%w: no command given", ErrUsage)
		}
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return fmt.Errorf("%w: unknown command %q", ErrUsage, args[0])
	}
	return c.run(ctx, e, args[1:])
}

// Main runs the gatehouse command line args as cmd/gatehouse does and
// returns the process's exit code: 0 on success (and for help), 2 for a
// usage error, 3 when scan found a live key, 1 for anything else. Errors
// are printed to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := Run(ctx, args, stdout, stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "gatehouse:", err)
	switch {
	case errors.Is(err, ErrLiveKey):
		return 3
	case errors.Is(err, ErrUsage):
		return 2
	default:
		return 1
	}
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "Usage: gatehouse <command> [flags]\n\nCommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'gatehouse <command> -h' for a command's flags. Every flag can also be set")
	fmt.Fprintln(w, "with GATEHOUSE_<FLAG> (dashes as underscores) or as a key in the --config file.")
}

func runVersion(_ context.Context, e *env, args []string) error {
	fmt.Fprintln(e.stdout, "gatehouse", Version)
	return nil
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parse parses args and then fills unset flags from the environment and the
// config file.
func parse(fs *flag.FlagSet, e *env, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if err := bindSources(fs, e.getenv); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}

// newLogger returns the structured logger for format "text" or "json" at
// level "debug", "info", "warn" or "error". Errors that are only a
// cancelled context (a client that went away) are logged at debug level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", ErrUsage, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(canceledQuiet{slog.NewTextHandler(w, opts)}), nil
	case "json":
		return slog.New(canceledQuiet{slog.NewJSONHandler(w, opts)}), nil
	default:
		return nil, fmt.Errorf("%w: --log-format %q: want text or json", ErrUsage, format)
	}
}

// writeJSON prints v as indented JSON, for --json output.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cliAudit records an administrative command in the audit log with actor
// "cli", as the admin API and the console record theirs. The change is
// already made: a failure to record it is reported on stderr, not
// returned.
func cliAudit(ctx context.Context, e *env, st *store.Store, event, target string, details map[string]any) {
	ev := store.AuditEvent{Actor: "cli", Event: event, Target: target, Outcome: "success"}
	if details != nil {
		b, err := json.Marshal(details)
		if err == nil {
			ev.Details = b
		}
	}
	if err := st.AppendAudit(ctx, ev); err != nil {
		fmt.Fprintf(e.stderr, "gatehouse: warning: could not write the audit event %s: %v\n", event, err)
	}
}
