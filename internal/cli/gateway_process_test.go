package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/proctest"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// TestGatewayRevocationAcrossProcesses runs `gatehouse serve` and
// `gatehouse gateway` as separate processes on PostgreSQL, as separate
// machines would, and revokes credentials from other processes: an API key
// through the CLI (a third process, which only writes the store) and an
// access token through the server's /revoke. The gateway must refuse each
// within 1 s; the delays are logged.
func TestGatewayRevocationAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several gatehouse processes")
	}
	p := newProcTest(t, storetest.PostgresURL(t))
	const api, internal = "https://api.example", "http://orders.internal"

	var gwc, app clientOut
	if err := json.Unmarshal([]byte(p.run("client", "create", "--name", "edge", "--gateway",
		"--grant-type", oauth.GrantTypeTokenExchange, "--audience", api, "--exchange-audience", internal, "--json")), &gwc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(p.run("client", "create", "--name", "app", "--grant-type", "client_credentials",
		"--scope", "orders:read", "--audience", api, "--json")), &app); err != nil {
		t.Fatal(err)
	}
	var key keyOut
	if err := json.Unmarshal([]byte(p.run("apikey", "create", "--name", "k", "--owner", "team",
		"--scope", "orders:read", "--json")), &key); err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	srv := p.serveAt("serve", addr, "http://"+addr)
	srv.Wait(t)

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream ok")
	}))
	defer up.Close()

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "gateway.secret")
	if err := os.WriteFile(secretFile, []byte(gwc.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	gwAddr := freeAddr(t)
	cfg := fmt.Sprintf("listen = %q\nissuer = %q\naudience = %q\nclient_id = %q\nclient_secret_file = %q\n\n"+
		"[[route]]\npath = \"/orders/\"\nupstream = %q\naudience = %q\nall_of = [\"orders:read\"]\n",
		gwAddr, srv.Base, api, gwc.ClientID, secretFile, up.URL, internal)
	cfgFile := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := proctest.Command(t, append(p.env, proctest.EnvLifeline+"=1"), "gateway", "--config", cfgFile, "--log-format", "json")
	stdin, err := gw.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var gwLog strings.Builder
	sw := &syncWriter{w: &gwLog}
	gw.Stderr = sw
	logText := func() string {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		return gwLog.String()
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gw.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("gateway exit: %v", err)
			}
		case <-time.After(15 * time.Second):
			gw.Process.Kill()
			t.Error("gateway did not stop within 15 s of losing its parent")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logText())
		}
	})

	call := func(header, value string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+gwAddr+"/orders/1", nil)
		req.Header.Set(header, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0 // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	jwt := procClientToken(t, srv.Base, app)
	deadline := time.Now().Add(30 * time.Second)
	for call("Authorization", "Bearer "+jwt) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway does not pass a valid JWT after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := call("X-API-Key", key.Key); st != http.StatusOK {
		t.Fatalf("gateway answered %d to a valid API key, want 200", st)
	}

	waitRefused := func(what, header, value string, from time.Time) {
		t.Helper()
		for call(header, value) != http.StatusUnauthorized {
			if time.Since(from) > 5*time.Second {
				t.Fatalf("%s: still accepted by the gateway 5 s after the revocation", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(from)
		t.Logf("%s: refused by the gateway %v after the revocation", what, took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("%s: refused after %v, want within 1 s", what, took)
		}
	}

	// The CLI process commits the revocation just before it exits.
	p.run("apikey", "revoke", key.ID)
	waitRefused("API key revoked by the CLI", "X-API-Key", key.Key, time.Now())

	procRevoke(t, srv.Base, app, jwt)
	waitRefused("JWT revoked at the server", "Authorization", "Bearer "+jwt, time.Now())

	for _, secret := range []string{jwt, key.Key, gwc.ClientSecret} {
		if strings.Contains(logText(), secret) {
			t.Error("the gateway logged a credential")
		}
	}
}

// procClientToken gets a client-credentials access token for c.
func procClientToken(t *testing.T, base string, c clientOut) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token: status %d, %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

// procRevoke revokes tok (RFC 7009) as client c.
func procRevoke(t *testing.T, base string, c clientOut, tok string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d, want 200", resp.StatusCode)
	}
}
