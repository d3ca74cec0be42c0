package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/browsertest"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

const systemPython = "/usr/bin/python3"

// need skips the test when a tool is missing, except in CI (CI=true),
// where the interop tests must run and a missing tool fails them.
func need(t *testing.T, what string, ok bool, install string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (%s)", what, install)
	}
	t.Skipf("%s is not available (%s); skipping", what, install)
}

// createUser runs `gatehouse user create` with the password on stdin.
func createUser(t *testing.T, storeArgs []string, username, pw string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(pw + "\n"), stdout: &out, stderr: &errOut, getenv: os.Getenv}
	args := append([]string{"create", "--username", username, "--email", username + "@example.com", "--password-stdin"}, storeArgs...)
	if err := runUser(context.Background(), e, args); err != nil {
		t.Fatalf("gatehouse user create: %v\n%s", err, errOut.String())
	}
}

// codeFlowServer starts `gatehouse serve` on a fresh store (SQLite, or
// PostgreSQL for db "postgres") with user ada and a public code-flow
// client registered with the CLI. It returns the issuer and the client.
func codeFlowServer(t *testing.T, db string) (string, clientOut) {
	t.Helper()
	storeArgs := []string{"--data", t.TempDir()}
	if db == "postgres" {
		storeArgs = append(storeArgs, "--db", storetest.PostgresURL(t))
	}
	addr := freeAddr(t)
	stop := startServe(t, append([]string{"serve", "--addr", addr, "--log-level", "warn"}, storeArgs...))
	t.Cleanup(stop)
	createUser(t, storeArgs, "ada", "correct horse battery staple")
	var c clientOut
	runJSON(t, &c, append([]string{"client", "create", "--name", "Notes App", "--public",
		"--grant-type", "authorization_code", "--grant-type", "refresh_token",
		"--scope", "openid profile email notes", "--redirect-uri", "http://127.0.0.1/callback"}, storeArgs...)...)
	if c.ClientID == "" || c.ClientSecret != "" {
		t.Fatalf("client create: %+v, want an ID and no secret", c)
	}
	return "http://" + addr, c
}

// callbackServer is the client's redirect URI: it hands the query of the
// first request to the returned channel.
func callbackServer(t *testing.T) (string, <-chan map[string]string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan map[string]string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := map[string]string{}
		for k := range r.URL.Query() {
			q[k] = r.URL.Query().Get(k)
		}
		select {
		case got <- q:
		default:
		}
		w.Write([]byte("<!DOCTYPE html><title>done</title><p id=done>done</p>"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/callback", got
}

// TestCodeFlowBrowserInterop runs the authorization code flow end to end:
// golang.org/x/oauth2 (GenerateVerifier, S256ChallengeOption) builds the
// request, a headless Chromium signs in and consents on the real pages,
// x/oauth2 exchanges the code and refreshes, and
// github.com/coreos/go-oidc/v3 verifies the ID token via discovery.
func TestCodeFlowBrowserInterop(t *testing.T) {
	browsertest.Need(t)
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			issuer, c := codeFlowServer(t, db)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			provider, err := oidc.NewProvider(ctx, issuer)
			if err != nil {
				t.Fatalf("go-oidc discovery: %v", err)
			}
			redirect, got := callbackServer(t)
			cfg := oauth2.Config{ClientID: c.ClientID, Endpoint: provider.Endpoint(), RedirectURL: redirect,
				Scopes: []string{oidc.ScopeOpenID, "profile", "email", "notes"}}
			verifier := oauth2.GenerateVerifier()
			authURL := cfg.AuthCodeURL("state-xyz", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-abc"))

			allocCtx := browsertest.Allocator(t, 1280, 900)
			browser, cancelBrowser := chromedp.NewContext(allocCtx)
			defer cancelBrowser()
			go func() { <-ctx.Done(); cancelBrowser() }()
			err = chromedp.Do(browser,
				chromedp.Navigate(authURL),
				chromedp.WaitVisible(chromedp.CSS("#username")),
				chromedp.SendKeys(chromedp.CSS("#username"), "ada"),
				chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery staple"),
				chromedp.Click(chromedp.CSS("#sign-in")),
				chromedp.WaitVisible(chromedp.CSS("#allow")),
			)
			if err != nil {
				t.Fatalf("browser: login: %v", err)
			}
			consent, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("main")))
			if err != nil || !strings.Contains(consent, "Notes App") || !strings.Contains(consent, "See your email address") {
				t.Errorf("consent page text %q, %v: want the client name and scopes in words", consent, err)
			}
			if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS("#allow")), chromedp.WaitVisible(chromedp.CSS("#done"))); err != nil {
				t.Fatalf("browser: consent: %v", err)
			}
			var q map[string]string
			select {
			case q = <-got:
			case <-ctx.Done():
				t.Fatal("no redirect to the client")
			}
			if q["state"] != "state-xyz" || q["iss"] != issuer || q["code"] == "" {
				t.Fatalf("redirect query %v: want code, state and iss", q)
			}

			tok, err := cfg.Exchange(ctx, q["code"], oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("x/oauth2 Exchange: %v", err)
			}
			rawID, _ := tok.Extra("id_token").(string)
			idTok, err := provider.Verifier(&oidc.Config{ClientID: c.ClientID}).Verify(ctx, rawID)
			if err != nil {
				t.Fatalf("go-oidc Verify(id_token): %v", err)
			}
			if idTok.Nonce != "nonce-abc" || idTok.AccessTokenHash == "" {
				t.Errorf("ID token nonce %q at_hash %q", idTok.Nonce, idTok.AccessTokenHash)
			}
			if err := idTok.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("go-oidc at_hash check: %v", err)
			}
			var claims struct {
				Email    string `json:"email"`
				Username string `json:"preferred_username"`
				AuthTime int64  `json:"auth_time"`
			}
			if err := idTok.Claims(&claims); err != nil || claims.Email != "ada@example.com" || claims.Username != "ada" || claims.AuthTime == 0 {
				t.Errorf("ID token claims %+v, %v", claims, err)
			}
			ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil || ui.Subject != idTok.Subject || ui.Email != "ada@example.com" {
				t.Errorf("userinfo %+v, %v; want subject %s", ui, err, idTok.Subject)
			}

			// Refresh: a new access token and a rotated refresh token.
			expired := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
			tok2, err := cfg.TokenSource(ctx, expired).Token()
			if err != nil {
				t.Fatalf("x/oauth2 refresh: %v", err)
			}
			if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
				t.Errorf("refresh did not rotate: %+v", tok2)
			}
			// The browser session stays: a second authorization needs no pages.
			redirect2 := cfg.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier))
			if err := chromedp.Do(browser, chromedp.Navigate(redirect2), chromedp.WaitVisible(chromedp.CSS("#done"))); err != nil {
				t.Fatalf("second authorization: %v", err)
			}
		})
	}
}

