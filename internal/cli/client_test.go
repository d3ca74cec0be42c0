package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// runJSON runs a gatehouse command with --json and decodes its output.
func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), append(args, "--json"), &out, &errOut); err != nil {
		t.Fatalf("gatehouse %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		t.Fatalf("gatehouse %s: output %q: %v", strings.Join(args, " "), out.String(), err)
	}
}

type clientOut struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret"`
	ClientName              string   `json:"client_name"`
	Public                  bool     `json:"public"`
	GrantTypes              []string `json:"grant_types"`
	Scope                   string   `json:"scope"`
	RedirectURIs            []string `json:"redirect_uris"`
	Audiences               []string `json:"audiences"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	AccessTokenTTL          int64    `json:"access_token_ttl"`
}

func TestClientCommands(t *testing.T) {
	data := []string{"--data", t.TempDir()}
	var conf clientOut
	runJSON(t, &conf, append([]string{"client", "create", "--name", "Billing", "--grant-type", "client_credentials",
		"--scope", "read write", "--audience", "https://api.example"}, data...)...)
	if conf.ClientID == "" || len(conf.ClientSecret) < 43 || conf.Public || conf.Scope != "read write" ||
		!slices.Equal(conf.GrantTypes, []string{"client_credentials"}) || conf.TokenEndpointAuthMethod != "client_secret_basic" {
		t.Errorf("create confidential = %+v; want an ID, a 256-bit secret, scope \"read write\", client_secret_basic", conf)
	}
	var pub clientOut
	runJSON(t, &pub, append([]string{"client", "create", "--name", "CLI app", "--grant-type", "authorization_code",
		"--grant-type", "refresh_token", "--scope", "openid", "--redirect-uri", "http://127.0.0.1/cb",
		"--redirect-uri", "com.example.app:/cb", "--public"}, data...)...)
	if pub.ClientSecret != "" || !pub.Public || pub.TokenEndpointAuthMethod != "none" || len(pub.RedirectURIs) != 2 {
		t.Errorf("create public = %+v; want no secret, public, auth none, two redirect URIs", pub)
	}
	// The raw JSON of a public client has no client_secret member at all.
	var raw bytes.Buffer
	if err := Run(context.Background(), append([]string{"client", "show", pub.ClientID, "--json"}, data...), &raw, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw.String(), "client_secret\"") {
		t.Errorf("show public client prints a client_secret: %s", raw.String())
	}

	var list []clientOut
	runJSON(t, &list, append([]string{"client", "list"}, data...)...)
	if len(list) != 2 {
		t.Fatalf("list = %d clients, want 2", len(list))
	}
	for _, c := range list {
		if c.ClientSecret != "" {
			t.Errorf("list shows a secret for %s", c.ClientID)
		}
	}

	var upd clientOut
	runJSON(t, &upd, append([]string{"client", "update", conf.ClientID, "--scope", "read", "--access-token-ttl", "5m"}, data...)...)
	if upd.Scope != "read" || upd.AccessTokenTTL != 300 || upd.ClientName != "Billing" || len(upd.Audiences) != 1 {
		t.Errorf("update = %+v; want scope read, ttl 300, the name and audience unchanged", upd)
	}
	var rot clientOut
	runJSON(t, &rot, append([]string{"client", "rotate-secret", conf.ClientID, "--grace", "1h"}, data...)...)
	if rot.ClientSecret == "" || rot.ClientSecret == conf.ClientSecret {
		t.Errorf("rotate-secret: secret %q, want a new one", rot.ClientSecret)
	}

	var del map[string]any
	runJSON(t, &del, append([]string{"client", "delete", pub.ClientID}, data...)...)
	if del["deleted"] != true {
		t.Errorf("delete = %v", del)
	}
	err := Run(context.Background(), append([]string{"client", "show", pub.ClientID}, data...), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no client") {
		t.Errorf("show deleted client: %v, want \"no client\"", err)
	}

	usage := [][]string{
		{"client"},
		{"client", "frobnicate"},
		{"client", "create", "--grant-type", "client_credentials"},                // no name
		{"client", "create", "--name", "x", "--grant-type", "password"},           // unsupported grant
		{"client", "create", "--name", "x", "--grant-type", "authorization_code"}, // no redirect URI
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--public"},
		{"client", "create", "--name", "x", "--grant-type", "authorization_code", "--redirect-uri", "http://evil.example/cb"},
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--access-token-alg", "HS256"},
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--scope", `a"b`},
		{"client", "show"},
		{"client", "show", "a", "b"},
		{"client", "rotate-secret", "x", "--grace", "-1h"},
	}
	for _, args := range usage {
		err := Run(context.Background(), append(args, data...), io.Discard, io.Discard)
		if !errors.Is(err, ErrUsage) && !(len(args) > 2 && args[1] == "rotate-secret" && err != nil) {
			t.Errorf("gatehouse %s: got %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}

// TestClientCredentialsInterop creates a client with the CLI, starts
// `gatehouse serve` on 127.0.0.1 and gets tokens with
// golang.org/x/oauth2/clientcredentials; PyJWT (Debian's python3-jwt)
// then verifies a token through the JWKS URI, and the revocation and
// introspection endpoints see it.
func TestClientCredentialsInterop(t *testing.T) {
	for _, db := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return storetest.PostgresURL(t) }},
	} {
		t.Run(db.name, func(t *testing.T) {
			args := []string{"--data", t.TempDir()}
			if u := db.url(t); u != "" {
				args = append(args, "--db", u)
			}
			addr := freeAddr(t)
			issuer := "http://" + addr
			stop := startServe(t, append([]string{"serve", "--addr", addr}, args...))
			defer stop()

			// Created while the server runs: it reads the client on first use.
			var c clientOut
			runJSON(t, &c, append([]string{"client", "create", "--name", "svc", "--grant-type", "client_credentials",
				"--scope", "read write", "--audience", "https://api.example"}, args...)...)

			for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams, oauth2.AuthStyleAutoDetect} {
				cfg := clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret,
					TokenURL: issuer + "/token", Scopes: []string{"read"}, AuthStyle: style}
				tok, err := cfg.Token(context.Background())
				if err != nil {
					t.Fatalf("auth style %v: %v", style, err)
				}
				if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.Expiry.Before(time.Now().Add(10*time.Minute)) ||
					tok.Extra("scope") != "read" {
					t.Errorf("auth style %v: token %+v scope %v", style, tok, tok.Extra("scope"))
				}
			}
			bad := clientcredentials.Config{ClientID: c.ClientID, ClientSecret: "wrong", TokenURL: issuer + "/token",
				AuthStyle: oauth2.AuthStyleInHeader}
			_, err := bad.Token(context.Background())
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
				t.Errorf("wrong secret: %v, want a 401 invalid_client RetrieveError", err)
			}

			cfg := clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: issuer + "/token"}
			tok, err := cfg.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			pyJWTVerify(t, issuer+"/.well-known/jwks.json", tok.AccessToken, "https://api.example", issuer, c.ClientID)

			// Revoke it; introspection says inactive.
			form := func(v url.Values) *http.Request {
				req, _ := http.NewRequest("POST", issuer+"/revoke", strings.NewReader(v.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(c.ClientID, c.ClientSecret)
				return req
			}
			if resp, err := http.DefaultClient.Do(form(url.Values{"token": {tok.AccessToken}})); err != nil || resp.StatusCode != 200 {
				t.Fatalf("revoke: %v %v", resp, err)
			}
			req := form(url.Values{"token": {tok.AccessToken}})
			req.URL.Path = "/introspect"
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var in map[string]any
			json.NewDecoder(resp.Body).Decode(&in)
			resp.Body.Close()
			if in["active"] != false {
				t.Errorf("introspection after revoke = %v, want inactive", in)
			}
		})
	}
}

