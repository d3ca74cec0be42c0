package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// An authorization server issues an access token; a resource server that
// knows the issuer's public key verifies it.
func Example() {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	key := token.SigningKey{ID: "2026-01", Algorithm: token.ES256, Signer: priv}

	// The authorization server.
	issuer, err := token.NewIssuer(token.IssuerConfig{
		Issuer: "https://auth.example.com",
		Key:    func() (token.SigningKey, error) { return key, nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	raw, _, err := issuer.Issue(token.Claims{
		Subject:   "user-42",
		ClientID:  "billing-app",
		Audience:  token.Audience{"https://api.example.com"},
		Scope:     "invoices:read invoices:write",
		ExpiresAt: time.Now().Add(15 * time.Minute).Unix(),
	})
	if err != nil {
		log.Fatal(err)
	}

	// The resource server. In production the keys come from the issuer's
	// JWKS: token.NewRemoteKeySet(token.RemoteKeySetConfig{URL: ...}).
	keys, err := token.NewStaticKeySet(key.Public())
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := token.NewVerifier(token.VerifierConfig{
		Issuer:   "https://auth.example.com",
		Audience: "https://api.example.com",
		Keys:     keys,
	})
	if err != nil {
		log.Fatal(err)
	}
	claims, err := verifier.Verify(context.Background(), raw)
	if err != nil {
		log.Fatal(err)
	}
	p := claims.Principal()
	fmt.Println(p.Subject, p.ClientID, p.Kind, p.HasScope("invoices:write"), p.HasScope("admin"))

	// Any change to the token makes it fail.
	_, err = verifier.Verify(context.Background(), raw[:len(raw)-4]+"AAAA")
	fmt.Println(errors.Is(err, token.ErrSignature))
	// Output:
	// user-42 billing-app jwt true false
	// true
}

// Verification errors wrap sentinel errors that say why.
func ExampleVerifier_Verify_errors() {
	keys, _ := token.NewStaticKeySet()
	verifier, _ := token.NewVerifier(token.VerifierConfig{
		Issuer:   "https://auth.example.com",
		Audience: "https://api.example.com",
		Keys:     keys,
	})
	for _, raw := range []string{
		"not a token",
		"eyJhbGciOiJub25lIn0.e30.",                  // {"alg":"none"}
		"eyJhbGciOiJFUzI1NiIsImtpZCI6IngifQ.e30.AA", // {"alg":"ES256","kid":"x"} with no typ
	} {
		_, err := verifier.Verify(context.Background(), raw)
		switch {
		case errors.Is(err, token.ErrMalformed):
			fmt.Println("malformed:", err)
		case errors.Is(err, token.ErrUnsupportedAlgorithm):
			fmt.Println("algorithm:", err)
		case errors.Is(err, token.ErrType):
			fmt.Println("type:", err)
		}
	}
	// Output:
	// malformed: token: malformed: want three base64url parts
	// algorithm: token: unsupported algorithm
	// type: token: wrong type
}

// A verified-token cache answers tokens seen before from memory.
func ExampleCache() {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := token.SigningKey{ID: "k1", Algorithm: token.ES256, Signer: priv}
	issuer, _ := token.NewIssuer(token.IssuerConfig{
		Issuer: "https://auth.example.com",
		Key:    func() (token.SigningKey, error) { return key, nil },
	})
	raw, claims, _ := issuer.Issue(token.Claims{
		Subject: "svc-a", ClientID: "svc-a", Audience: token.Audience{"https://api.example.com"},
		ExpiresAt: time.Now().Add(time.Minute).Unix(),
	})

	cache := token.NewCache(10000)
	keys, _ := token.NewStaticKeySet(key.Public())
	verifier, _ := token.NewVerifier(token.VerifierConfig{
		Issuer: "https://auth.example.com", Audience: "https://api.example.com",
		Keys: keys, Cache: cache,
	})
	verifier.Verify(context.Background(), raw) // checks the signature
	verifier.Verify(context.Background(), raw) // answered from the cache
	fmt.Println(cache.Len())

	cache.RevokeID(claims.ID) // from the revocation feed
	fmt.Println(cache.Len())
	// Output:
	// 1
	// 0
}
