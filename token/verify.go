package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults and limits of a [VerifierConfig].
const (
	// DefaultLeeway is the clock-skew allowance when Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Leeway NewVerifier accepts.
	MaxLeeway = 60 * time.Second
	// DefaultMaxSize is the token size limit, in bytes, when MaxSize is zero.
	DefaultMaxSize = 8192
)

// VerifierConfig configures a [Verifier]. Zero values of the optional fields
// mean the documented defaults.
type VerifierConfig struct {
	// Issuer is the expected "iss", compared exactly. Required.
	Issuer string
	// Audience must be one of the token's "aud" values. Required.
	Audience string
	// Keys holds the issuer's public keys. Required.
	Keys KeySet
	// Type is the expected "typ" header, compared case-insensitively with an
	// optional "application/" prefix (RFC 7515, section 4.1.9). The default
	// is "at+jwt" (RFC 9068, section 2.1).
	Type string
	// Leeway allows for clock skew when checking "exp", "nbf" and "iat".
	// Zero means DefaultLeeway (30 s); negative means none; more than
	// MaxLeeway (60 s) is an error.
	Leeway time.Duration
	// MaxSize is the largest token accepted, in bytes, checked before any
	// decoding. Zero means DefaultMaxSize (8 KiB).
	MaxSize int
	// Cache, if set, remembers verified tokens so that a token seen again
	// skips the signature check. A Cache serves exactly one Verifier:
	// NewVerifier fails if the Cache already belongs to another.
	Cache *Cache
	// Now returns the current time. Optional; the default is time.Now.
	Now func() time.Time
}

// Verifier verifies JWT access tokens. It is safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	keys     KeySet
	static   *StaticKeySet // keys, when it is a *StaticKeySet
	typ      string        // expected typ, lower case, without "application/"
	leeway   time.Duration
	maxSize  int
	cache    *Cache
	now      func() time.Time
}

