package keyauth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

const (
	serviceToken = "service-token-0123456789"
	adminToken   = "admin-token-0123456789"
)

func newHTTP(t *testing.T, f *fixture) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	f.svc.Register(mux, Routes{
		Verify: AnyOf(BearerToken(serviceToken, "service"), BearerToken(adminToken, "admin")),
		Admin:  BearerToken(adminToken, "admin"),
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type httpResult struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, method, u, auth string, header map[string]string, body string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := httpResult{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	json.Unmarshal(b, &r.body)
	return r
}

func TestVerifyEndpoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		srv := newHTTP(t, f)
		u := srv.URL + VerifyPath
		rec, key := f.create(t, Params{Name: "svc", Owner: "billing", Scopes: []string{"read", "write"},
			ExpiresAt: f.clock.Now().Add(48 * time.Hour), RateLimit: 10, RateWindow: time.Minute})
		_, ipKey := f.create(t, Params{Name: "ip", AllowedIPs: []string{"203.0.113.0/24"}})
		_, oneKey := f.create(t, Params{Name: "one", RateLimit: 1, RateWindow: time.Hour})
		unknown, _ := apikey.Format{}.Generate()

		tests := []struct {
			name       string
			auth       string
			header     map[string]string
			body       string
			wantStatus int
			wantActive bool
			wantReason string
		}{
			{"no caller credentials", "", map[string]string{HeaderAPIKey: key}, "", 401, false, ""},
			{"wrong caller token", "nope", map[string]string{HeaderAPIKey: key}, "", 401, false, ""},
			{"header", serviceToken, map[string]string{HeaderAPIKey: key}, "", 200, true, ""},
			{"body", serviceToken, nil, `{"key":"` + key + `"}`, 200, true, ""},
			{"admin token", adminToken, nil, `{"key":"` + key + `"}`, 200, true, ""},
			{"header and body", serviceToken, map[string]string{HeaderAPIKey: key}, `{"key":"` + key + `"}`, 400, false, ""},
			{"no key", serviceToken, nil, "", 400, false, ""},
			{"bad JSON", serviceToken, nil, `{"key":`, 400, false, ""},
			{"bad remote_ip", serviceToken, nil, `{"key":"` + key + `","remote_ip":"x"}`, 400, false, ""},
			{"unknown ID", serviceToken, map[string]string{HeaderAPIKey: unknown.Plaintext()}, "", 200, false, ""},
			{"wrong secret", serviceToken, map[string]string{HeaderAPIKey: otherSecret(key)}, "", 200, false, ""},
			{"malformed", serviceToken, map[string]string{HeaderAPIKey: "gk_live_x"}, "", 200, false, ""},
			{"remote_ip allowed", serviceToken, nil, `{"key":"` + ipKey + `","remote_ip":"203.0.113.9"}`, 200, true, ""},
			{"remote_ip denied", serviceToken, nil, `{"key":"` + ipKey + `","remote_ip":"198.51.100.1"}`, 200, false, ""},
			{"caller address used without remote_ip", serviceToken, map[string]string{HeaderAPIKey: ipKey}, "", 200, false, ""},
			{"rate limit: first", serviceToken, map[string]string{HeaderAPIKey: oneKey}, "", 200, true, ""},
			{"rate limit: over", serviceToken, map[string]string{HeaderAPIKey: oneKey}, "", 200, false, "rate_limited"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := do(t, "POST", u, tc.auth, tc.header, tc.body)
				if r.status != tc.wantStatus {
					t.Fatalf("status = %d, want %d; body %s", r.status, tc.wantStatus, r.raw)
				}
				if r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
				}
				if tc.wantStatus == 401 && r.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if tc.wantStatus != 200 {
					return
				}
				if got := r.body["active"] == true; got != tc.wantActive {
					t.Errorf("active = %v, want %v; body %s", got, tc.wantActive, r.raw)
				}
				reason, _ := r.body["reason"].(string)
				if reason != tc.wantReason {
					t.Errorf("reason = %q, want %q", reason, tc.wantReason)
				}
				if !tc.wantActive && tc.wantReason == "" && len(r.body) != 1 {
					t.Errorf("refusal body = %s, want only {\"active\":false}", r.raw)
				}
				if tc.wantReason == "rate_limited" && r.body["retry_after"] == nil {
					t.Error("rate_limited without retry_after")
				}
			})
		}

		// The accepted answer carries owner, scopes, expiry and the rate limit.
		r := do(t, "POST", u, serviceToken, map[string]string{HeaderAPIKey: key}, "")
		var got VerifyResponse
		json.Unmarshal([]byte(r.raw), &got)
		if got.KeyID != rec.ID || got.Owner != "billing" || got.Subject != "billing" || got.Scope != "read write" ||
			got.ExpiresAt == nil || !got.ExpiresAt.Equal(rec.ExpiresAt) || got.Exp != rec.ExpiresAt.Unix() ||
			got.RateLimit == nil || got.RateLimit.Limit != 10 || got.RateLimit.Remaining == nil || *got.RateLimit.Remaining != 6 {
			t.Errorf("verify answer = %s", r.raw)
		}

		// Unknown ID and wrong secret: byte-identical answers.
		a := do(t, "POST", u, serviceToken, map[string]string{HeaderAPIKey: unknown.Plaintext()}, "")
		b := do(t, "POST", u, serviceToken, map[string]string{HeaderAPIKey: otherSecret(key)}, "")
		if a.status != b.status || a.raw != b.raw {
			t.Errorf("unknown ID answer %d %q differs from wrong secret answer %d %q", a.status, a.raw, b.status, b.raw)
		}
	})
}

