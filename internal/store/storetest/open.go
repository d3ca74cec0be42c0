package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// EnvPostgres names the environment variable holding the PostgreSQL URL
// tests use, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const EnvPostgres = "GATEHOUSE_TEST_POSTGRES"

// SQLiteURL returns the URL of a new, empty SQLite database file in a
// temporary directory that is removed when the test ends.
func SQLiteURL(tb testing.TB) string {
	tb.Helper()
	return "sqlite:" + filepath.Join(tb.TempDir(), "gatehouse.db")
}

// PostgresURL returns the URL of a new, empty schema in the PostgreSQL
// database named by $GATEHOUSE_TEST_POSTGRES: the schema is created with a
// random name, selected through the URL's search_path parameter, and dropped
// with everything in it when the test ends, so tests can run in parallel and
// repeatedly. When the variable is unset the test is skipped, except when
// $CI is "true", where it fails: PostgreSQL tests must run in CI. An
// unreachable server fails the test.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not set, but CI=true: PostgreSQL tests must run in CI", EnvPostgres)
		}
		tb.Skipf("%s is not set; skipping PostgreSQL tests", EnvPostgres)
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("%s is not a valid URL", EnvPostgres) // the URL may hold a password: do not print it
	}
	schema := "t_" + randomHex(8)
	if err := adminExec(base, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("PostgreSQL at %s: create test schema: %v", EnvPostgres, err)
	}
	tb.Cleanup(func() {
		if err := adminExec(base, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("PostgreSQL: drop test schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// adminExec runs one statement on a short-lived connection to base.
func adminExec(base, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

// OpenURL opens a Store on url without migrating it and closes it when the
// test ends. It fails the test if Open fails.
func OpenURL(tb testing.TB, url string) *store.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// OpenSQLite returns a migrated Store on a new SQLite file, closed when the
// test ends.
func OpenSQLite(tb testing.TB) *store.Store {
	tb.Helper()
	return migrated(tb, OpenURL(tb, SQLiteURL(tb)))
}

// OpenPostgres returns a migrated Store on a new PostgreSQL schema (see
// [PostgresURL]), closed and dropped when the test ends.
func OpenPostgres(tb testing.TB) *store.Store {
	tb.Helper()
	return migrated(tb, OpenURL(tb, PostgresURL(tb)))
}

func migrated(tb testing.TB, s *store.Store) *store.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
