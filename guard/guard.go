package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Defaults of a Config.
const (
	// DefaultKeyTTL is how long an accepted API key is cached when KeyTTL
	// is zero.
	DefaultKeyTTL = 30 * time.Second
	// DefaultOpaqueTTL is how long an accepted opaque token is cached when
	// OpaqueTTL is zero.
	DefaultOpaqueTTL = 30 * time.Second
	// DefaultMissTTL is how long a refused API key or opaque token is
	// cached when MissTTL is zero.
	DefaultMissTTL = 5 * time.Second
	// DefaultCacheSize is the number of entries of each cache when a size
	// is zero.
	DefaultCacheSize = 10000
	// DefaultRevocationTTL is how long a revoked id is remembered when
	// RevocationTTL is zero.
	DefaultRevocationTTL = 24 * time.Hour
	// DefaultRealm is the realm of WWW-Authenticate when Realm is empty.
	DefaultRealm = "api"
)

// maxRevocations bounds the remembered revoked ids.
const maxRevocations = 100000

// Config configures a Guard. A Guard verifies JWT access tokens when Issuer
// is set, API keys when APIKeys is set, opaque access tokens when
// Introspector is set, or any combination; at least one is required.
// Zero values of the optional fields mean the documented defaults.
type Config struct {
	// Issuer is the authorization server's issuer identifier, compared
	// exactly with a token's "iss". Setting it enables JWT access tokens.
	Issuer string
	// Audience is this resource server's identifier: every JWT and opaque
	// token must list it in "aud". Required with Issuer or Introspector.
	Audience string
	// JWKSURL is the issuer's JWK Set. If empty, it is read from the
	// "jwks_uri" of the issuer's metadata (RFC 8414, then OpenID Connect
	// Discovery) on the first request that carries a JWT.
	JWKSURL string
	// Keys, if set, holds the issuer's keys and overrides JWKSURL and
	// discovery (for example a token.StaticKeySet).
	Keys token.KeySet
	// APIKeys checks API keys, usually an [HTTPKeyVerifier]. Setting it
	// enables API keys.
	APIKeys KeyVerifier
	// KeyTTL is the longest an accepted API key is cached; never past the
	// key's expiry. Zero means DefaultKeyTTL (30 s).
	KeyTTL time.Duration
	// Introspector resolves opaque access tokens (bearer values that are
	// neither JWTs nor shaped like API keys), usually an
	// [HTTPIntrospector]. Setting it enables opaque tokens.
	Introspector Introspector
	// OpaqueTTL is the longest an accepted opaque token is cached; never
	// past the token's expiry. Zero means DefaultOpaqueTTL (30 s).
	OpaqueTTL time.Duration
	// MissTTL is how long a refused API key or opaque token is cached, so that a client
	// retrying a bad key does not reach Gatehouse each time. Zero means
	// DefaultMissTTL (5 s).
	MissTTL time.Duration
	// TokenCacheSize and KeyCacheSize bound the verified-token cache (held
	// until each token's "exp") and the API key cache (refusals are held in a separate cache of the same
	// size). Zero means DefaultCacheSize.
	TokenCacheSize, KeyCacheSize int
	// RevocationTTL is how long an id passed to [Guard.Revoke] is
	// remembered; it should exceed the longest access-token lifetime.
	// Zero means DefaultRevocationTTL (24 h).
	RevocationTTL time.Duration
	// Realm is the realm of the WWW-Authenticate challenge. Empty means
	// DefaultRealm ("api").
	Realm string
	// ClientIP returns the address of the client that presented an API key,
	// which Gatehouse checks against the key's IP allow-list. The default
	// is the TCP peer address; set it when the service is behind a proxy
	// that you trust to report the client's address.
	ClientIP func(*http.Request) netip.Addr
	// Client fetches the discovery document and the JWK Set. The default
	// has a 10 s timeout and follows redirects only to https (or loopback)
	// URLs.
	Client *http.Client
	// Logger receives one line per refused request and per fault, never
	// with the credential. The default discards them.
	Logger *slog.Logger
	// Now returns the current time. Optional; the default is time.Now.
	Now func() time.Time
}

// Guard is net/http middleware that authenticates requests with a JWT
// access token or an API key and applies a per-route [Policy]. It is safe
// for concurrent use.
type Guard struct {
	verifier *token.Verifier // nil when JWTs are not enabled
	apiKeys  KeyVerifier     // nil when API keys are not enabled
	intro    Introspector    // nil when opaque tokens are not enabled
	audience string

	keyTTL, missTTL, opaqueTTL time.Duration
	tokens                     *keyCache     // verified JWTs and opaque tokens, until their "exp"
	hits, misses               *keyCache     // API key answers; misses also holds refused opaque tokens
	gen                        atomic.Uint64 // bumped by every revocation and Flush

	flightMu sync.Mutex
	flights  map[keyHash]*flight
	iflights map[keyHash]*introFlight

	revoked revocations
	feed    feedState // see Guard.Follow

	realm    string
	clientIP func(*http.Request) netip.Addr
	log      *slog.Logger
	now      func() time.Time
}

