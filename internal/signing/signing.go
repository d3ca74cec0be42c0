// Package signing manages Gatehouse's signing keys: it generates them,
// keeps their private halves encrypted at rest, rotates them on a schedule
// that publishes each new key before it signs anything, and renders the
// JWKS document.
//
// Every replica derives the active key from the same store rows and its
// clock, so replicas agree without talking to each other. Rotations are
// conditional writes (see store.AddSigningKey), so replicas that race to
// rotate create exactly one new key.
package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// Defaults for Config's zero values.
const (
	DefaultRotation     = 30 * 24 * time.Hour
	DefaultJWKSMaxAge   = 5 * time.Minute
	DefaultPublishAhead = 2 * DefaultJWKSMaxAge
	DefaultRetention    = 48 * time.Hour
)

// Algorithms is the set of key chains Gatehouse keeps: ES256 signs access
// tokens, RS256 signs ID tokens (OpenID Connect requires it), EdDSA is
// available per client.
var Algorithms = []token.Algorithm{token.ES256, token.RS256, token.EdDSA}

// ErrNoActiveKey means no key of the asked algorithm is active now.
var ErrNoActiveKey = errors.New("signing: no active key")

// Config configures a Manager. Zero values mean the documented defaults.
type Config struct {
	// Store keeps the keys. Required.
	Store *store.Store
	// Sealer encrypts private keys at rest. Required.
	Sealer *secret.Sealer
	// Rotation is how long a key signs before the next one takes over.
	// Default 30 days.
	Rotation time.Duration
	// JWKSMaxAge is the Cache-Control max-age of the JWKS document.
	// Default 5 minutes.
	JWKSMaxAge time.Duration
	// PublishAhead is how long a new key is published before it signs.
	// It must be at least JWKSMaxAge; default twice JWKSMaxAge.
	PublishAhead time.Duration
	// Retention is how long a retired key stays published: at least the
	// longest lifetime of anything it signed. Default 48 hours.
	Retention time.Duration
	// Logger receives rotation events. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Key is one signing key as the manager holds it.
type Key struct {
	token.SigningKey
	ActivatesAt time.Time
	RetiresAt   time.Time // zero: not scheduled
	ExpiresAt   time.Time // zero: not scheduled
}

// State is the key's state at a given time: "next" (published, not yet
// signing), "active", "retired" (published, no longer signing).
func (k Key) State(now time.Time) string {
	switch {
	case now.Before(k.ActivatesAt):
		return "next"
	case k.RetiresAt.IsZero() || now.Before(k.RetiresAt):
		return "active"
	default:
		return "retired"
	}
}

type snapshot struct {
	keys []Key // by algorithm, then ActivatesAt ascending
	jwks []byte
}

// Manager holds the current keys in memory. Its read methods are safe for
// concurrent use and do not touch the store.
type Manager struct {
	cfg  Config
	snap atomic.Pointer[snapshot]
}

// New checks cfg and returns a Manager. Call Init before use.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, errors.New("signing: Store and Sealer are required")
	}
	if cfg.Rotation == 0 {
		cfg.Rotation = DefaultRotation
	}
	if cfg.JWKSMaxAge == 0 {
		cfg.JWKSMaxAge = DefaultJWKSMaxAge
	}
	if cfg.PublishAhead == 0 {
		cfg.PublishAhead = 2 * cfg.JWKSMaxAge
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.PublishAhead < cfg.JWKSMaxAge {
		return nil, fmt.Errorf("signing: publish-ahead %v is shorter than the JWKS cache lifetime %v", cfg.PublishAhead, cfg.JWKSMaxAge)
	}
	if cfg.Rotation <= cfg.PublishAhead {
		return nil, fmt.Errorf("signing: rotation period %v must be longer than publish-ahead %v", cfg.Rotation, cfg.PublishAhead)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg}, nil
}

// JWKSMaxAge returns the cache lifetime to advertise for the JWKS document.
func (m *Manager) JWKSMaxAge() time.Duration { return m.cfg.JWKSMaxAge }

