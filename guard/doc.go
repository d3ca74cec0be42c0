// Package guard is net/http middleware that protects a resource server with
// Gatehouse credentials: JWT access tokens, verified locally, API keys and
// opaque access tokens, checked with Gatehouse and cached. It imports only the standard library
// and the [token] package.
//
// # Use
//
// Build one Guard, then wrap each route with the [Policy] it needs:
//
//	g, err := guard.New(guard.Config{
//		Issuer:   "https://auth.example.com",
//		Audience: "https://api.example.com",
//		APIKeys:  keys, // optional: guard.NewHTTPKeyVerifier(...)
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	read := g.Require(guard.Policy{AllOf: []string{"invoices:read"}})
//	mux.Handle("GET /invoices", read(http.HandlerFunc(listInvoices)))
//
// and read the caller in the handler:
//
//	p, _ := guard.PrincipalFrom(r.Context())
//	fmt.Fprintln(w, "hello", p.Subject)
//
// # Credentials
//
// A request carries exactly one credential: "Authorization: Bearer <token>"
// or "X-API-Key: <key>". A bearer value with three dot-separated parts is a
// JWT; one shaped like a Gatehouse API key (prefix_live_... or
// prefix_test_...) is an API key. Credentials in the URL query string
// (access_token=, api_key=, key=, or any value shaped like a JWT or a key),
// duplicated headers and two credentials at once are refused with 400:
// query strings end up in logs and browser history. Form bodies are never
// read for credentials.
//
// JWTs are checked in one call by [token.Verifier] against the issuer's
// keys: from Config.Keys, Config.JWKSURL, or the "jwks_uri" of the issuer's
// metadata (RFC 8414 /.well-known/oauth-authorization-server, then
// /.well-known/openid-configuration), fetched on first use and cached as the
// JWKS response allows. Verified tokens are cached until their "exp", keyed
// by a hash of the token.
//
// API keys are checked by a [KeyVerifier], usually an [HTTPKeyVerifier]
// calling Gatehouse's POST /apikeys/verify. Answers are cached under a
// SHA-256 of the client address and the key, never the key itself: an
// accepted key for at most Config.KeyTTL (30 s) and never past its expiry, a
// refused one for Config.MissTTL (5 s). Keys with a rate limit are not
// cached, so Gatehouse counts every request. Concurrent requests with the
// same uncached key share one verification.
//
// Opaque access tokens (any other bearer value) are accepted only when
// Config.Introspector is set, usually an [HTTPIntrospector] that asks
// Gatehouse's /introspect for a signed answer (RFC 9701) and verifies it
// with the issuer's keys. Accepted answers are cached under a SHA-256 of the
// token for at most Config.OpaqueTTL (30 s) and never past the token's
// "exp", refusals for MissTTL; concurrent requests with the same uncached
// token share one call. Their principal's Kind is token.KindOpaque.
//
// # Revocation
//
// [Guard.Revoke] evicts a token (by "jti") or an API key (by id) at once and
// remembers the id, so that an answer in flight, or from a Gatehouse
// replica that has not seen the revocation yet, is refused too.
// [Guard.Follow] subscribes to Gatehouse's revocation feed and calls it for
// every revocation, within about 100 ms. Without the feed, or while it is
// down ([Guard.FeedStatus]), a revoked API key is accepted for at most
// KeyTTL and a revoked JWT until it expires.
//
// # Responses
//
// Refusals follow RFC 6750, section 3: 401 with
// `WWW-Authenticate: Bearer realm="api", error="invalid_token"` (without
// the error attribute when no credential was sent), 403 with
// error="insufficient_scope" and the required scopes, 400 with
// error="invalid_request". The body repeats the error code and nothing
// else. When Gatehouse cannot be reached and no cached answer applies, the
// answer is 503 with Retry-After, not 401: the credential may be valid.
// Refusals are logged to Config.Logger with the reason, the credential kind
// and, for API keys, the public key id; never the credential.
package guard