// startServe runs `gatehouse serve` with args until the returned function
// is called, and waits until it is ready.
func startServe(t *testing.T, args []string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, args, io.Discard, &stderr) }()
	var addr string
	for i, a := range args {
		if a == "--addr" {
			addr = args[i+1]
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("server not ready after 30 s")
		}
	}
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	}
}

// pyJWTScript verifies a JWT with PyJWT's PyJWKClient against a JWKS URI.
const pyJWTScript = `
import json, sys, jwt
uri, tok, aud, iss = sys.argv[1:5]
key = jwt.PyJWKClient(uri).get_signing_key_from_jwt(tok)
claims = jwt.decode(tok, key.key, algorithms=["ES256", "RS256", "EdDSA"], audience=aud, issuer=iss,
                    options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]})
print(json.dumps({"typ": jwt.get_unverified_header(tok).get("typ"), "claims": claims}))
`

// pyJWTVerify checks tok with PyJWT. Without /usr/bin/python3 and its jwt
// module the check is skipped, except in CI (CI=true), where it fails.
func pyJWTVerify(t *testing.T, jwksURI, tok, aud, iss, clientID string) {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import jwt").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PyJWT is required in CI: %s -c 'import jwt': %v (apt-get install python3-jwt)", python, err)
		}
		t.Logf("skipping the PyJWT check: %s with the jwt module is not available", python)
		return
	}
	script := filepath.Join(t.TempDir(), "verify.py")
	os.WriteFile(script, []byte(pyJWTScript), 0o600)
	var stderr bytes.Buffer
	cmd := exec.Command(python, script, jwksURI, tok, aud, iss)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("PyJWT rejected the access token: %v\n%s", err, stderr.String())
	}
	var res struct {
		Typ    string         `json:"typ"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("PyJWT output %q: %v", out, err)
	}
	if res.Typ != "at+jwt" || res.Claims["client_id"] != clientID || res.Claims["sub"] != clientID {
		t.Errorf("PyJWT saw typ %q, claims %v; want at+jwt, client_id = sub = %s", res.Typ, res.Claims, clientID)
	}
}

// TestServeAdminAndRegistration enables the admin API and Dynamic Client
// Registration through the environment, as an operator would.
func TestServeAdminAndRegistration(t *testing.T) {
	const adminTok = "admin-0123456789-0123456789-0123456789"
	const regTok = "register-0123456789-0123456789-0123456"
	addr := freeAddr(t)
	data := t.TempDir()
	err := Run(context.Background(), []string{"serve", "--addr", addr, "--data", data, "--admin-token", "short"}, io.Discard, io.Discard)
	if !errors.Is(err, ErrUsage) {
		t.Errorf("serve with a short admin token: %v, want a usage error", err)
	}
	t.Setenv("GATEHOUSE_ADMIN_TOKEN", adminTok)
	t.Setenv("GATEHOUSE_REGISTRATION_TOKEN", regTok)
	issuer := "http://" + addr
	stop := startServe(t, []string{"serve", "--addr", addr, "--data", data})
	defer stop()

	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md["registration_endpoint"] != issuer+"/register" || md["token_endpoint"] != issuer+"/token" ||
		md["introspection_endpoint"] != issuer+"/introspect" || md["revocation_endpoint"] != issuer+"/revoke" {
		t.Errorf("discovery = %v; want the registration, token, introspection and revocation endpoints", md)
	}
	post := func(path, bearer, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", issuer+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	body := `{"client_name":"svc","grant_types":["client_credentials"],"scope":"read"}`
	for _, tc := range []struct{ path, bearer string }{{"/admin/clients", adminTok}, {"/register", regTok}} {
		status, c := post(tc.path, tc.bearer, body)
		if status != 201 {
			t.Fatalf("POST %s: %d %v", tc.path, status, c)
		}
		cfg := clientcredentials.Config{ClientID: c["client_id"].(string), ClientSecret: c["client_secret"].(string),
			TokenURL: issuer + "/token"}
		if _, err := cfg.Token(context.Background()); err != nil {
			t.Errorf("client from %s: token: %v", tc.path, err)
		}
		if status, _ := post(tc.path, "wrong-token", body); status != 401 {
			t.Errorf("POST %s with a wrong token: %d, want 401", tc.path, status)
		}
	}
}

// TestClientGatewayFlags covers --gateway, --access-token-format and
// --rate-limit of client create and update.
func TestClientGatewayFlags(t *testing.T) {
	data := []string{"--data", t.TempDir()}
	type out struct {
		clientOut
		Gateway           bool     `json:"gateway"`
		AccessTokenFormat string   `json:"access_token_format"`
		RateLimit         string   `json:"rate_limit"`
		ExchangeAudiences []string `json:"exchange_audiences"`
	}
	var gw out
	runJSON(t, &gw, append([]string{"client", "create", "--name", "Edge", "--gateway",
		"--grant-type", "urn:ietf:params:oauth:grant-type:token-exchange", "--audience", "https://api.example",
		"--exchange-audience", "https://orders.internal", "--rate-limit", "100/m"}, data...)...)
	if !gw.Gateway || gw.AccessTokenTTL != 60 || gw.RateLimit != "100/m" || gw.AccessTokenFormat != "" ||
		!slices.Equal(gw.ExchangeAudiences, []string{"https://orders.internal"}) {
		t.Errorf("create --gateway = %+v; want gateway, ttl 60 (the gateway default), rate 100/m", gw)
	}
	var ttl out
	runJSON(t, &ttl, append([]string{"client", "create", "--name", "Edge2", "--gateway", "--access-token-ttl", "30s",
		"--grant-type", "urn:ietf:params:oauth:grant-type:token-exchange", "--exchange-audience", "https://x"}, data...)...)
	if ttl.AccessTokenTTL != 30 {
		t.Errorf("create --gateway --access-token-ttl 30s: ttl %d, want 30", ttl.AccessTokenTTL)
	}

	var op out
	runJSON(t, &op, append([]string{"client", "create", "--name", "Opaque", "--grant-type", "client_credentials",
		"--access-token-format", "opaque"}, data...)...)
	if op.AccessTokenFormat != "opaque" || op.Gateway || op.RateLimit != "" || op.AccessTokenTTL != 0 {
		t.Errorf("create --access-token-format opaque = %+v", op)
	}
	var shown out
	runJSON(t, &shown, append([]string{"client", "show", op.ClientID}, data...)...)
	if shown.AccessTokenFormat != "opaque" {
		t.Errorf("show: access_token_format %q, want opaque", shown.AccessTokenFormat)
	}
	var upd out
	runJSON(t, &upd, append([]string{"client", "update", op.ClientID, "--access-token-format", "jwt", "--rate-limit", "30/10s"}, data...)...)
	if upd.AccessTokenFormat != "jwt" || upd.RateLimit != "30/10s" {
		t.Errorf("update = %+v; want format jwt, rate 30/10s", upd)
	}
	var cleared out
	runJSON(t, &cleared, append([]string{"client", "update", op.ClientID, "--rate-limit", "0"}, data...)...)
	if cleared.RateLimit != "" || cleared.AccessTokenFormat != "jwt" {
		t.Errorf("update --rate-limit 0 = %+v; want no rate limit, the format kept", cleared)
	}
	var text bytes.Buffer
	if err := Run(context.Background(), append([]string{"client", "show", gw.ClientID}, data...), &text, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gateway:       true", "rate limit:    100/m", "token TTL:     1m0s"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("show text lacks %q:\n%s", want, text.String())
		}
	}

	usage := [][]string{
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--access-token-format", "paseto"},
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--rate-limit", "fast"},
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--gateway"}, // no token exchange
		{"client", "create", "--name", "x", "--gateway", "--grant-type", "urn:ietf:params:oauth:grant-type:token-exchange"},
		{"client", "update", op.ClientID, "--rate-limit", "-3/s"},
	}
	for _, args := range usage {
		if err := Run(context.Background(), append(args, data...), io.Discard, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("gatehouse %s: got %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}