// Init makes sure every algorithm has an active key (creating the first
// ones on a fresh store) and loads the keys.
func (m *Manager) Init(ctx context.Context) error {
	if err := m.Reload(ctx); err != nil {
		return err
	}
	now := m.cfg.Now()
	for _, alg := range Algorithms {
		if _, err := m.activeAt(alg, now); err == nil {
			continue
		}
		// No active key: the first start, or every key expired while the
		// server was down. Create one that signs at once; nothing can have
		// cached a JWKS without it.
		if _, err := m.add(ctx, alg, now, true); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return m.Reload(ctx)
}

// Reload reads the keys from the store and swaps them in. The server calls
// it when the change feed reports a signing-key change.
func (m *Manager) Reload(ctx context.Context) error {
	recs, err := m.cfg.Store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("signing: load keys: %w", err)
	}
	now := m.cfg.Now()
	keys := make([]Key, 0, len(recs))
	pubs := make([]token.PublicKey, 0, len(recs))
	for _, r := range recs {
		if !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt) {
			continue
		}
		k, err := m.open(r)
		if err != nil {
			return err
		}
		keys = append(keys, k)
		pubs = append(pubs, k.Public())
	}
	jwks, err := token.MarshalJWKS(pubs...)
	if err != nil {
		return fmt.Errorf("signing: render JWKS: %w", err)
	}
	m.snap.Store(&snapshot{keys: keys, jwks: jwks})
	return nil
}

func (m *Manager) open(r store.SigningKey) (Key, error) {
	der, err := m.cfg.Sealer.Open(r.Private, []byte(r.ID))
	if err != nil {
		return Key{}, fmt.Errorf("signing: key %s: %w (is GATEHOUSE_SECRET the one the store was created with?)", r.ID, err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return Key{}, fmt.Errorf("signing: key %s: parse: %w", r.ID, err)
	}
	signer, ok := pk.(crypto.Signer)
	if !ok {
		return Key{}, fmt.Errorf("signing: key %s: not a signer", r.ID)
	}
	return Key{
		SigningKey:  token.SigningKey{ID: r.ID, Algorithm: token.Algorithm(r.Algorithm), Signer: signer},
		ActivatesAt: r.ActivatesAt,
		RetiresAt:   r.RetiresAt,
		ExpiresAt:   r.ExpiresAt,
	}, nil
}

// Active returns the key that signs for alg now.
func (m *Manager) Active(alg token.Algorithm) (token.SigningKey, error) {
	k, err := m.activeAt(alg, m.cfg.Now())
	return k.SigningKey, err
}

func (m *Manager) activeAt(alg token.Algorithm, now time.Time) (Key, error) {
	s := m.snap.Load()
	if s == nil {
		return Key{}, ErrNoActiveKey
	}
	var best *Key
	for i := range s.keys {
		k := &s.keys[i]
		if k.Algorithm == alg && k.State(now) == "active" {
			if best == nil || k.ActivatesAt.After(best.ActivatesAt) {
				best = k
			}
		}
	}
	if best == nil {
		return Key{}, fmt.Errorf("%w for %s", ErrNoActiveKey, alg)
	}
	return *best, nil
}

// Ready reports whether every algorithm has an active key.
func (m *Manager) Ready() bool {
	now := m.cfg.Now()
	for _, alg := range Algorithms {
		if _, err := m.activeAt(alg, now); err != nil {
			return false
		}
	}
	return true
}

// JWKS returns the pre-rendered JWKS document: the public halves of every
// key that is next, active or retired but not yet expired.
func (m *Manager) JWKS() []byte {
	if s := m.snap.Load(); s != nil {
		return s.jwks
	}
	return []byte(`{"keys":[]}`)
}

// Keys returns the keys currently held, for listing.
func (m *Manager) Keys() []Key {
	if s := m.snap.Load(); s != nil {
		return append([]Key(nil), s.keys...)
	}
	return nil
}

// Rotate starts a rotation of alg now: a new key is published at once and
// takes over signing after PublishAhead, so that every JWKS cache has seen
// it first. With immediate (for a compromised key) it signs at once; caches
// that do not know it yet refetch on the unknown kid.
func (m *Manager) Rotate(ctx context.Context, alg token.Algorithm, immediate bool) (Key, error) {
	now := m.cfg.Now()
	at := now.Add(m.cfg.PublishAhead)
	if immediate {
		at = now
	}
	if immediate {
		// A key scheduled to take over later has never signed anything;
		// the emergency key goes in front of it, so it is dropped.
		if _, err := m.cfg.Store.DeletePendingSigningKeys(ctx, string(alg), now); err != nil {
			return Key{}, fmt.Errorf("signing: %w", err)
		}
	} else {
		// A rotation already under way is the one asked for.
		if err := m.Reload(ctx); err != nil {
			return Key{}, err
		}
		for _, k := range m.Keys() {
			if k.Algorithm == alg && k.State(now) == "next" {
				return k, nil
			}
		}
	}
	var id string
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		// On ErrConflict another process rotated between our read and
		// write: retry on fresh rows.
		if id, err = m.add(ctx, alg, at, false); !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return Key{}, err
	}
	if err := m.Reload(ctx); err != nil {
		return Key{}, err
	}
	for _, k := range m.Keys() {
		if k.ID == id {
			return k, nil
		}
	}
	return Key{}, fmt.Errorf("signing: rotated key %s not found after reload", id)
}

