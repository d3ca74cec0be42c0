package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Token-exchange parameters (RFC 8693) and Gatehouse's API key token type.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	typeAccessToken    = "urn:ietf:params:oauth:token-type:access_token"
	typeAPIKey         = "urn:gatehouse:params:oauth:token-type:api_key"
)

// Errors of Mint. Callers answer ErrUnavailable with 503 and ErrRefused
// with 401.
var (
	// ErrUnavailable reports that Gatehouse could not mint an internal
	// token (unreachable, failing, or refusing the gateway client itself)
	// and nothing cached could answer.
	ErrUnavailable = errors.New("gateway: internal token unavailable")
	// ErrRefused reports that Gatehouse refused to exchange the credential
	// (for example revoked since it was verified).
	ErrRefused = errors.New("gateway: credential refused by token exchange")
)

const (
	// defaultMintCacheSize bounds the cached internal tokens.
	defaultMintCacheSize = 10000
	// maxRefreshMargin is the most time before expiry at which a cached
	// internal token is replaced.
	maxRefreshMargin = 10 * time.Second
	// maxExchangeResponse bounds the body read from /token.
	maxExchangeResponse = 64 << 10
)

// MinterConfig configures a Minter.
type MinterConfig struct {
	// TokenURL is Gatehouse's token endpoint. Required.
	TokenURL string
	// ClientID and ClientSecret authenticate the gateway client
	// (client_secret_basic). Required.
	ClientID, ClientSecret string
	// Client makes the requests; the default has a 5 s timeout and follows
	// no redirects.
	Client *http.Client
	// CacheSize bounds the cached internal tokens; zero means 10000.
	CacheSize int
	// Now returns the current time; the default is time.Now.
	Now func() time.Time
	// Observe, if set, is called once per exchange call with its outcome
	// ("ok", "refused", "error"); Hit once per answer from the cache.
	Observe func(outcome string)
	Hit     func()
}

// Minter turns a verified external credential into a short-lived internal
// JWT for an upstream audience with Gatehouse's token exchange, and caches
// it per (credential, audience, scope) until shortly before it expires.
// Concurrent misses for the same key share one call. It is safe for
// concurrent use.
type Minter struct {
	tokenURL, clientID string
	secret             string
	client             *http.Client
	max                int
	now                func() time.Time
	observe            func(string)
	hit                func()

	mu      sync.Mutex
	cache   map[mintKey]*minted
	flights map[mintKey]*mintFlight
}

// mintKey identifies a cached internal token; the credential itself is
// never stored, only its SHA-256.
type mintKey struct {
	cred            [sha256.Size]byte
	audience, scope string
}

// minted is one cached internal token.
type minted struct {
	token     string
	expires   time.Time
	refreshAt time.Time
}

type mintFlight struct {
	done chan struct{}
	tok  string
	err  error
}

