package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
)

// Migrations live in migrations/<dialect>/NNNN_name.sql. Versions start at 1
// and have no gaps; both dialects have the same versions. Each file runs in
// one transaction together with its schema_migrations row, so it must not
// contain statements that cannot run in a transaction.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// migration is one embedded schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads and checks the embedded migrations of every dialect.
var loadMigrations = sync.OnceValues(func() (map[string][]migration, error) {
	all := make(map[string][]migration)
	for _, dialect := range []string{DialectSQLite, DialectPostgres} {
		ms, err := readMigrations(migrationFiles, path.Join("migrations", dialect))
		if err != nil {
			return nil, err
		}
		all[dialect] = ms
	}
	if a, b := len(all[DialectSQLite]), len(all[DialectPostgres]); a != b {
		return nil, fmt.Errorf("store: %d SQLite migrations but %d PostgreSQL migrations", a, b)
	}
	return all, nil
})

// readMigrations reads dir's NNNN_name.sql files in version order and checks
// that the versions run 1, 2, 3, ... without gaps.
func readMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".sql")
		if !ok || e.IsDir() {
			continue
		}
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 || name == "" {
			return nil, fmt.Errorf("store: migration %s/%s: want NNNN_name.sql", dir, e.Name())
		}
		if v != len(ms)+1 {
			return nil, fmt.Errorf("store: migration %s/%s: version %d, want %d", dir, e.Name(), v, len(ms)+1)
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: read migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("store: no migrations in %s", dir)
	}
	return ms, nil
}

// KnownSchemaVersion returns the newest schema version this binary can
// migrate to.
func (s *Store) KnownSchemaVersion() int {
	all, err := loadMigrations()
	if err != nil {
		return 0
	}
	return len(all[s.dialect])
}

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)`

// Migrate brings the schema up to [Store.KnownSchemaVersion], one migration
// per transaction, each under a lock (a PostgreSQL advisory lock, the SQLite
// write lock), so processes that start at the same time apply every
// migration exactly once. It returns an error wrapping [ErrSchemaTooNew],
// and changes nothing, when the database has a newer version than this
// binary knows.
func (s *Store) Migrate(ctx context.Context) error {
	all, err := loadMigrations()
	if err != nil {
		return err
	}
	ms := all[s.dialect]
	for {
		done, err := s.migrateOne(ctx, ms)
		if err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the first pending migration, if any, and reports
// whether the schema was already up to date.
func (s *Store) migrateOne(ctx context.Context, ms []migration) (done bool, err error) {
	var applied migration
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.lock(ctx, tx, lockMigrate); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, createSchemaMigrations); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return err
		}
		switch {
		case current > len(ms):
			return fmt.Errorf("%w: database has version %d, this binary knows up to %d", ErrSchemaTooNew, current, len(ms))
		case current == len(ms):
			done = true
			return nil
		}
		m := ms[current] // versions are 1..n without gaps
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("apply %04d_%s: %w", m.version, m.name, err)
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
			m.version, m.name, s.now().UnixMilli())
		applied = m
		return err
	})
	if err == nil && !done {
		s.log.Info("store: applied migration", "version", applied.version, "name", applied.name, "dialect", s.dialect)
	}
	return done, err
}

// SchemaVersion returns the database's schema version: the newest migration
// applied, or 0 for a database that was never migrated.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	exists := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
	if s.dialect == DialectPostgres {
		exists = "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0 ELSE 1 END"
	}
	var n int
	if err := s.db.QueryRowContext(ctx, exists).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", mapErr(err))
	}
	if n == 0 {
		return 0, nil
	}
	var v int
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", mapErr(err))
	}
	return v, nil
}
