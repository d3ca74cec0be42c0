// Package token issues and verifies Gatehouse JWT access tokens
// (RFC 9068) and describes the caller behind any credential as a
// [Principal]. It is what resource servers import; it depends on the
// standard library only.
//
// # The safe path
//
// A resource server builds one [Verifier] and calls [Verifier.Verify] for
// each request. That one call checks everything: the size, the encoding,
// the header ("typ", and an "alg" that must equal the algorithm of the key
// chosen by "kid"), the signature, and the claims ("iss" exactly, "aud"
// containing this server, "exp", "nbf" and "iat" with a bounded leeway, and
// the claims RFC 9068 requires). There is no way to get claims out of a
// token without verifying it.
//
//	keys, err := token.NewRemoteKeySet(token.RemoteKeySetConfig{
//		URL: "https://auth.example.com/.well-known/jwks.json",
//	})
//	// handle err
//	v, err := token.NewVerifier(token.VerifierConfig{
//		Issuer:   "https://auth.example.com",
//		Audience: "https://api.example.com",
//		Keys:     keys,
//		Cache:    token.NewCache(10000), // optional
//	})
//	// handle err
//	claims, err := v.Verify(ctx, bearer)
//	if err != nil {
//		// 401; errors.Is(err, token.ErrExpired) and friends say why.
//	}
//	p := claims.Principal()
//
// Keys are found by "kid" only; "jku", "x5u", "jwk" and "x5c" headers are
// never used, and a "crit" header is rejected. Each key type allows exactly
// one algorithm (ES256 for P-256, RS256 for RSA of 2048 bits or more, EdDSA
// for Ed25519), so "none" and HMAC tokens can never verify. Parsing is
// strict: canonical base64url without padding, exactly one JSON object per
// part with no duplicate member names, well-typed claims. Errors wrap the
// package's sentinel errors (ErrExpired, ErrAudience, ...) and never contain
// any part of the token.
//
// A [Cache] makes a token seen again cost a SHA-256 and a map lookup; it
// holds tokens until their "exp", keyed by a hash of the token, and serves
// one Verifier. Follow the issuer's revocation feed with [Cache.RevokeID]
// and still check "jti" against it.
//
// # Issuing
//
// The authorization server signs access tokens with an [Issuer], whose key
// function returns the active [SigningKey] so that rotation needs no
// restart, and other JWTs (ID tokens, signed responses) with [Sign]. It
// publishes its public keys with [MarshalJWKS].
package token