// NewMinter returns a Minter for cfg.
func NewMinter(cfg MinterConfig) (*Minter, error) {
	if cfg.TokenURL == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("gateway: minter needs TokenURL, ClientID and ClientSecret")
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	m := &Minter{
		tokenURL: cfg.TokenURL, clientID: cfg.ClientID, secret: cfg.ClientSecret, client: &c,
		max: cfg.CacheSize, now: cfg.Now, observe: cfg.Observe, hit: cfg.Hit,
		cache: map[mintKey]*minted{}, flights: map[mintKey]*mintFlight{},
	}
	if m.max <= 0 {
		m.max = defaultMintCacheSize
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.observe == nil {
		m.observe = func(string) {}
	}
	if m.hit == nil {
		m.hit = func() {}
	}
	return m, nil
}

// Mint returns an internal token for the credential cred of kind kind,
// presented from clientIP, for audience, narrowed to scope if not empty.
func (m *Minter) Mint(ctx context.Context, cred string, kind token.Kind, clientIP netip.Addr, audience, scope string) (string, error) {
	k := mintKey{cred: sha256.Sum256([]byte(cred)), audience: audience, scope: scope}
	now := m.now()
	m.mu.Lock()
	e := m.cache[k]
	if e != nil && now.Before(e.refreshAt) {
		m.mu.Unlock()
		m.hit()
		return e.token, nil
	}
	f, ok := m.flights[k]
	if !ok {
		f = &mintFlight{done: make(chan struct{})}
		m.flights[k] = f
		go m.fly(ctx, k, f, cred, kind, clientIP, e)
	}
	m.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// fly makes one exchange call for k and publishes the result to f. stale
// is the cached token being refreshed, if any: it answers while it is still
// valid if Gatehouse cannot be reached.
func (m *Minter) fly(ctx context.Context, k mintKey, f *mintFlight, cred string, kind token.Kind, ip netip.Addr, stale *minted) {
	// The call outlives the request that started it, since others may be
	// waiting; the client's timeout bounds it.
	tok, ttl, err := m.exchange(context.WithoutCancel(ctx), cred, kind, ip, k.audience, k.scope)
	now := m.now()
	m.mu.Lock()
	delete(m.flights, k)
	switch {
	case err == nil:
		margin := min(maxRefreshMargin, ttl/4)
		m.store(k, &minted{token: tok, expires: now.Add(ttl), refreshAt: now.Add(ttl - margin)}, now)
		f.tok = tok
	case errors.Is(err, ErrUnavailable) && stale != nil && now.Before(stale.expires):
		f.tok = stale.token
	default:
		if errors.Is(err, ErrRefused) {
			delete(m.cache, k)
		}
		f.err = err
	}
	m.mu.Unlock()
	close(f.done)
}

// store caches e under k, evicting expired entries and then arbitrary ones
// when full. m.mu is held.
func (m *Minter) store(k mintKey, e *minted, now time.Time) {
	if _, ok := m.cache[k]; !ok && len(m.cache) >= m.max {
		for key, old := range m.cache {
			if !now.Before(old.expires) {
				delete(m.cache, key)
			}
		}
		for key := range m.cache {
			if len(m.cache) < m.max {
				break
			}
			delete(m.cache, key)
		}
	}
	m.cache[k] = e
}

// Len returns the number of cached internal tokens.
func (m *Minter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cache)
}

// exchangeResponse is the success answer of the token endpoint.
type exchangeResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Error       string `json:"error"`
}

// exchange calls the token endpoint once and returns the internal token
// and its lifetime.
func (m *Minter) exchange(ctx context.Context, cred string, kind token.Kind, ip netip.Addr, audience, scope string) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {cred},
		"subject_token_type": {typeAccessToken},
		"audience":           {audience},
	}
	if kind == token.KindAPIKey {
		form.Set("subject_token_type", typeAPIKey)
		if ip.IsValid() {
			form.Set("gatehouse_client_ip", ip.String())
		}
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		m.observe("error")
		return "", 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.SetBasicAuth(url.QueryEscape(m.clientID), url.QueryEscape(m.secret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		m.observe("error")
		// url.Error holds the URL, never the body: the credential is not in it.
		return "", 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxExchangeResponse+1))
	if err != nil || len(data) > maxExchangeResponse {
		m.observe("error")
		return "", 0, fmt.Errorf("%w: reading the token endpoint's answer failed", ErrUnavailable)
	}
	var r exchangeResponse
	jsonErr := json.Unmarshal(data, &r)
	switch {
	case resp.StatusCode == http.StatusBadRequest && jsonErr == nil &&
		(r.Error == "invalid_request" || r.Error == "invalid_grant"):
		m.observe("refused")
		return "", 0, fmt.Errorf("%w: %s", ErrRefused, r.Error)
	case resp.StatusCode != http.StatusOK:
		m.observe("error")
		// invalid_client, invalid_target, unauthorized_client: the
		// gateway's own configuration is wrong; the caller may be fine.
		return "", 0, fmt.Errorf("%w: token endpoint answered %d %s", ErrUnavailable, resp.StatusCode, safeCode(r.Error))
	case jsonErr != nil || r.AccessToken == "" || r.ExpiresIn <= 0:
		m.observe("error")
		return "", 0, fmt.Errorf("%w: token endpoint answered without access_token or expires_in", ErrUnavailable)
	}
	m.observe("ok")
	return r.AccessToken, time.Duration(r.ExpiresIn) * time.Second, nil
}

// safeCode returns an OAuth error code fit for a log line.
func safeCode(s string) string {
	if len(s) > 40 || strings.ContainsFunc(s, func(r rune) bool { return !(r == '_' || 'a' <= r && r <= 'z') }) {
		return "(unexpected error code)"
	}
	return s
}
