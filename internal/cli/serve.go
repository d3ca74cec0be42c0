package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// storeFlags are the flags every command that touches the store shares.
type storeFlags struct {
	config    string
	data      string
	db        string
	logFormat string
	logLevel  string
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "TOML config `file`; keys are flag names")
	fs.StringVar(&f.data, "data", "gatehouse-data", "data `dir`ectory (SQLite file, generated master secret)")
	fs.StringVar(&f.db, "db", "", "store `URL`: sqlite:PATH or postgres://… (default: SQLite in --data)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// serverConfig turns the shared flags into a server.Config.
func (f *storeFlags) serverConfig(e *env) (server.Config, error) {
	log, err := newLogger(e.stderr, f.logFormat, f.logLevel)
	if err != nil {
		return server.Config{}, err
	}
	return server.Config{
		DataDir: f.data,
		DBURL:   f.db,
		Secret:  e.getenv("GATEHOUSE_SECRET"),
		Logger:  log,
	}, nil
}

// open opens and migrates the store the flags name, for the offline
// commands, and returns it with the master secret and the config it used.
func (f *storeFlags) open(ctx context.Context, e *env) (*store.Store, *secret.Master, server.Config, error) {
	cfg, err := f.serverConfig(e)
	if err != nil {
		return nil, nil, cfg, err
	}
	st, master, err := server.OpenStore(ctx, cfg)
	return st, master, cfg, err
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("serve", e)
	var sf storeFlags
	sf.register(fs)
	addr := fs.String("addr", "127.0.0.1:8080", "listen `address`")
	issuer := fs.String("issuer", "", "issuer `URL` (default http://<addr>); must be https:// unless on loopback")
	tlsCert := fs.String("tls-cert", "", "TLS certificate `file` (PEM); serve HTTPS")
	tlsKey := fs.String("tls-key", "", "TLS private key `file` (PEM)")
	rotation := fs.Duration("key-rotation", 30*24*time.Hour, "signing-key rotation period")
	var kf keyFormatFlags
	kf.register(fs)
	apikeyGrace := fs.Duration("apikey-grace", 24*time.Hour, "how long a rotated API key keeps working by default")
	auditRetention := fs.Duration("audit-retention", server.DefaultAuditRetention, "how long audit events are kept")
	housekeeping := fs.Duration("housekeeping-interval", server.DefaultHousekeepingInterval, "how often expired rows and rows past their retention are deleted (in batches)")
	accessTTL := fs.Duration("access-token-ttl", 15*time.Minute, "default access-token lifetime")
	secretGrace := fs.Duration("secret-grace", 24*time.Hour, "how long a client's old secret works after rotate-secret")
	adminToken := fs.String("admin-token", "", "bearer `token` for the admin API under /admin/ (at least 32 characters; unset: disabled); prefer GATEHOUSE_ADMIN_TOKEN")
	regToken := fs.String("registration-token", "", "initial access `token` for Dynamic Client Registration at /register (at least 32 characters; unset: disabled); prefer GATEHOUSE_REGISTRATION_TOKEN")
	regPrivateJWKS := fs.Bool("registration-allow-private-jwks-uri", false, "let dynamically registered clients name a jwks_uri on a loopback, private or link-local address (development and closed networks only: otherwise registration is a way into the internal network)")
	dbMaxConns := fs.Int("db-max-conns", 0, "PostgreSQL: the most database connections this process holds (0: 4 per CPU, at least 8); replicas × this must stay under the server's max_connections")
	redisURL := fs.String("redis", "", "Redis `URL` (redis://[:password@]host:port/db) to share rate limits and login throttling across replicas (unset: per process)")
	if err := parse(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: serve takes no arguments", ErrUsage)
	}
	cfg, err := sf.serverConfig(e)
	if err != nil {
		return err
	}
	cfg.TLSCert, cfg.TLSKey, cfg.KeyRotation = *tlsCert, *tlsKey, *rotation
	if cfg.APIKeyFormat, err = kf.format(); err != nil {
		return err
	}
	cfg.APIKeyGrace = *apikeyGrace
	cfg.AuditRetention = *auditRetention
	cfg.HousekeepingInterval = *housekeeping
	cfg.RedisURL = *redisURL
	if *dbMaxConns < 0 {
		return fmt.Errorf("%w: --db-max-conns must not be negative", ErrUsage)
	}
	cfg.DBMaxConns = *dbMaxConns
	cfg.AccessTokenTTL, cfg.SecretGrace = *accessTTL, *secretGrace
	for name, tok := range map[string]string{"admin-token": *adminToken, "registration-token": *regToken} {
		if tok != "" && len(tok) < 32 {
			return fmt.Errorf("%w: --%s must be at least 32 characters", ErrUsage, name)
		}
	}
	cfg.AdminToken, cfg.InitialAccessToken = *adminToken, *regToken
	cfg.DCRAllowPrivateJWKSURI = *regPrivateJWKS
	cfg.Issuer = *issuer
	if cfg.Issuer == "" {
		scheme := "http"
		if cfg.TLSCert != "" {
			scheme = "https"
		}
		cfg.Issuer = scheme + "://" + *addr
	}
	if err := server.CheckIssuer(cfg.Issuer); err != nil {
		return fmt.Errorf("%w (set --issuer to the public URL clients use)", err)
	}

	tuneGC()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	releaseStartupMemory()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	cfg.Logger.Info("gatehouse ready", "addr", ln.Addr().String(), "issuer", cfg.Issuer,
		"store", srv.Store().Dialect(), "startup", time.Since(start).Round(time.Millisecond))
	return srv.Serve(ctx, ln)
}

func runMigrate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("migrate", e)
	var sf storeFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, e, args); err != nil {
		return err
	}
	st, _, _, err := sf.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"schema_version": v, "dialect": st.Dialect()})
	}
	fmt.Fprintf(e.stdout, "store is at schema version %d (%s)\n", v, st.Dialect())
	return nil
}
