package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/signing"
	"github.com/gatehouse-dev/gatehouse/token"
)

// keyJSON is the stable --json form of a signing key.
type keyJSON struct {
	ID          string     `json:"kid"`
	Algorithm   string     `json:"alg"`
	State       string     `json:"state"`
	ActivatesAt time.Time  `json:"activates_at"`
	RetiresAt   *time.Time `json:"retires_at,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

func toKeyJSON(k signing.Key, now time.Time) keyJSON {
	j := keyJSON{ID: k.ID, Algorithm: string(k.Algorithm), State: k.State(now), ActivatesAt: k.ActivatesAt.UTC()}
	if !k.RetiresAt.IsZero() {
		t := k.RetiresAt.UTC()
		j.RetiresAt = &t
	}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt.UTC()
		j.ExpiresAt = &t
	}
	return j
}

func runKeys(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: keys needs a subcommand: list or rotate", ErrUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("keys "+sub, e)
	var sf storeFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var alg *string
	var immediate *bool
	switch sub {
	case "list":
	case "rotate":
		alg = fs.String("alg", "all", "algorithm to rotate: ES256, RS256, EdDSA or all")
		immediate = fs.Bool("immediate", false, "sign with the new key at once (for a compromised key) instead of after the publish-ahead delay")
	default:
		return fmt.Errorf("%w: unknown keys subcommand %q: want list or rotate", ErrUsage, sub)
	}
	if err := parse(fs, e, args); err != nil {
		return err
	}
	st, master, cfg, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	mgr, err := signing.New(signing.Config{Store: st, Sealer: master.Sealer(secret.PurposeSigningKeys), Logger: cfg.Logger})
	if err != nil {
		return err
	}

	if sub == "rotate" {
		algs := signing.Algorithms
		if *alg != "all" {
			a, err := parseAlg(*alg)
			if err != nil {
				return err
			}
			algs = []token.Algorithm{a}
		}
		if err := mgr.Init(ctx); err != nil {
			return err
		}
		var out []keyJSON
		now := time.Now()
		for _, a := range algs {
			k, err := mgr.Rotate(ctx, a, *immediate)
			if err != nil {
				return err
			}
			out = append(out, toKeyJSON(k, now))
		}
		if *asJSON {
			return writeJSON(e.stdout, out)
		}
		for _, k := range out {
			fmt.Fprintf(e.stdout, "new %s key %s published; it signs from %s\n", k.Algorithm, k.ID, k.ActivatesAt.Format(time.RFC3339))
		}
		return nil
	}

	if err := mgr.Reload(ctx); err != nil {
		return err
	}
	now := time.Now()
	keys := mgr.Keys()
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyJSON(k, now))
	}
	if *asJSON {
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tACTIVATES\tRETIRES\tEXPIRES")
	for _, k := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.State, k.ActivatesAt.Format(time.RFC3339), fmtTime(k.RetiresAt), fmtTime(k.ExpiresAt))
	}
	return tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func parseAlg(s string) (token.Algorithm, error) {
	for _, a := range signing.Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w: unknown algorithm %q: want ES256, RS256, EdDSA or all", ErrUsage, s)
}
