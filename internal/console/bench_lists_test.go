package console_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// benchRows is how many users and clients BenchmarkConsoleListPages
// stores.
const benchRows = 100_000

// BenchmarkConsoleListPages measures the server time of the users and
// clients pages with 100,000 users and 100,000 clients, on SQLite and
// PostgreSQL: the first page, a deep page and a prefix search. Users
// search by username prefix (an index range scan); clients search by ID
// or name prefix, and the name test reads client rows, so a client search
// that matches few names costs a scan (see the ms/page metric).
func BenchmarkConsoleListPages(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			dbURL := storetest.SQLiteURL(b)
			if db == "postgres" {
				dbURL = storetest.PostgresURL(b)
			}
			h, cookies, _ := benchConsole(b, dbURL)
			insertUsersAndClients(b, dbURL, benchRows)
			for _, pc := range []struct{ name, path string }{
				{"users-first", "/console/users"},
				{"users-deep", "/console/users?after=user090000"},
				{"users-search", "/console/users?q=user0500"},
				{"clients-first", "/console/clients"},
				{"clients-deep", "/console/clients?after=client090000"},
				{"clients-search-id", "/console/clients?q=client0500"},
				{"clients-search-name", "/console/clients?q=" + "Name+0500"},
			} {
				b.Run(pc.name, func(b *testing.B) {
					req := httptest.NewRequest(http.MethodGet, pc.path, nil)
					for _, c := range cookies {
						req.AddCookie(c)
					}
					for b.Loop() {
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<th scope="row">`) {
							b.Fatalf("status %d, no rows listed", rec.Code)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
				})
			}
		})
	}
}

// insertUsersAndClients stores n users and n clients in one transaction,
// straight into the tables.
func insertUsersAndClients(b *testing.B, dbURL string, n int) {
	b.Helper()
	driver, dsn := "pgx", dbURL
	if path, ok := strings.CutPrefix(dbURL, "sqlite:"); ok {
		driver, dsn = "sqlite", "file:"+path+"?_pragma=busy_timeout(30000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	users, err := tx.Prepare(`INSERT INTO users (id, username, password_hash, created_at, updated_at) VALUES ($1, $2, 'x', $3, $3)`)
	if err != nil {
		b.Fatal(err)
	}
	clients, err := tx.Prepare(`INSERT INTO clients (id, name, secret_hash, prev_secret_hash, grant_types, scopes,
		redirect_uris, audiences, exchange_audiences, created_at, updated_at)
		VALUES ($1, $2, $3, $3, '["client_credentials"]', '["read"]', '[]', '[]', '[]', $4, $4)`)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for i := range n {
		if _, err := users.Exec(fmt.Sprintf("u%06d", i), fmt.Sprintf("user%06d", i), now); err != nil {
			b.Fatal(err)
		}
		if _, err := clients.Exec(fmt.Sprintf("client%06d", i), fmt.Sprintf("Name %06d", (i*7919)%n), []byte{}, now); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if driver == "pgx" {
		if _, err := db.Exec("ANALYZE users; ANALYZE clients"); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("inserted %d users and %d clients in %v", n, n, time.Since(start).Round(time.Millisecond))
}
