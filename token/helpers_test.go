package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"testing"
	"time"
)

const (
	testIssuer   = "https://auth.example.com"
	testAudience = "https://api.example.com"
)

// testNow is the fixed clock of most tests.
var testNow = time.Unix(1_700_000_000, 0)

func fixedClock() time.Time { return testNow }

var algorithms = []Algorithm{ES256, RS256, EdDSA}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// newSigner returns a fresh private key for alg (RSA keys are shared, as
// generating them is slow).
func newSigner(tb testing.TB, alg Algorithm) crypto.Signer {
	tb.Helper()
	switch alg {
	case ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	case RS256:
		rsaOnce.Do(func() {
			var err error
			if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		})
		return rsaKey
	case EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	tb.Fatalf("no signer for %q", alg)
	return nil
}

func newSigningKey(tb testing.TB, alg Algorithm) SigningKey {
	tb.Helper()
	return SigningKey{ID: "key-" + string(alg), Algorithm: alg, Signer: newSigner(tb, alg)}
}

// validClaims returns claims that verify at testNow.
func validClaims() Claims {
	return Claims{
		Subject:   "user-1234",
		Audience:  Audience{testAudience},
		ExpiresAt: testNow.Add(15 * time.Minute).Unix(),
		IssuedAt:  testNow.Unix(),
		ClientID:  "client-abc",
		Scope:     "read write",
	}
}

// fixture is a key, an issuer and a verifier that agree with each other.
type fixture struct {
	key      SigningKey
	issuer   *Issuer
	verifier *Verifier
}

func newFixture(tb testing.TB, alg Algorithm, cache *Cache) fixture {
	tb.Helper()
	key := newSigningKey(tb, alg)
	iss, err := NewIssuer(IssuerConfig{
		Issuer: testIssuer,
		Key:    func() (SigningKey, error) { return key, nil },
		Now:    fixedClock,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ks, err := NewStaticKeySet(key.Public())
	if err != nil {
		tb.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{
		Issuer:   testIssuer,
		Audience: testAudience,
		Keys:     ks,
		Cache:    cache,
		Now:      fixedClock,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return fixture{key: key, issuer: iss, verifier: v}
}

func (f fixture) issue(tb testing.TB, c Claims) string {
	tb.Helper()
	tok, _, err := f.issuer.Issue(c)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// sign signs arbitrary header and payload JSON with f's key.
func (f fixture) sign(tb testing.TB, header, payload string) string {
	tb.Helper()
	enc := b64.AppendEncode(nil, []byte(header))
	enc = append(enc, '.')
	enc = b64.AppendEncode(enc, []byte(payload))
	sig, err := f.key.sign(nil, enc)
	if err != nil {
		tb.Fatal(err)
	}
	enc = append(enc, '.')
	return string(b64.AppendEncode(enc, sig))
}

var bg = context.Background()
