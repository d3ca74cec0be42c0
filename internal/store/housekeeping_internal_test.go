package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHousekeepingUsesIndexes checks, on SQLite, that every housekeeping
// delete finds its rows through an index. A full scan holds the write lock
// for as long as the table is large, however few rows have expired (before
// the indexes of migration 8: 250 ms per run with 200,000 live refresh
// families, every writer waiting).
func TestHousekeepingUsesIndexes(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "plan.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(expiredPrunes, auditPrune, changesPrune) {
		q := "EXPLAIN QUERY PLAN SELECT " + strings.Trim(p.key, "()") + " FROM " + p.table + " WHERE " + p.where + " LIMIT 1000"
		rows, err := s.db.QueryContext(ctx, q, 1)
		if err != nil {
			t.Fatalf("%s: %v", p.table, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if len(plan) == 0 {
			t.Fatalf("%s: no query plan", p.table)
		}
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN ") {
				t.Errorf("%s: housekeeping scans a whole table: %s", p.table, strings.Join(plan, "; "))
			}
		}
	}
}

// TestFamilyExpiry checks refresh_families.expires_at: migration 8 fills
// it in from the tokens already stored, a redemption sets it, and later
// tokens in the family extend it, never shorten it.
func TestFamilyExpiry(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "fam.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	ms := all[DialectSQLite]
	for range 7 { // the schema before migration 8
		if _, err := s.migrateOne(ctx, ms[:7]); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().Truncate(time.Millisecond)
	t1, t2 := now.Add(time.Hour), now.Add(2*time.Hour)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO users (id, username, password_hash, created_at, updated_at) VALUES ('u', 'u', 'x', 0, 0)", nil},
		{"INSERT INTO refresh_families (id, client_id, user_id, scopes, auth_time, created_at) VALUES ('old', 'c', 'u', '', 0, 0)", nil},
		{"INSERT INTO refresh_families (id, client_id, user_id, scopes, auth_time, created_at) VALUES ('empty', 'c', 'u', '', 0, 0)", nil},
		{"INSERT INTO refresh_tokens (hash, family_id, scopes, created_at, expires_at) VALUES (x'01', 'old', '', 0, $1)", []any{millis(t1)}},
		{"INSERT INTO family_access_tokens (jti, family_id, expires_at) VALUES ('a', 'old', $1)", []any{millis(t2)}},
	} {
		if _, err := s.db.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	expiry := func(id string) time.Time {
		t.Helper()
		var ms int64
		if err := s.db.QueryRowContext(ctx, "SELECT expires_at FROM refresh_families WHERE id = $1", id).Scan(&ms); err != nil {
			t.Fatalf("family %s: %v", id, err)
		}
		return fromMillis(ms)
	}
	if got := expiry("old"); !got.Equal(t2) {
		t.Errorf("migrated family: expires_at %v, want the later of its tokens, %v", got, t2)
	}
	if got := expiry("empty"); !got.IsZero() {
		t.Errorf("migrated empty family: expires_at %v, want 0", got)
	}

	code := AuthCode{Hash: []byte("code"), ClientID: "c", UserID: "u", RedirectURI: "https://app/cb",
		CodeChallenge: "ch", ExpiresAt: now.Add(time.Minute)}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	rt := &RefreshToken{Hash: []byte("rt1"), ExpiresAt: t2}
	if _, err := s.RedeemAuthCode(ctx, code.Hash, "new", now, rt, IssuedToken{ID: "at1", ExpiresAt: t1}); err != nil {
		t.Fatal(err)
	}
	if got := expiry("new"); !got.Equal(t2) {
		t.Errorf("after redemption: expires_at %v, want %v", got, t2)
	}
	t3 := now.Add(3 * time.Hour)
	if _, err := s.RotateRefreshToken(ctx, []byte("rt1"), RefreshToken{Hash: []byte("rt2"), ExpiresAt: t3},
		IssuedToken{ID: "at2", ExpiresAt: t1}, now, 0); err != nil {
		t.Fatal(err)
	}
	if got := expiry("new"); !got.Equal(t3) {
		t.Errorf("after rotation: expires_at %v, want %v", got, t3)
	}
	if err := s.AddToFamily(ctx, "new", nil, IssuedToken{ID: "at3", ExpiresAt: t1}); err != nil {
		t.Fatal(err)
	}
	if got := expiry("new"); !got.Equal(t3) {
		t.Errorf("after an earlier-expiring token: expires_at %v, want it kept at %v", got, t3)
	}
}
