package token

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer serves a JWKS document that tests can change.
type jwksServer struct {
	*httptest.Server
	mu           sync.Mutex
	keys         []PublicKey
	status       int
	body         string // overrides keys when set
	cacheControl string
	block        chan struct{} // if set, requests wait for it
	hits         atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...PublicKey) *jwksServer {
	s := &jwksServer{keys: keys, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		block, status, body, cc := s.block, s.status, s.body, s.cacheControl
		keys := s.keys
		s.mu.Unlock()
		if block != nil {
			<-block
		}
		if body == "" {
			doc, err := MarshalJWKS(keys...)
			if err != nil {
				t.Error(err)
			}
			body = string(doc)
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(f func(s *jwksServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func newRemote(t *testing.T, url string, clk *clock) *RemoteKeySet {
	t.Helper()
	r, err := NewRemoteKeySet(RemoteKeySetConfig{URL: url, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestRemoteKeySetFetchAndCache(t *testing.T) {
	a, b := newSigningKey(t, ES256), newSigningKey(t, EdDSA)
	srv := newJWKSServer(t, a.Public())
	clk := &clock{now: testNow}
	r := newRemote(t, srv.URL, clk)

	if k, err := r.Key(bg, a.ID); err != nil || k.Algorithm != ES256 {
		t.Fatalf("Key: got %+v, %v", k, err)
	}
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches: got %d, want 1", got)
	}

	// An unknown kid refetches, but at most once per MinRefetch.
	srv.set(func(s *jwksServer) { s.keys = append(s.keys, b.Public()) })
	if _, err := r.Key(bg, b.ID); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(new kid) within MinRefetch: got %v, want %v", err, ErrUnknownKey)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches: got %d, want 1", got)
	}
	clk.Add(DefaultMinRefetch)
	if _, err := r.Key(bg, b.ID); err != nil {
		t.Errorf("Key(new kid) after MinRefetch: got %v, want nil", err)
	}
	if _, err := r.Key(bg, "unknown"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(unknown): got %v, want %v", err, ErrUnknownKey)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("fetches: got %d, want 2", got)
	}
	clk.Add(DefaultMinRefetch)
	if _, err := r.Key(bg, "unknown"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(unknown): got %v, want %v", err, ErrUnknownKey)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Errorf("fetches: got %d, want 3", got)
	}
}

func TestRemoteKeySetExpiry(t *testing.T) {
	a := newSigningKey(t, ES256)
	srv := newJWKSServer(t, a.Public())
	srv.cacheControl = "public, max-age=120"
	clk := &clock{now: testNow}
	r := newRemote(t, srv.URL, clk)
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	clk.Add(119 * time.Second)
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches before max-age: got %d, want 1", got)
	}

	// Once expired, the old keys answer at once while a refresh runs,
	// even if the issuer is slow or down.
	block := make(chan struct{})
	srv.set(func(s *jwksServer) { s.block = block; s.status = http.StatusServiceUnavailable })
	clk.Add(2 * time.Second)
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Errorf("Key with expired keys: got %v, want nil", err)
	}
	waitFor(t, "the background fetch", func() bool { return srv.hits.Load() == 2 })
	close(block)
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Errorf("Key while the issuer is down: got %v, want nil", err)
	}
	// Retries are spaced by MinRefetch.
	clk.Add(DefaultMinRefetch)
	waitFor(t, "the failed fetch to finish", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.fetching == nil
	})
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a retry", func() bool { return srv.hits.Load() == 3 })
}

func TestRemoteKeySetUnavailable(t *testing.T) {
	a := newSigningKey(t, ES256)
	srv := newJWKSServer(t, a.Public())
	srv.status = http.StatusInternalServerError
	clk := &clock{now: testNow}
	r := newRemote(t, srv.URL, clk)
	if _, err := r.Key(bg, a.ID); !errors.Is(err, ErrKeySetUnavailable) {
		t.Fatalf("Key: got %v, want %v", err, ErrKeySetUnavailable)
	}
	srv.set(func(s *jwksServer) { s.status = http.StatusOK })
	if _, err := r.Key(bg, a.ID); !errors.Is(err, ErrKeySetUnavailable) {
		t.Errorf("Key right after a failure: got %v, want %v", err, ErrKeySetUnavailable)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches: got %d, want 1", got)
	}
	clk.Add(firstRetry)
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Errorf("Key after the retry delay: got %v, want nil", err)
	}
	// A bad document later keeps the good keys.
	srv.set(func(s *jwksServer) { s.body = `{"keys":[{"kty":"EC","kid":"x","d":"AAAA"}]}` })
	clk.Add(time.Hour)
	if _, err := r.Key(bg, "x"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(x) from a bad document: got %v, want %v", err, ErrUnknownKey)
	}
	if _, err := r.Key(bg, a.ID); err != nil {
		t.Errorf("Key after a bad document: got %v, want nil", err)
	}
}

