package guard

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Introspector resolves opaque access tokens, which carry no claims, with
// the authorization server. [HTTPIntrospector] is the implementation that
// calls Gatehouse's introspection endpoint; tests can supply their own.
type Introspector interface {
	// Introspect looks tok up. A token that is unknown, expired, revoked
	// or not meant for the caller is an IntrospectionResult with Active
	// false, not an error; an error means the answer is unknown (Gatehouse
	// unreachable, or answering something that does not verify) and must
	// not contain the token.
	Introspect(ctx context.Context, tok string) (IntrospectionResult, error)
}

// IntrospectionResult is the answer of an [Introspector].
type IntrospectionResult struct {
	// Active reports whether the token is accepted.
	Active bool
	// Principal describes the token when Active: its Kind is
	// token.KindOpaque, TokenID its "jti" (which the revocation feed
	// names), Audience its "aud" and ExpiresAt its "exp", which bounds how
	// long the Guard caches the answer.
	Principal token.Principal
}

// DefaultIntrospectPath is the path of Gatehouse's introspection endpoint,
// relative to the issuer.
const DefaultIntrospectPath = "/introspect"

// introspectionType is the "typ" and media type (after "application/") of
// a signed introspection response (RFC 9701, section 5).
const introspectionType = "token-introspection+jwt"

const (
	// maxIntrospectionResponse bounds the body read from the endpoint.
	maxIntrospectionResponse = 64 << 10
	// introspectionLeeway allows for clock skew on the response's "iat".
	introspectionLeeway = 60 * time.Second
	// maxIntrospectionAge is the oldest response accepted: answers are
	// signed on request, so an old one is a replay.
	maxIntrospectionAge = 5 * time.Minute
)

// Errors of a signed introspection response; they never contain the token.
var (
	errIntroMalformed = errors.New("malformed introspection response")
	errIntroSignature = errors.New("introspection response signature does not verify")
	errIntroClaims    = errors.New("introspection response has the wrong issuer, audience or time")
)

// HTTPIntrospectorConfig configures an [HTTPIntrospector].
type HTTPIntrospectorConfig struct {
	// URL is the introspection endpoint, such as
	// "https://auth.example.com/introspect". It must be https, or http on a
	// loopback host. Required.
	URL string
	// Issuer is the authorization server's issuer identifier, which must
	// be the "iss" of every signed answer. Required.
	Issuer string
	// ClientID and ClientSecret are the confidential client this service
	// introspects as (client_secret_basic). Signed answers must name
	// ClientID in "aud". Gatehouse only describes tokens issued to this
	// client or meant for one of its audiences. Required.
	ClientID, ClientSecret string
	// Keys holds the issuer's keys that sign the answers. If nil, they are
	// found through the issuer's metadata, as Config.Keys is; share one
	// [NewDiscoveryKeySet] between the two to fetch them once.
	Keys token.KeySet
	// Client makes the requests. The default has a 5 s timeout. Redirects
	// are never followed, so the token is only ever sent to URL.
	Client *http.Client
	// Now returns the current time. Optional; the default is time.Now.
	Now func() time.Time
}

// HTTPIntrospector is an [Introspector] that asks Gatehouse's introspection
// endpoint (RFC 7662) for a signed answer (RFC 9701) and verifies it. It is
// safe for concurrent use.
//
// The wire contract: POST URL, authenticated with HTTP Basic as ClientID
// and ClientSecret (each form-urlencoded, RFC 6749 section 2.3.1), with
// "Accept: application/token-introspection+jwt" and the form body
// token=<tok>&token_type_hint=access_token. The answer is 200 with
// "Content-Type: application/token-introspection+jwt" and a compact JWS
// whose header has "typ": "token-introspection+jwt" and whose claims are
// "iss" (Issuer), "aud" (ClientID), "iat", and "token_introspection", the
// RFC 7662 answer: {"active": false} or {"active": true, "sub",
// "client_id", "scope", "aud", "exp", "jti", "act", ...}. The signature is
// checked against Keys, with the algorithm the key selected by "kid"
// allows. Any other status or an answer that does not verify is an error
// wrapping [ErrUnavailable].
type HTTPIntrospector struct {
	url, issuer, clientID string
	authz                 string
	keys                  token.KeySet
	client                *http.Client
	now                   func() time.Time
}

