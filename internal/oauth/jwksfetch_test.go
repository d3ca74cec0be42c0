package oauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

func TestPublicAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2001:4860:4860::8888", true},
		{"::ffff:8.8.8.8", true},
		{"127.0.0.1", false},
		{"127.255.0.9", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"100.64.0.1", false},
		{"198.18.0.1", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
	} {
		if got := publicAddr(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("publicAddr(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestRegisteredJWKSURIPrivate checks that a dynamically registered client
// cannot make the server fetch its jwks_uri from a non-public address
// (server-side request forgery), while an operator's client can, and the
// setting that allows it for development.
func TestRegisteredJWKSURIPrivate(t *testing.T) {
	key := clientKey(t, token.ES256, "es")
	jwks := jwksOf(t, key)
	var fetched atomic.Int64
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer keySrv.Close()
	port := keySrv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	register := func(uri string) string {
		return `{"client_name":"svc","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"` + uri + `"}`
	}
	grant := func(t *testing.T, e *m2mEnv, id string) int {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {assertionTypeJWT},
			"client_assertion": {assertionFor(t, key, id, e.issuer+TokenPath, e.clock.Now(), nil)}}
		status, _, _ := e.post(t, TokenPath, form, "", "")
		return status
	}

	t.Run("refused by default", func(t *testing.T) {
		e := newM2MEnv(t, nil, func(c *Config) { c.InitialAccessToken = testIAT })
		for _, uri := range []string{
			keySrv.URL,
			fmt.Sprintf("http://localhost:%d/jwks", port),
			"http://LocalHost./jwks",
			"http://[::1]/jwks",
			"https://169.254.169.254/latest/meta-data",
			"https://10.0.0.5/jwks",
			"https://[::ffff:127.0.0.1]/jwks",
			"https://[fd00::1]/jwks",
		} {
			status, _, m := e.jsonRequest(t, "POST", RegisterPath, testIAT, register(uri))
			if status != 400 || m["error"] != errInvalidClientMeta {
				t.Errorf("register jwks_uri %s: %d %v, want 400 invalid_client_metadata", uri, status, m)
			}
		}
		// A public name is accepted (it is not fetched until used).
		status, _, reg := e.jsonRequest(t, "POST", RegisterPath, testIAT, register("https://keys.example/jwks"))
		if status != 201 {
			t.Fatalf("register public jwks_uri: %d %v", status, reg)
		}
		// Nor may an update point it inward.
		id, regTok := reg["client_id"].(string), reg["registration_access_token"].(string)
		upd := `{"client_id":"` + id + `","client_name":"svc","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"` + keySrv.URL + `"}`
		if status, _, m := e.jsonRequest(t, "PUT", RegisterPath+"/"+id, regTok, upd); status != 400 || m["error"] != errInvalidClientMeta {
			t.Errorf("update to a loopback jwks_uri: %d %v, want 400 invalid_client_metadata", status, m)
		}

		// A registered client that already names a loopback jwks_uri (stored
		// while the setting allowed it) cannot authenticate, and nothing is
		// fetched; an operator's client with the same URI can.
		registered, _ := e.newClient(t, store.Client{TokenEndpointAuthMethod: authPrivateKeyJWT, JWKSURI: keySrv.URL,
			RegistrationTokenHash: e.hasher.Hash(hashDomainRegistration, "t")})
		if status := grant(t, e, registered.ID); status != 401 {
			t.Errorf("registered client with a loopback jwks_uri: %d, want 401", status)
		}
		if n := fetched.Load(); n != 0 {
			t.Errorf("the loopback jwks_uri was fetched %d times", n)
		}
		operator, _ := e.newClient(t, store.Client{TokenEndpointAuthMethod: authPrivateKeyJWT, JWKSURI: keySrv.URL})
		if status := grant(t, e, operator.ID); status != 200 {
			t.Errorf("operator's client with a loopback jwks_uri: %d, want 200", status)
		}
		if fetched.Load() == 0 {
			t.Error("the operator's client's jwks_uri was not fetched")
		}
	})

	t.Run("names resolved and redirects are checked when dialled", func(t *testing.T) {
		c := newPublicOnlyClient()
		// "localhost" resolves to loopback: refused by the dialer itself,
		// before any request is sent.
		before := fetched.Load()
		_, err := c.Get(fmt.Sprintf("http://localhost:%d/jwks", port))
		if !errors.Is(err, errPrivateAddress) {
			t.Errorf("GET via localhost: %v, want errPrivateAddress", err)
		}
		if fetched.Load() != before {
			t.Error("the request reached the loopback server")
		}
		redirect := &http.Request{URL: &url.URL{Scheme: "https", Host: "127.0.0.1", Path: "/"}}
		if err := c.CheckRedirect(redirect, []*http.Request{{}}); !errors.Is(err, errPrivateAddress) {
			t.Errorf("redirect to https://127.0.0.1: %v, want errPrivateAddress", err)
		}
		plain := &http.Request{URL: &url.URL{Scheme: "http", Host: "keys.example", Path: "/"}}
		if err := c.CheckRedirect(plain, []*http.Request{{}}); err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("redirect to http: %v, want refused", err)
		}
	})

	t.Run("allowed by the setting", func(t *testing.T) {
		e := newM2MEnv(t, nil, func(c *Config) { c.InitialAccessToken, c.DCRAllowPrivateJWKSURI = testIAT, true })
		status, _, reg := e.jsonRequest(t, "POST", RegisterPath, testIAT, register(keySrv.URL))
		if status != 201 {
			t.Fatalf("register loopback jwks_uri with the setting: %d %v", status, reg)
		}
		before := fetched.Load()
		if status := grant(t, e, reg["client_id"].(string)); status != 200 {
			t.Errorf("grant: %d, want 200", status)
		}
		if fetched.Load() == before {
			t.Error("jwks_uri not fetched")
		}
	})
}
