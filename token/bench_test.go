package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"
)

// The benchmarks compare Verify and Issue with the bare standard-library
// operations on the same token: hashing plus the signature check or
// signature.

func BenchmarkVerify(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(string(alg), func(b *testing.B) {
			f := newFixture(b, alg, nil)
			tok := f.issue(b, validClaims())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.verifier.Verify(bg, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	f := newFixture(b, ES256, NewCache(1000))
	tok := f.issue(b, validClaims())
	if _, err := f.verifier.Verify(bg, tok); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.verifier.Verify(bg, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f.verifier.Verify(bg, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkBareVerify is the floor for BenchmarkVerify: only hashing and
// the signature check, on the token's signing input and decoded signature.
func BenchmarkBareVerify(b *testing.B) {
	b.Run("ES256", func(b *testing.B) {
		f := newFixture(b, ES256, nil)
		signed, sig := splitToken(b, f.issue(b, validClaims()))
		pub := f.key.Signer.Public().(*ecdsa.PublicKey)
		der := rawToDER(nil, sig)
		b.ReportAllocs()
		for b.Loop() {
			h := sha256.Sum256(signed)
			if !ecdsa.VerifyASN1(pub, h[:], der) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("ES256-big", func(b *testing.B) {
		f := newFixture(b, ES256, nil)
		signed, sig := splitToken(b, f.issue(b, validClaims()))
		pub := f.key.Signer.Public().(*ecdsa.PublicKey)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		b.ReportAllocs()
		for b.Loop() {
			h := sha256.Sum256(signed)
			if !ecdsa.Verify(pub, h[:], r, s) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("EdDSA", func(b *testing.B) {
		f := newFixture(b, EdDSA, nil)
		signed, sig := splitToken(b, f.issue(b, validClaims()))
		pub := f.key.Signer.Public().(ed25519.PublicKey)
		b.ReportAllocs()
		for b.Loop() {
			if !ed25519.Verify(pub, signed, sig) {
				b.Fatal("invalid")
			}
		}
	})
}

func BenchmarkIssue(b *testing.B) {
	for _, alg := range []Algorithm{ES256, EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			f := newFixture(b, alg, nil)
			c := validClaims()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := f.issuer.Issue(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBareSign is the floor for BenchmarkIssue/ES256: hashing and
// ecdsa.SignASN1 on a signing input of the same size.
func BenchmarkBareSign(b *testing.B) {
	f := newFixture(b, ES256, nil)
	signed, _ := splitToken(b, f.issue(b, validClaims()))
	priv := f.key.Signer.(*ecdsa.PrivateKey)
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(signed)
		if _, err := ecdsa.SignASN1(rand.Reader, priv, h[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// splitToken returns a token's signing input and decoded signature.
func splitToken(tb testing.TB, tok string) (signed, sig []byte) {
	tb.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := b64.DecodeString(tok[i+1:])
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(tok[:i]), sig
}
