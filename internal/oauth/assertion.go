package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// Limits of private_key_jwt client assertions (RFC 7523 section 3).
const (
	maxAssertionSize     = 8192
	maxAssertionLifetime = 5 * time.Minute
	assertionLeeway      = 30 * time.Second
)

var errAssertion = errors.New("oauth: invalid client assertion")

// assertion is a parsed, not yet verified, client assertion JWT.
type assertion struct {
	alg, kid     string
	signingInput []byte
	signature    []byte
	claims       assertionClaims
}

// assertionClaims are the claims RFC 7523 section 3 requires (iss, sub,
// aud, exp, jti) and the optional ones it checks (nbf, iat).
type assertionClaims struct {
	Issuer    string         `json:"iss"`
	Subject   string         `json:"sub"`
	Audience  token.Audience `json:"aud"`
	ExpiresAt int64          `json:"exp"`
	NotBefore int64          `json:"nbf"`
	IssuedAt  int64          `json:"iat"`
	ID        string         `json:"jti"`
}

// parseAssertion parses a compact JWS client assertion strictly: its size,
// three parts of canonical unpadded base64url, a header and a claim set
// that are each one JSON object without duplicate members and with
// well-typed claims, and no "crit" header. It checks nothing that needs a
// key; the signature is checked by verifyAssertion.
func parseAssertion(raw string) (*assertion, error) {
	if len(raw) > maxAssertionSize {
		return nil, fmt.Errorf("%w: too large", errAssertion)
	}
	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return nil, fmt.Errorf("%w: not a compact JWS", errAssertion)
	}
	b64 := base64.RawURLEncoding.Strict()
	hb, err1 := b64.DecodeString(h64)
	pb, err2 := b64.DecodeString(p64)
	sig, err3 := b64.DecodeString(s64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("%w: bad base64url", errAssertion)
	}
	var hdr struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := decodeObject(hb, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %w", errAssertion, err)
	}
	if hdr.Crit != nil {
		return nil, fmt.Errorf("%w: crit header", errAssertion)
	}
	a := &assertion{alg: hdr.Alg, kid: hdr.Kid, signature: sig, signingInput: []byte(raw[:len(h64)+1+len(p64)])}
	if err := decodeObject(pb, &a.claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", errAssertion, err)
	}
	return a, nil
}

// decodeObject unmarshals one JSON object into v, refusing trailing data
// and duplicate member names at the top level (where a second "aud" or "sub"
// could mean different things to different parsers).
func decodeObject(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errors.New("invalid JSON")
		}
		name, _ := tok.(string)
		if seen[name] {
			return errors.New("duplicate member")
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return errors.New("invalid JSON")
		}
	}
	if _, err := dec.Token(); err != nil {
		return errors.New("invalid JSON")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("wrongly typed member")
	}
	return nil
}

// verifySignature checks sig over input with key, which must be of alg.
func verifySignature(key token.PublicKey, alg string, input, sig []byte) bool {
	if string(key.Algorithm) != alg {
		return false
	}
	switch k := key.Key.(type) {
	case *ecdsa.PublicKey:
		if alg != string(token.ES256) || len(sig) != 64 {
			return false
		}
		h := sha256.Sum256(input)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k, h[:], r, s)
	case *rsa.PublicKey:
		if alg != string(token.RS256) {
			return false
		}
		h := sha256.Sum256(input)
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) == nil
	case ed25519.PublicKey:
		return alg == string(token.EdDSA) && ed25519.Verify(k, input, sig)
	}
	return false
}