// New returns a Guard for cfg, or an error if cfg is incomplete or invalid.
// It does not fetch anything: discovery and key sets are fetched on the
// first request that needs them.
func New(cfg Config) (*Guard, error) {
	if cfg.Issuer == "" && cfg.APIKeys == nil && cfg.Introspector == nil {
		return nil, errors.New("guard: set Issuer (JWT access tokens), APIKeys, Introspector (opaque tokens), or a combination")
	}
	if cfg.Introspector != nil && cfg.Audience == "" {
		return nil, errors.New("guard: Audience is required with Introspector")
	}
	if cfg.KeyTTL < 0 || cfg.MissTTL < 0 || cfg.OpaqueTTL < 0 || cfg.RevocationTTL < 0 || cfg.TokenCacheSize < 0 || cfg.KeyCacheSize < 0 {
		return nil, errors.New("guard: durations and cache sizes must not be negative")
	}
	if strings.ContainsAny(cfg.Realm, "\"\\\r\n") {
		return nil, errors.New("guard: Realm must not contain quotes, backslashes or line breaks")
	}
	g := &Guard{
		apiKeys:   cfg.APIKeys,
		intro:     cfg.Introspector,
		audience:  cfg.Audience,
		opaqueTTL: orDefault(cfg.OpaqueTTL, DefaultOpaqueTTL),
		iflights:  make(map[keyHash]*introFlight),
		keyTTL:    orDefault(cfg.KeyTTL, DefaultKeyTTL),
		missTTL:   orDefault(cfg.MissTTL, DefaultMissTTL),
		tokens:    newKeyCache(orDefault(cfg.TokenCacheSize, DefaultCacheSize)),
		hits:      newKeyCache(orDefault(cfg.KeyCacheSize, DefaultCacheSize)),
		misses:    newKeyCache(orDefault(cfg.KeyCacheSize, DefaultCacheSize)),
		flights:   make(map[keyHash]*flight),
		realm:     orDefault(cfg.Realm, DefaultRealm),
		clientIP:  cfg.ClientIP,
		log:       cfg.Logger,
		now:       cfg.Now,
	}
	g.revoked = revocations{ttl: orDefault(cfg.RevocationTTL, DefaultRevocationTTL), m: make(map[revocation]time.Time)}
	if g.clientIP == nil {
		g.clientIP = peerIP
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if cfg.Issuer != "" {
		if err := g.initJWT(cfg); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (g *Guard) initJWT(cfg Config) error {
	if cfg.Audience == "" {
		return errors.New("guard: Audience is required with Issuer")
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: safeRedirect}
	}
	keys := cfg.Keys
	switch {
	case keys != nil:
	case cfg.JWKSURL != "":
		ks, err := token.NewRemoteKeySet(token.RemoteKeySetConfig{URL: cfg.JWKSURL, Client: client, Now: cfg.Now})
		if err != nil {
			return fmt.Errorf("guard: %w", err)
		}
		keys = ks
	default:
		if err := checkURL(cfg.Issuer); err != nil {
			return fmt.Errorf("guard: issuer: %w", err)
		}
		keys = &discoveryKeys{issuer: cfg.Issuer, client: client, now: g.now}
	}
	// No token.Cache: the Guard caches the principal itself, which saves
	// rebuilding it from the claims on every request.
	v, err := token.NewVerifier(token.VerifierConfig{
		Issuer:   cfg.Issuer,
		Audience: cfg.Audience,
		Keys:     keys,
		Now:      cfg.Now,
	})
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	g.verifier = v
	return nil
}

// safeRedirect follows at most 5 redirects, and only to https or loopback
// http URLs.
func safeRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	return checkURL(req.URL.String())
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// peerIP returns the address of the TCP peer of r.
func peerIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

type principalKey struct{}

// PrincipalFrom returns the principal the Guard verified for the request
// whose context is ctx. ok is false outside a handler wrapped by
// [Guard.Require]. The principal's slices may be shared with the Guard's
// caches: treat them as read-only.
func PrincipalFrom(ctx context.Context) (p token.Principal, ok bool) {
	pp, ok := ctx.Value(principalKey{}).(*token.Principal)
	if !ok {
		return token.Principal{}, false
	}
	return *pp, true
}

// WithPrincipal returns a copy of ctx carrying p, as [Guard.Require] does;
// it lets tests call handlers directly.
func WithPrincipal(ctx context.Context, p token.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, &p)
}

// Revoke makes the Guard refuse a credential at once: an access token by
// its "jti" (kind token.KindJWT or token.KindOpaque, which are the same:
// both evict JWTs and opaque tokens with that "jti") or an API key by its
// public id (kind token.KindAPIKey). Cached answers are evicted, and the id is remembered
// for Config.RevocationTTL so that a stale answer arriving later is
// refused too. A revocation feed calls it.
func (g *Guard) Revoke(kind token.Kind, id string) {
	if id == "" {
		return
	}
	if kind == token.KindOpaque {
		kind = token.KindJWT
	}
	g.revoked.add(revocation{kind, id}, g.now())
	g.gen.Add(1) // before evicting: see keyCache.putIf
	switch kind {
	case token.KindJWT:
		g.tokens.evict(kind, id)
	case token.KindAPIKey:
		g.hits.evict(kind, id)
	}
}

// Flush empties the Guard's caches, for example after the issuer's signing
// key was revoked or when the revocation feed was interrupted. Revoked ids
// are kept.
func (g *Guard) Flush() {
	g.gen.Add(1)
	g.tokens.clear()
	g.hits.clear()
	g.misses.clear()
}

// revocation is one revoked credential id.
type revocation struct {
	kind token.Kind
	id   string
}

// revocations remembers revoked ids until a deadline.
type revocations struct {
	ttl time.Duration
	n   atomic.Int64 // len(m), read without the lock
	mu  sync.RWMutex
	m   map[revocation]time.Time
}

func (r *revocations) add(k revocation, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= maxRevocations {
		for k, until := range r.m {
			if !now.Before(until) {
				delete(r.m, k)
			}
		}
		for k := range r.m {
			if len(r.m) < maxRevocations {
				break
			}
			delete(r.m, k)
		}
	}
	r.m[k] = now.Add(r.ttl)
	r.n.Store(int64(len(r.m)))
}

func (r *revocations) has(k revocation, now time.Time) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.RLock()
	until, ok := r.m[k]
	r.mu.RUnlock()
	return ok && now.Before(until)
}
