// Package server wires Gatehouse together: the store, the master secret,
// signing keys, the change feed and the HTTP endpoints. It is the only
// package that imports everything.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/console"
	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/signing"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Issuer is the issuer identifier and public base URL. It must be
	// https unless it is a loopback http URL. Required.
	Issuer string
	// DataDir holds the SQLite file and the generated master secret.
	// Default "gatehouse-data".
	DataDir string
	// DBURL is "sqlite:PATH" or a postgres:// URL. Default: the SQLite
	// file gatehouse.db in DataDir.
	DBURL string
	// DBMaxConns is, on PostgreSQL, the most database connections this
	// process holds (see store.Options.MaxConns). Zero: the store's
	// default, four per CPU and at least 8.
	DBMaxConns int
	// Secret is the master secret (GATEHOUSE_SECRET). Empty: read or
	// generate DataDir/master.key.
	Secret string
	// TLSCert and TLSKey are PEM files; when both are set, Serve speaks
	// HTTPS.
	TLSCert, TLSKey string
	// KeyRotation is the signing-key rotation period. Default 30 days.
	KeyRotation time.Duration
	// Logger is the structured logger. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// AccessTokenTTL is the default access-token lifetime. Default 15 min.
	AccessTokenTTL time.Duration
	// SecretGrace is how long a client's previous secret keeps working
	// after a rotation. Default 24 h.
	SecretGrace time.Duration
	// AdminToken enables the admin API under /admin/ (bearer token).
	// Empty disables it.
	AdminToken string
	// InitialAccessToken enables Dynamic Client Registration (RFC 7591)
	// for callers presenting it. Empty disables it.
	InitialAccessToken string
	// DCRAllowPrivateJWKSURI lets dynamically registered clients name a
	// jwks_uri on a non-public address (oauth.Config).
	DCRAllowPrivateJWKSURI bool

	// APIKeyFormat is the prefix and environment of API keys: new keys
	// get it, and only keys of it are accepted. Default "gk", "live".
	APIKeyFormat apikey.Format
	// APIKeyGrace is how long a rotated API key keeps working by default.
	// Default 24 h.
	APIKeyGrace time.Duration

	// AuditRetention is how long audit events are kept. Default 90 days.
	AuditRetention time.Duration
	// ChangeRetention is how long change-feed rows are kept: a follower
	// (another replica, a gateway on the revocation feed) that is away
	// longer starts over from the current state. Default 7 days.
	ChangeRetention time.Duration
	// HousekeepingInterval is how often expired rows and rows past their
	// retention are deleted (in batches; see store.Store.Housekeep).
	// Default 5 min.
	HousekeepingInterval time.Duration

	// RedisURL, if set, is the Redis that shares rate limits and login
	// throttling across replicas (redis://, rediss:// or unix://). While
	// it is unreachable, limits are enforced per process.
	RedisURL string
}

// Server is a running Gatehouse authorization server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	master  *secret.Master
	keys    *signing.Manager
	oauth   *oauth.Provider
	apikeys *keyauth.Service
	console *console.Console
	metrics *metrics
	feed    *feedHub // the revocation feed's fan-out

	limiter     ratelimit.Limiter // API keys' and clients' rate limits
	localLimits *ratelimit.Local  // per process; the fallback when limits is set
	limits      *ratelimit.Redis  // shared limits; nil without --redis

	handler http.Handler
	tlsConf *tls.Config

	discovery        []byte
	jwksCacheControl []string // the JWKS answer's Cache-Control value
	lastSeq          int64
	// onChange maps a change kind to what the server does when another
	// process makes such a change.
	onChange map[string]func(context.Context, []store.Change) error

	bg     sync.WaitGroup
	cancel context.CancelFunc
}

// CheckIssuer returns an error if issuer is not an acceptable issuer
// identifier: an absolute https URL without query or fragment, or an http
// URL on a loopback host (for development).
func CheckIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("issuer %q is not an absolute URL without query, fragment or user info", issuer)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("issuer %q must use https:// (plain http is allowed only on 127.0.0.1, [::1] or localhost)", issuer)
	default:
		return fmt.Errorf("issuer %q must be an https:// URL", issuer)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DefaultDBURL returns the SQLite URL of the store in dataDir.
func DefaultDBURL(dataDir string) string {
	return "sqlite:" + filepath.Join(dataDir, "gatehouse.db")
}

// OpenStore opens and migrates the store named by cfg, creating the data
// directory if needed, and checks that the master secret is the one the
// store was initialised with. It is shared by `serve` and the offline admin
// commands.
func OpenStore(ctx context.Context, cfg Config) (*store.Store, *secret.Master, error) {
	return openStore(ctx, cfg, nil)
}

