package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestMinter(t *testing.T, f *fakeGatehouse, now func() time.Time) *Minter {
	m, err := NewMinter(MinterConfig{TokenURL: f.url + "/token", ClientID: gwClient, ClientSecret: gwSecret, Now: now, CacheSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMinterCache(t *testing.T) {
	f := newFakeGatehouse(t)
	clk := &fakeClock{t: time.Now()}
	m := newTestMinter(t, f, clk.Now)
	ctx := context.Background()
	jwt := f.jwt(t, "alice", "a b")
	mint := func() string {
		t.Helper()
		tok, err := m.Mint(ctx, jwt, token.KindJWT, netip.Addr{}, "http://svc", "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first := mint()
	if f.calls.Load() != 1 {
		t.Fatalf("calls = %d, want 1", f.calls.Load())
	}
	if mint() != first || f.calls.Load() != 1 {
		t.Fatalf("second mint made a call (calls = %d)", f.calls.Load())
	}
	// 60 s lifetime: refreshed 10 s before expiry.
	clk.Add(49 * time.Second)
	mint()
	if f.calls.Load() != 1 {
		t.Fatalf("refreshed too early")
	}
	clk.Add(2 * time.Second)
	mint()
	if f.calls.Load() != 2 {
		t.Fatalf("calls = %d after 51 s, want 2 (refresh near expiry)", f.calls.Load())
	}
	// Another audience is another token.
	if _, err := m.Mint(ctx, jwt, token.KindJWT, netip.Addr{}, "http://other", ""); err != nil || f.calls.Load() != 3 {
		t.Fatalf("other audience: err %v, calls %d", err, f.calls.Load())
	}
	// Gatehouse down: a cached, still valid token answers; none does not.
	f.down.Store(true)
	clk.Add(55 * time.Second) // past refreshAt, before expiry of the refreshed token
	if _, err := m.Mint(ctx, jwt, token.KindJWT, netip.Addr{}, "http://svc", ""); err != nil {
		t.Fatalf("stale but valid token not used while Gatehouse is down: %v", err)
	}
	if _, err := m.Mint(ctx, f.jwt(t, "bob", ""), token.KindJWT, netip.Addr{}, "http://svc", ""); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	f.down.Store(false)
	if _, err := m.Mint(ctx, "unknown", token.KindJWT, netip.Addr{}, "http://svc", ""); !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	// Bounded.
	for i := range 10 {
		m.Mint(ctx, f.jwt(t, fmt.Sprint("u", i), ""), token.KindJWT, netip.Addr{}, "http://svc", "")
	}
	if n := m.Len(); n > 4 {
		t.Errorf("cache holds %d, want at most 4", n)
	}
}

func TestMinterRequest(t *testing.T) {
	f := newFakeGatehouse(t)
	m := newTestMinter(t, f, nil)
	key := f.apiKey("KEY000000002", "svc", "a b")
	if _, err := m.Mint(context.Background(), key, token.KindAPIKey, netip.MustParseAddr("192.0.2.7"), "http://svc", "a"); err != nil {
		t.Fatal(err)
	}
	got := f.lastEx.Load().(map[string]string)
	if got["subject_token_type"] != typeAPIKey || got["audience"] != "http://svc" || got["scope"] != "a" {
		t.Errorf("exchange parameters = %v", got)
	}
}

func TestMinterSingleFlight(t *testing.T) {
	f := newFakeGatehouse(t)
	m := newTestMinter(t, f, nil)
	jwt := f.jwt(t, "alice", "")
	block := make(chan struct{})
	f.block.Store(&block)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = m.Mint(context.Background(), jwt, token.KindJWT, netip.Addr{}, "http://svc", "")
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(block)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d exchange calls for concurrent misses, want 1", n)
	}
}

func TestGatewayReusesInternalToken(t *testing.T) {
	f := newFakeGatehouse(t)
	up := newUpstream(t)
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf("[[route]]\npath = \"/\"\nupstream = %q\n", up.srv.URL))
	jwt := f.jwt(t, "alice", "")
	for range 3 {
		if resp := send(t, gw.URL+"/x", "Authorization", "Bearer "+jwt); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d exchange calls for 3 requests with one credential, want 1", n)
	}
	f.down.Store(true)
	if resp := send(t, gw.URL+"/x", "Authorization", "Bearer "+f.jwt(t, "bob", "")); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("Gatehouse down, nothing cached: status %d, want 503 with Retry-After", resp.StatusCode)
	}
}

func TestReload(t *testing.T) {
	f := newFakeGatehouse(t)
	up := newUpstream(t)
	route := func(p string) string { return fmt.Sprintf("[[route]]\npath = %q\nupstream = %q\n", p, up.srv.URL) }
	gwy, gw, path := newTestGateway(t, f, route("/a/"))
	jwt := f.jwt(t, "alice", "")
	status := func(p string) int { return send(t, gw.URL+p, "Authorization", "Bearer "+jwt).StatusCode }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gwy.Watch(ctx, path, 20*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // let Watch take its first look

	if status("/a/x") != 200 || status("/b/x") != 404 {
		t.Fatal("initial routes wrong")
	}
	cfg, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(cfg), `"/a/"`, `"/b/"`, 1)), 0o600)
	deadline := time.Now().Add(5 * time.Second)
	for status("/b/x") != 200 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if status("/b/x") != 200 || status("/a/x") != 404 {
		t.Fatal("changed file not applied")
	}
	// A broken file keeps the current routes.
	os.WriteFile(path, []byte(string(cfg)+"\nbogus = 1\n"), 0o600)
	time.Sleep(200 * time.Millisecond)
	if status("/b/x") != 200 {
		t.Fatal("broken file replaced the routes")
	}
	if err := gwy.ReloadFile(path, true); !errors.Is(err, ErrConfig) {
		t.Fatalf("ReloadFile(broken) = %v, want ErrConfig", err)
	}
	// The SIGHUP path: a forced reload of a good file.
	os.WriteFile(path, cfg, 0o600)
	if err := gwy.ReloadFile(path, true); err != nil {
		t.Fatal(err)
	}
	if status("/a/x") != 200 {
		t.Fatal("forced reload not applied")
	}
	// Settings other than routes cannot change.
	os.WriteFile(path, []byte(strings.Replace(string(cfg), extAudience, "https://other", 1)), 0o600)
	if err := gwy.ReloadFile(path, true); !errors.Is(err, ErrConfig) {
		t.Fatalf("reload changing audience = %v, want ErrConfig", err)
	}
}
