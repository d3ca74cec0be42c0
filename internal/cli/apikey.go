package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// keyFormatFlags select the deployment's API-key format.
type keyFormatFlags struct {
	prefix string
	env    string
}

func (f *keyFormatFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.prefix, "apikey-prefix", apikey.DefaultPrefix, "API key type `prefix` (2-8 lowercase letters or digits)")
	fs.StringVar(&f.env, "apikey-env", apikey.EnvLive, "API key environment: live or test")
}

func (f *keyFormatFlags) format() (apikey.Format, error) {
	fm := apikey.Format{Prefix: f.prefix, Env: f.env}
	if err := fm.Validate(); err != nil {
		return apikey.Format{}, fmt.Errorf("%w: --apikey-prefix/--apikey-env: %v", ErrUsage, err)
	}
	return fm, nil
}

// listFlag is a repeatable string flag; each value may also hold several
// space- or comma-separated items.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })...)
	return nil
}

const apikeyUsage = "apikey needs a subcommand: create, list, show, update, revoke, rotate or events"

// runAPIKey implements `gatehouse apikey create|list|show|update|revoke|rotate|events`,
// working offline on the store.
func runAPIKey(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", ErrUsage, apikeyUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("apikey "+sub, e)
	var sf storeFlags
	sf.register(fs)
	var kf keyFormatFlags
	kf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")

	var (
		name, owner, expires, rate, grace *string
		scopes, ips                       listFlag
		needID                            bool
	)
	switch sub {
	case "create", "update":
		name = fs.String("name", "", "what the key is for (required for create)")
		fs.Var(&scopes, "scope", "granted `scope`; repeat or separate with spaces (default read)")
		expires = fs.String("expires", "", "lifetime such as 720h, or an RFC 3339 time; \"never\" removes it")
		fs.Var(&ips, "allow-ip", "`CIDR` or address the key may be used from; repeat; \"any\" removes the list")
		rate = fs.String("rate-limit", "", "rate limit such as 100/m, 10/s or 5000/h; 0 removes it")
		if sub == "create" {
			owner = fs.String("owner", "", "the user or service the key belongs to")
		}
		needID = sub == "update"
	case "list":
		owner = fs.String("owner", "", "list only this owner's keys")
	case "show", "revoke", "events":
		needID = true
	case "rotate":
		grace = fs.String("grace", "", "how long the old key keeps working (default 24h; 0s ends it now)")
		needID = true
	default:
		return fmt.Errorf("%w: unknown apikey subcommand %q: %s", ErrUsage, sub, apikeyUsage[len("apikey needs a subcommand: "):])
	}

	// The key ID may come before or after the flags.
	pos, given, err := parseInterleaved(fs, e, args)
	if err != nil {
		return err
	}
	var id string
	switch {
	case needID && len(pos) == 1:
		id = pos[0]
	case len(pos) > 0:
		return fmt.Errorf("%w: unexpected arguments: %s", ErrUsage, strings.Join(pos, " "))
	}
	if needID && id == "" {
		return fmt.Errorf("%w: apikey %s needs a key ID", ErrUsage, sub)
	}
	if sub == "create" && *name == "" {
		return fmt.Errorf("%w: apikey create needs --name", ErrUsage)
	}

	format, err := kf.format()
	if err != nil {
		return err
	}
	st, master, cfg, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	cfg.APIKeyFormat = format
	defer st.Close()
	svc, err := server.NewAPIKeys(st, master, cfg)
	if err != nil {
		return err
	}
	by := keyauth.Actor{Name: "cli"}
	now := time.Now()
	out := &apikeyOutput{e: e, json: *asJSON, now: now}

	switch sub {
	case "create":
		p := keyauth.Params{Name: *name, Owner: *owner, Scopes: scopes}
		if err := applyKeyFlags(&p, given, *expires, ips, *rate, now); err != nil {
			return err
		}
		rec, key, err := svc.Create(ctx, p, by)
		if err != nil {
			return usageIfInvalid(err)
		}
		return out.created(rec, key, "Created")
	case "list":
		var all []store.APIKey
		f := store.APIKeyFilter{Owner: *owner}
		for {
			keys, err := svc.List(ctx, f)
			if err != nil {
				return err
			}
			all = append(all, keys...)
			if len(keys) < 1000 {
				break
			}
			f.After = keys[len(keys)-1].ID
		}
		return out.list(all)
	case "show":
		rec, err := svc.Show(ctx, id)
		if err != nil {
			return notFound(err, id)
		}
		return out.show(rec)
	case "update":
		rec, err := svc.Show(ctx, id)
		if err != nil {
			return notFound(err, id)
		}
		p := keyauth.Params{Name: rec.Name, Owner: rec.Owner, Scopes: rec.Scopes, ExpiresAt: rec.ExpiresAt,
			AllowedIPs: rec.AllowedIPs, RateLimit: rec.RateLimit, RateWindow: rec.RateWindow}
		if given["name"] {
			p.Name = *name
		}
		if given["scope"] {
			p.Scopes = scopes
		}
		if err := applyKeyFlags(&p, given, *expires, ips, *rate, now); err != nil {
			return err
		}
		rec, err = svc.Update(ctx, id, p, by)
		if err != nil {
			return usageIfInvalid(notFound(err, id))
		}
		return out.show(rec)
	case "revoke":
		rec, err := svc.Revoke(ctx, id, by)
		if err != nil {
			return notFound(err, id)
		}
		if out.json {
			return writeJSON(e.stdout, keyauth.NewView(rec, now))
		}
		fmt.Fprintf(e.stdout, "revoked API key %s (%s); running servers refuse it within a second\n", rec.ID, rec.Name)
		return nil
	case "rotate":
		var d time.Duration
		if *grace != "" {
			if d, err = time.ParseDuration(*grace); err != nil || d < 0 {
				return fmt.Errorf("%w: --grace %q: want a duration such as 24h, or 0s", ErrUsage, *grace)
			}
			if d == 0 {
				d = -1 // explicit zero: no grace
			}
		}
		old, rec, key, err := svc.Rotate(ctx, id, d, by)
		if err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("API key %s is revoked or was already rotated", id)
			}
			return notFound(err, id)
		}
		if !out.json {
			fmt.Fprintf(e.stdout, "The old key %s keeps working until %s.\n", old.ID, old.GraceUntil.Local().Format(time.RFC3339))
		}
		return out.created(rec, key, "Rotated to")
	case "events":
		if _, err := svc.Show(ctx, id); err != nil {
			return notFound(err, id)
		}
		evs, err := svc.Events(ctx, id, 0, 1000)
		if err != nil {
			return err
		}
		return out.events(evs)
	}
	return nil
}

