package oauth

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/signing"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// m2mClock is a settable clock shared by the provider and signing keys.
type m2mClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *m2mClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *m2mClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// m2mEnv is a provider served over HTTP on 127.0.0.1 with a fresh store.
type m2mEnv struct {
	p      *Provider
	st     *store.Store
	keys   *signing.Manager
	hasher *secret.Hasher
	clock  *m2mClock
	srv    *httptest.Server
	issuer string
}

// m2mBackends runs fn once per store backend.
func m2mBackends(t *testing.T, fn func(t *testing.T, open func(testing.TB) *store.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, storetest.OpenSQLite) })
	t.Run("postgres", func(t *testing.T) { fn(t, storetest.OpenPostgres) })
}

// newM2MEnv starts a provider on a store from open (SQLite when nil),
// served on 127.0.0.1; mod may change the config.
func newM2MEnv(t testing.TB, open func(testing.TB) *store.Store, mod func(*Config)) *m2mEnv {
	t.Helper()
	if open == nil {
		open = storetest.OpenSQLite
	}
	ctx := context.Background()
	st := open(t)
	master, err := secret.New([]byte(strings.Repeat("m", 32)))
	if err != nil {
		t.Fatal(err)
	}
	clock := &m2mClock{t: time.Now()}
	keys, err := signing.New(signing.Config{Store: st, Sealer: master.Sealer(secret.PurposeSigningKeys),
		Logger: slog.New(slog.DiscardHandler), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Init(ctx); err != nil {
		t.Fatal(err)
	}
	hasher, err := secret.NewHasher(master.Pepper())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	cfg := Config{Issuer: issuer, Store: st, Keys: keys, Hasher: hasher, Now: clock.Now,
		Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewProvider(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &m2mEnv{p: p, st: st, keys: keys, hasher: hasher, clock: clock, srv: srv, issuer: issuer}
}

// newClient stores a client built from c (ID and secret generated when
// empty) and returns it with its plain secret ("" for public and
// private_key_jwt clients).
func (e *m2mEnv) newClient(t testing.TB, c store.Client) (store.Client, string) {
	t.Helper()
	if c.ID == "" {
		c.ID = NewClientID()
	}
	if c.Name == "" {
		c.Name = "test client"
	}
	if c.GrantTypes == nil {
		c.GrantTypes = []string{"client_credentials"}
	}
	if err := CheckClient(&c); err != nil {
		t.Fatalf("CheckClient: %v", err)
	}
	var plain string
	if !c.Public && c.TokenEndpointAuthMethod != authPrivateKeyJWT {
		plain, c.SecretHash = NewClientSecret(e.hasher)
	}
	stored, err := e.st.CreateClient(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return stored, plain
}

// post sends form to path with optional Basic credentials and returns the
// status, headers and body.
func (e *m2mEnv) post(t testing.TB, path string, form url.Values, basicID, basicSecret string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// token runs the client credentials grant and returns the access token.
func (e *m2mEnv) token(t testing.TB, id, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	status, _, body := e.post(t, TokenPath, form, id, secret)
	if status != http.StatusOK {
		t.Fatalf("token request: status %d, body %s", status, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token response %s: %v", body, err)
	}
	return tr.AccessToken
}

// errorCode returns the "error" member of an error response body.
func errorCode(t testing.TB, body []byte) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error
}

func TestNewProviderConfig(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	base := Config{Issuer: "https://x", Store: e.st, Keys: e.keys, Hasher: e.hasher}
	cases := []struct {
		name string
		mod  func(*Config)
	}{
		{"no issuer", func(c *Config) { c.Issuer = "" }},
		{"no store", func(c *Config) { c.Store = nil }},
		{"no keys", func(c *Config) { c.Keys = nil }},
		{"no hasher", func(c *Config) { c.Hasher = nil }},
		{"negative ttl", func(c *Config) { c.AccessTokenTTL = -time.Second }},
	}
	for _, tc := range cases {
		cfg := base
		tc.mod(&cfg)
		if _, err := NewProvider(cfg); err == nil {
			t.Errorf("%s: NewProvider succeeded, want an error", tc.name)
		}
	}
	p, err := NewProvider(base)
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.AccessTokenTTL != DefaultAccessTokenTTL || p.cfg.SecretGrace != DefaultSecretGrace {
		t.Errorf("defaults: AccessTokenTTL %v, SecretGrace %v; want %v, %v",
			p.cfg.AccessTokenTTL, p.cfg.SecretGrace, DefaultAccessTokenTTL, DefaultSecretGrace)
	}
}

func TestMetadataLists(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	md := e.p.Metadata()
	if md.TokenEndpoint != e.issuer+TokenPath || md.IntrospectionEndpoint != e.issuer+IntrospectPath ||
		md.RevocationEndpoint != e.issuer+RevokePath {
		t.Errorf("endpoints = %q %q %q, want under %q", md.TokenEndpoint, md.IntrospectionEndpoint, md.RevocationEndpoint, e.issuer)
	}
	if md.RegistrationEndpoint != "" {
		t.Errorf("registration_endpoint = %q without an initial access token, want none", md.RegistrationEndpoint)
	}
	for g := range e.p.grantHandlers() {
		found := false
		for _, s := range md.GrantTypesSupported {
			found = found || s == g
		}
		if !found {
			t.Errorf("grant_types_supported %v lacks %q", md.GrantTypesSupported, g)
		}
	}
	if len(md.GrantTypesSupported) != len(e.p.grantHandlers()) {
		t.Errorf("grant_types_supported = %v, want exactly the %d handled grants", md.GrantTypesSupported, len(e.p.grantHandlers()))
	}
	for _, g := range md.GrantTypesSupported {
		if g == "password" || g == "implicit" {
			t.Errorf("grant_types_supported lists %q", g)
		}
	}
}
