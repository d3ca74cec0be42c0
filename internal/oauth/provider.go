package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/signing"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// Endpoint paths, relative to the issuer.
const (
	TokenPath        = "/token"
	IntrospectPath   = "/introspect"
	RevokePath       = "/revoke"
	RegisterPath     = "/register"
	AdminClientsPath = "/admin/clients"
)

// Defaults for Config's zero values.
const (
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = time.Minute
	DefaultSecretGrace     = 24 * time.Hour
)

// Config configures a Provider. Zero values mean the documented defaults.
type Config struct {
	// Issuer is the issuer identifier, without a trailing slash. Required.
	Issuer string
	// Store keeps clients, revocations and everything else. Required.
	Store *store.Store
	// Keys holds the signing keys. Required.
	Keys *signing.Manager
	// Hasher hashes generated secrets (client secrets, registration
	// tokens). Required.
	Hasher *secret.Hasher
	// Logger receives errors and security events. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// AccessTokenTTL is the default access-token lifetime (a client may
	// set its own). Default 15 minutes.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the default refresh-token lifetime. Default 30 days.
	RefreshTokenTTL time.Duration
	// CodeTTL is the authorization-code lifetime. Default 1 minute.
	CodeTTL time.Duration
	// SecretGrace is how long a client's previous secret keeps working
	// after a rotation. Default 24 hours.
	SecretGrace time.Duration
	// RefreshGrace is how long after a refresh token was rotated the same
	// token may be presented again (a client retrying after a lost
	// response) without revoking its family. Default 10 seconds; negative
	// means no grace.
	RefreshGrace time.Duration
	// SessionTTL is how long a login session lasts. Default 12 hours.
	SessionTTL time.Duration
	// AdminToken protects the admin API under /admin/. Empty disables it.
	AdminToken string
	// InitialAccessToken protects Dynamic Client Registration (RFC 7591
	// section 3). Empty disables registration.
	InitialAccessToken string
	// HTTPClient fetches clients' jwks_uri documents. Default: the token
	// package's (10 s timeout, no redirects to plain http).
	HTTPClient *http.Client
	// DCRAllowPrivateJWKSURI lets dynamically registered clients name a
	// jwks_uri on a loopback, private or link-local address (see
	// jwksfetch.go). Off by default: only for development and closed
	// networks whose initial access token holders are trusted.
	DCRAllowPrivateJWKSURI bool
	// APIKeys, if not nil, lets the introspection endpoint answer for API
	// keys too (see introspectAPIKey).
	APIKeys APIKeyVerifier
	// RateLimiter enforces clients' token-endpoint rate limits
	// (store.Client.RateLimit). Nil means an exact per-process limiter.
	RateLimiter ratelimit.Limiter
	// SharedLimits, if not nil, keeps the login throttle's failure counts
	// in Redis, shared by all replicas (per process while it is down).
	SharedLimits *ratelimit.Redis
}

// Provider is the OAuth 2.1 authorization server: the token, introspection,
// revocation and registration endpoints and the state they share. Create it
// with NewProvider and call Init before serving.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	store   *store.Store
	hasher  *secret.Hasher
	issuers map[token.Algorithm]*token.Issuer
	keys    liveKeys

	clients clientCache
	// loginAudit queues sign-in events for RunAudit.
	loginAudit auditQueue
	revoked    denylist

	verifiersMu sync.RWMutex
	verifiers   map[string]*token.Verifier // by audience
	caches      []*token.Cache             // the verifiers' caches

	remoteMu   sync.Mutex
	remoteKeys map[string]*token.RemoteKeySet // client JWKS by fetch policy and jwks_uri
	publicOnly *http.Client                   // fetches dynamically registered clients' jwks_uri

	flow *userFlow // login, consent and logout pages

	grants map[string]grantFunc // grantHandlers, built once

	md Metadata
}

