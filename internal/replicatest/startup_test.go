package replicatest

import (
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// TestBadReplicaStart starts a replica next to a running one on the same
// PostgreSQL schema with a wrong master secret, then against a schema a
// newer binary migrated: each refuses to start with a clear message, and
// changes nothing in the store or in the running replica. (The same checks
// on SQLite, in process: internal/server TestNewErrors "wrong master
// secret" and internal/store TestSchemaTooNew.)
func TestBadReplicaStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gatehouse processes")
	}
	url := storetest.PostgresURL(t)
	c := newCluster(t, url)
	good := c.serve("good")
	m2m := createClient(t, good.Base, ccClientBody)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	snapshot := func() string {
		t.Helper()
		var b strings.Builder
		for _, q := range []string{
			"SELECT count(*) FROM signing_keys", "SELECT count(*) FROM changes", "SELECT count(*) FROM meta",
			"SELECT count(*) FROM clients", "SELECT coalesce(max(version), 0) FROM schema_migrations",
		} {
			var n int64
			if err := db.QueryRow(q).Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			b.WriteString(q + " = " + strconv.FormatInt(n, 10) + "; ")
		}
		return b.String()
	}

	tests := []struct {
		name    string
		prepare func(c *cluster)
		wantMsg string
	}{
		{"wrong master secret", func(c *cluster) {
			c.env = append(c.env, "GATEHOUSE_SECRET=another-master-secret-0123456789abcdef")
		}, "master secret does not match"},
		{"schema newer than the binary", func(c *cluster) {
			if _, err := db.Exec("INSERT INTO schema_migrations (version, name, applied_at) SELECT max(version) + 1, 'from_the_future', 0 FROM schema_migrations"); err != nil {
				t.Fatal(err)
			}
		}, "schema is newer than this binary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := newCluster(t, url)
			bad.data = c.data
			tc.prepare(bad)
			before := snapshot()
			p := bad.start("bad")
			select {
			case <-p.Done():
			case <-p.Ready():
				t.Fatal("the replica started")
			case <-time.After(30 * time.Second):
				t.Fatal("the replica neither started nor stopped within 30s")
			}
			if p.Err() == nil {
				t.Fatal("exit status 0, want a failure")
			}
			if log := p.Log(); !strings.Contains(log, tc.wantMsg) {
				t.Fatalf("log does not say %q:\n%s", tc.wantMsg, log)
			}
			if after := snapshot(); after != before {
				t.Errorf("the refused start changed the store:\nbefore %s\nafter  %s", before, after)
			}
			// The running replica is unaffected.
			if at, a := clientCredentials(good.Base, m2m); at == "" {
				t.Errorf("the running replica after the refused start: %v", a)
			}
			t.Logf("refused: %s", lastLine(p.Log()))
		})
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
