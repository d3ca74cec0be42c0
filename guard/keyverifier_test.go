package guard

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// verifyEndpoint is a fake POST /apikeys/verify that checks the request
// and answers status and body.
func verifyEndpoint(t *testing.T, status int, body string) (*httptest.Server, *verifyRequest) {
	t.Helper()
	var got verifyRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != DefaultVerifyPath {
			t.Errorf("request: got %s %s, want POST %s", r.Method, r.URL.Path, DefaultVerifyPath)
		}
		if r.URL.RawQuery != "" {
			t.Errorf("query: got %q, want none", r.URL.RawQuery)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer svc-token" {
			t.Errorf("Authorization: got %q, want Bearer svc-token", got)
		}
		if got := r.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type: got %q, want application/json", got)
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		if status == http.StatusTemporaryRedirect {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestHTTPKeyVerifier(t *testing.T) {
	const key = "gk_live_AAAAAAAAAAAAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx000000"
	ip := netip.MustParseAddr("198.51.100.7")
	tests := []struct {
		name    string
		status  int
		body    string
		want    KeyResult
		wantErr bool
	}{
		{
			name:   "active",
			status: 200,
			body:   `{"active":true,"key_id":"AAAAAAAAAAAA","sub":"team-a","owner":"team-a","scope":"read write","scopes":["read","write"],"exp":1700003600,"token_type":"api_key"}`,
			want: KeyResult{Active: true, Principal: token.Principal{Subject: "team-a", Scopes: []string{"read", "write"},
				Kind: token.KindAPIKey, KeyID: "AAAAAAAAAAAA", ExpiresAt: time.Unix(1700003600, 0)}},
		},
		{
			name:   "active, scope string only, no expiry, rate limit",
			status: 200,
			body:   `{"active":true,"key_id":"AAAAAAAAAAAA","sub":"team-a","scope":"read","rate_limit":{"limit":10,"window":"1m0s","remaining":9}}`,
			want: KeyResult{Active: true, Limited: true, Principal: token.Principal{Subject: "team-a", Scopes: []string{"read"},
				Kind: token.KindAPIKey, KeyID: "AAAAAAAAAAAA"}},
		},
		{name: "inactive", status: 200, body: `{"active":false}`, want: KeyResult{}},
		{name: "rate limited", status: 200, body: `{"active":false,"reason":"rate_limited","retry_after":7}`,
			want: KeyResult{RetryAfter: 7 * time.Second}},
		{name: "active without key_id", status: 200, body: `{"active":true,"sub":"x"}`, wantErr: true},
		{name: "not JSON", status: 200, body: `<html>`, wantErr: true},
		{name: "store down", status: 503, body: `{"error":"temporarily_unavailable"}`, wantErr: true},
		{name: "wrong service token", status: 401, body: `{"error":"invalid_client"}`, wantErr: true},
		{name: "redirect not followed", status: 307, body: ``, wantErr: true},
		{name: "too large", status: 200, body: `{"active":false,"x":"` + strings.Repeat("a", maxVerifyResponse) + `"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, req := verifyEndpoint(t, tt.status, tt.body)
			v, err := NewHTTPKeyVerifier(HTTPKeyVerifierConfig{URL: srv.URL + DefaultVerifyPath, Token: "svc-token"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.VerifyKey(t.Context(), key, ip)
			if req.Key != key || req.RemoteIP != ip.String() {
				t.Errorf("request body: got %+v, want key and remote_ip %s", *req, ip)
			}
			if tt.wantErr {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("err: got %v, want ErrUnavailable", err)
				}
				if strings.Contains(err.Error(), key) {
					t.Errorf("error %q contains the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("result: got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHTTPKeyVerifierUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + DefaultVerifyPath
	srv.Close()
	v, err := NewHTTPKeyVerifier(HTTPKeyVerifierConfig{URL: url, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyKey(t.Context(), "gk_live_x", netip.Addr{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("err: got %v, want ErrUnavailable", err)
	}
}

func TestNewHTTPKeyVerifierErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  HTTPKeyVerifierConfig
	}{
		{"no URL", HTTPKeyVerifierConfig{Token: "t"}},
		{"plain http", HTTPKeyVerifierConfig{URL: "http://auth.example.com/apikeys/verify", Token: "t"}},
		{"user info", HTTPKeyVerifierConfig{URL: "https://u:p@auth.example.com/apikeys/verify", Token: "t"}},
		{"no token", HTTPKeyVerifierConfig{URL: "https://auth.example.com/apikeys/verify"}},
		{"token with space", HTTPKeyVerifierConfig{URL: "https://auth.example.com/apikeys/verify", Token: "a b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHTTPKeyVerifier(tt.cfg); err == nil {
				t.Errorf("NewHTTPKeyVerifier: got nil error, want one")
			}
		})
	}
}

func TestMetadataURLs(t *testing.T) {
	tests := []struct {
		issuer string
		want   []string
	}{
		{"https://auth.example.com", []string{
			"https://auth.example.com/.well-known/oauth-authorization-server",
			"https://auth.example.com/.well-known/openid-configuration"}},
		{"https://example.com/tenant/a", []string{
			"https://example.com/.well-known/oauth-authorization-server/tenant/a",
			"https://example.com/tenant/a/.well-known/openid-configuration"}},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			got, err := metadataURLs(tt.issuer)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

// TestOpenIDConfigurationFallback: an issuer that serves only the OpenID
// Connect document is discovered too.
func TestOpenIDConfigurationFallback(t *testing.T) {
	c := newClock()
	is := newIssuer(t, c)
	mux := http.NewServeMux()
	var srvURL string
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": srvURL, "jwks_uri": is.url + "/jwks.json"})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	srvURL = srv.URL
	iss, err := token.NewIssuer(token.IssuerConfig{Issuer: srv.URL, Now: c.Now,
		Key: func() (token.SigningKey, error) { return is.key, nil }})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Issuer: srv.URL, Audience: testAudience, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := iss.Issue(is.claims("read"))
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(g.Require(Policy{})(echo), "/r", "Authorization", "Bearer "+raw); rec.Code != 200 {
		t.Errorf("status: got %d, want 200", rec.Code)
	}
}

func TestJWKSURLAndStaticKeys(t *testing.T) {
	c := newClock()
	is := newIssuer(t, c)
	static, err := token.NewStaticKeySet(is.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"JWKSURL": {Issuer: is.url, Audience: testAudience, JWKSURL: is.url + "/jwks.json", Now: c.Now},
		"Keys":    {Issuer: is.url, Audience: testAudience, Keys: static, Now: c.Now},
	} {
		t.Run(name, func(t *testing.T) {
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			raw := is.issue(t, is.claims("read"))
			if rec := do(g.Require(Policy{})(echo), "/r", "Authorization", "Bearer "+raw); rec.Code != 200 {
				t.Errorf("status: got %d, want 200", rec.Code)
			}
			if got := is.metaHits.Load(); got != 0 {
				t.Errorf("metadata fetches: got %d, want 0", got)
			}
		})
	}
}
