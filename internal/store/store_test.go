package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Store {
		return storetest.OpenURL(t, storetest.SQLiteURL(t))
	})
}

func TestPostgres(t *testing.T) {
	storetest.PostgresURL(t) // skips (or fails in CI) without a server
	storetest.Run(t, func(t *testing.T) *store.Store {
		return storetest.OpenURL(t, storetest.PostgresURL(t))
	})
}

// backends runs fn against a fresh, unmigrated database of each backend.
func backends(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, storetest.SQLiteURL(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, storetest.PostgresURL(t)) })
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSchemaTooNew(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		ctx := testCtx(t)
		s := storetest.OpenURL(t, url)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		newer := s.KnownSchemaVersion() + 1
		// What a newer binary would have left behind.
		err := store.ExecForTest(ctx, s,
			"INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from_the_future', 0)", newer)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(ctx); !errors.Is(err, store.ErrSchemaTooNew) {
			t.Errorf("Migrate() on a newer schema = %v, want ErrSchemaTooNew", err)
		}
		if v, err := s.SchemaVersion(ctx); err != nil || v != newer {
			t.Errorf("SchemaVersion() = %d, %v; want %d, nil", v, err, newer)
		}
	})
}

func TestOpenBadURL(t *testing.T) {
	const secret = "s3cr3tpw"
	tests := []struct {
		name, url, wantMsg string
	}{
		{"empty", "", "empty database URL"},
		{"unknown scheme", "mysql://root:" + secret + "@localhost/db", `unsupported database URL scheme "mysql"`},
		{"no scheme", "/var/lib/gatehouse.db", "unsupported database URL"},
		{"empty sqlite path", "sqlite:", "empty SQLite path"},
		{"sqlite query", "sqlite:x.db?_pragma=journal_mode(OFF)", "must not contain '?'"},
		{"sqlite double slash", "sqlite://x.db", "ambiguous"},
		{"postgres bad port", "postgres://u:" + secret + "@localhost:notaport/db", "invalid PostgreSQL URL"},
		{"postgres bad param", "postgres://u:" + secret + "@localhost/db?sslmode=sometimes", "invalid PostgreSQL URL"},
		{"postgres bad escape", "postgresql://u:" + secret + "%zz@localhost/db", "invalid %-escape"},
		{"postgres bad escape, short", "postgres://u:%z" + secret + "@localhost/db", "invalid PostgreSQL URL"},
		{"postgres password param", "postgres://localhost/db?password=" + secret + "&connect_timeout=x", "invalid PostgreSQL URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Open(t.Context(), tc.url, store.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) = nil error, want one containing %q", tc.url, tc.wantMsg)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Open() error = %q, want it to contain %q", err, tc.wantMsg)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Open() error %q repeats the password", err)
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Open() error %q wraps ErrUnavailable, want a configuration error", err)
			}
		})
	}
}

func TestOpenUnreachablePostgres(t *testing.T) {
	const secret = "s3cr3tpw"
	start := time.Now()
	s, err := store.Open(t.Context(), "postgres://gh:"+secret+"@127.0.0.1:1/db?connect_timeout=2&sslmode=disable", store.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open(port 1) = nil error, want ErrUnavailable")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open(port 1) = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("Open() error %q repeats the password", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open(port 1) took %v, want < 3 s", d)
	}
}

func TestOpenCorruptSQLite(t *testing.T) {
	tests := []struct {
		name    string
		content func() []byte
	}{
		{"random bytes", func() []byte { b := make([]byte, 64<<10); rand.Read(b); return b }},
		{"text file", func() []byte { return []byte("not a database\n") }},
		{"sqlite header then garbage", func() []byte {
			b := make([]byte, 8192)
			rand.Read(b)
			copy(b, "SQLite format 3\x00")
			return b
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gatehouse.db")
			content := tc.content()
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := store.Open(t.Context(), "sqlite:"+path, store.Options{})
			if err == nil {
				// Header-valid garbage may open; it must then fail cleanly.
				err = s.Migrate(t.Context())
				s.Close()
			}
			if err == nil {
				t.Fatal("Open+Migrate on a corrupt file = nil error, want an error")
			}
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "migrate") {
				t.Errorf("error %q names neither the file nor the step", err)
			}
			after, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if !bytes.Equal(after, content) {
				t.Errorf("corrupt file was modified (%d bytes before, %d after)", len(content), len(after))
			}
		})
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "gatehouse.db")
	s, err := store.Open(t.Context(), "sqlite:"+path, store.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open(missing directory) = nil error, want one")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if _, serr := os.Stat(filepath.Dir(path)); !os.IsNotExist(serr) {
		t.Errorf("Open created the missing directory (stat: %v)", serr)
	}
}