var _ Introspector = (*HTTPIntrospector)(nil)

// NewHTTPIntrospector returns an HTTPIntrospector for cfg.
func NewHTTPIntrospector(cfg HTTPIntrospectorConfig) (*HTTPIntrospector, error) {
	if err := checkURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("guard: introspection URL: %w", err)
	}
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("guard: introspection needs Issuer, ClientID and ClientSecret")
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	keys := cfg.Keys
	if keys == nil {
		var err error
		if keys, err = NewDiscoveryKeySet(cfg.Issuer, nil); err != nil {
			return nil, err
		}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	req := &http.Request{Header: http.Header{}}
	req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	return &HTTPIntrospector{
		url: cfg.URL, issuer: cfg.Issuer, clientID: cfg.ClientID,
		authz: req.Header.Get("Authorization"), keys: keys, client: &c, now: now,
	}, nil
}

// NewDiscoveryKeySet returns the key set of issuer, found through its
// metadata (RFC 8414, then OpenID Connect Discovery) on first use, as a
// Guard does when Config.Keys and Config.JWKSURL are empty. client fetches
// the documents; nil means a 10 s timeout and redirects only to https (or
// loopback) URLs.
func NewDiscoveryKeySet(issuer string, client *http.Client) (token.KeySet, error) {
	if err := checkURL(issuer); err != nil {
		return nil, fmt.Errorf("guard: issuer: %w", err)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: safeRedirect}
	}
	return &discoveryKeys{issuer: issuer, client: client, now: time.Now}, nil
}