// NewProvider checks cfg and returns a Provider.
func NewProvider(cfg Config) (*Provider, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("oauth: Issuer is required")
	case cfg.Store == nil || cfg.Keys == nil || cfg.Hasher == nil:
		return nil, errors.New("oauth: Store, Keys and Hasher are required")
	case cfg.AccessTokenTTL < 0 || cfg.RefreshTokenTTL < 0 || cfg.CodeTTL < 0 || cfg.SecretGrace < 0:
		return nil, errors.New("oauth: lifetimes must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.CodeTTL == 0 {
		cfg.CodeTTL = DefaultCodeTTL
	}
	if cfg.SecretGrace == 0 {
		cfg.SecretGrace = DefaultSecretGrace
	}
	p := &Provider{
		cfg:        cfg,
		log:        cfg.Logger,
		now:        cfg.Now,
		store:      cfg.Store,
		hasher:     cfg.Hasher,
		issuers:    make(map[token.Algorithm]*token.Issuer),
		keys:       liveKeys{cfg.Keys},
		verifiers:  make(map[string]*token.Verifier),
		remoteKeys: make(map[string]*token.RemoteKeySet),
		publicOnly: newPublicOnlyClient(),
	}
	p.clients.m = make(map[string]*store.Client)
	p.revoked.m = make(map[string]int64)
	for _, alg := range signing.Algorithms {
		iss, err := token.NewIssuer(token.IssuerConfig{
			Issuer: cfg.Issuer,
			Key:    func() (token.SigningKey, error) { return cfg.Keys.Active(alg) },
			Now:    cfg.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("oauth: %w", err)
		}
		p.issuers[alg] = iss
	}
	if cfg.RefreshGrace == 0 {
		p.cfg.RefreshGrace = DefaultRefreshGrace
	}
	if cfg.SessionTTL <= 0 {
		p.cfg.SessionTTL = DefaultSessionTTL
	}
	flow, err := newUserFlow(cfg.Issuer, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	p.flow = flow
	p.initRateLimits()
	p.grants = p.grantHandlers()
	p.md = p.metadata()
	return p, nil
}

// Init loads the access-token denylist into memory. Call it once before
// serving, after noting the change-feed position the server follows from.
func (p *Provider) Init(ctx context.Context) error {
	list, err := p.store.RevokedTokens(ctx, p.now())
	if err != nil {
		return fmt.Errorf("oauth: load revocations: %w", err)
	}
	for _, r := range list {
		p.revoked.add(r.ID, r.ExpiresAt.Unix(), p.now())
	}
	return nil
}

// Register adds the provider's endpoints to mux.
func (p *Provider) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+TokenPath, p.serveToken)
	mux.HandleFunc("POST "+IntrospectPath, p.serveIntrospect)
	mux.HandleFunc("POST "+RevokePath, p.serveRevoke)
	if p.cfg.AdminToken != "" {
		p.registerAdmin(mux)
	}
	if p.cfg.InitialAccessToken != "" {
		p.registerDCR(mux)
	}
	p.registerUserFlow(mux)
}

// Metadata returns the discovery document (RFC 8414, OpenID Connect
// Discovery) listing exactly what the provider implements.
func (p *Provider) Metadata() Metadata { return p.md }

func (p *Provider) metadata() Metadata {
	md := NewMetadata(p.cfg.Issuer)
	md.TokenEndpoint = p.cfg.Issuer + TokenPath
	md.IntrospectionEndpoint = p.cfg.Issuer + IntrospectPath
	md.RevocationEndpoint = p.cfg.Issuer + RevokePath
	if p.cfg.InitialAccessToken != "" {
		md.RegistrationEndpoint = p.cfg.Issuer + RegisterPath
	}
	md.GrantTypesSupported = slices.Sorted(maps.Keys(p.grantHandlers()))
	md.TokenEndpointAuthMethodsSupported = []string{authSecretBasic, authSecretPost, authPrivateKeyJWT, authNone}
	md.TokenEndpointAuthSigningAlgValuesSupported = algNames()
	md.IntrospectionEndpointAuthMethodsSupported = []string{authSecretBasic, authSecretPost, authPrivateKeyJWT}
	md.RevocationEndpointAuthMethodsSupported = []string{authSecretBasic, authSecretPost, authPrivateKeyJWT, authNone}
	md.IntrospectionSigningAlgValuesSupported = []string{string(introspectionAlg)}
	p.userMetadata(&md)
	return md
}

// algNames lists the JWS algorithms Gatehouse signs and verifies with.
func algNames() []string {
	out := make([]string, len(signing.Algorithms))
	for i, a := range signing.Algorithms {
		out[i] = string(a)
	}
	return out
}

// OnClientChange drops the changed clients from the in-memory cache, so the
// next request reads them from the store. The server calls it for
// [store.ChangeClient] changes from the change feed.
func (p *Provider) OnClientChange(_ context.Context, changes []store.Change) error {
	p.clients.invalidate(changes)
	return nil
}

