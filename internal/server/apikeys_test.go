package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

const testAdminToken = "admin-token-for-tests-0123456789abcdef"

// call sends a JSON request with the admin token and decodes the answer.
func call(t *testing.T, method, url string, header map[string]string, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func active(t *testing.T, base, key string) bool {
	t.Helper()
	status, out := call(t, "POST", base+keyauth.VerifyPath, map[string]string{keyauth.HeaderAPIKey: key}, "")
	if status != 200 {
		t.Fatalf("verify: status %d, %v", status, out)
	}
	return out["active"] == true
}

// waitRefused polls base until key is refused and returns how long that
// took, failing the test after limit.
func waitRefused(t *testing.T, base, key string, from time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for active(t, base, key) {
		if time.Since(from) > limit {
			t.Fatalf("key still accepted %v after the change", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(from)
}

// TestAPIKeyPropagation runs two servers on one database: a key created,
// rotated and revoked through one is seen by the other within a second.
func TestAPIKeyPropagation(t *testing.T) {
	for _, be := range []backend{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") }},
		{"postgres", func(t *testing.T) string { return storetest.PostgresURL(t) }},
	} {
		t.Run(be.name, func(t *testing.T) {
			cfg := Config{DBURL: be.db(t), Secret: strings.Repeat("shared-secret-", 3), AdminToken: testAdminToken,
				Logger: slog.New(slog.DiscardHandler)}
			_, a := start(t, cfg)
			_, b := start(t, cfg)

			status, created := call(t, "POST", a+keyauth.AdminKeysPath, nil, `{"name":"shared","owner":"svc"}`)
			if status != 201 {
				t.Fatalf("create on A: %d %v", status, created)
			}
			key, id := created["key"].(string), created["id"].(string)
			if !active(t, b, key) {
				t.Fatal("B refuses a key created on A")
			}

			// Rotation: both keys work on B during the grace period.
			status, rotated := call(t, "POST", a+keyauth.AdminKeysPath+"/"+id+"/rotate", nil, `{"grace":"1h"}`)
			if status != 201 {
				t.Fatalf("rotate on A: %d %v", status, rotated)
			}
			newKey := rotated["key"].(string)
			if !active(t, b, key) || !active(t, b, newKey) {
				t.Error("B: old or new key refused during the grace period")
			}

			// Revocation of the new key through A reaches B within 1 s.
			start := time.Now()
			if status, _ := call(t, "POST", a+keyauth.AdminKeysPath+"/"+rotated["id"].(string)+"/revoke", nil, ""); status != 200 {
				t.Fatalf("revoke on A: %d", status)
			}
			took := waitRefused(t, b, newKey, start, time.Second)
			t.Logf("%s: revocation seen by the other server after %v", be.name, took)

			// Ending the old key's grace at once (rotation with 0s grace
			// is refused for a rotated key; revoke it instead) also reaches B.
			start = time.Now()
			if status, _ := call(t, "POST", a+keyauth.AdminKeysPath+"/"+id+"/revoke", nil, ""); status != 200 {
				t.Fatalf("revoke old key on A: %d", status)
			}
			waitRefused(t, b, key, start, time.Second)
		})
	}
}

// TestAPIKeyEndpointsNeedAdminToken checks the wiring: without an admin
// token both endpoints refuse every caller.
func TestAPIKeyEndpointsNeedAdminToken(t *testing.T) {
	_, base := start(t, Config{Logger: slog.New(slog.DiscardHandler)})
	for _, path := range []string{keyauth.VerifyPath, keyauth.AdminKeysPath} {
		status, _ := call(t, "POST", base+path, nil, `{"name":"x"}`)
		if status != http.StatusUnauthorized {
			t.Errorf("POST %s without a configured admin token: status %d, want 401", path, status)
		}
	}
}

// TestAPIKeysWithOAuthClients checks the two places OAuth clients meet API
// keys: a confidential client may call POST /apikeys/verify with HTTP Basic
// credentials, and RFC 7662 introspection answers for API keys.
func TestAPIKeysWithOAuthClients(t *testing.T) {
	_, base := start(t, Config{AdminToken: testAdminToken, Logger: slog.New(slog.DiscardHandler)})
	status, client := call(t, "POST", base+"/admin/clients", nil,
		`{"client_name":"gateway","grant_types":["client_credentials"],"scope":"read"}`)
	id, _ := client["client_id"].(string)
	secret, _ := client["client_secret"].(string)
	if status != 201 || id == "" || secret == "" {
		t.Fatalf("create client: %d %v", status, client)
	}
	status, created := call(t, "POST", base+keyauth.AdminKeysPath, nil, `{"name":"k","owner":"svc","scopes":["read","write"]}`)
	if status != 201 {
		t.Fatalf("create key: %d %v", status, created)
	}
	key := created["key"].(string)

	basic := func(method, url, user, pass, contentType, body string, header map[string]string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.SetBasicAuth(user, pass)
		req.Header.Set("Content-Type", contentType)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	hdr := map[string]string{keyauth.HeaderAPIKey: key}
	if status, out := basic("POST", base+keyauth.VerifyPath, id, secret, "application/json", "", hdr); status != 200 || out["active"] != true {
		t.Errorf("verify with client credentials: %d %v, want 200 active", status, out)
	}
	if status, _ := basic("POST", base+keyauth.VerifyPath, id, secret+"x", "application/json", "", hdr); status != 401 {
		t.Errorf("verify with a wrong client secret: %d, want 401", status)
	}

	form := "application/x-www-form-urlencoded"
	status, out := basic("POST", base+"/introspect", id, secret, form, "token="+key, nil)
	if status != 200 || out["active"] != true || out["sub"] != "svc" || out["scope"] != "read write" || out["token_type"] != "api_key" {
		t.Errorf("introspect API key: %d %v", status, out)
	}
	if status, _ := call(t, "POST", base+keyauth.AdminKeysPath+"/"+created["id"].(string)+"/revoke", nil, ""); status != 200 {
		t.Fatal("revoke failed")
	}
	if status, out := basic("POST", base+"/introspect", id, secret, form, "token="+key, nil); status != 200 || out["active"] != false || len(out) != 1 {
		t.Errorf("introspect revoked API key: %d %v, want {active: false}", status, out)
	}
}

// TestAPIKeyInOAuthQuery checks that the OAuth endpoints that take tokens
// refuse an API key sent in the URL query string, as they refuse any query
// string, and flag a real key sent that way as exposed, so its owner is told
// to rotate it.
func TestAPIKeyInOAuthQuery(t *testing.T) {
	_, base := start(t, Config{AdminToken: testAdminToken, Logger: slog.New(slog.DiscardHandler)})
	status, client := call(t, "POST", base+"/admin/clients", nil, `{"client_name":"gw","grant_types":["client_credentials"],"scope":"read"}`)
	id, _ := client["client_id"].(string)
	secret, _ := client["client_secret"].(string)
	if status != 201 || id == "" || secret == "" {
		t.Fatalf("create client: %d %v", status, client)
	}
	for _, path := range []string{"/introspect", "/revoke"} {
		t.Run(path, func(t *testing.T) {
			status, created := call(t, "POST", base+keyauth.AdminKeysPath, nil, `{"name":"leaky"}`)
			if status != 201 {
				t.Fatalf("create key: %d %v", status, created)
			}
			key, keyID := created["key"].(string), created["id"].(string)
			req, _ := http.NewRequest("POST", base+path+"?token="+key, strings.NewReader("token="+key))
			req.SetBasicAuth(id, secret)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(body), "query string") || strings.Contains(string(body), key) {
				t.Errorf("POST %s?token=<key>: %d %s; want 400 saying why, without the key", path, resp.StatusCode, body)
			}
			if status, shown := call(t, "GET", base+keyauth.AdminKeysPath+"/"+keyID, nil, ""); status != 200 || shown["exposed_at"] == nil {
				t.Errorf("key after being sent in a query: %d %v; want exposed_at set", status, shown)
			}
			_, out := call(t, "GET", base+keyauth.AdminKeysPath+"/"+keyID+"/events", nil, "")
			evs, _ := out["events"].([]any)
			found := false
			for _, e := range evs {
				ev, _ := e.(map[string]any)
				found = found || ev["event"] == keyauth.EventExposed && ev["reason"] == "key_in_query"
			}
			if !found {
				t.Errorf("events of the key = %v, want an exposure with reason key_in_query", evs)
			}
		})
	}
}
