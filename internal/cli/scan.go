package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// ErrLiveKey is returned by `gatehouse scan` when it finds a live API key
// (or, with --offline, any key); main exits with status 3 for it, so a CI
// job or pre-commit hook can tell a leak from a failure to scan.
var ErrLiveKey = errors.New("live API key found")

// scanFinding is one finding as `scan --json` prints it.
type scanFinding struct {
	Path   string `json:"path"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Commit string `json:"commit,omitempty"`
	Object string `json:"object,omitempty"`
	KeyID  string `json:"key_id"`
	Masked string `json:"masked"`
	// Status is the key's status in the store ("active", "revoked", ...),
	// "unknown" for an ID the store does not have, "forged" for a string
	// with a real key's ID but another secret, or "unchecked" (--offline).
	Status  string `json:"status"`
	Live    bool   `json:"live"`
	Revoked bool   `json:"revoked_now,omitempty"`
}

// runScan implements `gatehouse scan [PATH...] [--git] [--revoke] [--json]`.
func runScan(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("scan", e)
	var sf storeFlags
	sf.register(fs)
	git := fs.Bool("git", false, "also scan each PATH's git history (every blob reachable from any ref)")
	revoke := fs.Bool("revoke", false, "revoke every live key found")
	offline := fs.Bool("offline", false, "do not open the store: report every key found as possibly live")
	asJSON := fs.Bool("json", false, "print JSON")
	paths, _, err := parseInterleaved(fs, e, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	if *offline && *revoke {
		return fmt.Errorf("%w: --revoke needs the store; it cannot be used with --offline", ErrUsage)
	}

	var svc *keyauth.Service
	sc := &apikey.Scanner{Skipped: func(path string, reason error) {
		fmt.Fprintf(e.stderr, "gatehouse scan: skipped %s: %v\n", path, reason)
	}}
	if !*offline {
		if sf.db == "" {
			if _, err := os.Stat(sf.data); err != nil {
				return fmt.Errorf("no Gatehouse store in %q: pass --db or --data to check whether found keys are live, or --offline", sf.data)
			}
		}
		st, master, cfg, err := sf.open(ctx, e)
		if err != nil {
			return err
		}
		defer st.Close()
		if svc, err = server.NewAPIKeys(st, master, cfg); err != nil {
			return err
		}
		sc.Hasher = svc.Hasher()
	}

	now := time.Now()
	var findings []scanFinding
	type keyState struct {
		rec   store.APIKey
		found bool // the store has a key with this ID
		real  bool // and the finding is that key, not a forgery of its ID
	}
	known := map[string]*keyState{} // by ID and hash: a forgery has the ID of a real key
	var states []*keyState          // of each finding
	check := func(f apikey.Finding) error {
		out := scanFinding{Path: f.Path, Line: f.Line, Column: f.Column, Commit: f.Commit, Object: f.Object,
			KeyID: f.ID, Masked: f.Masked, Status: "unchecked", Live: svc == nil}
		var ks *keyState
		if svc != nil {
			ks = known[f.ID+string(f.Hash)]
			if ks == nil {
				rec, real, err := svc.Identify(ctx, f.ID, f.Hash)
				if err != nil {
					return err
				}
				ks = &keyState{rec: rec, found: rec.ID != "", real: real}
				known[f.ID+string(f.Hash)] = ks
			}
			switch {
			case !ks.found:
				out.Status = "unknown"
			case !ks.real:
				out.Status = "forged"
			default:
				out.Status, out.Live = keyauth.Status(ks.rec, now), keyauth.Live(ks.rec, now)
			}
		}
		findings = append(findings, out)
		states = append(states, ks)
		return nil
	}
	for _, p := range paths {
		if err := sc.ScanTree(ctx, p, check); err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		if *git {
			if err := sc.ScanGitHistory(ctx, p, check); err != nil {
				return fmt.Errorf("scan git history of %s: %w", p, err)
			}
		}
	}

	live := map[string]bool{}
	for _, f := range findings {
		if f.Live {
			live[f.KeyID] = true
		}
	}
	if svc != nil {
		by := keyauth.Actor{Name: "scan"}
		for i, f := range findings {
			if !f.Live {
				continue
			}
			ks := states[i]
			if err := svc.MarkExposed(ctx, ks.rec, "scan: "+location(f), by); err != nil {
				return err
			}
			if *revoke && ks.rec.RevokedAt.IsZero() {
				rec, err := svc.Revoke(ctx, f.KeyID, by)
				if err != nil {
					return err
				}
				ks.rec = rec
			}
			findings[i].Revoked = *revoke
		}
	}

	if *asJSON {
		if findings == nil {
			findings = []scanFinding{}
		}
		if err := writeJSON(e.stdout, map[string]any{"findings": findings, "live_keys": len(live)}); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			note := f.Status
			switch {
			case f.Revoked:
				note = "LIVE, now revoked"
			case f.Live && svc != nil:
				note = "LIVE (" + f.Status + ")"
			case f.Live:
				note = "possibly live (not checked: --offline)"
			}
			fmt.Fprintf(e.stdout, "%s: key %s %s\n", location(f), f.KeyID, note)
		}
		fmt.Fprintf(e.stdout, "%d key(s) found, %d live\n", len(findings), len(live))
	}
	if len(live) > 0 {
		return fmt.Errorf("%w: %d live key(s); rotate or revoke them (gatehouse apikey rotate ID)", ErrLiveKey, len(live))
	}
	return nil
}

// location is "path:line:column", with the commit for git history.
func location(f scanFinding) string {
	var b strings.Builder
	if f.Commit != "" {
		b.WriteString(f.Commit[:min(12, len(f.Commit))] + ":")
	}
	fmt.Fprintf(&b, "%s:%d:%d", f.Path, f.Line, f.Column)
	return b.String()
}

// parseInterleaved parses args like parse, but allows positional arguments
// between the flags ("scan DIR --json"), and returns the positional
// arguments and the names of the flags given on the command line.
func parseInterleaved(fs *flag.FlagSet, e *env, args []string) ([]string, map[string]bool, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if err := bindSources(fs, e.getenv); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return pos, given, nil
}
