// Package gateway is `gatehouse gateway`: a reverse proxy in front of
// services that implements the phantom-token pattern.
//
// Outside callers present a JWT access token, an opaque access token or an
// API key. The gateway verifies it with a [guard.Guard] (JWTs locally
// against the issuer's keys; API keys with POST /apikeys/verify; opaque
// tokens with /introspect and a signed RFC 9701 answer; all cached, and
// evicted by Gatehouse's revocation feed), applies the route's policy
// (credential kinds, scopes, rate limit), and then swaps the credential for
// a short-lived internal JWT that Gatehouse mints by token exchange (RFC
// 8693) for the gateway client, with "aud" set to the route's upstream
// audience. Internal tokens are cached per (credential, audience) until
// about 10 s (or a quarter of their lifetime) before they expire, so the
// common request makes no call to Gatehouse. The gateway talks to
// Gatehouse over HTTP only: it needs no database and no master secret.
//
// # Configuration
//
// A TOML file (see testdata/gateway.toml for a complete example):
//
//	listen = "127.0.0.1:8081"
//	admin_listen = "127.0.0.1:9091"      # optional: /healthz, /metrics
//	issuer = "http://127.0.0.1:8080"
//	audience = "https://api.example.com"
//	client_id = "gw_..."
//	client_secret_file = "/path/secret"  # or GATEHOUSE_GATEWAY_CLIENT_SECRET
//
//	[[route]]
//	path = "/orders/"                    # longest prefix wins; optional host = "..."
//	upstream = "http://127.0.0.1:9001"
//	audience = "http://orders.internal"  # default: the upstream URL
//	accept = ["jwt", "opaque", "apikey"] # default: all three
//	all_of = ["orders:read"]             # and/or any_of
//	scope = ""                           # optional: narrow the internal token
//	rate = "100/s"                       # optional, per credential
//	strip_prefix = false
//
// Unknown keys, relative or non-http(s) upstreams, unknown kinds, duplicate
// routes and bad rates are rejected. Routes are reloaded when the file
// changes (polled every second) or on SIGHUP; a bad file is logged and the
// current routes stay; requests in flight finish on the table they started
// with. The other settings need a restart.
//
// # Requests
//
// The upstream receives exactly one credential, "Authorization: Bearer
// <internal JWT>"; the caller's Authorization and X-API-Key headers are
// removed. Cookies and other headers pass through; hop-by-hop headers do
// not. Headers starting with X-Gatehouse- are reserved: a request that
// carries one (such as X-Gatehouse-Internal-Token) is refused with 400, so
// nothing from outside can pose as gateway output. X-Request-ID is kept
// when well formed (up to 128 characters of [A-Za-z0-9-_.:+=/]) and
// generated otherwise, and returned to the caller; X-Forwarded-For, -Host
// and -Proto are set. Paths with dot or empty segments are refused with 400,
// so a prefix match cannot be escaped. Bodies and responses are streamed
// (Server-Sent Events are flushed at once), and WebSocket upgrades pass
// through.
//
// Answers: refusals of the guard as in package guard (400, 401 with
// WWW-Authenticate, 403 insufficient_scope, 503 when Gatehouse cannot be
// reached and nothing cached answers); 404 for no route; 429 with
// Retry-After over a route's rate; 503 with Retry-After when no internal
// token can be minted (nothing is ever forwarded without one); 502 when
// the upstream cannot be reached. The gateway's own error bodies are
// {"error": "<code>"}. Every refusal is logged with the route, the reason
// and the credential kind, never the credential.
//
// For API keys, the TCP peer's address is the client address checked
// against a key's IP allow-list: the gateway is meant to be the edge.
package gateway
