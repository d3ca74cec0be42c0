package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// JWK is a public JSON Web Key (RFC 7517, section 4; RFC 7518, section 6;
// RFC 8037, section 2). Private members are never represented.
type JWK struct {
	// KeyID is "kid".
	KeyID string `json:"kid,omitempty"`
	// KeyType is "kty": "EC", "RSA" or "OKP".
	KeyType string `json:"kty,omitempty"`
	// Algorithm is "alg": "ES256", "RS256" or "EdDSA".
	Algorithm string `json:"alg,omitempty"`
	// Use is "use", "sig" for signature keys.
	Use string `json:"use,omitempty"`
	// Crv is "crv": "P-256" or "Ed25519".
	Crv string `json:"crv,omitempty"`
	// X is "x", base64url: the EC x coordinate or the Ed25519 public key.
	X string `json:"x,omitempty"`
	// Y is "y", base64url: the EC y coordinate.
	Y string `json:"y,omitempty"`
	// N is "n", base64url: the RSA modulus.
	N string `json:"n,omitempty"`
	// E is "e", base64url: the RSA public exponent.
	E string `json:"e,omitempty"`
}

// JWKS is a JWK Set document (RFC 7517, section 5).
type JWKS struct {
	// Keys are the keys in the set.
	Keys []JWK `json:"keys"`
}

// JWK returns k as a JWK with "use" set to "sig". A key that is not valid
// for its algorithm yields a JWK without key material; [MarshalJWKS]
// reports such keys as errors.
func (k PublicKey) JWK() JWK {
	j := JWK{KeyID: k.ID, Algorithm: string(k.Algorithm), Use: "sig"}
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		j.KeyType, j.Crv = "EC", "P-256"
		if pub == nil || pub.Curve != elliptic.P256() {
			break
		}
		if b, err := pub.Bytes(); err == nil && len(b) == 65 {
			j.X, j.Y = b64.EncodeToString(b[1:33]), b64.EncodeToString(b[33:])
		}
	case *rsa.PublicKey:
		j.KeyType = "RSA"
		if pub == nil || pub.N == nil {
			break
		}
		j.N = b64.EncodeToString(pub.N.Bytes())
		j.E = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	case ed25519.PublicKey:
		j.KeyType, j.Crv = "OKP", "Ed25519"
		j.X = b64.EncodeToString(pub)
	}
	return j
}

// MarshalJWKS returns the JWK Set document for keys. Every key must be
// valid (see [PublicKey]); key ids must be unique.
func MarshalJWKS(keys ...PublicKey) ([]byte, error) {
	set := JWKS{Keys: make([]JWK, 0, len(keys))}
	ids := make(map[string]bool, len(keys))
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, err
		}
		if ids[k.ID] {
			return nil, fmt.Errorf("%w: duplicate key id", errKey)
		}
		ids[k.ID] = true
		set.Keys = append(set.Keys, k.JWK())
	}
	return json.Marshal(set)
}

// privateMembers are JWK members that hold private key material
// (RFC 7518, sections 6.2.2, 6.3.2 and 6.4; RFC 8037, section 2).
var privateMembers = map[string]bool{
	"d": true, "p": true, "q": true, "dp": true, "dq": true, "qi": true, "oth": true, "k": true,
}

// ParseJWKS parses a JWK Set document strictly and returns the keys that
// can verify tokens.
//
// The whole document is rejected (an error wrapping ErrMalformed) if it is
// not one JSON object with a "keys" array, has duplicate member names
// anywhere, contains private key material in any key ("d", "p", "q", "dp",
// "dq", "qi", "oth", "k"), or has a supported key that is malformed: "alg"
// contradicting "kty" or "crv", an RSA modulus outside 2048 to 8192 bits, an
// EC point not on P-256, wrong coordinate lengths, non-canonical base64url,
// or a repeated "kid" among the returned keys.
//
// Keys are skipped, not rejected, when they cannot verify our tokens: "use"
// present and not "sig", no "kid" (keys are found by kid only), or a
// well-formed key of a type or algorithm this package does not support
// (such as "oct", P-384 or "PS256"). Skipping keeps a resource server
// working when an issuer later publishes keys of a new type. When "alg" is
// absent it is inferred from the key type, which allows exactly one
// algorithm each: EC P-256 is ES256, RSA is RS256, OKP Ed25519 is EdDSA.
func ParseJWKS(data []byte) ([]PublicKey, error) {
	s := string(data)
	if err := checkJSON(s); err != nil {
		return nil, err
	}
	d := scanner{s: s}
	if !d.open() {
		return nil, fmt.Errorf("%w: JWKS is not a JSON object", ErrMalformed)
	}
	var out []PublicKey
	sawKeys := false
	for first := true; ; first = false {
		name, done, err := d.member(first)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		if name != "keys" {
			if err := d.skip(1); err != nil {
				return nil, err
			}
			continue
		}
		sawKeys = true
		if out, err = d.jwkArray(); err != nil {
			return nil, err
		}
	}
	if !sawKeys {
		return nil, fmt.Errorf("%w: JWKS has no \"keys\" array", ErrMalformed)
	}
	ids := make(map[string]bool, len(out))
	for _, k := range out {
		if ids[k.ID] {
			return nil, fmt.Errorf("%w: JWKS has a repeated kid", ErrMalformed)
		}
		ids[k.ID] = true
	}
	return out, nil
}

