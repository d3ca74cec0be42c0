package guard

// These tests run the guard against Gatehouse's real verification endpoint
// (internal/keyauth over SQLite), so that a change of the wire contract on
// either side fails here. Only tests import internal packages; the guard
// itself does not (see TestImports).

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/token"
)

func TestContractWithKeyauth(t *testing.T) {
	st := storetest.OpenSQLite(t)
	h, err := apikey.NewHasher(bytes.Repeat([]byte("p"), 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := keyauth.New(keyauth.Config{Store: st, Hasher: h, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux, keyauth.Routes{Verify: keyauth.BearerToken("svc-token", "service")})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	verifier, err := NewHTTPKeyVerifier(HTTPKeyVerifierConfig{URL: srv.URL + DefaultVerifyPath, Token: "svc-token"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{APIKeys: verifier})
	if err != nil {
		t.Fatal(err)
	}
	handler := g.Require(Policy{AllOf: []string{"invoices:read"}})(echo)
	by := keyauth.Actor{Name: "test"}
	create := func(p keyauth.Params) (string, string) {
		t.Helper()
		rec, key, err := svc.Create(t.Context(), p, by)
		if err != nil {
			t.Fatal(err)
		}
		return rec.ID, key.Plaintext()
	}
	_, good := create(keyauth.Params{Name: "good", Owner: "team-a", Scopes: []string{"invoices:read", "invoices:write"},
		ExpiresAt: time.Now().Add(time.Hour)})
	_, narrow := create(keyauth.Params{Name: "narrow", Owner: "team-b", Scopes: []string{"reports:read"}})
	_, fenced := create(keyauth.Params{Name: "fenced", Owner: "team-c", Scopes: []string{"invoices:read"},
		AllowedIPs: []string{"198.51.100.0/24"}})
	_, limited := create(keyauth.Params{Name: "limited", Owner: "team-d", Scopes: []string{"invoices:read"},
		RateLimit: 2, RateWindow: time.Hour})
	revokedID, revoked := create(keyauth.Params{Name: "revoked", Owner: "team-e", Scopes: []string{"invoices:read"}})

	// Every key from Gatehouse's own generator has the shape the guard
	// expects.
	for _, k := range []string{good, narrow, fenced, limited, revoked} {
		if !looksLikeAPIKey(k) || !validKeyChecksum(k) || kindOf(k) != token.KindAPIKey {
			t.Errorf("generated key not recognised as an API key")
		}
	}
	wrongSecret := []byte(good)
	wrongSecret[len(good)-10] ^= 1

	tests := []struct {
		name   string
		key    string
		from   string
		status int
		body   string
	}{
		{"good key", good, "192.0.2.1:1", 200, "apikey team-a invoices:read,invoices:write"},
		{"good key, bearer", "", "192.0.2.1:1", 200, "apikey team-a invoices:read,invoices:write"},
		{"insufficient scope", narrow, "192.0.2.1:1", 403, ""},
		{"IP allowed", fenced, "198.51.100.9:1", 200, "apikey team-c invoices:read"},
		{"IP not allowed", fenced, "192.0.2.1:1", 401, ""},
		{"wrong secret", string(wrongSecret), "192.0.2.1:1", 401, ""},
		{"rate limit 1", limited, "192.0.2.1:1", 200, "apikey team-d invoices:read"},
		{"rate limit 2", limited, "192.0.2.1:1", 200, "apikey team-d invoices:read"},
		{"rate limit exceeded", limited, "192.0.2.1:1", 429, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/invoices", nil)
			req.RemoteAddr = tt.from
			if tt.key == "" {
				req.Header.Set("Authorization", "Bearer "+good)
			} else {
				req.Header.Set("X-API-Key", tt.key)
			}
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status: got %d, want %d", rec.Code, tt.status)
			}
			if tt.body != "" && rec.Body.String() != tt.body {
				t.Errorf("body: got %q, want %q", rec.Body, tt.body)
			}
		})
	}

	t.Run("revoked at Gatehouse and on the feed", func(t *testing.T) {
		send := func() int {
			req := httptest.NewRequest(http.MethodGet, "/invoices", nil)
			req.Header.Set("X-API-Key", revoked)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			return rec.Code
		}
		if got := send(); got != 200 {
			t.Fatalf("before revocation: got %d, want 200", got)
		}
		if _, err := svc.Revoke(t.Context(), revokedID, by); err != nil {
			t.Fatal(err)
		}
		g.Revoke(token.KindAPIKey, revokedID)
		if got := send(); got != 401 {
			t.Errorf("after revocation: got %d, want 401", got)
		}
	})
}