// applyKeyFlags applies --expires, --allow-ip and --rate-limit, if given.
func applyKeyFlags(p *keyauth.Params, given map[string]bool, expires string, ips listFlag, rate string, now time.Time) error {
	if given["expires"] || expires != "" {
		switch {
		case expires == "never" || expires == "":
			p.ExpiresAt = time.Time{}
		default:
			if d, err := time.ParseDuration(expires); err == nil && d > 0 {
				p.ExpiresAt = now.Add(d)
			} else if t, err := time.Parse(time.RFC3339, expires); err == nil {
				p.ExpiresAt = t
			} else {
				return fmt.Errorf("%w: --expires %q: want a duration such as 720h, an RFC 3339 time, or never", ErrUsage, expires)
			}
		}
	}
	if given["allow-ip"] || len(ips) > 0 {
		p.AllowedIPs = ips
		if len(ips) == 1 && ips[0] == "any" {
			p.AllowedIPs = nil
		}
	}
	if given["rate-limit"] || rate != "" {
		n, w, err := keyauth.ParseRate(rate)
		if err != nil {
			return fmt.Errorf("%w: --rate-limit: %v", ErrUsage, err)
		}
		p.RateLimit, p.RateWindow = n, w
	}
	return nil
}

func usageIfInvalid(err error) error {
	if errors.Is(err, keyauth.ErrInvalid) {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return err
}

func notFound(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no API key with ID %q", id)
	}
	return err
}

