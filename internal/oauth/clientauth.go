package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Client authentication methods (RFC 7591 section 2, RFC 7523 section 2.2).
const (
	authSecretBasic   = "client_secret_basic"
	authSecretPost    = "client_secret_post"
	authPrivateKeyJWT = "private_key_jwt"
	authNone          = "none"
)

// assertionTypeJWT is the client_assertion_type of private_key_jwt (RFC
// 7523 section 2.2).
const assertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// hashDomainClientSecret separates client-secret hashes from other hashes
// made with the same pepper.
const hashDomainClientSecret = "client_secret"

// maxClientIDLen and maxSecretLen bound credentials before any lookup.
const (
	maxClientIDLen = 255
	maxSecretLen   = 512
)

// credentials are the client credentials found in a request, before they
// are checked.
type credentials struct {
	method    string // one of the auth* constants
	clientID  string
	secret    string // client_secret_basic, client_secret_post
	assertion string // private_key_jwt
}

// parseCredentials finds the client's credentials in the Authorization
// header (HTTP Basic, RFC 6749 section 2.3.1) or the form, and refuses a
// request that uses more than one method (section 2.3). A request with
// only a client_id is a public client ("none").
func parseCredentials(header string, form url.Values) (credentials, *oauthError) {
	var buf [3]credentials
	creds := buf[:0]
	if header != "" {
		scheme, rest, _ := strings.Cut(header, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return credentials{}, invalidClient("unsupported authorization scheme")
		}
		id, secret, err := parseBasic(strings.TrimLeft(rest, " "))
		if err != nil {
			return credentials{}, invalidClient("malformed Basic credentials")
		}
		creds = append(creds, credentials{method: authSecretBasic, clientID: id, secret: secret})
	}
	// Empty parameters count as absent (RFC 6749 section 3.1).
	if form.Get("client_secret") != "" {
		creds = append(creds, credentials{method: authSecretPost, clientID: form.Get("client_id"), secret: form.Get("client_secret")})
	}
	if form.Get("client_assertion") != "" || form.Get("client_assertion_type") != "" {
		if form.Get("client_assertion_type") != assertionTypeJWT {
			return credentials{}, invalidClient("unsupported client_assertion_type")
		}
		if form.Get("client_assertion") == "" {
			return credentials{}, badRequest("client_assertion is missing")
		}
		creds = append(creds, credentials{method: authPrivateKeyJWT, clientID: form.Get("client_id"), assertion: form.Get("client_assertion")})
	}
	switch len(creds) {
	case 0:
		id := form.Get("client_id")
		if id == "" {
			return credentials{}, invalidClient("client authentication is required")
		}
		return credentials{method: authNone, clientID: id}, nil
	case 1:
	default:
		return credentials{}, badRequest("more than one client authentication method")
	}
	c := creds[0]
	// A client_id in the body must name the authenticated client.
	if id := form.Get("client_id"); id != "" && c.clientID != "" && id != c.clientID {
		return credentials{}, invalidClient("client_id does not match the credentials")
	}
	if c.method != authPrivateKeyJWT && (c.clientID == "" || c.secret == "") {
		return credentials{}, invalidClient("client_id and client_secret are required")
	}
	if len(c.clientID) > maxClientIDLen || len(c.secret) > maxSecretLen {
		return credentials{}, invalidClient("client authentication failed")
	}
	return c, nil
}

// parseBasic decodes HTTP Basic credentials. RFC 6749 section 2.3.1
// form-encodes the client ID and secret before they are joined with ':'.
func parseBasic(b64 string) (id, secret string, err error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", "", err
	}
	encID, encSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("no colon")
	}
	if id, err = url.QueryUnescape(encID); err != nil {
		return "", "", err
	}
	if secret, err = url.QueryUnescape(encSecret); err != nil {
		return "", "", err
	}
	return id, secret, nil
}

// authFailed is the one description of every failed client
// authentication: it never says why.
const authFailed = "client authentication failed"

// authenticateClient checks the client credentials of a request to the
// endpoint at endpointURL and returns the client. Failures are invalid_client
// (or server_error when the store fails) and never say whether the client
// exists.
func (p *Provider) authenticateClient(ctx context.Context, r *http.Request, form url.Values, endpointURL string) (*store.Client, *oauthError) {
	creds, oe := parseCredentials(r.Header.Get("Authorization"), form)
	if oe != nil {
		return nil, oe
	}
	if creds.method == authPrivateKeyJWT {
		return p.authenticateAssertion(ctx, creds, endpointURL)
	}
	c, err := p.client(ctx, creds.clientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		p.log.Error("client authentication: load client", "err", err)
		return nil, faultError(err)
	}
	if creds.method == authNone {
		if c == nil || !c.Public {
			return nil, invalidClient(authFailed)
		}
		return c, nil
	}
	if c == nil {
		// Spend the same time as for a known client, so response timing
		// does not reveal which client IDs exist.
		p.hasher.Equal(hashDomainClientSecret, creds.secret, make([]byte, 32))
		return nil, invalidClient(authFailed)
	}
	if c.Public || !usesSecret(c) || !p.secretMatches(c, creds.secret) {
		return nil, invalidClient(authFailed)
	}
	return c, nil
}

// usesSecret reports whether c authenticates with a client secret. The two
// secret methods are equally strong, so a client registered for one may
// use the other (golang.org/x/oauth2 tries both).
func usesSecret(c *store.Client) bool {
	switch c.TokenEndpointAuthMethod {
	case "", authSecretBasic, authSecretPost:
		return len(c.SecretHash) > 0
	}
	return false
}

// secretMatches compares secret with the client's current secret and,
// during the grace period after a rotation, the previous one. Client
// secrets are 256-bit random strings generated by Gatehouse, so they are
// hashed with a fast keyed hash (HMAC-SHA-256 under the server pepper, about
// a microsecond) rather than a slow password hash: nobody can guess a 256-bit
// value, so a slow hash would buy nothing and cost tens of milliseconds per
// token request. The comparison is constant-time.
func (p *Provider) secretMatches(c *store.Client, secret string) bool {
	ok := p.hasher.Equal(hashDomainClientSecret, secret, c.SecretHash)
	if len(c.PrevSecretHash) > 0 && p.now().Before(c.PrevSecretExpiresAt) {
		ok = p.hasher.Equal(hashDomainClientSecret, secret, c.PrevSecretHash) || ok
	}
	return ok
}
