// Package store keeps Gatehouse's durable state: record types, sentinel
// errors, and one SQL implementation over database/sql that runs on both
// SQLite (modernc.org/sqlite, no cgo) and PostgreSQL (pgx).
//
// Queries are written once with $1..$n placeholders; only the migrations
// (embedded, per dialect) and a few lock statements differ. Times are stored
// as integer Unix milliseconds, so they round-trip at millisecond precision
// in UTC; the zero time is stored as 0.
//
// Every write that other processes must notice inserts a row into the
// changes table in the same transaction; see [Store.Follow].
//
// Adding a record kind (clients, API keys, ...) means: a new migration in
// both migrations/sqlite and migrations/postgres with the next version
// number; a file with the record type and its methods; writes that others
// must notice done in the tx helper with recordChange as the transaction's last
// statement; errors passed through mapErr; and subtests in storetest.Run, so
// both backends are held to the same behaviour.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Dialect names, as returned by [Store.Dialect].
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// sqliteParams are the connection parameters every pooled SQLite connection
// gets. synchronous=FULL in WAL mode makes every acknowledged commit durable
// across power loss (NORMAL could lose the last commits), which matters for
// revocations. _txlock=immediate makes every transaction take the write lock
// at BEGIN, so read-then-write transactions never fail with SQLITE_BUSY on
// upgrade and serve as the cross-process lock on SQLite.
const sqliteParams = "_busy_timeout=5000&_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1&_txlock=immediate"

// defaultConnectTimeout bounds a PostgreSQL connection attempt when the URL
// has no connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// Options configures a [Store]. The zero value is ready to use.
type Options struct {
	// Logger receives operational messages (migrations applied, change-feed
	// errors). Nil discards them. Secrets and URLs are never logged.
	Logger *slog.Logger

	// PollInterval is how often [Store.Follow] polls for new changes. Zero
	// means 100 ms on SQLite and 1 s on PostgreSQL, where polling is only a
	// fallback for LISTEN/NOTIFY.
	PollInterval time.Duration

	// Now returns the current time, used to timestamp changes. Nil means
	// time.Now.
	Now func() time.Time

	// Observe, if not nil, is told how long each statement or
	// transaction run through the store's helpers took, by class:
	// [OpRead], [OpWrite] or [OpTx]. It is called on the hot path and
	// must be cheap and safe for concurrent use.
	Observe func(op string, d time.Duration)

	// MaxConns is, on PostgreSQL, the most connections this process holds
	// open; requests beyond it wait for a free one. All of them are kept
	// open while idle (up to 5 minutes), so a busy server does not connect
	// and disconnect per request. Zero means [DefaultMaxConns]. Each
	// replica holds its own, so replicas × MaxConns (plus one listener
	// each) must stay under the server's max_connections. SQLite ignores it.
	MaxConns int
}

// DefaultMaxConns returns the default of Options.MaxConns: four connections
// per CPU the Go runtime may use, at least 8. A PostgreSQL server on the
// same machine gains nothing from more backends than it has cores to run
// them; far more would only add context switches and memory.
func DefaultMaxConns() int {
	return max(8, 4*runtime.GOMAXPROCS(0))
}

// Operation classes passed to Options.Observe.
const (
	OpRead  = "read"  // a query outside a transaction
	OpWrite = "write" // a statement outside a transaction
	OpTx    = "tx"    // a whole transaction, commit included
)

// observe reports the time since start to Options.Observe, if set.
func (s *Store) observe(op string, start time.Time) {
	if s.opt.Observe != nil {
		s.opt.Observe(op, time.Since(start))
	}
}

// Store is a handle on one Gatehouse database. It is safe for concurrent
// use. Create it with [Open] and release it with [Store.Close].
type Store struct {
	db       *sql.DB
	dialect  string
	rawURL   string          // as given to Open; may hold a password, never logged
	pgConfig *pgx.ConnConfig // PostgreSQL only: for the LISTEN connection
	opt      Options
	log      *slog.Logger
	poll     time.Duration

	onListen func(pid uint32) // test hook: called after LISTEN succeeds

	stmtMu sync.RWMutex
	stmts  map[string]*sql.Stmt // SQLite only: see [Store.prepared]

	// writer admits one write at a time on SQLite (nil on PostgreSQL): see
	// [Store.lockWrite].
	writer chan struct{}
}

