package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// clientFlags are the settings flags of client create and update.
type clientFlags struct {
	id, name, scope, authMethod      string
	accessAlg, idAlg, jwksFile       string
	jwksURI, tokenFormat, rate       string
	grantTypes, redirects, audiences stringList
	exchangeAudiences                stringList
	public, impersonate, gateway     bool
	accessTTL, refreshTTL            time.Duration
}

func (f *clientFlags) register(fs *flag.FlagSet, create bool) {
	if create {
		fs.StringVar(&f.id, "id", "", "client `ID` (default: generated)")
		fs.BoolVar(&f.public, "public", false, "a public client (native or browser app): no secret, PKCE required")
	}
	fs.StringVar(&f.name, "name", "", "client `name`, shown on the consent page")
	fs.Var(&f.grantTypes, "grant-type", "allowed grant `type` (repeat): authorization_code, client_credentials, refresh_token, "+oauth.GrantTypeTokenExchange)
	fs.StringVar(&f.scope, "scope", "", "allowed `scopes`, space-separated")
	fs.Var(&f.redirects, "redirect-uri", "registered redirect `URI` (repeat)")
	fs.Var(&f.audiences, "audience", "`audience` of the client's access tokens (repeat; default: the issuer)")
	fs.Var(&f.exchangeAudiences, "exchange-audience", "`audience` the client may get tokens for by token exchange (repeat; needs the token-exchange grant)")
	fs.BoolVar(&f.impersonate, "impersonate", false, "token exchanges by this client do not add it to the act chain (impersonation)")
	fs.BoolVar(&f.gateway, "gateway", false, "a trusted gateway client: exchanges any credential for a short-lived internal JWT (needs the token-exchange grant and --exchange-audience; access-token lifetime defaults to 60s)")
	fs.StringVar(&f.tokenFormat, "access-token-format", "", "access-token `format`: jwt (default) or opaque (resolved by introspection)")
	fs.StringVar(&f.rate, "rate-limit", "", "token-endpoint rate `limit` COUNT/WINDOW, e.g. 100/m or 10/s (0: none)")
	fs.DurationVar(&f.accessTTL, "access-token-ttl", 0, "access-token lifetime (0: server default)")
	fs.DurationVar(&f.refreshTTL, "refresh-token-ttl", 0, "refresh-token lifetime (0: server default)")
	fs.StringVar(&f.accessAlg, "access-token-alg", "", "access-token `alg`: ES256 (default), EdDSA or RS256")
	fs.StringVar(&f.idAlg, "id-token-alg", "", "ID-token `alg`: RS256 (default), ES256 or EdDSA")
	fs.StringVar(&f.authMethod, "auth-method", "", "token endpoint auth `method`: client_secret_basic (default), client_secret_post, private_key_jwt")
	fs.StringVar(&f.jwksFile, "jwks-file", "", "JWK Set `file` with the client's public keys (private_key_jwt)")
	fs.StringVar(&f.jwksURI, "jwks-uri", "", "`URL` of the client's JWK Set (private_key_jwt)")
}

// apply copies the flags that were given (all of them when set is nil)
// onto c.
func (f *clientFlags) apply(c *store.Client, set map[string]bool) error {
	given := func(name string) bool { return set == nil || set[name] }
	if given("name") {
		c.Name = f.name
	}
	if given("grant-type") {
		c.GrantTypes = f.grantTypes
	}
	if given("scope") {
		c.Scopes = strings.Fields(f.scope)
	}
	if given("redirect-uri") {
		c.RedirectURIs = f.redirects
	}
	if given("audience") {
		c.Audiences = f.audiences
	}
	if given("exchange-audience") {
		c.ExchangeAudiences = f.exchangeAudiences
	}
	if given("impersonate") {
		c.MayImpersonate = f.impersonate
	}
	if given("gateway") {
		c.Gateway = f.gateway
	}
	if given("access-token-format") {
		c.AccessTokenFormat = f.tokenFormat
	}
	if given("rate-limit") {
		n, window, err := keyauth.ParseRate(f.rate)
		if err != nil {
			return fmt.Errorf("%w: --rate-limit: want COUNT/WINDOW, such as 100/m or 10/s", ErrUsage)
		}
		c.RateLimit, c.RateWindow = n, window
	}
	if given("access-token-ttl") {
		c.AccessTokenTTL = f.accessTTL
	}
	if given("refresh-token-ttl") {
		c.RefreshTokenTTL = f.refreshTTL
	}
	if given("access-token-alg") {
		c.AccessTokenAlg = f.accessAlg
	}
	if given("id-token-alg") {
		c.IDTokenAlg = f.idAlg
	}
	if given("auth-method") {
		c.TokenEndpointAuthMethod = f.authMethod
	}
	if given("jwks-uri") {
		c.JWKSURI = f.jwksURI
	}
	if given("jwks-file") {
		c.JWKS = nil
		if f.jwksFile != "" {
			b, err := os.ReadFile(f.jwksFile)
			if err != nil {
				return fmt.Errorf("%w: --jwks-file: %v", ErrUsage, err)
			}
			c.JWKS = b
		}
	}
	return nil
}

