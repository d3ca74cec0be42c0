package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Algorithm is a JWS signature algorithm (RFC 7518, section 3.1; RFC 8037).
// Only the three constants below are supported; each belongs to exactly one
// key type, so a key's type fixes the only algorithm it can verify.
type Algorithm string

// Supported algorithms.
const (
	// ES256 is ECDSA on P-256 with SHA-256; signatures are the 64-byte
	// concatenation r||s (RFC 7518, section 3.4), not DER.
	ES256 Algorithm = "ES256"
	// RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518, section 3.3).
	RS256 Algorithm = "RS256"
	// EdDSA is Ed25519 (RFC 8037, section 3.1).
	EdDSA Algorithm = "EdDSA"
)

// RSA modulus sizes accepted for RS256.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// ecdsaSize is the length of an ES256 signature: r and s, 32 bytes each.
const ecdsaSize = 64

var errKey = errors.New("token: invalid key")

// SigningKey is a private key that signs tokens.
type SigningKey struct {
	// ID is the key id, written to the "kid" header. It must not be empty.
	ID string
	// Algorithm is the signature algorithm; it must match the key type.
	Algorithm Algorithm
	// Signer is an *ecdsa.PrivateKey on P-256 (ES256), an *rsa.PrivateKey of
	// at least 2048 bits (RS256) or an ed25519.PrivateKey (EdDSA). Any other
	// crypto.Signer whose Public method returns a matching public key also
	// works, such as a key held in a hardware module.
	Signer crypto.Signer
}

// Public returns the public half of k, for a key set or a JWKS document.
func (k SigningKey) Public() PublicKey {
	var pub crypto.PublicKey
	if k.Signer != nil {
		pub = k.Signer.Public()
	}
	return PublicKey{ID: k.ID, Algorithm: k.Algorithm, Key: pub}
}

// PublicKey is a public key that verifies tokens.
type PublicKey struct {
	// ID is the key id, matched against the token's "kid" header.
	ID string
	// Algorithm is the only algorithm this key verifies.
	Algorithm Algorithm
	// Key is an *ecdsa.PublicKey on P-256 (ES256), an *rsa.PublicKey of 2048
	// to 8192 bits (RS256) or an ed25519.PublicKey (EdDSA).
	Key crypto.PublicKey
}

// check reports whether k is usable: a non-empty ID and a key of the type
// and size its algorithm requires.
func (k PublicKey) check() error {
	if k.ID == "" {
		return fmt.Errorf("%w: empty key id", errKey)
	}
	return checkPublic(k.Algorithm, k.Key, true)
}

// checkPublic reports whether pub is a valid key for alg. Only a full check
// validates the elliptic curve point, which costs about a microsecond.
func checkPublic(alg Algorithm, pub crypto.PublicKey, full bool) error {
	switch alg {
	case ES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k == nil {
			return fmt.Errorf("%w: ES256 needs an *ecdsa.PublicKey, got %T", errKey, pub)
		}
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ES256 needs curve P-256", errKey)
		}
		if full {
			if _, err := k.Bytes(); err != nil {
				return fmt.Errorf("%w: ES256 public key is not a valid P-256 point", errKey)
			}
		}
	case RS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k == nil || k.N == nil {
			return fmt.Errorf("%w: RS256 needs an *rsa.PublicKey, got %T", errKey, pub)
		}
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return fmt.Errorf("%w: RSA modulus of %d bits, want %d to %d", errKey, n, minRSABits, maxRSABits)
		}
		if k.N.Bit(0) == 0 {
			return fmt.Errorf("%w: RSA modulus is even", errKey)
		}
		if k.E < 3 || k.E > 1<<31-1 || k.E%2 == 0 {
			return fmt.Errorf("%w: RSA public exponent out of range", errKey)
		}
	case EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("%w: EdDSA needs an ed25519.PublicKey, got %T", errKey, pub)
		}
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 public key of %d bytes, want %d", errKey, len(k), ed25519.PublicKeySize)
		}
	default:
		return fmt.Errorf("%w: %w", errKey, ErrUnsupportedAlgorithm)
	}
	return nil
}