// lockWrite waits, in arrival order, until this process may write, and
// returns the function that lets the next writer in. SQLite allows one
// writer at a time; left to its busy handler, writers that find the lock
// taken sleep and retry (1, 2, 5 … 100 ms), so under load some wait
// seconds while others pass, and a write can fail after the 5 s busy
// timeout while the database is idle half the time. Queueing writers in
// the process keeps the lock busy and the waits fair; the busy handler
// then only arbitrates between processes (a CLI command next to serve).
// On PostgreSQL it does nothing.
func (s *Store) lockWrite(ctx context.Context) (unlock func(), err error) {
	if s.writer == nil {
		return func() {}, nil
	}
	select {
	case s.writer <- struct{}{}:
		return func() { <-s.writer }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// target is a parsed database URL.
type target struct {
	dialect string
	path    string // SQLite: file path or ":memory:"
	dsn     string // SQLite: driver data source name
	pg      *pgx.ConnConfig
}

// Open connects to the database named by rawURL:
//
//   - "sqlite:PATH" opens (creating if missing) the SQLite file PATH, used
//     as-is (relative to the working directory unless absolute), in WAL
//     mode with a 5 s busy timeout, foreign keys on and synchronous=FULL.
//     "sqlite::memory:" opens a private in-memory database on a single
//     connection (for experiments; tests should prefer a temporary file).
//   - "postgres://..." or "postgresql://..." connects to PostgreSQL with
//     the pgx driver; any libpq URL parameter pgx understands may be given,
//     and unknown parameters (such as search_path) become session settings.
//     Without connect_timeout, a connection attempt gives up after 10 s.
//
// Open checks that the database can be reached and read, but does not
// migrate it; call [Store.Migrate]. A malformed URL gets a descriptive error
// that never repeats the password; an unreachable server or unopenable file
// gets an error wrapping [ErrUnavailable]; a file that is not a SQLite
// database is reported and left untouched.
func Open(ctx context.Context, rawURL string, opt Options) (*Store, error) {
	t, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	s := &Store{dialect: t.dialect, rawURL: rawURL, pgConfig: t.pg, opt: opt, log: opt.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.poll = opt.PollInterval
	switch t.dialect {
	case DialectSQLite:
		if s.poll <= 0 {
			s.poll = 100 * time.Millisecond
		}
		s.db, err = sql.Open("sqlite", t.dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite %s: %w", t.path, err)
		}
		// SQLite syncs a commit with fsync(2); fdatasync(2) makes the
		// commit just as durable (data and file size, not timestamps)
		// and is what SQLite's own Linux builds use. It is a
		// process-wide switch of the driver; where the platform lacks
		// it the error is harmless and commits keep using fsync.
		_, _ = sqlite.Fdatasync(true)
		s.stmts = make(map[string]*sql.Stmt)
		s.writer = make(chan struct{}, 1)
		if t.path == ":memory:" {
			// Each connection would get its own empty database.
			s.db.SetMaxOpenConns(1)
		}
		if err := s.checkSQLite(ctx, t.path); err != nil {
			s.db.Close()
			return nil, err
		}
	case DialectPostgres:
		if s.poll <= 0 {
			s.poll = time.Second
		}
		s.db = stdlib.OpenDB(*t.pg)
		n := opt.MaxConns
		if n <= 0 {
			n = DefaultMaxConns()
		}
		// Idle connections up to the limit stay open: with fewer idle
		// than open, every burst above the idle count would open and
		// close a connection (a backend process) per request.
		s.db.SetMaxOpenConns(n)
		s.db.SetMaxIdleConns(n)
		s.db.SetConnMaxIdleTime(5 * time.Minute)
		if err := s.Ping(ctx); err != nil {
			s.db.Close()
			return nil, fmt.Errorf("store: connect to PostgreSQL: %w", err)
		}
	}
	return s, nil
}

// checkSQLite opens a first connection and reads the schema, which fails
// cleanly (without writing) when the file is not a SQLite database.
func (s *Store) checkSQLite(ctx context.Context, path string) error {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n)
	if err == nil {
		return nil
	}
	if isSQLiteNotADatabase(err) {
		return fmt.Errorf("store: open sqlite %s: not a SQLite database, or corrupt: %w", path, err)
	}
	return fmt.Errorf("store: open sqlite %s: %w", path, mapErr(err))
}

// parseURL turns a database URL into a target, without touching the network
// or the file system. Its errors never contain the URL's password.
func parseURL(rawURL string) (target, error) {
	switch {
	case strings.HasPrefix(rawURL, "sqlite:"):
		return parseSQLiteURL(strings.TrimPrefix(rawURL, "sqlite:"))
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		return parsePostgresURL(rawURL)
	case rawURL == "":
		return target{}, errors.New(`store: empty database URL: want "sqlite:PATH" or "postgres://..."`)
	}
	scheme, _, ok := strings.Cut(rawURL, ":")
	if !ok || len(scheme) > 20 || strings.ContainsAny(scheme, "/@?# ") {
		return target{}, errors.New(`store: unsupported database URL: want "sqlite:PATH" or "postgres://..."`)
	}
	return target{}, fmt.Errorf(`store: unsupported database URL scheme %q: want "sqlite:PATH" or "postgres://..."`, scheme)
}

func parseSQLiteURL(path string) (target, error) {
	switch {
	case path == "":
		return target{}, errors.New(`store: empty SQLite path: want "sqlite:PATH"`)
	case strings.ContainsAny(path, "?\x00"):
		return target{}, errors.New(`store: SQLite path must not contain '?' or NUL: want "sqlite:PATH"`)
	case strings.HasPrefix(path, "//") && !strings.HasPrefix(path, "///"):
		return target{}, errors.New(`store: ambiguous SQLite URL "sqlite://...": want "sqlite:PATH" or "sqlite:///ABSOLUTE/PATH"`)
	}
	t := target{dialect: DialectSQLite, path: path}
	name := path
	if strings.HasPrefix(name, "file:") {
		// The driver would read "file:..." as a SQLite URI; keep it a path.
		name = "./" + name
	}
	t.dsn = name + "?" + sqliteParams
	return t, nil
}

func parsePostgresURL(rawURL string) (target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's errors repeat the URL or parts of it (an escape, a
		// "port" that may be a password after a forgotten '@'): name only
		// the kind of mistake.
		return target{}, fmt.Errorf("store: invalid PostgreSQL URL: %s", urlMistake(err))
	}
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		// pgx's message repeats the URL with the password masked where it
		// can tell which part is the password, and its wrapped errors may
		// quote parts of the URL: keep pgx's own words only.
		msg := "malformed URL"
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			msg = pgxParseMessage(pce)
		}
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		if pw := u.Query().Get("password"); pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return target{}, fmt.Errorf("store: invalid PostgreSQL URL: %s", msg)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	return target{dialect: DialectPostgres, pg: cfg}, nil
}