// openStore is OpenStore with the store's latency hook (may be nil).
func openStore(ctx context.Context, cfg Config, observe func(string, time.Duration)) (*store.Store, *secret.Master, error) {
	cfg = withDefaults(cfg)
	if err := ensureDataDir(cfg.DataDir); err != nil {
		return nil, nil, err
	}
	master, generated, err := secret.Load(cfg.Secret, cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	if generated {
		cfg.Logger.Warn("generated a master secret in the data directory; production deployments should set GATEHOUSE_SECRET and keep it safe",
			"file", filepath.Join(cfg.DataDir, secret.FileName))
	}
	st, err := store.Open(ctx, cfg.DBURL, store.Options{Logger: cfg.Logger, Observe: observe, MaxConns: cfg.DBMaxConns})
	if err != nil {
		return nil, nil, fmt.Errorf("open store: %w", err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("migrate store: %w", readOnlyHint(err))
	}
	stored, err := st.PutMetaIfAbsent(ctx, "master_check", master.CheckValue())
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("check master secret: %w", readOnlyHint(err))
	}
	if err := master.Verify(stored); err != nil {
		st.Close()
		return nil, nil, errors.New("the master secret does not match the one this store was created with: set GATEHOUSE_SECRET (or restore master.key in the data directory) to the original secret")
	}
	return st, master, nil
}

// readOnlyHint explains a store error that says the database is read-only.
func readOnlyHint(err error) error {
	if errors.Is(err, store.ErrReadOnly) {
		return fmt.Errorf("the database is read-only (file or directory permissions, a read-only mount, "+
			"a PostgreSQL standby or default_transaction_read_only); Gatehouse must be able to write to it: %w", err)
	}
	return err
}

func ensureDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("data directory %s exists but is not a directory", dir)
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("data directory: %w", err)
	}
}

