package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/token"
)

// TestGatewayEndToEnd runs `gatehouse serve` and `gatehouse gateway` in
// front of an upstream: a JWT, an opaque token and an API key each reach the
// upstream as an internal JWT for the route's audience, and revoking each
// at the server is refused at the gateway within 1 s (polled up to 5 s).
func TestGatewayEndToEnd(t *testing.T) {
	const (
		extAud = "https://api.example"
		upAud  = "http://orders.internal"
	)
	dir := t.TempDir()
	data := []string{"--data", filepath.Join(dir, "data")}
	addr := freeAddr(t)
	issuer := "http://" + addr
	stop := startServe(t, append([]string{"serve", "--addr", addr}, data...))
	defer stop()

	var gwc, jwtc, opc clientOut
	runJSON(t, &gwc, append([]string{"client", "create", "--name", "Edge", "--gateway", "--grant-type", oauth.GrantTypeTokenExchange,
		"--audience", extAud, "--exchange-audience", upAud}, data...)...)
	runJSON(t, &jwtc, append([]string{"client", "create", "--name", "app", "--grant-type", "client_credentials",
		"--scope", "orders:read", "--audience", extAud}, data...)...)
	runJSON(t, &opc, append([]string{"client", "create", "--name", "opaque-app", "--grant-type", "client_credentials",
		"--scope", "orders:read", "--audience", extAud, "--access-token-format", "opaque"}, data...)...)
	var key keyOut
	runJSON(t, &key, append([]string{"apikey", "create", "--name", "k", "--owner", "team", "--scope", "orders:read"}, data...)...)

	clientToken := func(c clientOut) string {
		t.Helper()
		req, _ := http.NewRequest("POST", issuer+"/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(c.ClientID, c.ClientSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("token for %s: status %d, %v", c.ClientName, resp.StatusCode, err)
		}
		return tr.AccessToken
	}
	jwt, opaque := clientToken(jwtc), clientToken(opc)
	if strings.Count(jwt, ".") != 2 || strings.Contains(opaque, ".") {
		t.Fatalf("unexpected token shapes")
	}

	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, strings.Join(r.Header.Values("Authorization"), "|"))
		mu.Unlock()
		io.WriteString(w, "upstream ok")
	}))
	defer up.Close()

	gwAddr, adminAddr := freeAddr(t), freeAddr(t)
	secretFile := filepath.Join(dir, "gw.secret")
	os.WriteFile(secretFile, []byte(gwc.ClientSecret), 0o600)
	cfgFile := filepath.Join(dir, "gateway.toml")
	os.WriteFile(cfgFile, fmt.Appendf(nil, `listen = %q
admin_listen = %q
issuer = %q
audience = %q
client_id = %q
client_secret_file = %q
[[route]]
path = "/orders/"
upstream = %q
audience = %q
all_of = ["orders:read"]
`, gwAddr, adminAddr, issuer, extAud, gwc.ClientID, secretFile, up.URL, upAud), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"gateway", "--config", cfgFile}, io.Discard, &syncWriter{w: &stderr})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway returned %v", err)
			}
		case <-time.After(35 * time.Second):
			t.Error("gateway did not stop")
		}
	}()
	// Ready, and the revocation feed connected.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var h struct{ Feed string }
		if resp, err := http.Get("http://" + adminAddr + "/healthz"); err == nil {
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
		}
		if h.Feed == "up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready with the feed up after 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	call := func(header, value string) int {
		req, _ := http.NewRequest("GET", "http://"+gwAddr+"/orders/1", nil)
		req.Header.Set(header, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	keys, err := token.NewRemoteKeySet(token.RemoteKeySetConfig{URL: issuer + "/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: issuer, Audience: upAud, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	creds := []struct {
		kind          token.Kind
		header, value string
		revoke        func()
	}{
		{token.KindJWT, "Authorization", "Bearer " + jwt, func() { revokeToken(t, issuer, jwtc, jwt) }},
		{token.KindOpaque, "Authorization", "Bearer " + opaque, func() { revokeToken(t, issuer, opc, opaque) }},
		{token.KindAPIKey, "X-API-Key", key.Key, func() {
			if err := Run(context.Background(), append([]string{"apikey", "revoke", key.ID}, data...), io.Discard, io.Discard); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range creds {
		t.Run(string(c.kind), func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			for range 2 {
				if st := call(c.header, c.value); st != 200 {
					t.Fatalf("status %d, want 200\n%s", st, stderr.String())
				}
			}
			mu.Lock()
			got := seen[0]
			mu.Unlock()
			internal, ok := strings.CutPrefix(got, "Bearer ")
			if !ok || strings.Contains(internal, "|") {
				t.Fatalf("upstream Authorization %q, want one bearer", got)
			}
			cl, err := v.Verify(context.Background(), internal)
			if err != nil {
				t.Fatalf("internal token does not verify for %s: %v", upAud, err)
			}
			if cl.Kind != c.kind || cl.Scope != "orders:read" || cl.Actor == nil || cl.Actor.Subject != gwc.ClientID ||
				cl.ExpiresAt-cl.IssuedAt > 60 {
				t.Errorf("internal claims = %+v (actor %+v)", cl, cl.Actor)
			}
			if c.kind == token.KindAPIKey && cl.KeyID != key.ID {
				t.Errorf("gh_key_id = %q, want %q", cl.KeyID, key.ID)
			}

			c.revoke()
			start := time.Now()
			for call(c.header, c.value) != http.StatusUnauthorized {
				if time.Since(start) > 5*time.Second {
					t.Fatalf("still accepted 5 s after revocation")
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("%s: revocation refused at the gateway after %v", c.kind, time.Since(start).Round(time.Millisecond))
		})
	}
	for _, secret := range []string{jwt, opaque, key.Key, gwc.ClientSecret} {
		if strings.Contains(stderr.String(), secret) {
			t.Error("the gateway logged a credential")
		}
	}
}

// revokeToken revokes tok at the server (RFC 7009) as client c.
func revokeToken(t *testing.T, issuer string, c clientOut, tok string) {
	t.Helper()
	req, _ := http.NewRequest("POST", issuer+"/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ClientID, c.ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
}

// syncWriter serialises writes from the gateway's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
