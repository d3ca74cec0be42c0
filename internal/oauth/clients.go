package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// ErrInvalidClient means client settings were refused; the message says
// which and why, and never contains a secret.
var ErrInvalidClient = errors.New("invalid client settings")

// GrantTypes are the grant types a client may be registered for.
var GrantTypes = []string{"authorization_code", "client_credentials", "refresh_token", GrantTypeTokenExchange}

// Bounds of per-client token lifetimes.
const (
	MinAccessTokenTTL  = 10 * time.Second
	MaxAccessTokenTTL  = 24 * time.Hour
	MaxRefreshTokenTTL = 366 * 24 * time.Hour
	// DefaultGatewayTokenTTL is the access-token lifetime a gateway client
	// gets when created without one: the lifetime of its phantom tokens,
	// which only travel from the gateway to the upstream service.
	DefaultGatewayTokenTTL = 60 * time.Second
)

// NewClientID returns a new random client ID (128 bits).
func NewClientID() string { return secret.RandomString(16) }

// NewClientSecret returns a new client secret (256 bits from crypto/rand)
// and its keyed hash, which is all the store keeps. The secret is shown
// once, to whoever created the client.
func NewClientSecret(h *secret.Hasher) (plain string, hash []byte) {
	plain = secret.RandomString(32)
	return plain, h.Hash(hashDomainClientSecret, plain)
}

// CheckClient fills the defaults of c (token endpoint auth method) and
// checks its settings: grant types, redirect URIs, scopes, audiences,
// lifetimes, algorithms and keys. Errors wrap ErrInvalidClient.
func CheckClient(c *store.Client) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidClient}, args...)...)
	}
	if c.TokenEndpointAuthMethod == "" {
		c.TokenEndpointAuthMethod = authSecretBasic
		if c.Public {
			c.TokenEndpointAuthMethod = authNone
		}
	}
	switch {
	case c.ID == "" || len(c.ID) > maxClientIDLen || !printable(c.ID) || strings.ContainsAny(c.ID, " :"):
		return bad("client ID must be 1 to %d printable characters without spaces or colons", maxClientIDLen)
	case c.Name == "" || len(c.Name) > 200 || !printableUnicode(c.Name):
		return bad("name must be 1 to 200 printable characters")
	case c.Public && len(c.GrantTypes) == 0:
		return bad("a public client needs the authorization_code grant")
	}
	for _, g := range c.GrantTypes {
		if !slices.Contains(GrantTypes, g) {
			return bad("unsupported grant type %q (want %s)", g, strings.Join(GrantTypes, ", "))
		}
	}
	has := func(g string) bool { return slices.Contains(c.GrantTypes, g) }
	switch {
	case c.Public && c.TokenEndpointAuthMethod != authNone:
		return bad("a public client authenticates with %q only", authNone)
	case !c.Public && c.TokenEndpointAuthMethod == authNone:
		return bad("a confidential client needs an authentication method other than %q", authNone)
	case !slices.Contains([]string{authSecretBasic, authSecretPost, authPrivateKeyJWT, authNone}, c.TokenEndpointAuthMethod):
		return bad("unsupported token endpoint auth method %q", c.TokenEndpointAuthMethod)
	case c.Public && has("client_credentials"):
		return bad("a public client cannot use client_credentials")
	case c.Public && has(GrantTypeTokenExchange):
		return bad("a public client cannot use token exchange")
	case (len(c.ExchangeAudiences) > 0 || c.MayImpersonate) && !has(GrantTypeTokenExchange):
		return bad("exchange audiences and impersonation need the %s grant", GrantTypeTokenExchange)
	case c.Gateway && (!has(GrantTypeTokenExchange) || len(c.ExchangeAudiences) == 0):
		return bad("a gateway client needs the %s grant and at least one exchange audience", GrantTypeTokenExchange)
	case c.AccessTokenFormat != "" && c.AccessTokenFormat != store.AccessTokenJWT && c.AccessTokenFormat != store.AccessTokenOpaque:
		return bad("access token format %q: want %s or %s", c.AccessTokenFormat, store.AccessTokenJWT, store.AccessTokenOpaque)
	case c.RateLimit < 0 || (c.RateLimit > 0 && c.RateWindow < time.Millisecond) || (c.RateLimit == 0 && c.RateWindow != 0):
		return bad("a rate limit needs a positive count and a window of at least 1ms")
	case has("refresh_token") && !has("authorization_code"):
		return bad("refresh_token needs authorization_code")
	case has("authorization_code") && len(c.RedirectURIs) == 0:
		return bad("authorization_code needs at least one redirect URI")
	case !has("authorization_code") && len(c.RedirectURIs) > 0:
		return bad("redirect URIs are only for authorization_code")
	}
	for _, u := range c.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return bad("redirect URI %q: %v", u, err)
		}
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return bad("scope %q is not a valid scope token", s)
		}
	}
	for _, a := range slices.Concat(c.Audiences, c.ExchangeAudiences) {
		if a == "" || len(a) > 512 || !printable(a) || strings.Contains(a, " ") {
			return bad("audience %q must be 1 to 512 printable characters without spaces", a)
		}
	}
	switch {
	case c.AccessTokenTTL != 0 && (c.AccessTokenTTL < MinAccessTokenTTL || c.AccessTokenTTL > MaxAccessTokenTTL):
		return bad("access token lifetime must be between %v and %v", MinAccessTokenTTL, MaxAccessTokenTTL)
	case c.RefreshTokenTTL < 0 || c.RefreshTokenTTL > MaxRefreshTokenTTL:
		return bad("refresh token lifetime must be between 0 and %v", MaxRefreshTokenTTL)
	case c.AccessTokenAlg != "" && !slices.Contains(algNames(), c.AccessTokenAlg):
		return bad("access token algorithm %q: want %s", c.AccessTokenAlg, strings.Join(algNames(), ", "))
	case c.IDTokenAlg != "" && !slices.Contains(algNames(), c.IDTokenAlg):
		return bad("ID token algorithm %q: want %s", c.IDTokenAlg, strings.Join(algNames(), ", "))
	}
	if c.TokenEndpointAuthMethod != authPrivateKeyJWT {
		if len(c.JWKS) > 0 || c.JWKSURI != "" {
			return bad("jwks and jwks_uri are only for private_key_jwt")
		}
		return nil
	}
	switch {
	case (len(c.JWKS) > 0) == (c.JWKSURI != ""):
		return bad("private_key_jwt needs exactly one of jwks and jwks_uri")
	case len(c.JWKS) > 0:
		keys, err := token.ParseJWKS(c.JWKS)
		if err != nil || len(keys) == 0 {
			return bad("jwks must hold at least one usable signing key with a kid")
		}
	default:
		if _, err := token.NewRemoteKeySet(token.RemoteKeySetConfig{URL: c.JWKSURI}); err != nil {
			return bad("jwks_uri must be an https URL (or http on a loopback host)")
		}
	}
	return nil
}