func TestKeyInQuery(t *testing.T) {
	st := storetest.OpenSQLite(t)
	f := newFixture(t, st)
	srv := newHTTP(t, f)
	ctx := context.Background()
	rec, key := f.create(t, Params{Name: "leaked"})
	tests := []struct {
		name, query string
		flagged     bool
	}{
		{"valid key as api_key", "api_key=" + key, true},
		{"valid key in another parameter", "q=" + url.QueryEscape("x "+key+" y"), true},
		{"garbage api_key", "api_key=hello", false},
		{"fake key shape", "key=gk_live_nothing", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.AppendAudit(ctx); err != nil {
				t.Fatal(err)
			}
			before, _ := st.AuditEvents(ctx, store.AuditFilter{Event: EventExposed})
			r := do(t, "POST", srv.URL+VerifyPath+"?"+tc.query, serviceToken, map[string]string{HeaderAPIKey: key}, "")
			if r.status != 400 || r.body["error"] != "invalid_request" || !strings.Contains(r.raw, "query string") {
				t.Errorf("status %d body %s; want 400 invalid_request explaining the query string", r.status, r.raw)
			}
			if strings.Contains(r.raw, key) {
				t.Error("the answer repeats the key")
			}
			after, _ := st.AuditEvents(ctx, store.AuditFilter{Event: EventExposed})
			if flagged := len(after) > len(before); flagged != tc.flagged {
				t.Errorf("flagged = %v, want %v", flagged, tc.flagged)
			}
		})
	}
	got, _ := st.APIKey(ctx, rec.ID)
	if got.ExposedAt.IsZero() {
		t.Error("ExposedAt not set")
	}
	// The admin API refuses keys in queries too, even unauthenticated.
	if r := do(t, "GET", srv.URL+AdminKeysPath+"?key="+key, "", nil, ""); r.status != 400 {
		t.Errorf("admin API with a key in the query: status %d, want 400", r.status)
	}
	// Innocent query parameters pass.
	if r := do(t, "GET", srv.URL+AdminKeysPath+"?limit=5", adminToken, nil, ""); r.status != 200 {
		t.Errorf("admin list with ?limit=5: status %d, want 200; %s", r.status, r.raw)
	}
}

