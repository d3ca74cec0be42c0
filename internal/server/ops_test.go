package server

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// metricValue returns the value of the sample named series (name with
// labels, as exposed) on base's /metrics, or -1 if it is missing.
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	_, body := get(t, base+"/metrics")
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// TestOperatingMetrics drives some traffic and housekeeping and checks the
// operating signals on /metrics: store latency per class, cache hits and
// misses, change-feed lag and position, rows deleted per table.
func TestOperatingMetrics(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			var shift atomic.Int64
			clock := func() time.Time { return now.Add(time.Duration(shift.Load())) }
			srv, base := start(t, Config{DBURL: be.db(t), Now: clock})
			st := srv.Store()

			// Five denylist entries that expire in a minute, one that stays.
			for i := range 5 {
				if err := st.RevokeToken(ctx, "hk-"+strconv.Itoa(i), "c", now.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.RevokeToken(ctx, "hk-live", "c", now.Add(48*time.Hour)); err != nil {
				t.Fatal(err)
			}
			last, err := st.LastChange(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The change feed applies them: its position and lag show.
			deadline := time.Now().Add(5 * time.Second)
			for metricValue(t, base, "gatehouse_change_feed_applied_seq") < float64(last) {
				if time.Now().After(deadline) {
					t.Fatalf("gatehouse_change_feed_applied_seq = %v, want %d within 5 s",
						metricValue(t, base, "gatehouse_change_feed_applied_seq"), last)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if n := metricValue(t, base, "gatehouse_change_feed_lag_seconds_count"); n < 6 {
				t.Errorf("gatehouse_change_feed_lag_seconds_count = %v, want >= 6", n)
			}
			if sum := metricValue(t, base, "gatehouse_change_feed_lag_seconds_sum"); sum < 0 || sum > 6*5 {
				t.Errorf("gatehouse_change_feed_lag_seconds_sum = %v, want between 0 and 30 s for 6 changes", sum)
			}
			if at := metricValue(t, base, "gatehouse_change_feed_applied_change_timestamp_seconds"); at < float64(now.Unix()-60) {
				t.Errorf("applied change timestamp = %v, want about %d", at, now.Unix())
			}

			// Housekeeping after the expiry deletes the five, and counts them.
			shift.Store(int64(time.Hour))
			if err := srv.housekeep(ctx); err != nil {
				t.Fatal(err)
			}
			if n := metricValue(t, base, `gatehouse_housekeeping_deleted_rows_total{table="revoked_tokens"}`); n != 5 {
				t.Errorf("deleted revoked_tokens = %v, want 5", n)
			}
			if n := metricValue(t, base, `gatehouse_housekeeping_deleted_rows_total{table="sessions"}`); n != 0 {
				t.Errorf("deleted sessions = %v, want 0 (shown, nothing deleted)", n)
			}
			if _, err := st.RevokedToken(ctx, "hk-live"); err != nil {
				t.Errorf("unexpired denylist entry: %v, want kept", err)
			}
			// The run at start is in the background: on a busy machine
			// it may not have finished yet.
			runs := `gatehouse_housekeeping_runs_total{result="ok"}`
			for deadline := time.Now().Add(10 * time.Second); metricValue(t, base, runs) < 1 && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			if n := metricValue(t, base, runs); n < 1 {
				t.Errorf("housekeeping runs ok = %v, want >= 1 (the run at start, within 10 s)", n)
			}

			// Store latency: reads, writes and transactions were timed.
			for _, op := range []string{"read", "write", "tx"} {
				if n := metricValue(t, base, `gatehouse_store_operation_duration_seconds_count{op="`+op+`"}`); n < 1 {
					t.Errorf("store %s operations = %v, want >= 1", op, n)
				}
			}

			// API-key cache: a new key misses once, then hits.
			_, key, err := srv.apikeys.Create(ctx, keyauth.Params{Name: "metrics"}, keyauth.Actor{Name: "test"})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if r, err := srv.apikeys.Check(ctx, key.Plaintext(), netip.Addr{}); err != nil || r.Reason != "" {
					t.Fatalf("Check(new key) = %+v, %v", r, err)
				}
			}
			if n := metricValue(t, base, `gatehouse_cache_requests_total{cache="apikey",result="hit"}`); n < 2 {
				t.Errorf("apikey cache hits = %v, want >= 2", n)
			}
			if n := metricValue(t, base, `gatehouse_cache_requests_total{cache="apikey",result="miss"}`); n < 1 {
				t.Errorf("apikey cache misses = %v, want >= 1", n)
			}
			if metricValue(t, base, `gatehouse_cache_requests_total{cache="client",result="miss"}`) < 0 {
				t.Error("client cache series missing")
			}
		})
	}
}

// TestReadOnlyStore: a store that cannot be written is reported clearly
// at start-up, and nothing stored is changed.
func TestReadOnlyStore(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		url := storetest.PostgresURL(t)
		ctx := context.Background()
		srv, err := New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: t.TempDir(), DBURL: url})
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := srv.Store().LastChange(ctx)
		srv.Close()
		// As on a hot standby: every transaction is read-only.
		ro := url + "&default_transaction_read_only=on"
		_, err = New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: t.TempDir(), DBURL: ro})
		if err == nil || !errors.Is(err, store.ErrReadOnly) || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("New on a read-only database: %v, want a read-only error", err)
		}
		st := storetest.OpenURL(t, url)
		if got, err := st.LastChange(ctx); err != nil || got != seq {
			t.Errorf("LastChange after the refused start = %d, %v; want %d", got, err, seq)
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		ctx := context.Background()
		srv, err := New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		srv.Close()
		db := filepath.Join(dir, "gatehouse.db")
		before, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		makeReadOnly(t, db)
		_, err = New(ctx, Config{Issuer: "http://127.0.0.1:1", DataDir: dir})
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("New on a read-only SQLite file: %v, want a read-only error", err)
		}
		after, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		if string(before) != string(after) {
			t.Error("the database file changed")
		}
	})
}

// makeReadOnly makes path unwritable even for root (who ignores file
// modes): chmod 0444, and as root the immutable attribute, removed again
// when the test ends.
func makeReadOnly(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return
	}
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i (needed to make a file read-only for root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", path).Run() })
}
