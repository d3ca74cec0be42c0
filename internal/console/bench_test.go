package console_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// benchKeys is how many API keys BenchmarkConsoleAPIKeysPage stores.
const benchKeys = 100_000

// BenchmarkConsoleAPIKeysPage measures the server time of the console's
// API keys page with 100,000 keys (1,000 owners of 100 keys each), on
// SQLite and PostgreSQL: the first page, a deep page (after the 90,000th
// key), a search by owner, and a search by the start of a key ID. The
// requirement is < 100 ms per page; see the ms/page metric.
func BenchmarkConsoleAPIKeysPage(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			dbURL := storetest.SQLiteURL(b)
			if db == "postgres" {
				dbURL = storetest.PostgresURL(b)
			}
			h, cookies, ids := benchConsole(b, dbURL)
			for _, pc := range []struct{ name, query string }{
				{"first", ""},
				{"deep", "?after=" + ids[90_000]},
				{"owner", "?q=owner-0500"},
				{"id-prefix", "?q=" + ids[5_000][:4]},
			} {
				b.Run(pc.name, func(b *testing.B) {
					req := httptest.NewRequest(http.MethodGet, "/console/apikeys"+pc.query, nil)
					for _, c := range cookies {
						req.AddCookie(c)
					}
					for b.Loop() {
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<tr id="key-`) {
							b.Fatalf("status %d, no keys listed", rec.Code)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
				})
			}
		})
	}
}

// benchConsole starts a server on dbURL with an operator and benchKeys
// keys inserted in one transaction, and returns its handler, the
// operator's session cookies and the sorted key IDs.
func benchConsole(b *testing.B, dbURL string) (http.Handler, []*http.Cookie, []string) {
	b.Helper()
	ctx := context.Background()
	srv, err := server.New(ctx, server.Config{Issuer: "http://127.0.0.1", DataDir: filepath.Join(b.TempDir(), "data"),
		DBURL: dbURL, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	if _, err := oauth.CreateUser(ctx, srv.Store(), oauth.UserParams{Username: "op", Password: opPassword, Admin: true}); err != nil {
		b.Fatal(err)
	}
	ids := insertKeys(b, dbURL, benchKeys)

	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(hs.URL + "/login?return_to=/console")
	if err != nil {
		b.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		b.Fatal("no CSRF token on the login page")
	}
	resp, err = hc.PostForm(hs.URL+"/login", url.Values{"csrf_token": {string(m[1])}, "username": {"op"},
		"password": {opPassword}, "return_to": {"/console"}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign in: %d", resp.StatusCode)
	}
	u, _ := url.Parse(hs.URL)
	return srv.Handler(), jar.Cookies(u), ids
}

// insertKeys stores n API keys in one transaction, straight into the
// table (the service would spend most of the time on generating keys),
// and returns their IDs sorted.
func insertKeys(b *testing.B, dbURL string, n int) []string {
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
	stmt, err := tx.Prepare(`INSERT INTO api_keys (id, prefix, env, last4, hash, name, owner, scopes, family,
		created_at, updated_at, last_used_at, expires_at) VALUES ($1, 'gk', 'live', $2, $3, $4, $5, 'read write', $1, $6, $6, $7, $8)`)
	if err != nil {
		b.Fatal(err)
	}
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	ids := make([]string, n)
	now := time.Now().UnixMilli()
	buf := make([]byte, 12)
	for i := range n {
		rand.Read(buf)
		for j := range buf {
			buf[j] = alphabet[int(buf[j])%len(alphabet)]
		}
		ids[i] = string(buf)
		hash := make([]byte, 32)
		rand.Read(hash)
		var expires int64
		if i%3 == 0 {
			expires = now + int64(i)*1000
		}
		if _, err := stmt.Exec(ids[i], ids[i][8:], hash, fmt.Sprintf("key %d", i), fmt.Sprintf("owner-%04d", i%1000),
			now-int64(i)*1000, now-int64(i)*500, expires); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if driver == "pgx" {
		if _, err := db.Exec("ANALYZE api_keys"); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("inserted %d keys in %v", n, time.Since(start).Round(time.Millisecond))
	slices.Sort(ids)
	return ids
}