func TestVerifyEndpointStoreDown(t *testing.T) {
	st := storetest.OpenSQLite(t)
	f := newFixture(t, st)
	srv := newHTTP(t, f)
	_, key := f.create(t, Params{Name: "k"})
	st.Close()
	r := do(t, "POST", srv.URL+VerifyPath, serviceToken, map[string]string{HeaderAPIKey: key}, "")
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("store down: status %d (Retry-After %q), want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

func TestAdminAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		srv := newHTTP(t, f)
		base := srv.URL + AdminKeysPath

		for _, auth := range []string{"", serviceToken} {
			if r := do(t, "GET", base, auth, nil, ""); r.status != 401 {
				t.Errorf("list with token %q: status %d, want 401", auth, r.status)
			}
		}
		invalid := []string{
			`{}`,
			`{"name":"x","scopes":["a b"]}`,
			`{"name":"x","allowed_ips":["nope"]}`,
			`{"name":"x","rate_limit":"lots"}`,
			`{"name":"x","expires_in":"-1h"}`,
			`{"name":"x","expires_in":"1h","expires_at":"2040-01-01T00:00:00Z"}`,
			`{"name":"x","unknown":1}`,
			`{"name":"x","grace":"1h"}`,
			`not json`,
		}
		for _, body := range invalid {
			if r := do(t, "POST", base, adminToken, nil, body); r.status != 400 {
				t.Errorf("create %s: status %d, want 400; %s", body, r.status, r.raw)
			}
		}

		r := do(t, "POST", base, adminToken, nil,
			`{"name":"ci","owner":"team-a","scopes":["read","deploy"],"expires_in":"24h","allowed_ips":["10.0.0.0/8"],"rate_limit":"100/m"}`)
		if r.status != 201 {
			t.Fatalf("create: status %d, %s", r.status, r.raw)
		}
		id, _ := r.body["id"].(string)
		key, _ := r.body["key"].(string)
		if _, err := f.svc.Format().Parse(key); err != nil || !strings.Contains(key, id) {
			t.Fatalf("create: key %q for id %q does not parse: %v", key, id, err)
		}
		if r.body["status"] != "active" || r.body["owner"] != "team-a" {
			t.Errorf("create answer = %s", r.raw)
		}

		for _, path := range []string{base, base + "/" + id} {
			r := do(t, "GET", path, adminToken, nil, "")
			if r.status != 200 || strings.Contains(r.raw, key) || strings.Contains(r.raw, key[len(key)-10:]) {
				t.Errorf("GET %s: status %d, or the key is shown: %s", path, r.status, r.raw)
			}
			if !strings.Contains(r.raw, id) {
				t.Errorf("GET %s does not list %s", path, id)
			}
		}

		r = do(t, "PATCH", base+"/"+id, adminToken, nil, `{"scopes":["read"],"rate_limit":"0"}`)
		if r.status != 200 || r.body["rate_limit"] != nil || r.body["name"] != "ci" {
			t.Errorf("PATCH: status %d, %s; want scopes changed, rate limit gone, name kept", r.status, r.raw)
		}
		if r := do(t, "PATCH", base+"/"+id, adminToken, nil, `{"owner":"someone-else"}`); r.status != 400 {
			t.Errorf("PATCH owner: status %d, want 400", r.status)
		}

		r = do(t, "POST", base+"/"+id+"/rotate", adminToken, nil, `{"grace":"1h"}`)
		newKey, _ := r.body["key"].(string)
		newID, _ := r.body["id"].(string)
		replaces, _ := r.body["replaces"].(map[string]any)
		if r.status != 201 || newKey == "" || newID == id || replaces == nil || replaces["status"] != "rotating" {
			t.Fatalf("rotate: status %d, %s", r.status, r.raw)
		}
		if r := do(t, "POST", base+"/"+id+"/rotate", adminToken, nil, ""); r.status != 409 {
			t.Errorf("second rotate: status %d, want 409", r.status)
		}
		r = do(t, "POST", base+"/"+newID+"/revoke", adminToken, nil, "")
		if r.status != 200 || r.body["status"] != "revoked" {
			t.Errorf("revoke: status %d, %s", r.status, r.raw)
		}
		r = do(t, "GET", base+"/"+id+"/events", adminToken, nil, "")
		var evs struct {
			Events []struct{ Event, Actor string }
		}
		json.Unmarshal([]byte(r.raw), &evs)
		var names []string
		for _, e := range evs.Events {
			names = append(names, e.Event+"/"+e.Actor)
		}
		if want := []string{"apikey.create/admin", "apikey.update/admin", "apikey.rotate/admin"}; !slices.Equal(names, want) {
			t.Errorf("events = %v, want %v", names, want)
		}
		for _, path := range []string{"/000000000000", "/nope", "/000000000000/events"} {
			if r := do(t, "GET", base+path, adminToken, nil, ""); r.status != 404 {
				t.Errorf("GET %s: status %d, want 404", path, r.status)
			}
		}
		if r := do(t, "POST", base+"/000000000000/revoke", adminToken, nil, ""); r.status != 404 {
			t.Errorf("revoke unknown: status %d, want 404", r.status)
		}
	})
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in     string
		n      int
		window time.Duration
		ok     bool
	}{
		{"", 0, 0, true},
		{"0", 0, 0, true},
		{"100/m", 100, time.Minute, true},
		{"10/s", 10, time.Second, true},
		{"5000/hour", 5000, time.Hour, true},
		{"30/10s", 30, 10 * time.Second, true},
		{"-1/s", 0, 0, false},
		{"10", 0, 0, false},
		{"10/fortnight", 0, 0, false},
		{"10/-1s", 0, 0, false},
		{"x/s", 0, 0, false},
	}
	for _, tc := range tests {
		n, w, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || n != tc.n || w != tc.window {
			t.Errorf("ParseRate(%q) = %d, %v, %v; want %d, %v, ok=%v", tc.in, n, w, err, tc.n, tc.window, tc.ok)
		}
	}
}