// parseClientArgs parses a client subcommand's flags. The client ID may
// come before or after the flags. Only the store settings are also read
// from the environment and the config file (see bindSources): client
// settings come from the command line alone.
func parseClientArgs(fs *flag.FlagSet, e *env, args []string, wantID bool) (id string, err error) {
	if wantID && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", fmt.Errorf("%w: %v", ErrUsage, err)
	}
	rest := fs.Args()
	if wantID && id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", fmt.Errorf("%w: unexpected arguments %q", ErrUsage, rest)
	}
	if wantID && id == "" {
		return "", fmt.Errorf("%w: a client ID is required", ErrUsage)
	}
	if err := bindSources(fs, e.getenv); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return id, nil
}

const clientUsage = "client needs a subcommand: create, list, show, update, delete or rotate-secret"

// runClient manages OAuth clients offline, directly on the store; running
// servers pick the changes up from the change feed.
func runClient(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", ErrUsage, clientUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("client "+sub, e)
	var sf storeFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var cf clientFlags
	var grace *time.Duration
	wantID := true
	switch sub {
	case "create":
		cf.register(fs, true)
		wantID = false
	case "update":
		cf.register(fs, false)
	case "rotate-secret":
		grace = fs.Duration("grace", oauth.DefaultSecretGrace, "how long the old secret keeps working")
	case "list":
		wantID = false
	case "show", "delete":
	default:
		return fmt.Errorf("%w: unknown client subcommand %q: %s", ErrUsage, sub, clientUsage)
	}
	id, err := parseClientArgs(fs, e, args, wantID)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	st, master, _, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	hasher, err := secret.NewHasher(master.Pepper())
	if err != nil {
		return err
	}
	out := &clientOutput{e: e, asJSON: *asJSON}

	switch sub {
	case "create":
		if cf.name == "" {
			return fmt.Errorf("%w: --name is required", ErrUsage)
		}
		c := store.Client{ID: cf.id, Public: cf.public}
		if c.ID == "" {
			c.ID = oauth.NewClientID()
		}
		if err := cf.apply(&c, nil); err != nil {
			return err
		}
		if c.Gateway && !set["access-token-ttl"] {
			c.AccessTokenTTL = oauth.DefaultGatewayTokenTTL
		}
		created, plain, err := oauth.CreateClient(ctx, st, hasher, c)
		switch {
		case errors.Is(err, oauth.ErrInvalidClient):
			return fmt.Errorf("%w: %v", ErrUsage, err)
		case errors.Is(err, store.ErrConflict):
			return fmt.Errorf("a client with ID %q already exists", c.ID)
		case err != nil:
			return err
		}
		cliAudit(ctx, e, st, "client.create", created.ID, map[string]any{"name": created.Name})
		return out.one(&created, plain)
	case "list":
		var all []store.Client
		after := ""
		for {
			page, err := st.Clients(ctx, after, 0)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			all = append(all, page...)
			after = page[len(page)-1].ID
		}
		return out.list(all)
	}

	c, err := st.Client(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no client with ID %q", id)
	} else if err != nil {
		return err
	}
	switch sub {
	case "show":
		return out.one(&c, "")
	case "update":
		if err := cf.apply(&c, set); err != nil {
			return err
		}
		updated, err := oauth.UpdateClient(ctx, st, c)
		if errors.Is(err, oauth.ErrInvalidClient) {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		} else if err != nil {
			return err
		}
		cliAudit(ctx, e, st, "client.update", updated.ID, nil)
		return out.one(&updated, "")
	case "delete":
		if err := st.DeleteClient(ctx, id); err != nil {
			return err
		}
		cliAudit(ctx, e, st, "client.delete", id, nil)
		if *asJSON {
			return writeJSON(e.stdout, map[string]any{"client_id": id, "deleted": true})
		}
		fmt.Fprintf(e.stdout, "deleted client %s\n", id)
		return nil
	case "rotate-secret":
		if *grace < 0 {
			return fmt.Errorf("%w: --grace must not be negative", ErrUsage)
		}
		rotated, plain, err := oauth.RotateClientSecret(ctx, st, hasher, id, time.Now().Add(*grace))
		if errors.Is(err, oauth.ErrNoSecret) {
			return fmt.Errorf("%w: client %s has no secret (it is public or uses private_key_jwt)", ErrUsage, id)
		} else if err != nil {
			return err
		}
		cliAudit(ctx, e, st, "client.rotate_secret", rotated.ID, map[string]any{"grace_seconds": int64(grace.Seconds())})
		return out.one(&rotated, plain)
	}
	return nil
}