// verifySignature reports whether sig is a valid alg signature of signed
// under pub. pub must have passed checkPublic for alg. It never panics on
// any sig.
func verifySignature(alg Algorithm, pub crypto.PublicKey, signed, sig []byte) bool {
	switch alg {
	case ES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || len(sig) != ecdsaSize {
			return false
		}
		h := sha256.Sum256(signed)
		var der [72]byte
		return ecdsa.VerifyASN1(k, h[:], rawToDER(der[:0], sig))
	case RS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return false
		}
		h := sha256.Sum256(signed)
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) == nil
	case EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return false
		}
		return ed25519.Verify(k, signed, sig)
	}
	return false
}

// sign appends to dst the JWS signature of signed under k, in JWS form
// (raw r||s for ES256).
func (k SigningKey) sign(dst, signed []byte) ([]byte, error) {
	if k.Signer == nil {
		return nil, fmt.Errorf("%w: no signer", errKey)
	}
	if k.ID == "" {
		return nil, fmt.Errorf("%w: empty key id", errKey)
	}
	if err := checkPublic(k.Algorithm, k.Signer.Public(), false); err != nil {
		return nil, err
	}
	switch k.Algorithm {
	case ES256:
		h := sha256.Sum256(signed)
		der, err := k.Signer.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("token: signing: %w", err)
		}
		var raw [ecdsaSize]byte
		if !derToRaw(&raw, der) {
			return nil, errors.New("token: signing: signer returned a malformed ECDSA signature")
		}
		return append(dst, raw[:]...), nil
	case RS256:
		h := sha256.Sum256(signed)
		sig, err := k.Signer.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("token: signing: %w", err)
		}
		return append(dst, sig...), nil
	default: // EdDSA; checkPublic rejected everything else.
		sig, err := k.Signer.Sign(rand.Reader, signed, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("token: signing: %w", err)
		}
		return append(dst, sig...), nil
	}
}

// rawToDER appends the ASN.1 DER form of the 64-byte JWS ECDSA signature
// r||s to dst: SEQUENCE { INTEGER r, INTEGER s }.
func rawToDER(dst, sig []byte) []byte {
	r, s := trimInt(sig[:32]), trimInt(sig[32:])
	rl, sl := intLen(r), intLen(s)
	dst = append(dst, 0x30, byte(2+rl+2+sl))
	dst = appendInt(dst, r, rl)
	return appendInt(dst, s, sl)
}

// trimInt strips leading zero bytes, keeping at least one byte.
func trimInt(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// intLen is the length of the DER INTEGER content for the unsigned
// big-endian b: one more when the high bit is set.
func intLen(b []byte) int {
	if b[0]&0x80 != 0 {
		return len(b) + 1
	}
	return len(b)
}

func appendInt(dst, b []byte, n int) []byte {
	dst = append(dst, 0x02, byte(n))
	if n > len(b) {
		dst = append(dst, 0)
	}
	return append(dst, b...)
}

// derToRaw converts an ASN.1 DER ECDSA P-256 signature to the 64-byte r||s
// form in out. It reports false for anything but a minimal, well-formed
// encoding of two positive integers that fit in 32 bytes.
func derToRaw(out *[ecdsaSize]byte, der []byte) bool {
	if len(der) < 2 || der[0] != 0x30 || int(der[1]) != len(der)-2 || der[1] >= 0x80 {
		return false
	}
	rest := der[2:]
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 {
			return false
		}
		n := int(rest[1])
		if n == 0 || n > 33 || len(rest) < 2+n {
			return false
		}
		v := rest[2 : 2+n]
		rest = rest[2+n:]
		if v[0]&0x80 != 0 { // negative
			return false
		}
		if len(v) > 1 && v[0] == 0 && v[1]&0x80 == 0 { // not minimal
			return false
		}
		if len(v) == 33 {
			if v[0] != 0 {
				return false
			}
			v = v[1:]
		}
		copy(out[i*32+32-len(v):(i+1)*32], v)
	}
	return len(rest) == 0
}