// jwkArray reads the "keys" array. The document has passed checkJSON.
func (d *scanner) jwkArray() ([]PublicKey, error) {
	if d.peek() != '[' {
		return nil, fmt.Errorf("%w: JWKS \"keys\" is not an array", ErrMalformed)
	}
	d.i++
	var out []PublicKey
	if d.peek() == ']' {
		d.i++
		return out, nil
	}
	for i := 0; ; i++ {
		j, err := d.jwk()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		k, ok, err := j.publicKey()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		if ok {
			out = append(out, k)
		}
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return out, nil
		default:
			return nil, errSyntax
		}
	}
}

// jwk reads one key object, rejecting private members.
func (d *scanner) jwk() (JWK, error) {
	var j JWK
	if !d.open() {
		return j, fmt.Errorf("%w: key is not a JSON object", ErrMalformed)
	}
	for first := true; ; first = false {
		name, done, err := d.member(first)
		if err != nil {
			return j, err
		}
		if done {
			return j, nil
		}
		if privateMembers[name] {
			return j, fmt.Errorf("%w: key contains private member %q", ErrMalformed, name)
		}
		var dst *string
		switch name {
		case "kid":
			dst = &j.KeyID
		case "kty":
			dst = &j.KeyType
		case "alg":
			dst = &j.Algorithm
		case "use":
			dst = &j.Use
		case "crv":
			dst = &j.Crv
		case "x":
			dst = &j.X
		case "y":
			dst = &j.Y
		case "n":
			dst = &j.N
		case "e":
			dst = &j.E
		default:
			if err := d.skip(1); err != nil {
				return j, err
			}
			continue
		}
		v, ok := d.str()
		if !ok {
			return j, fmt.Errorf("%w: key member %q is not a string", ErrMalformed, name)
		}
		*dst = v
	}
}

// publicKey converts j. It reports ok false for keys that are skipped (see
// ParseJWKS) and an error for malformed ones.
func (j JWK) publicKey() (PublicKey, bool, error) {
	if (j.Use != "" && j.Use != "sig") || j.KeyID == "" {
		return PublicKey{}, false, nil
	}
	alg := Algorithm(j.Algorithm)
	switch alg {
	case ES256, RS256, EdDSA, "":
	default:
		return PublicKey{}, false, nil // an algorithm we do not support
	}
	bad := func(format string, args ...any) (PublicKey, bool, error) {
		return PublicKey{}, false, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	var pub any
	switch j.KeyType {
	case "EC":
		if j.Crv != "P-256" {
			if alg == ES256 {
				return bad("ES256 key on curve other than P-256")
			}
			if alg != "" {
				return bad("alg does not match kty")
			}
			return PublicKey{}, false, nil // another curve
		}
		if alg != "" && alg != ES256 {
			return bad("alg does not match kty")
		}
		alg = ES256
		x, err1 := decodeB64(j.X)
		y, err2 := decodeB64(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return bad("EC coordinates must be 32 bytes of base64url")
		}
		point := append(append([]byte{4}, x...), y...)
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return bad("EC point is not on P-256")
		}
		pub = k
	case "RSA":
		if alg != "" && alg != RS256 {
			return bad("alg does not match kty")
		}
		alg = RS256
		n, err1 := decodeB64(j.N)
		e, err2 := decodeB64(j.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 8 {
			return bad("RSA n and e must be base64url")
		}
		var ev uint64
		for _, b := range e {
			ev = ev<<8 | uint64(b)
		}
		if ev > 1<<31-1 {
			return bad("RSA public exponent out of range")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}
	case "OKP":
		if j.Crv != "Ed25519" {
			if alg != "" {
				return bad("alg does not match crv")
			}
			return PublicKey{}, false, nil // X25519, Ed448, ...
		}
		if alg != "" && alg != EdDSA {
			return bad("alg does not match kty")
		}
		alg = EdDSA
		x, err := decodeB64(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return bad("Ed25519 x must be 32 bytes of base64url")
		}
		pub = ed25519.PublicKey(x)
	case "":
		return bad("key has no kty")
	default:
		if alg != "" {
			return bad("alg does not match kty")
		}
		return PublicKey{}, false, nil // oct or an unknown type
	}
	k := PublicKey{ID: j.KeyID, Algorithm: alg, Key: pub}
	if err := k.check(); err != nil {
		return PublicKey{}, false, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return k, true, nil
}

// decodeB64 decodes strict base64url, also rejecting the CR and LF that
// encoding/base64 would skip.
func decodeB64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errBase64
	}
	return b64Strict.DecodeString(s)
}