// apikeyOutput prints results as text or JSON.
type apikeyOutput struct {
	e    *env
	json bool
	now  time.Time
}

func (o *apikeyOutput) created(rec store.APIKey, key apikey.Key, verb string) error {
	v := keyauth.NewView(rec, o.now)
	v.Key = key.Plaintext()
	if o.json {
		return writeJSON(o.e.stdout, v)
	}
	fmt.Fprintf(o.e.stdout, "%s API key %s (%s). Copy the key now: it is not shown again.\n\n  %s\n\n",
		verb, rec.ID, rec.Name, key.Plaintext())
	fmt.Fprintf(o.e.stdout, "Send it in a header: \"X-API-Key: <key>\" or \"Authorization: Bearer <key>\".\n")
	return nil
}

func (o *apikeyOutput) list(keys []store.APIKey) error {
	if o.json {
		views := make([]keyauth.View, 0, len(keys))
		for _, k := range keys {
			views = append(views, keyauth.NewView(k, o.now))
		}
		return writeJSON(o.e.stdout, views)
	}
	tw := tabwriter.NewWriter(o.e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKEY\tNAME\tOWNER\tSTATUS\tSCOPES\tLAST USED\tEXPIRES")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, keyauth.Masked(k), k.Name, dash(k.Owner),
			keyauth.Status(k, o.now), strings.Join(k.Scopes, " "), fmtZero(k.LastUsedAt), fmtZero(k.ExpiresAt))
	}
	return tw.Flush()
}

func (o *apikeyOutput) show(k store.APIKey) error {
	v := keyauth.NewView(k, o.now)
	if o.json {
		return writeJSON(o.e.stdout, v)
	}
	tw := tabwriter.NewWriter(o.e.stdout, 0, 0, 2, ' ', 0)
	rate := "-"
	if v.RateLimit != nil {
		rate = fmt.Sprintf("%d per %s", v.RateLimit.Limit, v.RateLimit.Window)
	}
	rows := [][2]string{
		{"id", v.ID}, {"key", v.Masked}, {"name", v.Name}, {"owner", dash(v.Owner)}, {"status", v.Status},
		{"scopes", strings.Join(v.Scopes, " ")}, {"allowed ips", dash(strings.Join(v.AllowedIPs, " "))},
		{"rate limit", rate}, {"created", fmtZero(k.CreatedAt)}, {"expires", fmtZero(k.ExpiresAt)},
		{"last used", fmtZero(k.LastUsedAt)}, {"uses", fmt.Sprint(k.UseCount)},
	}
	if !k.RevokedAt.IsZero() {
		rows = append(rows, [2]string{"revoked", fmtZero(k.RevokedAt)})
	}
	if k.ReplacedBy != "" {
		rows = append(rows, [2]string{"replaced by", k.ReplacedBy}, [2]string{"grace until", fmtZero(k.GraceUntil)})
	}
	if !k.ExposedAt.IsZero() {
		rows = append(rows, [2]string{"EXPOSED", fmtZero(k.ExposedAt) + " (rotate this key)"})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

func (o *apikeyOutput) events(evs []store.AuditEvent) error {
	if o.json {
		type ev struct {
			At       time.Time `json:"at"`
			Actor    string    `json:"actor,omitempty"`
			Event    string    `json:"event"`
			Outcome  string    `json:"outcome,omitempty"`
			Reason   string    `json:"reason,omitempty"`
			SourceIP string    `json:"source_ip,omitempty"`
		}
		out := make([]ev, 0, len(evs))
		for _, e := range evs {
			out = append(out, ev{e.At, e.Actor, e.Event, e.Outcome, e.Reason, e.SourceIP})
		}
		return writeJSON(o.e.stdout, out)
	}
	tw := tabwriter.NewWriter(o.e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tOUTCOME\tREASON\tACTOR\tSOURCE IP")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Event, e.Outcome, dash(e.Reason),
			dash(e.Actor), dash(e.SourceIP))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtZero(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}