func TestSQLiteMemory(t *testing.T) {
	ctx := testCtx(t)
	s := storetest.OpenURL(t, "sqlite::memory:")
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	seq, err := s.RecordChange(ctx, "memory", "1")
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	got := make(chan int64, 1)
	go s.Follow(fctx, 0, func(cs []store.Change) { got <- cs[0].Seq; cancel() })
	select {
	case g := <-got:
		if g != seq {
			t.Errorf("Follow delivered seq %d, want %d", g, seq)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Follow on :memory: delivered nothing within 2 s")
	}
}

// TestFollowReconnectPostgres kills Follow's LISTEN connection and checks
// that changes keep arriving within 1 s, and that Follow reconnects.
func TestFollowReconnectPostgres(t *testing.T) {
	ctx := testCtx(t)
	url := storetest.PostgresURL(t)
	s := storetest.OpenURL(t, url)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pids := make(chan uint32, 10)
	store.SetListenHook(s, func(pid uint32) { pids <- pid })
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan store.Change, 100)
	go s.Follow(fctx, 0, func(cs []store.Change) {
		for _, c := range cs {
			got <- c
		}
	})
	waitPID := func() uint32 {
		t.Helper()
		select {
		case pid := <-pids:
			return pid
		case <-time.After(10 * time.Second):
			t.Fatal("Follow did not LISTEN within 10 s")
			return 0
		}
	}
	expect := func(seq int64, start time.Time) {
		t.Helper()
		select {
		case c := <-got:
			if c.Seq != seq {
				t.Errorf("delivered seq %d, want %d", c.Seq, seq)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("seq %d delivered after %v, want within 1 s", seq, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("seq %d not delivered within 5 s", seq)
		}
	}
	pid := waitPID()
	if err := store.ExecForTest(ctx, s, "SELECT pg_terminate_backend($1)", int64(pid)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	seq, err := s.RecordChange(ctx, "reconnect", "1")
	if err != nil {
		t.Fatal(err)
	}
	expect(seq, start)
	if again := waitPID(); again == pid {
		t.Errorf("reconnected with the same backend PID %d", pid)
	}
	start = time.Now()
	seq, err = s.RecordChange(ctx, "reconnect", "2")
	if err != nil {
		t.Fatal(err)
	}
	expect(seq, start)
}

func BenchmarkLastChange(b *testing.B) {
	s := storetest.OpenSQLite(b)
	ctx := context.Background()
	if _, err := s.RecordChange(ctx, "bench", ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.LastChange(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLastChangePostgres(b *testing.B) {
	s := storetest.OpenPostgres(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.LastChange(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPostgresMaxConns loads one store from 40 goroutines and checks, from
// pg_stat_activity, that it never holds more than Options.MaxConns
// connections and keeps them open when idle (no connect per request).
func TestPostgresMaxConns(t *testing.T) {
	ctx := testCtx(t)
	url := storetest.PostgresURL(t)
	app := "gatehouse-maxconns-" + rand.Text()[:8]
	s, err := store.Open(ctx, url+"&application_name="+app, store.Options{MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	backends := func() int {
		var n int
		if err := admin.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var errs atomic.Int64
	for range 40 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.Ping(ctx); err != nil {
					errs.Add(1)
				}
			}
		})
	}
	most := 0
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		most = max(most, backends())
	}
	close(stop)
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d pings failed", errs.Load())
	}
	if most > 3 {
		t.Errorf("store held %d connections under load, want at most MaxConns = 3", most)
	}
	if idle := backends(); idle != 3 {
		t.Errorf("store holds %d connections after the load, want all 3 kept open", idle)
	}
	if n := store.DefaultMaxConns(); n < 8 {
		t.Errorf("DefaultMaxConns() = %d, want at least 8", n)
	}
}