// OnRevocationChange adds tokens revoked elsewhere (another replica, the
// CLI) to the in-memory denylist. The server calls it for
// [store.ChangeTokenRevoked] changes from the change feed.
func (p *Provider) OnRevocationChange(ctx context.Context, changes []store.Change) error {
	var errs []error
	for _, c := range changes {
		r, err := p.store.RevokedToken(ctx, c.Ref)
		if errors.Is(err, store.ErrNotFound) {
			continue // already pruned: the token has expired
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.revoked.add(r.ID, r.ExpiresAt.Unix(), p.now())
		p.evictCached(r.ID)
	}
	return errors.Join(errs...)
}

// OnSigningKeyChange forgets cached token verifications after the signing
// keys changed, so a key that left the key set stops verifying at once.
// The server calls it after reloading the keys.
func (p *Provider) OnSigningKeyChange(context.Context, []store.Change) error {
	p.verifiersMu.Lock()
	defer p.verifiersMu.Unlock()
	clear(p.verifiers)
	p.caches = nil
	return nil
}

// Prune drops denylist entries that expired before now from memory. The
// server calls it periodically; its housekeeping deletes the stored rows
// (store.Store.Housekeep).
func (p *Provider) Prune(now time.Time) {
	p.revoked.prune(now)
}

// client returns the client with the given ID from the cache, reading it
// from the store on a miss. It returns store.ErrNotFound (wrapped) for an
// unknown client.
func (p *Provider) client(ctx context.Context, id string) (*store.Client, error) {
	c, gen := p.clients.get(id)
	if c != nil {
		p.clients.hits.Add(1)
		return c, nil
	}
	p.clients.misses.Add(1)
	rec, err := p.store.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	p.clients.put(&rec, gen)
	return &rec, nil
}

// clientCache holds clients in memory. The change feed invalidates
// entries; a miss is filled from the store unless an invalidation happened
// while the store was read (the read may predate the change).
type clientCache struct {
	mu  sync.RWMutex
	gen uint64
	m   map[string]*store.Client

	hits, misses atomic.Uint64 // lookups, for metrics
}

// ClientCacheStats returns how many client lookups the in-memory cache
// answered (hits) and how many read the store (misses).
func (p *Provider) ClientCacheStats() (hits, misses uint64) {
	return p.clients.hits.Load(), p.clients.misses.Load()
}

// maxCachedClients bounds the cache; beyond it misses are not cached.
const maxCachedClients = 100000

func (cc *clientCache) get(id string) (*store.Client, uint64) {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	return cc.m[id], cc.gen
}

func (cc *clientCache) put(c *store.Client, gen uint64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.gen == gen && len(cc.m) < maxCachedClients {
		cc.m[c.ID] = c
	}
}

func (cc *clientCache) invalidate(changes []store.Change) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.gen++
	for _, c := range changes {
		delete(cc.m, c.Ref)
	}
}

// denylist holds the "jti" of revoked, unexpired access tokens in memory,
// with their expiry (Unix seconds).
type denylist struct {
	mu        sync.RWMutex
	m         map[string]int64
	lastPrune time.Time
}

func (d *denylist) add(jti string, exp int64, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[jti] = exp
	if now.Sub(d.lastPrune) > time.Minute {
		d.pruneLocked(now)
	}
}

func (d *denylist) contains(jti string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.m[jti]
	return ok
}

func (d *denylist) prune(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pruneLocked(now)
}

func (d *denylist) pruneLocked(now time.Time) {
	// Keep entries a little past exp: verifiers allow clock-skew leeway.
	cutoff := now.Add(-token.MaxLeeway).Unix()
	for jti, exp := range d.m {
		if exp < cutoff {
			delete(d.m, jti)
		}
	}
	d.lastPrune = now
}

// liveKeys is the token.KeySet of Gatehouse's own published keys, read
// from the signing-key manager on every call so rotation needs no restart.
type liveKeys struct{ m *signing.Manager }

func (k liveKeys) Key(_ context.Context, kid string) (token.PublicKey, error) {
	for _, key := range k.m.Keys() {
		if key.ID == kid {
			return key.Public(), nil
		}
	}
	return token.PublicKey{}, token.ErrUnknownKey
}
