package token

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

var b64 = base64.RawURLEncoding

// Sign returns a compact JWS (RFC 7515, section 7.1) over the JSON of claims,
// with the protected header {"alg", "kid", "typ"}; typ is omitted when empty.
// claims may be a Claims, a *Claims or anything encoding/json marshals to an
// object. The server uses it for ID tokens (typ "JWT"), signed introspection
// responses and similar documents; access tokens come from [Issuer.Issue].
func Sign(key SigningKey, typ string, claims any) (string, error) {
	var scratch [1024]byte
	payload, err := marshalClaims(scratch[:0], claims)
	if err != nil {
		return "", err
	}
	return signPayload(key, encodeHeader(key, typ), payload)
}

// signPayload returns the compact JWS of payload with the encoded header.
func signPayload(key SigningKey, header string, payload []byte) (string, error) {
	enc := make([]byte, 0, len(header)+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(sigSize(key)))
	enc = append(enc, header...)
	enc = append(enc, '.')
	enc = b64.AppendEncode(enc, payload)
	var sigBuf [ecdsaSize]byte
	sig, err := key.sign(sigBuf[:0], enc)
	if err != nil {
		return "", err
	}
	enc = append(enc, '.')
	enc = b64.AppendEncode(enc, sig)
	return string(enc), nil
}

// sigSize estimates the length of key's signatures.
func sigSize(key SigningKey) int {
	if key.Algorithm == RS256 {
		return 512
	}
	return ecdsaSize
}

// encodeHeader returns the base64url-encoded protected header.
func encodeHeader(key SigningKey, typ string) string {
	var h [256]byte
	b := append(h[:0], '{')
	b = appendStr(b, "alg", string(key.Algorithm))
	b = appendStr(b, "kid", key.ID)
	b = appendStr(b, "typ", typ)
	b = append(b, '}')
	return b64.EncodeToString(b)
}

// IssuerConfig configures an [Issuer].
type IssuerConfig struct {
	// Issuer is the issuer identifier written to "iss". Required.
	Issuer string
	// Key returns the key that signs now. It is called for every token so
	// that rotation takes effect at once. Required.
	Key func() (SigningKey, error)
	// Now returns the current time. Optional; the default is time.Now.
	Now func() time.Time
}

// Issuer signs RFC 9068 JWT access tokens. It is safe for concurrent use.
type Issuer struct {
	issuer string
	key    func() (SigningKey, error)
	now    func() time.Time
	header atomic.Pointer[issuerHeader] // of the last key used
}

// issuerHeader is the encoded access-token header for one key.
type issuerHeader struct {
	id      string
	alg     Algorithm
	encoded string
}

// NewIssuer returns an Issuer for cfg.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("token: IssuerConfig.Issuer is required")
	}
	if cfg.Key == nil {
		return nil, errors.New("token: IssuerConfig.Key is required")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Issuer{issuer: cfg.Issuer, key: cfg.Key, now: now}, nil
}

// accessTokenType is the "typ" of RFC 9068 access tokens (section 2.1).
const accessTokenType = "at+jwt"

// Issue signs an RFC 9068 access token (typ "at+jwt") with the active key.
// It sets "iss", sets "iat" to now when zero and "jti" to 128 random bits
// (base64url) when empty, and returns the token with the final claims.
// The caller sets "exp", which must be after "iat", and "sub", "aud" and
// "client_id", which are required (RFC 9068, section 2.2).
func (i *Issuer) Issue(c Claims) (string, Claims, error) {
	c.Issuer = i.issuer
	if c.IssuedAt == 0 {
		c.IssuedAt = i.now().Unix()
	}
	switch {
	case c.ExpiresAt == 0:
		return "", Claims{}, fmt.Errorf("%w: exp", ErrMissingClaim)
	case c.ExpiresAt <= c.IssuedAt:
		return "", Claims{}, errors.New("token: exp must be after iat")
	case c.Subject == "":
		return "", Claims{}, fmt.Errorf("%w: sub", ErrMissingClaim)
	case len(c.Audience) == 0:
		return "", Claims{}, fmt.Errorf("%w: aud", ErrMissingClaim)
	case c.ClientID == "":
		return "", Claims{}, fmt.Errorf("%w: client_id", ErrMissingClaim)
	case c.Kind != "" && !c.Kind.valid():
		return "", Claims{}, errors.New("token: unknown credential kind")
	}
	if c.ID == "" {
		var id [16]byte
		rand.Read(id[:])
		c.ID = b64.EncodeToString(id[:])
	}
	key, err := i.key()
	if err != nil {
		return "", Claims{}, fmt.Errorf("token: getting the signing key: %w", err)
	}
	h := i.header.Load()
	if h == nil || h.id != key.ID || h.alg != key.Algorithm {
		h = &issuerHeader{id: key.ID, alg: key.Algorithm, encoded: encodeHeader(key, accessTokenType)}
		i.header.Store(h)
	}
	var scratch [1024]byte
	tok, err := signPayload(key, h.encoded, appendClaims(scratch[:0], &c))
	if err != nil {
		return "", Claims{}, err
	}
	return tok, c, nil
}
