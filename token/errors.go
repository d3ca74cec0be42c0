package token

import "errors"

// Sentinel errors returned (wrapped) by this package. Callers branch on them
// with [errors.Is]. Error messages never contain the token or any part of it.
var (
	// ErrMalformed reports a token, header, claim set or JWKS that is not
	// well-formed: wrong number of parts, bad base64url, invalid or duplicate
	// JSON members, wrongly typed claims, or a "crit" header.
	ErrMalformed = errors.New("token: malformed")

	// ErrTooLarge reports a token longer than [VerifierConfig.MaxSize].
	ErrTooLarge = errors.New("token: too large")

	// ErrUnsupportedAlgorithm reports an "alg" that is not on the allow-list
	// (ES256, RS256, EdDSA), or that does not match the algorithm of the key
	// selected by "kid".
	ErrUnsupportedAlgorithm = errors.New("token: unsupported algorithm")

	// ErrUnknownKey reports a "kid" that is missing or not in the key set.
	ErrUnknownKey = errors.New("token: unknown key")

	// ErrSignature reports a signature that does not verify. Like
	// [crypto/rsa.ErrVerification] it is deliberately vague.
	ErrSignature = errors.New("token: invalid signature")

	// ErrExpired reports a token whose "exp" has passed (allowing for leeway).
	ErrExpired = errors.New("token: expired")

	// ErrNotYetValid reports a token whose "nbf" or "iat" lies in the future
	// (allowing for leeway).
	ErrNotYetValid = errors.New("token: not yet valid")

	// ErrIssuer reports an "iss" that is not exactly the expected issuer.
	ErrIssuer = errors.New("token: wrong issuer")

	// ErrAudience reports an "aud" that does not contain the expected audience.
	ErrAudience = errors.New("token: wrong audience")

	// ErrType reports a "typ" header other than the expected one.
	ErrType = errors.New("token: wrong type")

	// ErrMissingClaim reports a required claim that is absent or empty.
	ErrMissingClaim = errors.New("token: missing claim")

	// ErrKeySetUnavailable reports a remote key set that has never
	// successfully fetched any keys.
	ErrKeySetUnavailable = errors.New("token: key set unavailable")
)
