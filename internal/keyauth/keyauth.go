// Package keyauth is the API-key service: it creates, lists, updates,
// rotates and revokes keys in the store, and verifies presented keys on the
// hot path from an in-memory cache.
//
// Verification ([Service.Verify]) rejects a malformed key by its checksum
// without touching the store, finds the key's record by its public ID in a
// cache that the change feed keeps current ([Service.OnChange]), compares
// the keyed hash in constant time, and then checks status, expiry, rotation
// grace, the IP allow-list and the per-key rate limit. Each refusal has a
// distinct [apikey.Reason] that goes to the audit log and the structured log,
// never to the caller. Last-used times, use counts and audit events are
// written in batches by [Service.Run], not on every request.
//
// When the store cannot be reached, verification fails closed with an error
// wrapping [store.ErrUnavailable] (the HTTP layer answers 503), never with a
// refusal.
package keyauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Defaults for [Config] fields left zero.
const (
	DefaultGrace         = 24 * time.Hour
	DefaultFlushInterval = time.Second
	DefaultCacheTTL      = time.Minute
	DefaultScope         = "read"
)

// Audit event names written by the service.
const (
	EventCreate  = "apikey.create"
	EventUpdate  = "apikey.update"
	EventRotate  = "apikey.rotate"
	EventRevoke  = "apikey.revoke"
	EventVerify  = "apikey.verify"
	EventExposed = "apikey.exposed"
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// ErrInvalid means a create or update request has a bad field; the message
// says which.
var ErrInvalid = errors.New("keyauth: invalid request")

// Config configures a [Service]. Store and Hasher are required; zero values
// of the other fields mean the documented defaults.
type Config struct {
	// Store holds the keys and the audit log.
	Store *store.Store
	// Hasher computes the stored hash of a key.
	Hasher *apikey.Hasher
	// Format is this deployment's key format: new keys get it, and only
	// keys of it are accepted. The zero value means "gk" and "live".
	Format apikey.Format
	// Logger receives one line per refusal and per administrative action.
	// Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Grace is how long a rotated key keeps working by default. Zero means
	// DefaultGrace (24 h).
	Grace time.Duration
	// FlushInterval is how often [Service.Run] writes last-used times, use
	// counts and queued audit events. Zero means DefaultFlushInterval.
	FlushInterval time.Duration
	// CacheTTL bounds how long a cached key record is trusted without a
	// change-feed event; after it, the next verification rereads the
	// record. It limits the damage of a stalled change feed. Zero means
	// DefaultCacheTTL.
	CacheTTL time.Duration
	// AuditQueue bounds the verification audit events waiting for the
	// next flush; when full, further events are dropped and counted (the
	// log line is still written). Zero means 10000.
	AuditQueue int
	// Limiter enforces the keys' rate limits, one bucket per key family
	// under "apikey:<family>". Nil means an exact per-process limiter on
	// Now; a Redis-backed one shares the limits across replicas.
	Limiter ratelimit.Limiter
}

// Actor says who asks for an administrative action, for the audit log.
type Actor struct {
	// Name is "admin", "cli", a user or a client ID.
	Name string
	// IP is the caller's address, if known.
	IP string
}

// Service manages and verifies API keys. It is safe for concurrent use.
// Create it with [New]; run [Service.Run] in the background of a server.
type Service struct {
	st     *store.Store
	hasher *apikey.Hasher
	format apikey.Format
	log    *slog.Logger
	now    func() time.Time
	grace  time.Duration
	flush  time.Duration
	ttl    time.Duration

	// dummyHash is compared against for unknown IDs, so that an unknown
	// ID costs the same hash and compare as a wrong secret.
	dummyHash []byte

	cache    cache
	limiter  ratelimit.Limiter
	usage    usageLog
	auditLog auditQueue
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Hasher == nil {
		return nil, errors.New("keyauth: Config.Store and Config.Hasher are required")
	}
	if err := cfg.Format.Validate(); err != nil {
		return nil, fmt.Errorf("keyauth: %w", err)
	}
	s := &Service{
		st:     cfg.Store,
		hasher: cfg.Hasher,
		format: cfg.Format,
		log:    cfg.Logger,
		now:    cfg.Now,
		grace:  cfg.Grace,
		flush:  cfg.FlushInterval,
		ttl:    cfg.CacheTTL,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.grace <= 0 {
		s.grace = DefaultGrace
	}
	if s.flush <= 0 {
		s.flush = DefaultFlushInterval
	}
	if s.ttl <= 0 {
		s.ttl = DefaultCacheTTL
	}
	queue := cfg.AuditQueue
	if queue <= 0 {
		queue = 10000
	}
	s.auditLog.max = queue
	s.cache.init()
	s.limiter = cfg.Limiter
	if s.limiter == nil {
		s.limiter = ratelimit.NewLocal(s.now)
	}
	s.usage.m = map[string]*usage{}
	s.dummyHash = s.hasher.Hash("gatehouse keyauth dummy")
	return s, nil
}

// Format returns the key format of this deployment.
func (s *Service) Format() apikey.Format { return s.format }

// Status names the state of a key at time now: "active", "rotating" (rotated,
// still within its grace period), "rotated", "expired" or "revoked".
func Status(k store.APIKey, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return "revoked"
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return "expired"
	case k.ReplacedBy != "" && !now.Before(k.GraceUntil):
		return "rotated"
	case k.ReplacedBy != "":
		return "rotating"
	}
	return "active"
}

// Live reports whether k would be accepted at time now (ignoring IP and
// rate limits).
func Live(k store.APIKey, now time.Time) bool {
	st := Status(k, now)
	return st == "active" || st == "rotating"
}

// Masked returns the displayable form of a stored key: prefix, environment,
// ID and its last four characters.
func Masked(k store.APIKey) string {
	return k.Prefix + "_" + k.Env + "_" + k.ID + "…" + k.Last4
}

// Params are the settings of a new key, or the new settings of a key.
type Params struct {
	// Name says what the key is for. Required.
	Name string
	// Owner is the user or service the key belongs to.
	Owner string
	// Scopes are the granted scopes; none means ["read"].
	Scopes []string
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// AllowedIPs are CIDRs (or single addresses) the key may be used from;
	// none means anywhere.
	AllowedIPs []string
	// RateLimit requests per RateWindow; zero means unlimited.
	RateLimit  int
	RateWindow time.Duration
}

// check validates p and normalises its scopes and allowed IPs.
func (p *Params) check(now time.Time, creating bool) error {
	if strings.TrimSpace(p.Name) == "" {
		return fmt.Errorf("%w: a name is required", ErrInvalid)
	}
	if len(p.Name) > 200 || len(p.Owner) > 200 {
		return fmt.Errorf("%w: name and owner are limited to 200 bytes", ErrInvalid)
	}
	if len(p.Scopes) == 0 {
		p.Scopes = []string{DefaultScope}
	}
	for _, sc := range p.Scopes {
		if !validScope(sc) {
			return fmt.Errorf("%w: scope %q: want printable ASCII without spaces, quotes or backslashes", ErrInvalid, sc)
		}
	}
	p.Scopes = slices.Compact(slices.Sorted(slices.Values(p.Scopes)))
	ips := make([]string, 0, len(p.AllowedIPs))
	for _, s := range p.AllowedIPs {
		pfx, err := parsePrefix(s)
		if err != nil {
			return fmt.Errorf("%w: allowed IP %q: want a CIDR such as 192.0.2.0/24 or an address", ErrInvalid, s)
		}
		ips = append(ips, pfx.String())
	}
	p.AllowedIPs = ips
	if p.RateLimit < 0 || (p.RateLimit > 0 && p.RateWindow <= 0) {
		return fmt.Errorf("%w: a rate limit needs a positive count and window", ErrInvalid)
	}
	if p.RateLimit == 0 {
		p.RateWindow = 0
	}
	if creating && !p.ExpiresAt.IsZero() && !p.ExpiresAt.After(now) {
		return fmt.Errorf("%w: the expiry time is in the past", ErrInvalid)
	}
	return nil
}

// validScope reports whether sc is an RFC 6749 scope token (section 3.3).
func validScope(sc string) bool {
	if sc == "" || len(sc) > 200 {
		return false
	}
	for i := 0; i < len(sc); i++ {
		c := sc[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// parsePrefix parses a CIDR or a single address (as a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Create makes a new key with the settings p, stores its hash, and returns
// the record and the key. The key's plaintext is in the returned Key only:
// show it to the owner once.
func (s *Service) Create(ctx context.Context, p Params, by Actor) (store.APIKey, apikey.Key, error) {
	now := s.now()
	if err := p.check(now, true); err != nil {
		return store.APIKey{}, apikey.Key{}, err
	}
	key, err := s.format.Generate()
	if err != nil {
		return store.APIKey{}, apikey.Key{}, fmt.Errorf("keyauth: generate key: %w", err)
	}
	rec := store.APIKey{
		ID: key.ID, Prefix: key.Prefix, Env: key.Env, Last4: last4(key), Hash: s.hasher.Hash(key.Plaintext()),
		Name: p.Name, Owner: p.Owner, Scopes: p.Scopes, AllowedIPs: p.AllowedIPs,
		RateLimit: p.RateLimit, RateWindow: p.RateWindow, ExpiresAt: p.ExpiresAt,
		CreatedAt: now, UpdatedAt: now,
	}
	if err := s.st.CreateAPIKey(ctx, rec); err != nil {
		return store.APIKey{}, apikey.Key{}, fmt.Errorf("keyauth: create key: %w", err)
	}
	rec, err = s.st.APIKey(ctx, rec.ID)
	if err != nil {
		return store.APIKey{}, apikey.Key{}, fmt.Errorf("keyauth: create key: %w", err)
	}
	s.cache.forget(rec.ID)
	s.auditNow(ctx, by, EventCreate, rec, OutcomeSuccess, map[string]any{"name": rec.Name, "scopes": rec.Scopes})
	return rec, key, nil
}

func last4(k apikey.Key) string {
	p := k.Plaintext()
	return p[len(p)-4:]
}

// List returns keys selected by f. Records never hold a key, only its hash.
func (s *Service) List(ctx context.Context, f store.APIKeyFilter) ([]store.APIKey, error) {
	keys, err := s.st.APIKeys(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("keyauth: list keys: %w", err)
	}
	return keys, nil
}

// Show returns the key with the given ID; an unknown or malformed ID wraps
// [store.ErrNotFound].
func (s *Service) Show(ctx context.Context, id string) (store.APIKey, error) {
	if !apikey.ValidID(id) {
		return store.APIKey{}, fmt.Errorf("keyauth: key %q: %w", id, store.ErrNotFound)
	}
	k, err := s.st.APIKey(ctx, id)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("keyauth: %w", err)
	}
	return k, nil
}

// Update replaces the settings of key id with p (Owner is ignored: a key
// does not change hands).
func (s *Service) Update(ctx context.Context, id string, p Params, by Actor) (store.APIKey, error) {
	if err := p.check(s.now(), false); err != nil {
		return store.APIKey{}, err
	}
	if !apikey.ValidID(id) {
		return store.APIKey{}, fmt.Errorf("keyauth: key %q: %w", id, store.ErrNotFound)
	}
	rec, err := s.st.UpdateAPIKey(ctx, store.APIKey{ID: id, Name: p.Name, Scopes: p.Scopes, AllowedIPs: p.AllowedIPs,
		RateLimit: p.RateLimit, RateWindow: p.RateWindow, ExpiresAt: p.ExpiresAt})
	if err != nil {
		return store.APIKey{}, fmt.Errorf("keyauth: update key: %w", err)
	}
	s.refresh(ctx, id)
	s.auditNow(ctx, by, EventUpdate, rec, OutcomeSuccess, map[string]any{"scopes": rec.Scopes,
		"allowed_ips": rec.AllowedIPs, "rate_limit": rec.RateLimit, "rate_window": rec.RateWindow.String()})
	return rec, nil
}

// Revoke revokes key id at once. Revoking a revoked key is not an error.
// Every server following the change feed refuses it within about a second.
func (s *Service) Revoke(ctx context.Context, id string, by Actor) (store.APIKey, error) {
	if !apikey.ValidID(id) {
		return store.APIKey{}, fmt.Errorf("keyauth: key %q: %w", id, store.ErrNotFound)
	}
	rec, err := s.st.RevokeAPIKey(ctx, id, s.now())
	if err != nil {
		return store.APIKey{}, fmt.Errorf("keyauth: revoke key: %w", err)
	}
	s.refresh(ctx, id)
	s.auditNow(ctx, by, EventRevoke, rec, OutcomeSuccess, nil)
	return rec, nil
}

// Rotate issues a new key that replaces key id, with the same owner, name,
// scopes, limits, expiry and use count; the old key keeps working for grace
// (zero means the service's default, negative means not at all) and is then
// refused with [apikey.ReasonRotated]. It returns the old and new records and
// the new key, whose plaintext is shown once.
func (s *Service) Rotate(ctx context.Context, id string, grace time.Duration, by Actor) (old, created store.APIKey, key apikey.Key, err error) {
	if !apikey.ValidID(id) {
		return old, created, key, fmt.Errorf("keyauth: key %q: %w", id, store.ErrNotFound)
	}
	if grace == 0 {
		grace = s.grace
	}
	now := s.now()
	graceUntil := now
	if grace > 0 {
		graceUntil = now.Add(grace)
	}
	key, err = s.format.Generate()
	if err != nil {
		return old, created, key, fmt.Errorf("keyauth: generate key: %w", err)
	}
	next := store.APIKey{ID: key.ID, Prefix: key.Prefix, Env: key.Env, Last4: last4(key),
		Hash: s.hasher.Hash(key.Plaintext()), CreatedAt: now}
	old, created, err = s.st.RotateAPIKey(ctx, id, next, graceUntil)
	if err != nil {
		return store.APIKey{}, store.APIKey{}, apikey.Key{}, fmt.Errorf("keyauth: rotate key: %w", err)
	}
	s.refresh(ctx, id)
	s.cache.forget(created.ID)
	s.auditNow(ctx, by, EventRotate, old, OutcomeSuccess, map[string]any{"new_key_id": created.ID,
		"grace_until": graceUntil.UTC().Format(time.RFC3339)})
	return old, created, key, nil
}

// Events returns the audit events about key id, oldest first, after the
// event ID after.
func (s *Service) Events(ctx context.Context, id string, after int64, limit int) ([]store.AuditEvent, error) {
	evs, err := s.st.AuditEvents(ctx, store.AuditFilter{Target: id, After: after, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("keyauth: audit events: %w", err)
	}
	return evs, nil
}