// pyCodeFlowScript runs the code flow with requests-oauthlib's OAuth2Session
// and PKCE, signing in and consenting with plain form posts (the pages
// need no JavaScript), then verifies the access token with PyJWT's
// PyJWKClient and refreshes.
const pyCodeFlowScript = `
import json, os, re, sys, html
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # http on 127.0.0.1 only
import requests, jwt
from requests_oauthlib import OAuth2Session

issuer, client_id, username, password = sys.argv[1:5]
meta = requests.get(issuer + "/.well-known/openid-configuration").json()
redirect_uri = "http://127.0.0.1:9/callback"
oauth = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=["openid", "notes"])
verifier = oauth._client.create_code_verifier(64)
challenge = oauth._client.create_code_challenge(verifier, "S256")
url, state = oauth.authorization_url(meta["authorization_endpoint"], code_challenge=challenge,
                                     code_challenge_method="S256")

def hidden(page):
    return {m[0]: html.unescape(m[1]) for m in re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page)}

browser = requests.Session()
page = browser.get(url)
form = hidden(page.text)
form.update(username=username, password=password)
page = browser.post(issuer + "/login", data=form)
assert 'value="allow"' in page.text, page.text
form = hidden(page.text)
form["decision"] = "allow"
resp = browser.post(issuer + "/consent", data=form, allow_redirects=False)
assert resp.status_code == 303, resp.status_code
location = resp.headers["Location"]
token = oauth.fetch_token(meta["token_endpoint"], authorization_response=location,
                          code_verifier=verifier, include_client_id=True)
key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token["access_token"])
claims = jwt.decode(token["access_token"], key.key, algorithms=["ES256"], audience=issuer, issuer=issuer)
refreshed = oauth.refresh_token(meta["token_endpoint"], client_id=client_id)
print(json.dumps({"claims": claims, "scope": token.get("scope"), "has_id_token": "id_token" in token,
                  "rotated": refreshed["refresh_token"] != token["refresh_token"]}))
`

// TestCodeFlowPythonInterop runs the code flow with Debian's
// python3-requests-oauthlib (OAuth2Session with PKCE S256) and checks the
// access token with python3-jwt.
func TestCodeFlowPythonInterop(t *testing.T) {
	err := exec.Command(systemPython, "-c", "import requests_oauthlib, jwt").Run()
	need(t, systemPython+" with requests_oauthlib and jwt", err == nil, "apt-get install python3-requests-oauthlib python3-jwt")
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			issuer, c := codeFlowServer(t, db)
			script := filepath.Join(t.TempDir(), "codeflow.py")
			os.WriteFile(script, []byte(pyCodeFlowScript), 0o600)
			var stderr bytes.Buffer
			cmd := exec.Command(systemPython, script, issuer, c.ClientID, "ada", "correct horse battery staple")
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("python code flow: %v\n%s", err, stderr.String())
			}
			var res struct {
				Claims     map[string]any `json:"claims"`
				Scope      any            `json:"scope"`
				HasIDToken bool           `json:"has_id_token"`
				Rotated    bool           `json:"rotated"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("python output %q: %v", out, err)
			}
			if res.Claims["client_id"] != c.ClientID || res.Claims["sub"] == "" || !res.HasIDToken || !res.Rotated {
				t.Errorf("python result %+v", res)
			}
		})
	}
}