// NewVerifier returns a Verifier for cfg, or an error if cfg is incomplete
// or out of bounds.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("token: VerifierConfig.Issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("token: VerifierConfig.Audience is required")
	case cfg.Keys == nil:
		return nil, errors.New("token: VerifierConfig.Keys is required")
	case cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("token: VerifierConfig.Leeway %v exceeds the maximum %v", cfg.Leeway, MaxLeeway)
	case cfg.MaxSize < 0:
		return nil, errors.New("token: VerifierConfig.MaxSize is negative")
	}
	v := &Verifier{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		keys:     cfg.Keys,
		typ:      normalizeType(cfg.Type),
		leeway:   cfg.Leeway,
		maxSize:  cfg.MaxSize,
		now:      cfg.Now,
	}
	if v.typ == "" {
		v.typ = accessTokenType
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.maxSize == 0 {
		v.maxSize = DefaultMaxSize
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.static, _ = cfg.Keys.(*StaticKeySet)
	if cfg.Cache != nil {
		if !cfg.Cache.owner.CompareAndSwap(nil, v) {
			return nil, errors.New("token: the Cache already belongs to another Verifier")
		}
		v.cache = cfg.Cache
	}
	return v, nil
}

// normalizeType lower-cases a "typ" value and strips "application/".
func normalizeType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

var (
	errParts  = fmt.Errorf("%w: want three base64url parts", ErrMalformed)
	errBase64 = fmt.Errorf("%w: invalid base64url", ErrMalformed)
	errCrit   = fmt.Errorf("%w: \"crit\" header is not supported", ErrMalformed)
	errNoAlg  = fmt.Errorf("%w: missing \"alg\" header", ErrMalformed)
	errNoKid  = fmt.Errorf("%w: missing \"kid\" header", ErrUnknownKey)
	errAlgKey = fmt.Errorf("%w: \"alg\" does not match the key", ErrUnsupportedAlgorithm)
)

// b64Strict rejects padding and non-canonical trailing bits. It still
// ignores CR and LF, which Verify rejects separately.
var b64Strict = b64.Strict()

// scratchSize covers the copy and decoded parts of a typical token without
// a heap allocation.
const scratchSize = 2048

// Verify parses raw as a compact JWS access token and checks everything in
// one call, returning the claims only if all checks pass:
//
//   - size (before any decoding), three parts of strict base64url;
//   - the header is one JSON object without duplicate members; "crit" is
//     rejected; "jku", "x5u", "jwk" and "x5c" are never used;
//   - "typ" matches the expected type;
//   - "alg" is ES256, RS256 or EdDSA and equals the algorithm of the key
//     that "kid" selects, so "none" and HMAC can never verify;
//   - the signature;
//   - the claims are one JSON object without duplicates, with "iss", "sub",
//     "aud", "exp", "iat", "jti" and "client_id" present and well-typed
//     (RFC 9068, section 2.2); "iss" equals the issuer exactly, "aud"
//     contains the audience, "exp" has not passed and "nbf" and "iat" are
//     not in the future, each allowing for the leeway.
//
// Errors wrap the package's sentinel errors and never contain the token.
// With a [Cache], a token verified before is answered from memory until its
// "exp". The returned Claims may share its slices and Actor with the cache:
// treat them as read-only.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > v.maxSize {
		return nil, ErrTooLarge
	}
	now := v.now()

	var scratch [scratchSize]byte
	buf := scratch[:0]
	if n := len(raw) * 2; n > len(scratch) {
		buf = make([]byte, 0, n)
	}
	buf = append(buf, raw...)
	tok := buf // the token, as bytes
	buf = buf[len(tok):]

	var sum [sha256.Size]byte
	var gen uint64
	if v.cache != nil {
		sum = sha256.Sum256(tok)
		if c, ok := v.cache.get(&sum, now); ok {
			return c, nil
		}
		gen = v.cache.generation()
	}

	dot1 := bytes.IndexByte(tok, '.')
	if dot1 < 0 {
		return nil, errParts
	}
	dot2 := bytes.IndexByte(tok[dot1+1:], '.')
	if dot2 < 0 {
		return nil, errParts
	}
	dot2 += dot1 + 1
	if bytes.IndexByte(tok[dot2+1:], '.') >= 0 {
		return nil, errParts
	}
	if bytes.IndexByte(tok, '\n') >= 0 || bytes.IndexByte(tok, '\r') >= 0 {
		return nil, errBase64
	}

	// Header.
	hdr, err := decode(buf, tok[:dot1])
	if err != nil {
		return nil, err
	}
	alg, kid, typ, err := parseHeader(string(hdr))
	if err != nil {
		return nil, err
	}
	if normalizeType(typ) != v.typ {
		return nil, ErrType
	}
	var key PublicKey
	if v.static != nil {
		var ok bool
		if key, ok = v.static.keys[kid]; !ok {
			return nil, ErrUnknownKey
		}
	} else {
		if key, err = v.key(ctx, kid); err != nil {
			return nil, err
		}
	}
	if key.Algorithm != alg {
		return nil, errAlgKey
	}

	// Signature.
	sig, err := decode(buf, tok[dot2+1:])
	if err != nil {
		return nil, err
	}
	if !verifySignature(alg, key.Key, tok[:dot2], sig) {
		return nil, ErrSignature
	}

	// Claims.
	payload, err := decode(buf, tok[dot1+1:dot2])
	if err != nil {
		return nil, err
	}
	c := new(Claims)
	if err := parseClaims(string(payload), c); err != nil {
		return nil, err
	}
	if err := v.validate(c, now); err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.add(&sum, c, gen, now)
	}
	return c, nil
}

// decode decodes strict base64url src into dst's spare capacity, or a new
// slice if it does not fit.
func decode(dst, src []byte) ([]byte, error) {
	n := b64Strict.DecodedLen(len(src))
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	n, err := b64Strict.Decode(dst[:n], src)
	if err != nil {
		return nil, errBase64
	}
	return dst[:n], nil
}

