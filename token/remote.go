package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds and defaults of a [RemoteKeySet].
const (
	// DefaultMinRefetch is the least time between fetches when MinRefetch
	// is zero.
	DefaultMinRefetch = 30 * time.Second
	// DefaultTTL is the key lifetime without a usable Cache-Control when
	// DefaultTTL is zero.
	DefaultTTL = 5 * time.Minute
	minTTL     = time.Minute
	maxTTL     = 24 * time.Hour
	// firstRetry limits retries while the set has never had keys.
	firstRetry = time.Second
	// maxJWKSSize bounds the JWKS response body.
	maxJWKSSize = 1 << 20
)

// RemoteKeySetConfig configures a [RemoteKeySet].
type RemoteKeySetConfig struct {
	// URL is the issuer's jwks_uri. It must be https, or http on a loopback
	// host (localhost, 127.0.0.0/8, ::1). Required.
	URL string
	// Client fetches the JWKS. The default has a 10 s timeout and refuses
	// redirects to plain http.
	Client *http.Client
	// MinRefetch is the least time between fetches; a token with an unknown
	// kid triggers at most one fetch per MinRefetch. Zero means
	// DefaultMinRefetch (30 s).
	MinRefetch time.Duration
	// DefaultTTL is how long keys are used without refetching when the
	// response has no usable Cache-Control max-age. Zero means DefaultTTL
	// (5 min). A max-age is bounded to between 1 minute and 24 hours.
	DefaultTTL time.Duration
	// Now returns the current time. Optional; the default is time.Now.
	Now func() time.Time
}

// RemoteKeySet is a [KeySet] that fetches a JWK Set over HTTP and caches it
// as the response's Cache-Control allows. Once its keys expire it keeps
// answering from them while one request refreshes them in the background;
// an unknown kid makes callers wait for a fetch (at most one per
// MinRefetch). If the issuer is down it keeps serving the last good keys.
// It is safe for concurrent use.
type RemoteKeySet struct {
	url        string
	client     *http.Client
	minRefetch time.Duration
	defaultTTL time.Duration
	now        func() time.Time

	state atomic.Pointer[remoteState] // nil until the first good fetch

	mu          sync.Mutex
	fetching    chan struct{} // closed when the running fetch ends; nil if none
	lastAttempt time.Time
	lastErr     error
}

// remoteState is one fetched key set; it is never modified.
type remoteState struct {
	keys    map[string]PublicKey
	expires time.Time
}

var _ KeySet = (*RemoteKeySet)(nil)

// NewRemoteKeySet returns a RemoteKeySet for cfg. It does not fetch until
// the first call to Key.
func NewRemoteKeySet(cfg RemoteKeySetConfig) (*RemoteKeySet, error) {
	if err := checkJWKSURL(cfg.URL); err != nil {
		return nil, err
	}
	r := &RemoteKeySet{
		url:        cfg.URL,
		client:     cfg.Client,
		minRefetch: cfg.MinRefetch,
		defaultTTL: cfg.DefaultTTL,
		now:        cfg.Now,
	}
	if r.client == nil {
		r.client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: checkRedirect}
	}
	if r.minRefetch <= 0 {
		r.minRefetch = DefaultMinRefetch
	}
	if r.defaultTTL <= 0 {
		r.defaultTTL = DefaultTTL
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// checkJWKSURL accepts https URLs and http URLs on loopback hosts.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("token: RemoteKeySetConfig.URL must be an absolute URL")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return errors.New("token: RemoteKeySetConfig.URL must be https (or http on a loopback host)")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("token: too many JWKS redirects")
	}
	return checkJWKSURL(req.URL.String())
}