// Tick runs the schedule once: it starts the next rotation of each chain
// when the active key is due (publishing the successor PublishAhead before
// the handover), and deletes keys whose retention has passed. Replicas may
// all call it; the store's conditional write lets exactly one succeed.
func (m *Manager) Tick(ctx context.Context) error {
	now := m.cfg.Now()
	recs, err := m.cfg.Store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("signing: load keys: %w", err)
	}
	changed := false
	for _, alg := range Algorithms {
		newest, ok := newestOf(recs, alg)
		if !ok {
			if _, err := m.add(ctx, alg, now, false); err != nil && !errors.Is(err, store.ErrConflict) {
				return err
			}
			changed = true
			continue
		}
		handover := newest.ActivatesAt.Add(m.cfg.Rotation)
		if now.Before(handover.Add(-m.cfg.PublishAhead)) {
			continue
		}
		at := handover
		if earliest := now.Add(m.cfg.PublishAhead); at.Before(earliest) {
			at = earliest // the server was down past the handover
		}
		_, err := m.addAfter(ctx, alg, at, newest.ID)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		changed = true
		if err == nil {
			m.cfg.Logger.Info("signing key rotation scheduled", "alg", string(alg), "activates_at", at)
		}
	}
	n, err := m.cfg.Store.DeleteExpiredSigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("signing: delete expired keys: %w", err)
	}
	if n > 0 || changed {
		return m.Reload(ctx)
	}
	return nil
}

func newestOf(recs []store.SigningKey, alg token.Algorithm) (store.SigningKey, bool) {
	var best store.SigningKey
	ok := false
	for _, r := range recs {
		if r.Algorithm == string(alg) && (!ok || r.ActivatesAt.After(best.ActivatesAt)) {
			best, ok = r, true
		}
	}
	return best, ok
}

// add creates a key for alg activating at `at`, after the chain's current
// newest key (read fresh from the store), and returns its id. With
// onlyIfNone it does nothing (and returns "") when another process already
// made an active key.
func (m *Manager) add(ctx context.Context, alg token.Algorithm, at time.Time, onlyIfNone bool) (string, error) {
	recs, err := m.cfg.Store.SigningKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("signing: load keys: %w", err)
	}
	newest, ok := newestOf(recs, alg)
	expect := ""
	if ok {
		if onlyIfNone {
			now := m.cfg.Now()
			for _, r := range recs {
				k := Key{ActivatesAt: r.ActivatesAt, RetiresAt: r.RetiresAt}
				if r.Algorithm == string(alg) && k.State(now) == "active" && (r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt)) {
					return "", nil
				}
			}
		}
		expect = newest.ID
		if !at.After(newest.ActivatesAt) {
			// Keys of a chain activate in order, a millisecond apart at least.
			at = newest.ActivatesAt.Add(time.Millisecond)
		}
	}
	return m.addAfter(ctx, alg, at, expect)
}

func (m *Manager) addAfter(ctx context.Context, alg token.Algorithm, at time.Time, expectNewest string) (string, error) {
	rec, err := m.generate(alg, at)
	if err != nil {
		return "", err
	}
	// The predecessor stops signing at `at` and stays published until
	// everything it signed has expired and every JWKS cache has moved on.
	prevExpires := at.Add(m.cfg.Retention + m.cfg.JWKSMaxAge)
	if err := m.cfg.Store.AddSigningKey(ctx, rec, expectNewest, prevExpires); err != nil {
		return "", fmt.Errorf("signing: add %s key: %w", alg, err)
	}
	return rec.ID, nil
}

// generate makes a new key pair for alg and seals its private half.
func (m *Manager) generate(alg token.Algorithm, at time.Time) (store.SigningKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case token.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case token.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case token.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return store.SigningKey{}, fmt.Errorf("signing: unsupported algorithm %q", alg)
	}
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("signing: generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("signing: marshal %s key: %w", alg, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("signing: marshal %s public key: %w", alg, err)
	}
	id := secret.RandomString(12)
	return store.SigningKey{
		ID:          id,
		Algorithm:   string(alg),
		Public:      pub,
		Private:     m.cfg.Sealer.Seal(der, []byte(id)),
		CreatedAt:   m.cfg.Now(),
		ActivatesAt: at,
	}, nil
}