// authenticateAssertion authenticates a client by a private_key_jwt
// assertion (RFC 7523 sections 2.2 and 3): signed by a key of the client's
// registered JWKS or jwks_uri, iss and sub the client ID, aud the issuer,
// the token endpoint or the endpoint called, a short exp, and a jti never
// used before by this client.
func (p *Provider) authenticateAssertion(ctx context.Context, creds credentials, endpointURL string) (*store.Client, *oauthError) {
	fail := invalidClient("client authentication failed")
	a, err := parseAssertion(creds.assertion)
	if err != nil {
		return nil, invalidClient("malformed client assertion")
	}
	cl := a.claims
	if cl.Subject == "" || cl.Issuer != cl.Subject || (creds.clientID != "" && creds.clientID != cl.Subject) ||
		len(cl.Subject) > maxClientIDLen {
		return nil, fail
	}
	c, err := p.client(ctx, cl.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail
	} else if err != nil {
		p.log.Error("client authentication: load client", "err", err)
		return nil, serverError()
	}
	if c.TokenEndpointAuthMethod != authPrivateKeyJWT {
		return nil, fail
	}
	keys, err := p.clientKeys(c)
	if err != nil {
		p.log.Warn("client authentication: client keys unusable", "client_id", c.ID, "err", err)
		return nil, fail
	}
	key, err := keys.Key(ctx, a.kid)
	if errors.Is(err, errPrivateAddress) {
		p.log.Warn("client authentication: jwks_uri refused", "client_id", c.ID, "err", err)
	}
	if err != nil || !verifySignature(key, a.alg, a.signingInput, a.signature) {
		return nil, fail
	}
	now := p.now()
	exp := time.Unix(cl.ExpiresAt, 0)
	switch {
	case !cl.Audience.Contains(p.cfg.Issuer) && !cl.Audience.Contains(p.cfg.Issuer+TokenPath) &&
		!cl.Audience.Contains(endpointURL):
		return nil, invalidClient("client assertion audience is not this server")
	case cl.ExpiresAt == 0 || !now.Before(exp.Add(assertionLeeway)):
		return nil, invalidClient("client assertion expired")
	case exp.After(now.Add(maxAssertionLifetime + assertionLeeway)):
		return nil, invalidClient("client assertion lifetime too long")
	case cl.NotBefore != 0 && time.Unix(cl.NotBefore, 0).After(now.Add(assertionLeeway)),
		cl.IssuedAt != 0 && time.Unix(cl.IssuedAt, 0).After(now.Add(assertionLeeway)):
		return nil, invalidClient("client assertion not yet valid")
	case cl.ID == "" || len(cl.ID) > 255:
		return nil, invalidClient("client assertion needs a jti")
	}
	err = p.store.UseAssertion(ctx, c.ID, cl.ID, exp.Add(assertionLeeway))
	if errors.Is(err, store.ErrConflict) {
		p.log.Warn("client assertion replayed", "client_id", c.ID)
		return nil, invalidClient("client assertion already used")
	} else if err != nil {
		p.log.Error("client authentication: record assertion", "err", err)
		return nil, serverError()
	}
	return c, nil
}

// clientKeys returns the key set of a private_key_jwt client: its
// registered JWKS, or its jwks_uri fetched and cached (one cache per URI
// and fetch policy).
func (p *Provider) clientKeys(c *store.Client) (token.KeySet, error) {
	if len(c.JWKS) > 0 {
		keys, err := token.ParseJWKS(c.JWKS)
		if err != nil {
			return nil, err
		}
		return token.NewStaticKeySet(keys...)
	}
	if c.JWKSURI == "" {
		return nil, errors.New("no JWKS registered")
	}
	client, cacheKey := p.cfg.HTTPClient, "operator "+c.JWKSURI
	if len(c.RegistrationTokenHash) > 0 && !p.cfg.DCRAllowPrivateJWKSURI {
		// Registered by whoever holds the initial access token: fetched
		// from public addresses only (jwksfetch.go). Checked here again
		// for clients registered before the setting was turned off.
		if err := checkPublicURI(c.JWKSURI); err != nil {
			return nil, err
		}
		client, cacheKey = p.publicOnly, "registered "+c.JWKSURI
	}
	p.remoteMu.Lock()
	defer p.remoteMu.Unlock()
	if ks := p.remoteKeys[cacheKey]; ks != nil {
		return ks, nil
	}
	ks, err := token.NewRemoteKeySet(token.RemoteKeySetConfig{URL: c.JWKSURI, Client: client, Now: p.now})
	if err != nil {
		return nil, err
	}
	if len(p.remoteKeys) >= maxCachedClients {
		clear(p.remoteKeys)
	}
	p.remoteKeys[cacheKey] = ks
	return ks, nil
}
