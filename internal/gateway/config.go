package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/token"
)

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("gateway: invalid configuration")

// SecretEnv is the environment variable that holds the gateway client's
// secret when client_secret_file is not set.
const SecretEnv = "GATEHOUSE_GATEWAY_CLIENT_SECRET"

// Config is the gateway's configuration file (TOML). See the package
// documentation for an example.
type Config struct {
	// Listen is the proxy's address. Default 127.0.0.1:8081.
	Listen string `toml:"listen"`
	// AdminListen, if set, serves /healthz and /metrics.
	AdminListen string `toml:"admin_listen"`
	// Issuer is Gatehouse's issuer URL (where `gatehouse serve` runs).
	Issuer string `toml:"issuer"`
	// Audience is the external API's identifier: JWT and opaque access
	// tokens must list it in "aud".
	Audience string `toml:"audience"`
	// ClientID is the gateway client (a confidential client with the
	// gateway flag and the token-exchange grant).
	ClientID string `toml:"client_id"`
	// ClientSecretFile holds the client's secret; without it the secret is
	// read from GATEHOUSE_GATEWAY_CLIENT_SECRET. It is never inline.
	ClientSecretFile string `toml:"client_secret_file"`
	// Routes are the proxied path prefixes.
	Routes []Route `toml:"route"`
}

// Route maps a path prefix (and optionally a host) to an upstream.
type Route struct {
	// Path is the path prefix, starting with "/". The longest matching
	// prefix wins; a prefix ending in "/" also matches the path without it.
	Path string `toml:"path"`
	// Host, if set, restricts the route to requests for this host (the
	// Host header without the port, compared case-insensitively); routes
	// with a host win over routes without.
	Host string `toml:"host"`
	// Upstream is the absolute http(s) URL requests are forwarded to.
	Upstream string `toml:"upstream"`
	// Audience is the "aud" of the internal JWT. Default: Upstream.
	Audience string `toml:"audience"`
	// Accept lists the accepted credential kinds: "jwt", "opaque",
	// "apikey". Default: all three.
	Accept []string `toml:"accept"`
	// AllOf and AnyOf are the required scopes.
	AllOf []string `toml:"all_of"`
	AnyOf []string `toml:"any_of"`
	// Scope, if set, narrows the internal JWT's scopes (space-separated);
	// by default it carries the credential's scopes.
	Scope string `toml:"scope"`
	// Rate is a per-credential rate limit, COUNT/WINDOW such as "100/s" or
	// "1000/m". Empty means none.
	Rate string `toml:"rate"`
	// StripPrefix removes Path from the forwarded request's path.
	StripPrefix bool `toml:"strip_prefix"`

	upstream    *url.URL
	kinds       []token.Kind
	rateN       int
	rateWindow  time.Duration
	matchPrefix string // Path without a trailing "/"
}

// ParseConfig parses and validates a configuration file's contents.
// Unknown keys are errors.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("%w: unknown keys: %s", ErrConfig, strings.Join(keys, ", "))
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &c, nil
}

// LoadConfig reads and parses the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateway: read config: %w", err)
	}
	return ParseConfig(data)
}

// ClientSecret returns the gateway client's secret: the trimmed contents of
// ClientSecretFile, or getenv(SecretEnv).
func (c *Config) ClientSecret(getenv func(string) string) (string, error) {
	if c.ClientSecretFile == "" {
		if s := getenv(SecretEnv); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("%w: set client_secret_file or %s", ErrConfig, SecretEnv)
	}
	b, err := os.ReadFile(c.ClientSecretFile)
	if err != nil {
		return "", fmt.Errorf("gateway: read client secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%w: client_secret_file is empty", ErrConfig)
	}
	return s, nil
}

var kindNames = map[string]token.Kind{"jwt": token.KindJWT, "opaque": token.KindOpaque, "apikey": token.KindAPIKey}

func (c *Config) validate() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8081"
	}
	for name, addr := range map[string]string{"listen": c.Listen, "admin_listen": c.AdminListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s %q: %v", name, addr, err)
		}
	}
	if c.AdminListen != "" && c.AdminListen == c.Listen {
		return errors.New("admin_listen must differ from listen")
	}
	if err := checkIssuer(c.Issuer); err != nil {
		return err
	}
	if c.Audience == "" {
		return errors.New("audience is required")
	}
	if c.ClientID == "" {
		return errors.New("client_id is required")
	}
	if len(c.Routes) == 0 {
		return errors.New("no [[route]]")
	}
	seen := map[string]bool{}
	for i := range c.Routes {
		r := &c.Routes[i]
		if err := r.validate(); err != nil {
			return fmt.Errorf("route %d (%q): %w", i+1, r.Path, err)
		}
		k := strings.ToLower(r.Host) + " " + r.matchPrefix
		if seen[k] {
			return fmt.Errorf("route %d: duplicate route for host %q and path %q", i+1, r.Host, r.Path)
		}
		seen[k] = true
	}
	return nil
}

// checkIssuer requires an https URL, or http on a loopback host, as
// Gatehouse does.
func checkIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("issuer %q must be an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("issuer %q must use https (http only on a loopback host)", s)
}

func (r *Route) validate() error {
	if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?#%* \t\r\n") || strings.Contains(r.Path, "//") ||
		slices.Contains(strings.Split(r.Path, "/"), "..") || slices.Contains(strings.Split(r.Path, "/"), ".") {
		return errors.New("path must be a clean absolute path prefix such as /orders/")
	}
	r.matchPrefix = strings.TrimSuffix(r.Path, "/")
	if r.Host != "" && (strings.ContainsAny(r.Host, "/:@ ") || r.Host != strings.TrimSpace(r.Host)) {
		return errors.New("host must be a host name without port")
	}
	u, err := url.Parse(r.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("upstream %q must be an absolute http(s) URL without user, query or fragment", r.Upstream)
	}
	r.upstream = u
	if r.Audience == "" {
		r.Audience = r.Upstream
	}
	if len(r.Accept) == 0 {
		r.Accept = []string{"jwt", "opaque", "apikey"}
	}
	r.kinds = nil
	for _, a := range r.Accept {
		k, ok := kindNames[a]
		if !ok {
			return fmt.Errorf("accept: unknown credential kind %q (want jwt, opaque or apikey)", a)
		}
		if slices.Contains(r.kinds, k) {
			return fmt.Errorf("accept: %q twice", a)
		}
		r.kinds = append(r.kinds, k)
	}
	for _, s := range slices.Concat(r.AllOf, r.AnyOf, strings.Fields(r.Scope)) {
		if !validScope(s) {
			return fmt.Errorf("scope %q is not a valid scope token", s)
		}
	}
	if r.Rate != "" {
		n, w, err := keyauth.ParseRate(r.Rate)
		if err != nil {
			return fmt.Errorf("rate: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("rate %q: count must be positive", r.Rate)
		}
		r.rateN, r.rateWindow = n, w
	}
	return nil
}

// validScope reports whether s is an RFC 6749 scope-token.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