// checkRedirectURI checks a redirect URI for registration: absolute, no
// fragment, no user info; https, http only on a loopback host (RFC 8252
// section 7.3), or a private-use scheme with a dot for native apps (section
// 7.1).
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || len(raw) > 2000 || !printable(raw):
		return errors.New("not a valid URI")
	case !u.IsAbs():
		return errors.New("must be absolute")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("must not have a fragment")
	case u.User != nil:
		return errors.New("must not have user info")
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return errors.New("https URI needs a host")
		}
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return errors.New("http is allowed only on a loopback host")
		}
	default:
		if !strings.Contains(u.Scheme, ".") {
			return errors.New("a private-use scheme must contain a dot (reverse domain name)")
		}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func printableUnicode(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// ClientJSON is a client as the CLI, the admin API and Dynamic Client
// Registration show it: RFC 7591 section 2 and 3.2.1 member names, plus
// Gatehouse's own settings. ClientSecret is set only in the answer that
// created or rotated it.
type ClientJSON struct {
	ClientID                string          `json:"client_id"`
	ClientSecret            string          `json:"client_secret,omitempty"`
	ClientSecretExpiresAt   *int64          `json:"client_secret_expires_at,omitempty"`
	ClientIDIssuedAt        int64           `json:"client_id_issued_at,omitempty"`
	ClientName              string          `json:"client_name"`
	Public                  bool            `json:"public"`
	GrantTypes              []string        `json:"grant_types"`
	ResponseTypes           []string        `json:"response_types,omitempty"`
	Scope                   string          `json:"scope,omitempty"`
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	Audiences               []string        `json:"audiences,omitempty"`
	ExchangeAudiences       []string        `json:"exchange_audiences,omitempty"`
	MayImpersonate          bool            `json:"may_impersonate,omitempty"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	AccessTokenTTL          int64           `json:"access_token_ttl,omitempty"`
	RefreshTokenTTL         int64           `json:"refresh_token_ttl,omitempty"`
	AccessTokenAlg          string          `json:"access_token_signed_response_alg,omitempty"`
	// AccessTokenFormat is "jwt" (the default) or "opaque".
	AccessTokenFormat string `json:"access_token_format,omitempty"`
	// Gateway marks a gateway client (admin only, never through DCR).
	Gateway bool `json:"gateway,omitempty"`
	// RateLimit is the token-endpoint rate limit, "COUNT/WINDOW" as for API
	// keys (e.g. "100/m"); absent or "0" means none (admin only).
	RateLimit               string `json:"rate_limit,omitempty"`
	IDTokenAlg              string `json:"id_token_signed_response_alg,omitempty"`
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri,omitempty"`
	UpdatedAt               int64  `json:"updated_at,omitempty"`
}

// NewClientJSON returns the JSON form of c (without any secret).
func NewClientJSON(c *store.Client) ClientJSON {
	j := ClientJSON{
		ClientID:                c.ID,
		ClientIDIssuedAt:        c.CreatedAt.Unix(),
		ClientName:              c.Name,
		Public:                  c.Public,
		GrantTypes:              c.GrantTypes,
		Scope:                   strings.Join(c.Scopes, " "),
		RedirectURIs:            c.RedirectURIs,
		Audiences:               c.Audiences,
		ExchangeAudiences:       c.ExchangeAudiences,
		MayImpersonate:          c.MayImpersonate,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		JWKSURI:                 c.JWKSURI,
		AccessTokenTTL:          int64(c.AccessTokenTTL / time.Second),
		RefreshTokenTTL:         int64(c.RefreshTokenTTL / time.Second),
		AccessTokenAlg:          c.AccessTokenAlg,
		IDTokenAlg:              c.IDTokenAlg,
		AccessTokenFormat:       c.AccessTokenFormat,
		Gateway:                 c.Gateway,
		RateLimit:               FormatRate(c.RateLimit, c.RateWindow),
		UpdatedAt:               c.UpdatedAt.Unix(),
	}
	if j.GrantTypes == nil {
		j.GrantTypes = []string{}
	}
	if slices.Contains(c.GrantTypes, "authorization_code") {
		j.ResponseTypes = []string{"code"}
	}
	if len(c.JWKS) > 0 {
		j.JWKS = json.RawMessage(c.JWKS)
	}
	if len(c.SecretHash) > 0 {
		never := int64(0)
		j.ClientSecretExpiresAt = &never
	}
	return j
}

// Apply copies the settings of j onto c (not the ID, secrets or times),
// checks them with CheckClient, and reports errors wrapping
// ErrInvalidClient. response_types, if given, must be ["code"] for a client
// with authorization_code and absent or empty otherwise.
func (j *ClientJSON) Apply(c *store.Client) error {
	c.Name = j.ClientName
	c.Public = j.Public || j.TokenEndpointAuthMethod == authNone
	c.GrantTypes = slices.Clone(j.GrantTypes)
	c.Scopes = nil
	if j.Scope != "" {
		s, err := parseScope(j.Scope)
		if err != nil {
			return fmt.Errorf("%w: scope: %v", ErrInvalidClient, err)
		}
		c.Scopes = s
	}
	c.RedirectURIs = slices.Clone(j.RedirectURIs)
	c.Audiences = slices.Clone(j.Audiences)
	c.ExchangeAudiences = slices.Clone(j.ExchangeAudiences)
	c.MayImpersonate = j.MayImpersonate
	c.TokenEndpointAuthMethod = j.TokenEndpointAuthMethod
	c.JWKS = nil
	if len(j.JWKS) > 0 && string(j.JWKS) != "null" {
		c.JWKS = slices.Clone([]byte(j.JWKS))
	}
	c.JWKSURI = j.JWKSURI
	if j.AccessTokenTTL < 0 || j.RefreshTokenTTL < 0 ||
		j.AccessTokenTTL > int64(MaxAccessTokenTTL/time.Second) || j.RefreshTokenTTL > int64(MaxRefreshTokenTTL/time.Second) {
		return fmt.Errorf("%w: token lifetime out of range", ErrInvalidClient)
	}
	c.AccessTokenTTL = time.Duration(j.AccessTokenTTL) * time.Second
	c.RefreshTokenTTL = time.Duration(j.RefreshTokenTTL) * time.Second
	c.AccessTokenAlg, c.IDTokenAlg = j.AccessTokenAlg, j.IDTokenAlg
	c.AccessTokenFormat, c.Gateway = j.AccessTokenFormat, j.Gateway
	n, window, err := keyauth.ParseRate(j.RateLimit)
	if err != nil {
		return fmt.Errorf("%w: rate_limit: want COUNT/WINDOW, such as 100/m or 10/s", ErrInvalidClient)
	}
	c.RateLimit, c.RateWindow = n, window
	for _, rt := range j.ResponseTypes {
		if rt != "code" || !slices.Contains(c.GrantTypes, "authorization_code") {
			return fmt.Errorf("%w: response type %q: only \"code\" with authorization_code", ErrInvalidClient, rt)
		}
	}
	return CheckClient(c)
}

// FormatRate formats a rate limit the way [keyauth.ParseRate] reads it:
// "100/s", "100/m", "100/h" or "100/10s"; "" when there is none.
func FormatRate(n int, window time.Duration) string {
	if n <= 0 {
		return ""
	}
	per := window.String()
	switch window {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "m"
	case time.Hour:
		per = "h"
	}
	return strconv.Itoa(n) + "/" + per
}