// Introspect implements [Introspector].
func (in *HTTPIntrospector) Introspect(ctx context.Context, tok string) (IntrospectionResult, error) {
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url, strings.NewReader(form.Encode()))
	if err != nil {
		return IntrospectionResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Authorization", in.authz)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/"+introspectionType)
	resp, err := in.client.Do(req)
	if err != nil {
		// url.Error holds the URL, never the body: the token is not in it.
		return IntrospectionResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionResponse+1))
	if err != nil {
		return IntrospectionResult{}, fmt.Errorf("%w: read response: %w", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return IntrospectionResult{}, fmt.Errorf("%w: introspection endpoint answered %d", ErrUnavailable, resp.StatusCode)
	}
	if len(data) > maxIntrospectionResponse {
		return IntrospectionResult{}, fmt.Errorf("%w: introspection response too large", ErrUnavailable)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/"+introspectionType {
		return IntrospectionResult{}, fmt.Errorf("%w: introspection response of type %q, want a signed one", ErrUnavailable, mt)
	}
	res, err := verifyIntrospection(ctx, string(data), in.keys, in.issuer, in.clientID, in.now())
	if err != nil {
		return IntrospectionResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return res, nil
}

// introspectionClaims are the claims of a signed introspection response.
type introspectionClaims struct {
	Issuer   string            `json:"iss"`
	Audience token.Audience    `json:"aud"`
	IssuedAt int64             `json:"iat"`
	Result   *introspectAnswer `json:"token_introspection"`
}

// introspectAnswer is the RFC 7662 answer inside a signed response.
type introspectAnswer struct {
	Active   bool           `json:"active"`
	Subject  string         `json:"sub"`
	ClientID string         `json:"client_id"`
	Scope    string         `json:"scope"`
	Audience token.Audience `json:"aud"`
	Expires  int64          `json:"exp"`
	ID       string         `json:"jti"`
	Actor    *token.Actor   `json:"act"`
}

// verifyIntrospection verifies a signed introspection response (RFC 9701)
// from issuer to client clientID and returns its answer.
func verifyIntrospection(ctx context.Context, raw string, keys token.KeySet, issuer, clientID string, now time.Time) (IntrospectionResult, error) {
	var claims introspectionClaims
	if err := verifyJWS(ctx, raw, keys, introspectionType, &claims); err != nil {
		return IntrospectionResult{}, err
	}
	iat := time.Unix(claims.IssuedAt, 0)
	if claims.Issuer != issuer || !claims.Audience.Contains(clientID) || claims.IssuedAt <= 0 ||
		iat.After(now.Add(introspectionLeeway)) || iat.Before(now.Add(-maxIntrospectionAge)) {
		return IntrospectionResult{}, errIntroClaims
	}
	a := claims.Result
	if a == nil {
		return IntrospectionResult{}, fmt.Errorf("%w: no token_introspection", errIntroMalformed)
	}
	if !a.Active {
		return IntrospectionResult{}, nil
	}
	if a.Subject == "" || a.ID == "" || a.Expires <= 0 {
		return IntrospectionResult{}, fmt.Errorf("%w: active answer without sub, jti or exp", errIntroMalformed)
	}
	return IntrospectionResult{Active: true, Principal: token.Principal{
		Subject:   a.Subject,
		ClientID:  a.ClientID,
		Scopes:    strings.Fields(a.Scope),
		Audience:  a.Audience,
		Kind:      token.KindOpaque,
		TokenID:   a.ID,
		ExpiresAt: time.Unix(a.Expires, 0),
		Actor:     a.Actor,
	}}, nil
}

// jwsHeader is the protected header of a compact JWS.
type jwsHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

var b64url = base64.RawURLEncoding.Strict()

// verifyJWS checks the compact JWS raw, whose "typ" must be typ, against
// keys, and decodes its payload into claims. The key is chosen by "kid"
// alone, and "alg" must be the one algorithm of that key, so "none" and
// HMAC never verify; "crit" is rejected.
func verifyJWS(ctx context.Context, raw string, keys token.KeySet, typ string, claims any) error {
	if strings.ContainsAny(raw, "\r\n \t") {
		return errIntroMalformed
	}
	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return errIntroMalformed
	}
	hb, err1 := b64url.DecodeString(h64)
	pb, err2 := b64url.DecodeString(p64)
	sig, err3 := b64url.DecodeString(s64)
	if err1 != nil || err2 != nil || err3 != nil {
		return errIntroMalformed
	}
	var h jwsHeader
	if err := json.Unmarshal(hb, &h); err != nil || h.Crit != nil || h.Kid == "" {
		return errIntroMalformed
	}
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), typ) {
		return fmt.Errorf("%w: typ %q", errIntroMalformed, h.Typ)
	}
	key, err := keys.Key(ctx, h.Kid)
	if err != nil {
		return fmt.Errorf("introspection response key: %w", err)
	}
	if string(key.Algorithm) != h.Alg || !verifySignature(key, []byte(raw[:len(h64)+1+len(p64)]), sig) {
		return errIntroSignature
	}
	if err := json.Unmarshal(pb, claims); err != nil {
		return fmt.Errorf("%w: claims", errIntroMalformed)
	}
	return nil
}

// verifySignature reports whether sig is k's signature of signed, with the
// one algorithm k allows. It never panics on any sig.
func verifySignature(k token.PublicKey, signed, sig []byte) bool {
	switch k.Algorithm {
	case token.ES256:
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false
		}
		sum := sha256.Sum256(signed)
		der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
		return err == nil && ecdsa.VerifyASN1(pub, sum[:], der)
	case token.RS256:
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok {
			return false
		}
		sum := sha256.Sum256(signed)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
	case token.EdDSA:
		pub, ok := k.Key.(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return false
		}
		return ed25519.Verify(pub, signed, sig)
	}
	return false
}