// Key implements [KeySet].
func (r *RemoteKeySet) Key(ctx context.Context, kid string) (PublicKey, error) {
	now := r.now()
	st := r.state.Load()
	if st != nil {
		if k, ok := st.keys[kid]; ok {
			if !now.Before(st.expires) {
				r.refreshAsync(now, st)
			}
			return k, nil
		}
	}
	st, err := r.refresh(ctx, now, st)
	if st == nil {
		if err == nil {
			err = errors.New("no keys fetched yet")
		}
		return PublicKey{}, fmt.Errorf("%w: %w", ErrKeySetUnavailable, err)
	}
	if k, ok := st.keys[kid]; ok {
		return k, nil
	}
	return PublicKey{}, ErrUnknownKey
}

// mayFetch reports whether a new fetch may start. The caller holds r.mu.
func (r *RemoteKeySet) mayFetch(now time.Time, st *remoteState) bool {
	if r.fetching != nil {
		return false
	}
	if r.lastAttempt.IsZero() {
		return true
	}
	wait := r.minRefetch
	if st == nil {
		wait = min(wait, firstRetry)
	}
	return now.Sub(r.lastAttempt) >= wait
}

// start begins a fetch in a new goroutine. The caller holds r.mu.
func (r *RemoteKeySet) start(now time.Time) chan struct{} {
	ch := make(chan struct{})
	r.fetching = ch
	r.lastAttempt = now
	go r.fetch(ch)
	return ch
}

// refreshAsync starts a background fetch if one is allowed.
func (r *RemoteKeySet) refreshAsync(now time.Time, seen *remoteState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Load() == seen && r.mayFetch(now, seen) {
		r.start(now)
	}
}

// refresh fetches the key set unless that is not allowed yet, waiting for
// the fetch (its own or one already running). It returns the newest key
// set, which may be seen or nil, and the last fetch error.
func (r *RemoteKeySet) refresh(ctx context.Context, now time.Time, seen *remoteState) (*remoteState, error) {
	r.mu.Lock()
	if cur := r.state.Load(); cur != seen {
		r.mu.Unlock()
		return cur, nil
	}
	ch := r.fetching
	if ch == nil {
		if !r.mayFetch(now, seen) {
			err := r.lastErr
			r.mu.Unlock()
			return seen, err
		}
		ch = r.start(now)
	}
	r.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return r.state.Load(), ctx.Err()
	}
	r.mu.Lock()
	err := r.lastErr
	r.mu.Unlock()
	return r.state.Load(), err
}

// fetch downloads and installs the key set, then closes done.
func (r *RemoteKeySet) fetch(done chan struct{}) {
	st, err := r.download()
	r.mu.Lock()
	if err == nil {
		r.state.Store(st)
	}
	r.lastErr = err
	r.fetching = nil
	r.mu.Unlock()
	close(done)
}

func (r *RemoteKeySet) download() (*remoteState, error) {
	req, err := http.NewRequest(http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("token: fetching JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("token: fetching JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("token: fetching JWKS: %w", err)
	}
	if len(body) > maxJWKSSize {
		return nil, errors.New("token: fetching JWKS: response too large")
	}
	keys, err := ParseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("token: fetching JWKS: %w", err)
	}
	st := &remoteState{
		keys:    make(map[string]PublicKey, len(keys)),
		expires: r.now().Add(cacheTTL(resp.Header.Get("Cache-Control"), r.defaultTTL)),
	}
	for _, k := range keys {
		st.keys[k.ID] = k
	}
	return st, nil
}

// cacheTTL returns the lifetime a Cache-Control header allows, bounded to
// [minTTL, maxTTL]: no-store and no-cache mean minTTL, max-age=N means N
// seconds, and def is used when neither is present or valid.
func cacheTTL(header string, def time.Duration) time.Duration {
	ttl := time.Duration(-1)
	for d := range strings.SplitSeq(header, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return minTTL
		case strings.HasPrefix(d, "max-age="):
			v := strings.Trim(d[len("max-age="):], `"`)
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				continue
			}
			ttl = time.Duration(min(n, int64(maxTTL/time.Second))) * time.Second
		}
	}
	if ttl < 0 {
		return def
	}
	return min(max(ttl, minTTL), maxTTL)
}
