package store

import (
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url         string
		wantDialect string
		wantDSN     string // SQLite only
		wantErr     bool
	}{
		{url: "sqlite:gatehouse-data/gatehouse.db", wantDialect: DialectSQLite,
			wantDSN: "gatehouse-data/gatehouse.db?" + sqliteParams},
		{url: "sqlite:/var/lib/gatehouse/db.sqlite", wantDialect: DialectSQLite,
			wantDSN: "/var/lib/gatehouse/db.sqlite?" + sqliteParams},
		{url: "sqlite:///abs/path.db", wantDialect: DialectSQLite, wantDSN: "///abs/path.db?" + sqliteParams},
		{url: "sqlite::memory:", wantDialect: DialectSQLite, wantDSN: ":memory:?" + sqliteParams},
		{url: "sqlite:file:x.db", wantDialect: DialectSQLite, wantDSN: "./file:x.db?" + sqliteParams},
		{url: "postgres://u:p@localhost:5432/db?sslmode=disable", wantDialect: DialectPostgres},
		{url: "postgresql://localhost/db?search_path=t_1", wantDialect: DialectPostgres},
		{url: "", wantErr: true},
		{url: "sqlite:", wantErr: true},
		{url: "sqlite:a.db?mode=ro", wantErr: true},
		{url: "sqlite:a\x00b", wantErr: true},
		{url: "sqlite://host/a.db", wantErr: true},
		{url: "SQLITE:a.db", wantErr: true},
		{url: "file:a.db", wantErr: true},
		{url: "postgres://localhost:99999999/db", wantErr: true},
		{url: "postgres://[::1/db", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseURL(tc.url)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseURL(%q) = %+v, want an error", tc.url, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseURL(%q) error = %v", tc.url, err)
			}
			if got.dialect != tc.wantDialect {
				t.Errorf("dialect = %q, want %q", got.dialect, tc.wantDialect)
			}
			if got.dsn != tc.wantDSN {
				t.Errorf("dsn = %q, want %q", got.dsn, tc.wantDSN)
			}
			if tc.wantDialect == DialectPostgres && got.pg == nil {
				t.Error("PostgreSQL config is nil")
			}
		})
	}
}

func TestParseURLPostgresDefaults(t *testing.T) {
	tests := []struct {
		url  string
		want time.Duration
	}{
		{"postgres://localhost/db", defaultConnectTimeout},
		{"postgres://localhost/db?connect_timeout=3", 3 * time.Second},
	}
	for _, tc := range tests {
		got, err := parseURL(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got.pg.ConnectTimeout != tc.want {
			t.Errorf("parseURL(%q) connect timeout = %v, want %v", tc.url, got.pg.ConnectTimeout, tc.want)
		}
	}
	got, err := parseURL("postgres://localhost/db?search_path=t_abc")
	if err != nil {
		t.Fatal(err)
	}
	if sp := got.pg.RuntimeParams["search_path"]; sp != "t_abc" {
		t.Errorf("search_path runtime param = %q, want %q", sp, "t_abc")
	}
}

// FuzzParseURL checks that parseURL never panics, that what it accepts is
// well formed, and that its errors never repeat a password.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"sqlite:a.db", "sqlite::memory:", "sqlite:///x", "sqlite:a?b", "postgres://u:p@h:5432/d?sslmode=disable",
		"postgresql://h/d?search_path=x&connect_timeout=1", "postgres://u:p%zz@h/d", "mysql://x", "",
		"postgres://h/d?password=zz&sslmode=bad", "postgres://[::1]:5432/d",
	} {
		f.Add(s, "hunter2secret")
	}
	f.Fuzz(func(t *testing.T, raw, password string) {
		got, err := parseURL(raw)
		if err == nil {
			switch got.dialect {
			case DialectSQLite:
				if got.path == "" || strings.Count(got.dsn, "?") != 1 || !strings.HasSuffix(got.dsn, "?"+sqliteParams) {
					t.Errorf("parseURL(%q) accepted a malformed SQLite target %+v", raw, got)
				}
			case DialectPostgres:
				if got.pg == nil || got.pg.ConnectTimeout <= 0 {
					t.Errorf("parseURL(%q) accepted a PostgreSQL URL without config/timeout", raw)
				}
			default:
				t.Errorf("parseURL(%q) dialect = %q", raw, got.dialect)
			}
		}
		// Embed a password and check it is never echoed.
		if len(password) < 8 || strings.ContainsAny(password, "@/:?#%[] \x00") {
			return
		}
		for _, u := range []string{
			"postgres://user:" + password + "@" + raw,
			"postgres://user:" + password + raw,
			"postgres://" + raw + "?password=" + password,
		} {
			if _, err := parseURL(u); err != nil && strings.Contains(err.Error(), password) {
				t.Errorf("parseURL(%q) error %q repeats the password", u, err)
			}
		}
	})
}