func TestRemoteKeySetBadResponses(t *testing.T) {
	tests := []struct {
		name string
		set  func(s *jwksServer)
	}{
		{"404", func(s *jwksServer) { s.status = http.StatusNotFound }},
		{"not JSON", func(s *jwksServer) { s.body = "<html>" }},
		{"too large", func(s *jwksServer) { s.body = `{"keys":[],"x":"` + strings.Repeat("a", maxJWKSSize) + `"}` }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t)
			srv.set(tt.set)
			r := newRemote(t, srv.URL, &clock{now: testNow})
			if _, err := r.Key(bg, "a"); !errors.Is(err, ErrKeySetUnavailable) {
				t.Errorf("Key: got %v, want %v", err, ErrKeySetUnavailable)
			}
		})
	}
}

func TestRemoteKeySetConcurrentAndCanceled(t *testing.T) {
	a := newSigningKey(t, ES256)
	srv := newJWKSServer(t, a.Public())
	block := make(chan struct{})
	srv.block = block
	r := newRemote(t, srv.URL, &clock{now: testNow})

	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	if _, err := r.Key(ctx, a.ID); !errors.Is(err, ErrKeySetUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Key with a short deadline: got %v, want %v and %v", err, ErrKeySetUnavailable, context.DeadlineExceeded)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := r.Key(bg, a.ID)
			errs <- err
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(block)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Key: got %v, want nil", err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches: got %d, want 1", got)
	}
}

func TestRemoteKeySetVerifier(t *testing.T) {
	f := newFixture(t, EdDSA, nil)
	srv := newJWKSServer(t, f.key.Public())
	keys, err := NewRemoteKeySet(RemoteKeySetConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys, Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(bg, f.issue(t, validClaims())); err != nil {
		t.Errorf("Verify: %v", err)
	}
	other := newFixture(t, EdDSA, nil)
	other.key.ID = "other"
	if _, err := v.Verify(bg, other.sign(t, header(other, ""), payload(nil))); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify with an unknown kid: got %v, want %v", err, ErrUnknownKey)
	}
}

func TestRemoteKeySetURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://auth.example.com/jwks", true},
		{"http://127.0.0.1:8080/jwks", true},
		{"http://127.1.2.3/jwks", true},
		{"http://[::1]:8080/jwks", true},
		{"http://localhost:8080/jwks", true},
		{"http://auth.example.com/jwks", false},
		{"http://10.0.0.1/jwks", false},
		{"http://localhost.evil.com/jwks", false},
		{"ftp://auth.example.com/jwks", false},
		{"/jwks", false},
		{"", false},
		{"https://", false},
	}
	for _, tt := range tests {
		_, err := NewRemoteKeySet(RemoteKeySetConfig{URL: tt.url})
		if (err == nil) != tt.ok {
			t.Errorf("NewRemoteKeySet(%q): got %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

func TestRemoteKeySetRedirect(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	}))
	defer redirect.Close()
	for _, tt := range []struct {
		to string
		ok bool
	}{{target.URL, true}, {"http://example.com/jwks", false}} {
		r := newRemote(t, redirect.URL+"?to="+tt.to, &clock{now: testNow})
		_, err := r.Key(bg, "a")
		if got := !errors.Is(err, ErrKeySetUnavailable); got != tt.ok {
			t.Errorf("redirect to %s: got %v, want ok=%v", tt.to, err, tt.ok)
		}
	}
}

func TestCacheTTL(t *testing.T) {
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", DefaultTTL},
		{"public", DefaultTTL},
		{"max-age=600", 10 * time.Minute},
		{"public, max-age=3600, must-revalidate", time.Hour},
		{"Max-Age=600", 10 * time.Minute},
		{`max-age="600"`, 10 * time.Minute},
		{"max-age=1", minTTL},
		{"max-age=0", minTTL},
		{"max-age=9999999999999999999", DefaultTTL},
		{"max-age=999999999", maxTTL},
		{"max-age=-5", DefaultTTL},
		{"max-age=abc", DefaultTTL},
		{"no-store", minTTL},
		{"max-age=600, no-cache", minTTL},
	}
	for _, tt := range tests {
		if got := cacheTTL(tt.header, DefaultTTL); got != tt.want {
			t.Errorf("cacheTTL(%q): got %v, want %v", tt.header, got, tt.want)
		}
	}
}
