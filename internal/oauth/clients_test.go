package oauth

import (
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

func TestCheckClient(t *testing.T) {
	cc := []string{"client_credentials"}
	code := []string{"authorization_code", "refresh_token"}
	cases := []struct {
		name   string
		c      store.Client
		ok     bool
		method string // expected default auth method
	}{
		{"service", store.Client{ID: "a", Name: "n", GrantTypes: cc}, true, authSecretBasic},
		{"introspection only", store.Client{ID: "a", Name: "n"}, true, authSecretBasic},
		{"public app", store.Client{ID: "a", Name: "n", Public: true, GrantTypes: code, RedirectURIs: []string{"http://127.0.0.1/cb"}}, true, authNone},
		{"native scheme", store.Client{ID: "a", Name: "n", Public: true, GrantTypes: code, RedirectURIs: []string{"com.example.app:/cb"}}, true, authNone},
		{"https redirect", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"https://app.example/cb?x=1"}}, true, authSecretBasic},
		{"ipv6 loopback", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"http://[::1]:8080/cb"}}, true, authSecretBasic},
		{"EdDSA tokens", store.Client{ID: "a", Name: "n", GrantTypes: cc, AccessTokenAlg: "EdDSA", AccessTokenTTL: time.Minute}, true, authSecretBasic},
		{"no ID", store.Client{Name: "n", GrantTypes: cc}, false, ""},
		{"ID with colon", store.Client{ID: "a:b", Name: "n", GrantTypes: cc}, false, ""},
		{"no name", store.Client{ID: "a", GrantTypes: cc}, false, ""},
		{"control char in name", store.Client{ID: "a", Name: "n\x00", GrantTypes: cc}, false, ""},
		{"password grant", store.Client{ID: "a", Name: "n", GrantTypes: []string{"password"}}, false, ""},
		{"implicit grant", store.Client{ID: "a", Name: "n", GrantTypes: []string{"implicit"}}, false, ""},
		{"public client_credentials", store.Client{ID: "a", Name: "n", Public: true, GrantTypes: cc}, false, ""},
		{"public without grants", store.Client{ID: "a", Name: "n", Public: true}, false, ""},
		{"public with secret method", store.Client{ID: "a", Name: "n", Public: true, GrantTypes: code, RedirectURIs: []string{"http://127.0.0.1/cb"}, TokenEndpointAuthMethod: authSecretBasic}, false, ""},
		{"confidential with none", store.Client{ID: "a", Name: "n", GrantTypes: cc, TokenEndpointAuthMethod: authNone}, false, ""},
		{"refresh without code", store.Client{ID: "a", Name: "n", GrantTypes: []string{"refresh_token"}}, false, ""},
		{"code without redirect", store.Client{ID: "a", Name: "n", GrantTypes: code}, false, ""},
		{"redirect without code", store.Client{ID: "a", Name: "n", GrantTypes: cc, RedirectURIs: []string{"https://x.example/cb"}}, false, ""},
		{"http redirect", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"http://app.example/cb"}}, false, ""},
		{"fragment", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"https://app.example/cb#x"}}, false, ""},
		{"relative", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"/cb"}}, false, ""},
		{"user info", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"https://u:p@app.example/cb"}}, false, ""},
		{"scheme without dot", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"myapp:/cb"}}, false, ""},
		{"javascript", store.Client{ID: "a", Name: "n", GrantTypes: code, RedirectURIs: []string{"javascript:alert(1)"}}, false, ""},
		{"bad scope", store.Client{ID: "a", Name: "n", GrantTypes: cc, Scopes: []string{"a b"}}, false, ""},
		{"bad audience", store.Client{ID: "a", Name: "n", GrantTypes: cc, Audiences: []string{""}}, false, ""},
		{"ttl too short", store.Client{ID: "a", Name: "n", GrantTypes: cc, AccessTokenTTL: time.Second}, false, ""},
		{"ttl too long", store.Client{ID: "a", Name: "n", GrantTypes: cc, AccessTokenTTL: 48 * time.Hour}, false, ""},
		{"HS256", store.Client{ID: "a", Name: "n", GrantTypes: cc, AccessTokenAlg: "HS256"}, false, ""},
		{"none alg", store.Client{ID: "a", Name: "n", GrantTypes: cc, IDTokenAlg: "none"}, false, ""},
		{"unknown auth method", store.Client{ID: "a", Name: "n", GrantTypes: cc, TokenEndpointAuthMethod: "tls_client_auth"}, false, ""},
		{"private_key_jwt without keys", store.Client{ID: "a", Name: "n", GrantTypes: cc, TokenEndpointAuthMethod: authPrivateKeyJWT}, false, ""},
		{"private_key_jwt with both", store.Client{ID: "a", Name: "n", GrantTypes: cc, TokenEndpointAuthMethod: authPrivateKeyJWT, JWKS: []byte(`{"keys":[]}`), JWKSURI: "https://x.example/jwks"}, false, ""},
		{"private_key_jwt empty jwks", store.Client{ID: "a", Name: "n", GrantTypes: cc, TokenEndpointAuthMethod: authPrivateKeyJWT, JWKS: []byte(`{"keys":[]}`)}, false, ""},
		{"private_key_jwt http jwks_uri", store.Client{ID: "a", Name: "n", GrantTypes: cc, TokenEndpointAuthMethod: authPrivateKeyJWT, JWKSURI: "http://x.example/jwks"}, false, ""},
		{"private_key_jwt https jwks_uri", store.Client{ID: "a", Name: "n", GrantTypes: cc, TokenEndpointAuthMethod: authPrivateKeyJWT, JWKSURI: "https://x.example/jwks"}, true, authPrivateKeyJWT},
		{"jwks with a secret method", store.Client{ID: "a", Name: "n", GrantTypes: cc, JWKSURI: "https://x.example/jwks"}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := CheckClient(&c)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckClient() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidClient) {
				t.Errorf("error %v does not wrap ErrInvalidClient", err)
			}
			if tc.ok && c.TokenEndpointAuthMethod != tc.method {
				t.Errorf("auth method = %q, want %q", c.TokenEndpointAuthMethod, tc.method)
			}
		})
	}
}

func TestDenylistPrune(t *testing.T) {
	now := time.Now()
	d := denylist{m: map[string]int64{}}
	d.add("old", now.Add(-2*time.Minute).Unix(), now)
	d.add("skew", now.Add(-10*time.Second).Unix(), now) // within the verifiers' leeway
	d.add("live", now.Add(time.Minute).Unix(), now)
	d.prune(now)
	for jti, want := range map[string]bool{"old": false, "skew": true, "live": true} {
		if got := d.contains(jti); got != want {
			t.Errorf("contains(%q) after prune = %v, want %v", jti, got, want)
		}
	}
}
