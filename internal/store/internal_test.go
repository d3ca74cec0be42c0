package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestEmbeddedMigrations(t *testing.T) {
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	lite, pg := all[DialectSQLite], all[DialectPostgres]
	if len(lite) == 0 || len(lite) != len(pg) {
		t.Fatalf("got %d SQLite and %d PostgreSQL migrations, want the same number > 0", len(lite), len(pg))
	}
	for i := range lite {
		if lite[i].name != pg[i].name {
			t.Errorf("migration %d: SQLite name %q, PostgreSQL name %q; want the same", i+1, lite[i].name, pg[i].name)
		}
	}
}

func TestReadMigrations(t *testing.T) {
	sqlFile := &fstest.MapFile{Data: []byte("CREATE TABLE x (a INTEGER);")}
	tests := []struct {
		name        string
		files       []string
		wantVersion []int
		wantErr     string
	}{
		{"ordered", []string{"0002_b.sql", "0001_a.sql", "README.md"}, []int{1, 2}, ""},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, nil, "version 3, want 2"},
		{"not starting at 1", []string{"0002_b.sql"}, nil, "version 2, want 1"},
		{"duplicate", []string{"0001_a.sql", "0001_b.sql"}, nil, "version 1, want 2"},
		{"no name", []string{"0001.sql"}, nil, "want NNNN_name.sql"},
		{"short number", []string{"1_a.sql"}, nil, "want NNNN_name.sql"},
		{"empty", nil, nil, "no migrations"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"m/.keep": &fstest.MapFile{}}
			for _, f := range tc.files {
				fsys["m/"+f] = sqlFile
			}
			ms, err := readMigrations(fsys, "m")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("readMigrations() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.version)
			}
			if !slices.Equal(got, tc.wantVersion) {
				t.Errorf("versions = %v, want %v", got, tc.wantVersion)
			}
		})
	}
}

// TestSQLitePragmas checks that every pooled connection gets the settings
// from the DSN, not just the first one.
func TestSQLitePragmas(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "p.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var conns []*sql.Conn
	for range 3 {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	want := map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": "5000",
	}
	for i, c := range conns {
		for pragma, w := range want {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != w {
				t.Errorf("conn %d: PRAGMA %s = %q, want %q", i, pragma, got, w)
			}
		}
	}
}

func TestMapErr(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"nil", nil, nil},
		{"no rows", sql.ErrNoRows, ErrNotFound},
		{"wrapped no rows", fmt.Errorf("x: %w", sql.ErrNoRows), ErrNotFound},
		{"pg unique", &pgconn.PgError{Code: "23505"}, ErrConflict},
		{"pg foreign key", &pgconn.PgError{Code: "23503"}, nil},
		{"pg connection failure", &pgconn.PgError{Code: "08006"}, ErrUnavailable},
		{"pg shutdown", &pgconn.PgError{Code: "57P01"}, ErrUnavailable},
		{"pg syntax", &pgconn.PgError{Code: "42601"}, nil},
		{"net error", &net.OpError{Op: "dial", Err: errors.New("refused")}, ErrUnavailable},
		{"bad conn", fmt.Errorf("x: %w", sql.ErrConnDone), ErrUnavailable},
		{"pg conn closed", fmt.Errorf("create: %w", pgconn.ErrConnClosed), ErrUnavailable},
		{"canceled", context.Canceled, nil},
		{"deadline", context.DeadlineExceeded, nil},
		{"already mapped", fmt.Errorf("%w: x", ErrConflict), ErrConflict},
		{"other", errors.New("boom"), nil},
	}
	sentinels := []error{ErrNotFound, ErrConflict, ErrUnavailable}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mapErr(tc.err)
			if (got == nil) != (tc.err == nil) {
				t.Fatalf("mapErr(%v) = %v", tc.err, got)
			}
			for _, s := range sentinels {
				if is, want := errors.Is(got, s), s == tc.want; is != want {
					t.Errorf("errors.Is(mapErr(%v), %v) = %v, want %v", tc.err, s, is, want)
				}
			}
			if tc.err != nil && !errors.Is(got, tc.err) && !errors.Is(tc.err, sql.ErrNoRows) {
				t.Errorf("mapErr(%v) = %v, does not wrap the original", tc.err, got)
			}
		})
	}
}

// TestRelaxedTx checks that relaxedTx lowers the durability setting on
// SQLite for its own transaction only: the connection it used commits
// durably again afterwards, whether the transaction committed or failed.
// On PostgreSQL it is an ordinary, durable transaction.
func TestRelaxedTx(t *testing.T) {
	ctx := t.Context()
	urls := map[string]string{"sqlite": "sqlite:" + filepath.Join(t.TempDir(), "r.db")}
	if pg := os.Getenv("GATEHOUSE_TEST_POSTGRES"); pg != "" {
		urls["postgres"] = pg
	}
	for name, u := range urls {
		t.Run(name, func(t *testing.T) {
			s, err := Open(ctx, u, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.db.SetMaxOpenConns(1) // every statement below runs on the one connection
			setting := func(q interface {
				QueryRowContext(context.Context, string, ...any) *sql.Row
			}) string {
				t.Helper()
				query := "PRAGMA synchronous" // 2 FULL, 1 NORMAL
				if name == "postgres" {
					query = "SHOW synchronous_commit"
				}
				var v string
				if err := q.QueryRowContext(ctx, query).Scan(&v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			durable, relaxed := "2", "1"
			if name == "postgres" {
				durable, relaxed = "on", "on"
			}
			if got := setting(s.db); got != durable {
				t.Fatalf("before: %s, want %s", got, durable)
			}
			fail := errors.New("fail")
			for _, result := range []error{nil, fail} {
				err := s.relaxedTx(ctx, func(tx *sql.Tx) error {
					if got := setting(tx); got != relaxed {
						t.Errorf("inside relaxedTx: %s, want %s", got, relaxed)
					}
					return result
				})
				if !errors.Is(err, result) {
					t.Errorf("relaxedTx returned %v, want %v", err, result)
				}
				if got := setting(s.db); got != durable {
					t.Errorf("after relaxedTx (%v): %s, want %s", result, got, durable)
				}
			}
			// An ordinary transaction on the same connection is durable.
			if err := s.tx(ctx, func(tx *sql.Tx) error {
				if got := setting(tx); got != durable {
					t.Errorf("inside tx: %s, want %s", got, durable)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