// key asks a KeySet other than a StaticKeySet for kid.
func (v *Verifier) key(ctx context.Context, kid string) (PublicKey, error) {
	if kid == "" {
		return PublicKey{}, errNoKid
	}
	key, err := v.keys.Key(ctx, kid)
	switch {
	case err == nil:
	case errors.Is(err, ErrUnknownKey), errors.Is(err, ErrKeySetUnavailable):
		return PublicKey{}, err
	default:
		return PublicKey{}, fmt.Errorf("%w: %w", ErrKeySetUnavailable, err)
	}
	if _, ok := v.keys.(*RemoteKeySet); !ok {
		// Keys from other implementations have not been checked.
		if err := checkPublic(key.Algorithm, key.Key, false); err != nil {
			return PublicKey{}, fmt.Errorf("%w: %w", ErrKeySetUnavailable, err)
		}
	}
	return key, nil
}

// parseHeader reads a JOSE header strictly and returns its "alg", "kid"
// and "typ".
func parseHeader(s string) (alg Algorithm, kid, typ string, err error) {
	d := scanner{s: s}
	if !d.open() {
		return "", "", "", errSyntax
	}
	var seen uint32
	var others nameSet
	var a string
	for first := true; ; first = false {
		name, done, err := d.member(first)
		if err != nil {
			return "", "", "", err
		}
		if done {
			break
		}
		var bit uint32
		ok := true
		switch name {
		case "alg":
			bit = 1
			a, ok = d.str()
		case "kid":
			bit = 2
			kid, ok = d.str()
		case "typ":
			bit = 4
			typ, ok = d.str()
		case "crit":
			return "", "", "", errCrit
		default:
			if !others.add(name) {
				return "", "", "", errDuplicate
			}
			err = d.skip(1)
		}
		if err != nil {
			return "", "", "", err
		}
		if !ok {
			return "", "", "", fmt.Errorf("%w: header %q is not a string", ErrMalformed, name)
		}
		if seen&bit != 0 {
			return "", "", "", errDuplicate
		}
		seen |= bit
	}
	if !d.end() {
		return "", "", "", errTrailing
	}
	switch Algorithm(a) {
	case ES256, RS256, EdDSA:
		alg = Algorithm(a)
	case "":
		return "", "", "", errNoAlg
	default:
		return "", "", "", ErrUnsupportedAlgorithm
	}
	return alg, kid, typ, nil
}

// validate checks the verified claims against v's configuration at now.
func (v *Verifier) validate(c *Claims, now time.Time) error {
	switch {
	case c.Issuer == "":
		return fmt.Errorf("%w: iss", ErrMissingClaim)
	case c.Subject == "":
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	case len(c.Audience) == 0:
		return fmt.Errorf("%w: aud", ErrMissingClaim)
	case c.ExpiresAt == 0:
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	case c.IssuedAt == 0:
		return fmt.Errorf("%w: iat", ErrMissingClaim)
	case c.ID == "":
		return fmt.Errorf("%w: jti", ErrMissingClaim)
	case c.ClientID == "":
		return fmt.Errorf("%w: client_id", ErrMissingClaim)
	case c.Issuer != v.issuer:
		return ErrIssuer
	case !c.Audience.Contains(v.audience):
		return ErrAudience
	case !now.Before(time.Unix(c.ExpiresAt, 0).Add(v.leeway)):
		return ErrExpired
	}
	late := now.Add(v.leeway)
	if c.NotBefore != 0 && late.Before(time.Unix(c.NotBefore, 0)) {
		return ErrNotYetValid
	}
	if late.Before(time.Unix(c.IssuedAt, 0)) {
		return fmt.Errorf("%w: issued in the future", ErrNotYetValid)
	}
	return nil
}