// pgxParseMessage extracts the description from pgx's "cannot parse
// `URL`: description (wrapped error)" message, keeping the wrapped error
// only when it quotes nothing.
func pgxParseMessage(pce *pgconn.ParseConfigError) string {
	text := pce.Error()
	inner := errors.Unwrap(pce)
	if inner != nil {
		text = strings.TrimSuffix(text, " ("+inner.Error()+")")
	}
	i := strings.LastIndex(text, "`: ")
	if i < 0 {
		return "malformed URL"
	}
	msg := text[i+len("`: "):]
	if inner != nil && !strings.ContainsAny(inner.Error(), "\"`'") {
		msg += " (" + inner.Error() + ")"
	}
	return msg
}

// urlMistake describes a url.Parse error without quoting the URL.
func urlMistake(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var escapeErr url.EscapeError
	var hostErr url.InvalidHostError
	switch {
	case errors.As(err, &escapeErr):
		return "invalid %-escape"
	case errors.As(err, &hostErr):
		return "invalid character in host"
	case strings.HasPrefix(err.Error(), "invalid port"):
		return "invalid port (is an '@' missing after the password?)"
	}
	return "malformed URL"
}

// Reopen opens another, independent Store on the same database with the same
// options, as a second process would. Tests use it to check cross-process
// behaviour; for "sqlite::memory:" the result is a different database.
func (s *Store) Reopen(ctx context.Context) (*Store, error) {
	return Open(ctx, s.rawURL, s.opt)
}

// Dialect reports the backend: [DialectSQLite] or [DialectPostgres].
func (s *Store) Dialect() string { return s.dialect }

// Close releases the database connections. Calls in progress may fail.
func (s *Store) Close() error {
	s.stmtMu.Lock()
	for q, st := range s.stmts {
		st.Close()
		delete(s.stmts, q)
	}
	s.stmtMu.Unlock()
	return s.db.Close()
}

// Ping checks that the database answers a query. Any failure wraps
// [ErrUnavailable].
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil {
		if errors.Is(err, ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.opt.Now != nil {
		return s.opt.Now()
	}
	return time.Now()
}

// tx runs fn in a transaction and commits it if fn returns nil. On SQLite
// the transaction holds the database write lock from its start. Errors are
// mapped to the package's sentinels.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.locked(ctx, func() error { return runTx(ctx, s.db, fn) })
}

// locked runs write, a transaction, holding this process's write lock (see
// [Store.lockWrite]) and observed as [OpTx].
func (s *Store) locked(ctx context.Context, write func() error) error {
	if s.opt.Observe != nil {
		defer s.observe(OpTx, time.Now())
	}
	unlock, err := s.lockWrite(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer unlock()
	return write()
}

// runTx begins a transaction on b (the pool or one connection of it), runs
// fn in it, and commits if fn returns nil, else rolls back.
func runTx(ctx context.Context, b interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}, fn func(*sql.Tx) error) error {
	tx, err := b.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return mapErr(err)
	}
	return mapErr(tx.Commit())
}