// clientOutput prints clients as JSON or text.
type clientOutput struct {
	e      *env
	asJSON bool
}

func (o *clientOutput) one(c *store.Client, plainSecret string) error {
	j := oauth.NewClientJSON(c)
	j.ClientSecret = plainSecret
	if o.asJSON {
		return writeJSON(o.e.stdout, j)
	}
	w := o.e.stdout
	fmt.Fprintf(w, "client_id:     %s\n", j.ClientID)
	if plainSecret != "" {
		fmt.Fprintf(w, "client_secret: %s\n", plainSecret)
		fmt.Fprintln(w, "               (shown once: store it now; Gatehouse keeps only a hash)")
	}
	fmt.Fprintf(w, "name:          %s\n", j.ClientName)
	fmt.Fprintf(w, "public:        %v\n", j.Public)
	fmt.Fprintf(w, "grant types:   %s\n", strings.Join(j.GrantTypes, " "))
	fmt.Fprintf(w, "scope:         %s\n", j.Scope)
	fmt.Fprintf(w, "auth method:   %s\n", j.TokenEndpointAuthMethod)
	for _, u := range j.RedirectURIs {
		fmt.Fprintf(w, "redirect URI:  %s\n", u)
	}
	for _, a := range j.Audiences {
		fmt.Fprintf(w, "audience:      %s\n", a)
	}
	for _, a := range j.ExchangeAudiences {
		fmt.Fprintf(w, "exchange for:  %s\n", a)
	}
	if j.MayImpersonate {
		fmt.Fprintln(w, "impersonate:   true")
	}
	if j.Gateway {
		fmt.Fprintln(w, "gateway:       true")
	}
	if j.AccessTokenFormat != "" {
		fmt.Fprintf(w, "token format:  %s\n", j.AccessTokenFormat)
	}
	if c.AccessTokenTTL != 0 {
		fmt.Fprintf(w, "token TTL:     %v\n", c.AccessTokenTTL)
	}
	if j.RateLimit != "" {
		fmt.Fprintf(w, "rate limit:    %s\n", j.RateLimit)
	}
	if len(c.PrevSecretHash) > 0 && time.Now().Before(c.PrevSecretExpiresAt) {
		fmt.Fprintf(w, "old secret:    valid until %s\n", c.PrevSecretExpiresAt.Format(time.RFC3339))
	}
	return nil
}

func (o *clientOutput) list(cs []store.Client) error {
	if o.asJSON {
		out := make([]oauth.ClientJSON, 0, len(cs))
		for i := range cs {
			out = append(out, oauth.NewClientJSON(&cs[i]))
		}
		return writeJSON(o.e.stdout, out)
	}
	tw := tabwriter.NewWriter(o.e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tPUBLIC\tGRANT TYPES\tSCOPE")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", c.ID, c.Name, c.Public, strings.Join(c.GrantTypes, ","), strings.Join(c.Scopes, " "))
	}
	return tw.Flush()
}
