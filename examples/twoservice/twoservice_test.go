package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/cli"
	"github.com/gatehouse-dev/gatehouse/internal/oauth"
)

// TestTwoServices runs the README's example end to end with the same
// commands: gatehouse serve, the gateway in front of service A, and
// service A calling service B with a token exchanged at Gatehouse. Each of
// the three external credential kinds reaches service B as the caller,
// with the act chain [service A, gateway].
func TestTwoServices(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	data := []string{"--data", filepath.Join(dir, "data"), "--log-level", "warn"}
	const api = "https://api.example.com"

	// Clients: the gateway, service A (exchanges for B), and two apps, one
	// with JWT and one with opaque access tokens; and an API key.
	gw := create(t, append([]string{"client", "create", "--name", "gateway", "--gateway",
		"--grant-type", oauth.GrantTypeTokenExchange, "--audience", api,
		"--exchange-audience", AudienceA}, data...)...)
	svcA := create(t, append([]string{"client", "create", "--name", "service-a",
		"--grant-type", oauth.GrantTypeTokenExchange, "--scope", "orders:read",
		"--audience", AudienceA, "--exchange-audience", AudienceB}, data...)...)
	app := create(t, append([]string{"client", "create", "--name", "app", "--grant-type", "client_credentials",
		"--scope", "orders:read orders:write", "--audience", api}, data...)...)
	opq := create(t, append([]string{"client", "create", "--name", "opaque-app", "--grant-type", "client_credentials",
		"--scope", "orders:read", "--audience", api, "--access-token-format", "opaque"}, data...)...)
	key := create(t, append([]string{"apikey", "create", "--name", "script", "--owner", "alice",
		"--scope", "orders:read"}, data...)...)

	// gatehouse serve.
	addr := freeAddr(t)
	issuer := "http://" + addr
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"serve", "--addr", addr}, data...), io.Discard, os.Stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	})
	waitHTTP(t, issuer+"/readyz")

	// Services B and A.
	hb, err := ServiceB(issuer)
	if err != nil {
		t.Fatal(err)
	}
	b := httptest.NewServer(hb)
	defer b.Close()
	ha, err := ServiceA(AConfig{Issuer: issuer, BURL: b.URL, ClientID: svcA["client_id"], ClientSecret: svcA["client_secret"]})
	if err != nil {
		t.Fatal(err)
	}
	a := httptest.NewServer(ha)
	defer a.Close()

	// gatehouse gateway in front of A.
	secretFile := filepath.Join(dir, "gateway.secret")
	if err := os.WriteFile(secretFile, []byte(gw["client_secret"]), 0o600); err != nil {
		t.Fatal(err)
	}
	gwAddr := freeAddr(t)
	cfg := fmt.Sprintf(`listen = %q
issuer = %q
audience = %q
client_id = %q
client_secret_file = %q

[[route]]
path = "/orders"
upstream = %q
audience = %q
all_of = ["orders:read"]
`, gwAddr, issuer, api, gw["client_id"], secretFile, a.URL, AudienceA)
	cfgFile := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gwDone := make(chan error, 1)
	go func() {
		gwDone <- cli.Run(ctx, []string{"gateway", "--config", cfgFile, "--log-level", "warn"}, io.Discard, os.Stderr)
	}()
	t.Cleanup(func() { cancel(); <-gwDone })
	waitHTTP(t, "http://"+gwAddr+"/")

	jwt := clientToken(t, issuer, app)
	opaque := clientToken(t, issuer, opq)
	if strings.Count(opaque, ".") != 0 {
		t.Fatalf("opaque-app got a JWT, want an opaque token")
	}

	tests := []struct {
		name, header, value string
		sub, kind           string
	}{
		{"jwt", "Authorization", "Bearer " + jwt, app["client_id"], "jwt"},
		{"opaque", "Authorization", "Bearer " + opaque, opq["client_id"], "opaque"},
		{"api key", "X-API-Key", key["key"], "alice", "apikey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+gwAddr+"/orders", nil)
			req.Header.Set(tt.header, tt.value)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("gateway answered %s: %s", resp.Status, body)
			}
			var r Reply
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if r.Service != "a" || r.Subject != tt.sub || r.Kind != tt.kind || !slices.Equal(r.Actors, []string{gw["client_id"]}) {
				t.Errorf("service A saw %+v; want sub %s, kind %s (the credential the caller presented), act = the gateway", r, tt.sub, tt.kind)
			}
			if r.Via == nil {
				t.Fatal("no answer from service B")
			}
			v := *r.Via
			if v.Service != "b" || v.Subject != tt.sub || v.Kind != tt.kind || !slices.Equal(v.Scopes, []string{"orders:read"}) ||
				!slices.Equal(v.Actors, []string{svcA["client_id"], gw["client_id"]}) {
				t.Errorf("service B saw %+v; want sub %s, scope orders:read, act chain [service A, gateway]", v, tt.sub)
			}
		})
	}

	// Without a credential the gateway refuses and service A is never reached.
	resp, err := http.Get("http://" + gwAddr + "/orders")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no credential: %s %q, want 401 with a Bearer challenge", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	// Service A refuses the external token itself: it accepts only tokens for A.
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("external token straight to service A: %s, want 401", resp.Status)
	}
}

// create runs a gatehouse command with --json and returns its string fields.
func create(t *testing.T, args ...string) map[string]string {
	t.Helper()
	var out bytes.Buffer
	if err := cli.Run(context.Background(), append(args, "--json"), &out, os.Stderr); err != nil {
		t.Fatalf("gatehouse %s: %v", strings.Join(args, " "), err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("gatehouse %s: %v: %s", strings.Join(args, " "), err, out.Bytes())
	}
	s := map[string]string{}
	for k, v := range m {
		if str, ok := v.(string); ok {
			s[k] = str
		}
	}
	return s
}

func clientToken(t *testing.T, issuer string, c map[string]string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, issuer+"/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c["client_id"]), url.QueryEscape(c["client_secret"]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token for %s: %s %v", c["client_id"], resp.Status, err)
	}
	return body.AccessToken
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer", u)
}