func withDefaults(cfg Config) Config {
	if cfg.DataDir == "" {
		cfg.DataDir = "gatehouse-data"
	}
	if cfg.DBURL == "" {
		cfg.DBURL = DefaultDBURL(cfg.DataDir)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// NewSigning returns the signing-key manager for a store, loaded and with
// an active key for every algorithm.
func NewSigning(ctx context.Context, st *store.Store, master *secret.Master, cfg Config) (*signing.Manager, error) {
	cfg = withDefaults(cfg)
	m, err := signing.New(signing.Config{
		Store:    st,
		Sealer:   master.Sealer(secret.PurposeSigningKeys),
		Rotation: cfg.KeyRotation,
		Logger:   cfg.Logger,
		Now:      cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	if err := m.Init(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// New opens the store, loads or creates signing keys and builds the HTTP
// handler. It starts the background work (change feed, key schedule);
// Close stops it.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	if err := CheckIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("TLS needs both --tls-cert and --tls-key")
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if err := s.initRateLimits(ctx); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.metrics = newMetrics()
	st, master, err := openStore(ctx, cfg, s.metrics.observeStore)
	if err != nil {
		return nil, err
	}
	s.store, s.master = st, master
	seq, err := st.LastChange(ctx)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("read change feed: %w", err)
	}
	s.lastSeq = seq
	if s.keys, err = NewSigning(ctx, st, master, cfg); err != nil {
		st.Close()
		return nil, err
	}
	hasher, err := secret.NewHasher(master.Pepper())
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := s.initAPIKeys(ctx); err != nil {
		st.Close()
		return nil, err
	}
	s.oauth, err = oauth.NewProvider(oauth.Config{
		Issuer: cfg.Issuer, Store: st, Keys: s.keys, Hasher: hasher, Logger: cfg.Logger, Now: cfg.Now,
		AccessTokenTTL: cfg.AccessTokenTTL, SecretGrace: cfg.SecretGrace,
		AdminToken: cfg.AdminToken, InitialAccessToken: cfg.InitialAccessToken,
		DCRAllowPrivateJWKSURI: cfg.DCRAllowPrivateJWKSURI,
		APIKeys:                s.apikeys, RateLimiter: s.limiter, SharedLimits: s.limits,
	})
	if err == nil {
		err = s.oauth.Init(ctx)
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	md := s.oauth.Metadata()
	s.jwksCacheControl = []string{"public, max-age=" + strconv.Itoa(int(s.keys.JWKSMaxAge().Seconds()))}
	if s.discovery, err = md.JSON(); err != nil {
		st.Close()
		return nil, err
	}
	s.metrics.registerRateLimits(s.localLimits, s.limits)
	s.metrics.registerCaches(map[string]func() (uint64, uint64){
		"client": s.oauth.ClientCacheStats,
		"apikey": s.apikeys.CacheStats,
	})
	s.onChange = map[string]func(context.Context, []store.Change) error{
		store.ChangeSigningKey: func(ctx context.Context, cs []store.Change) error {
			if err := s.keys.Reload(ctx); err != nil {
				return err
			}
			return s.oauth.OnSigningKeyChange(ctx, cs)
		},
		store.ChangeClient:       s.oauth.OnClientChange,
		store.ChangeTokenRevoked: s.oauth.OnRevocationChange,
		store.ChangeAPIKey:       s.apikeys.OnChange,
	}
	s.feed = newFeedHub(s.lastSeq)
	if s.console, err = console.New(console.Config{Store: st, Browser: s.oauth, Hasher: hasher,
		SecretGrace: cfg.SecretGrace, Keys: s.keys, APIKeys: s.apikeys, Logger: cfg.Logger, Now: cfg.Now,
		Metrics: s.metrics.registry}); err != nil {
		st.Close()
		return nil, err
	}
	s.handler = s.routes()

	bgCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.follow(bgCtx) }()
	go func() { defer s.bg.Done(); s.schedule(bgCtx) }()
	s.bg.Go(func() { s.housekeeping(bgCtx) })
	s.bg.Go(func() { s.oauth.RunAudit(bgCtx) })
	s.bg.Go(func() { s.apikeys.Run(bgCtx) })
	s.bg.Go(func() { s.console.Run(bgCtx) })
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Store returns the server's store.
func (s *Server) Store() *store.Store { return s.store }

// Keys returns the server's signing-key manager.
func (s *Server) Keys() *signing.Manager { return s.keys }

// Serve serves HTTP (or HTTPS, when configured) on ln until ctx is done,
// then shuts down gracefully: it stops accepting, lets in-flight requests
// finish (up to 10 s), and returns. It does not close the store; Close does.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         s.tlsConf,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// Shutdown waits for streaming responses (the revocation feed) without
	// ending them; they watch this context instead.
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	hs.BaseContext = func(net.Listener) context.Context {
		return withStreamsDone(context.Background(), streams.Done())
	}
	errc := make(chan error, 1)
	go func() {
		if s.tlsConf != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down: finishing in-flight requests")
	endStreams()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the background work and closes the store.
func (s *Server) Close() error {
	s.cancel()
	s.bg.Wait()
	if s.limits != nil {
		s.limits.Close()
	}
	return s.store.Close()
}

// follow applies changes made by other processes (the CLI, other
// replicas) to the in-memory state: each change kind has one handler in
// s.onChange, called once per batch that contains that kind.
func (s *Server) follow(ctx context.Context) {
	err := s.store.Follow(ctx, s.lastSeq, func(changes []store.Change) {
		byKind := map[string][]store.Change{}
		for _, c := range changes {
			byKind[c.Kind] = append(byKind[c.Kind], c)
		}
		for kind, cs := range byKind {
			if h := s.onChange[kind]; h != nil {
				if err := h(ctx, cs); err != nil {
					s.log.Error("apply change", "kind", kind, "err", err)
				}
			}
		}
		s.metrics.applied(changes, time.Now())
		s.publishChanges(ctx, changes)
	})
	if err != nil && ctx.Err() == nil {
		s.log.Error("change feed stopped", "err", err)
	}
}

// schedule runs the signing-key rotation schedule every minute.
func (s *Server) schedule(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := s.keys.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("signing key schedule", "err", err)
		}
		s.oauth.Prune(s.cfg.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Defaults for the retention settings of Config.
const (
	DefaultAuditRetention  = 90 * 24 * time.Hour
	DefaultChangeRetention = 7 * 24 * time.Hour
)

// DefaultHousekeepingInterval is the default of Config.HousekeepingInterval.
const DefaultHousekeepingInterval = 5 * time.Minute

// housekeeping runs housekeep at start and then every
// HousekeepingInterval.
func (s *Server) housekeeping(ctx context.Context) {
	every := s.cfg.HousekeepingInterval
	if every <= 0 {
		every = DefaultHousekeepingInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		err := s.housekeep(ctx)
		if ctx.Err() != nil {
			return
		}
		s.metrics.housekept(err)
		if err != nil {
			s.log.Error("housekeeping", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// housekeep deletes expired codes, sessions, tokens, denylist entries and
// used assertions, and audit events and change-feed rows older than their
// retention, in small batches so the database does not grow without bound
// and writers are not held up. Every replica may run it; the deletes are
// idempotent.
func (s *Server) housekeep(ctx context.Context) error {
	now := s.cfg.Now()
	audit, changes := s.cfg.AuditRetention, s.cfg.ChangeRetention
	if audit <= 0 {
		audit = DefaultAuditRetention
	}
	if changes <= 0 {
		changes = DefaultChangeRetention
	}
	deleted, err := s.store.Housekeep(ctx, store.Housekeeping{
		Now: now, AuditBefore: now.Add(-audit), ChangesBefore: now.Add(-changes),
		Deleted: func(table string, n int) { s.metrics.deleted.WithLabelValues(table).Add(float64(n)) },
	})
	if n := sum(deleted); n > 0 {
		s.log.Info("housekeeping: deleted expired rows", "rows", n)
	}
	return err
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