// relaxedTx is [Store.tx] for records whose loss in a machine crash costs
// a user one more click and no security property: a login session, an
// authorization code not yet redeemed, a remembered consent. On SQLite its
// commit does not wait for the disk (synchronous=NORMAL for this
// transaction), which saves one flush per sign-in and per consent (0.1-0.4
// ms each, measured in BENCHMARKS.md). Nothing is lost when the process
// alone crashes: the commit is in the operating system's cache. A power
// loss or kernel crash can lose such commits made since the last durable
// one, never a later one: the WAL is written in order, so the next durable
// commit (a code redemption, a revocation, every other write) makes every
// earlier relaxed commit durable too, and a redeemed code's record can
// never outlive its creation.
//
// On PostgreSQL it is [Store.tx]: synchronous_commit=off was measured
// there and saved nothing, since its extra statement costs a round trip
// and the next durable commit then flushes the deferred WAL.
func (s *Store) relaxedTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if s.dialect == DialectPostgres {
		return s.tx(ctx, fn)
	}
	return s.locked(ctx, func() error { return s.relaxedSQLiteTx(ctx, fn) })
}

// relaxedSQLiteTx is relaxedTx's transaction on SQLite. synchronous is a
// setting of the connection: it takes one from the pool, lowers it for
// this transaction, and raises it again before the connection goes back.
// If raising it fails, the connection is discarded rather than left to
// make other commits non-durable.
func (s *Store) relaxedSQLiteTx(ctx context.Context, fn func(*sql.Tx) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return mapErr(err)
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = FULL"); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return runTx(ctx, conn, fn)
}

// relaxedExec runs one statement as [Store.relaxedTx] does on SQLite; on
// PostgreSQL it is [Store.exec] (one round trip, no transaction).
func (s *Store) relaxedExec(ctx context.Context, query string, args ...any) error {
	if s.dialect == DialectPostgres {
		_, err := s.exec(ctx, query, args...)
		return err
	}
	return s.relaxedTx(ctx, func(tx *sql.Tx) error {
		_, err := s.txExec(ctx, tx, query, args...)
		return err
	})
}

// maxStmts bounds the prepared-statement cache. Every cached query is a
// constant of this package, so the bound is never reached in practice.
const maxStmts = 256

// prepared returns the prepared statement for query on SQLite, preparing
// it once; nil on PostgreSQL, where pgx already caches prepared statements
// per connection, or if preparing failed (the caller then runs the query
// unprepared and gets the error from there).
//
// On SQLite, parsing and planning a statement costs about as much as
// running one of ours: the authorization code flow spent a tenth of its
// CPU time in the SQL parser before statements were cached. A *sql.Stmt
// is prepared lazily on each pooled connection it runs on.
func (s *Store) prepared(ctx context.Context, query string) *sql.Stmt {
	if s.stmts == nil {
		return nil
	}
	s.stmtMu.RLock()
	st := s.stmts[query]
	s.stmtMu.RUnlock()
	if st != nil {
		return st
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st = s.stmts[query]; st != nil {
		return st
	}
	if len(s.stmts) >= maxStmts {
		return nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	s.stmts[query] = st
	return st
}

// exec runs query outside a transaction, prepared on SQLite.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s.opt.Observe != nil {
		defer s.observe(OpWrite, time.Now())
	}
	unlock, err := s.lockWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if st := s.prepared(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, query, args...)
}

// queryRow runs query outside a transaction, prepared on SQLite.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if s.opt.Observe != nil {
		defer s.observe(OpRead, time.Now())
	}
	if st := s.prepared(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, query, args...)
}

// scanner is what a record's scan function reads from: *sql.Row or
// *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// queryAll runs query outside a transaction and returns every row read by
// scan; errors are mapped (see mapErr) and wrapped with what.
func queryAll[T any](ctx context.Context, s *Store, scan func(scanner) (T, error), what, query string, args ...any) ([]T, error) {
	if s.opt.Observe != nil {
		defer s.observe(OpRead, time.Now())
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, mapErr(err))
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, mapErr(err))
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, mapErr(err))
	}
	return out, nil
}

// txExec runs query in tx, prepared on SQLite.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.prepared(ctx, query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQueryRow runs query in tx, prepared on SQLite.
func (s *Store) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := s.prepared(ctx, query); st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// lockKey names a lock that serialises one kind of write across processes.
type lockKey int32

const (
	lockMigrate lockKey = iota + 1
	lockSigningKeys
	lockChanges
)

// lock takes key for the rest of tx. On PostgreSQL it is a transaction-level
// advisory lock scoped to the current schema; on SQLite every transaction
// already holds the database write lock (BEGIN IMMEDIATE), so it is a no-op.
func (s *Store) lock(ctx context.Context, tx *sql.Tx, key lockKey) error {
	if s.dialect != DialectPostgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext(current_schema()), $1)", int32(key))
	return mapErr(err)
}

// millis converts t to stored form: Unix milliseconds, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMillis converts a stored time back: UTC, the zero time for 0.
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
