package ratelimit_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit/ratelimittest"
)

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// patient is for tests of exactness, not of timeouts: a loaded test
// machine must not turn them into fallbacks.
var patient = ratelimit.RedisOptions{Timeout: 10 * time.Second}

func TestNewRedisURL(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"redis://127.0.0.1:6379/0", true},
		{"redis://:pw@redis.internal", true},
		{"rediss://user:pw@redis.internal:6380/2", true},
		{"unix:///run/redis.sock", true},
		{"", false},
		{"127.0.0.1:6379", false},
		{"http://127.0.0.1:6379", false},
		{"redis://", false},
		{"redis://127.0.0.1:6379/notanumber", false},
		{"redis://u:pa ss@host:port/0", false},
		{"redis://:secret%zz@host", false},
	}
	for _, tc := range cases {
		r, err := ratelimit.NewRedis(tc.url, ratelimit.RedisOptions{})
		if (err == nil) != tc.ok {
			t.Errorf("NewRedis(%q) error = %v, want ok=%v", tc.url, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ratelimit.ErrBadURL) {
				t.Errorf("NewRedis(%q) error %v does not wrap ErrBadURL", tc.url, err)
			}
			if strings.Contains(err.Error(), "pa ss") || strings.Contains(err.Error(), "secret") {
				t.Errorf("NewRedis(%q) error %q shows the password", tc.url, err)
			}
			continue
		}
		r.Close()
	}
}

// FuzzNewRedis checks that a rejected URL's error never shows its
// password.
func FuzzNewRedis(f *testing.F) {
	f.Add("redis", "hunter", "127.0.0.1:6379/1")
	f.Add("rediss", "hunter", "h/2?dial_timeout=1s")
	f.Add("redis", "hunter", "h:port")
	f.Add("redis", "secret", "h:99999999")
	f.Add("unix", "secret", "/s?db=x")
	f.Fuzz(func(t *testing.T, scheme, password, rest string) {
		// A password of letters that appears nowhere else in the URL,
		// not even in its quoted form.
		if len(password) < 6 || strings.Trim(password, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" ||
			strings.Contains(strconv.Quote(scheme+"://:@"+rest), password) {
			return
		}
		r, err := ratelimit.NewRedis(scheme+"://:"+password+"@"+rest, ratelimit.RedisOptions{})
		if err != nil {
			if strings.Contains(err.Error(), password) {
				t.Fatalf("error %q shows the password", err)
			}
			return
		}
		r.Close()
	})
}

func TestRedisExact(t *testing.T) {
	r := ratelimittest.Open(t, patient)
	l := r.Limiter(ratelimit.NewLocal(nil))
	ctx := context.Background()
	for i := range 5 {
		d, err := l.Allow(ctx, "client:a", 5, time.Hour)
		if err != nil || !d.Allowed || d.Remaining != 4-i {
			t.Fatalf("request %d: %+v, %v; want allowed with %d remaining", i+1, d, err, 4-i)
		}
	}
	d, err := l.Allow(ctx, "client:a", 5, time.Hour)
	if err != nil || d.Allowed {
		t.Fatalf("request 6: %+v, %v; want refused", d, err)
	}
	if want := 12 * time.Minute; d.RetryAfter < want-5*time.Second || d.RetryAfter > want {
		t.Errorf("retry after %v, want about %v", d.RetryAfter, want)
	}
	if d, _ := l.Allow(ctx, "client:b", 5, time.Hour); !d.Allowed {
		t.Error("another key was refused: keys share a bucket")
	}
	if a, lim := r.Decisions(); a != 6 || lim != 1 || r.Fallbacks() != 0 {
		t.Errorf("Decisions = %d, %d and %d fallbacks; want 6, 1, 0", a, lim, r.Fallbacks())
	}
}

func TestRedisRefillAndExpiry(t *testing.T) {
	prefix := ratelimittest.Prefix(t)
	r := ratelimittest.Open(t, ratelimit.RedisOptions{Prefix: prefix, Timeout: patient.Timeout})
	l := r.Limiter(ratelimit.NewLocal(nil))
	ctx := context.Background()
	const window = 400 * time.Millisecond
	for range 2 {
		if d, err := l.Allow(ctx, "k", 2, window); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v; want allowed", d, err)
		}
	}
	// The key is under the prefix and expires within the window.
	opts, _ := redis.ParseURL(ratelimittest.URL(t))
	raw := redis.NewClient(opts)
	defer raw.Close()
	ttl, err := raw.PTTL(ctx, prefix+"k").Result()
	if err != nil || ttl <= 0 || ttl > window {
		t.Errorf("PTTL of %sk = %v, %v; want in (0, %v]", prefix, ttl, err, window)
	}
	d, _ := l.Allow(ctx, "k", 2, window)
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > window/2 {
		t.Fatalf("third request: %+v; want refused with a retry within %v", d, window/2)
	}
	start := time.Now()
	for !d.Allowed {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no token came back within 5 s")
		}
		time.Sleep(d.RetryAfter)
		d, _ = l.Allow(ctx, "k", 2, window)
	}
	t.Logf("a token came back after %v (window/limit = %v)", time.Since(start).Round(time.Millisecond), window/2)
	start = time.Now()
	for {
		n, err := raw.Exists(ctx, prefix+"k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the bucket key did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisReplicasShareBudget(t *testing.T) {
	prefix := ratelimittest.Prefix(t)
	o := ratelimit.RedisOptions{Prefix: prefix, Timeout: patient.Timeout}
	a := ratelimittest.Open(t, o).Limiter(ratelimit.NewLocal(nil))
	b := ratelimittest.Open(t, o).Limiter(ratelimit.NewLocal(nil))
	ctx := context.Background()
	allowed := 0
	for i := range 20 {
		l := a
		if i%2 == 1 {
			l = b
		}
		d, err := l.Allow(ctx, "apikey:fam", 7, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 7 {
		t.Errorf("two replicas allowed %d requests together, want 7", allowed)
	}
}

func TestRedisConcurrentCallersNeverExceed(t *testing.T) {
	prefix := ratelimittest.Prefix(t)
	o := ratelimit.RedisOptions{Prefix: prefix, Timeout: patient.Timeout}
	ra, rb := ratelimittest.Open(t, o), ratelimittest.Open(t, o)
	limiters := []ratelimit.Limiter{ra.Limiter(ratelimit.NewLocal(nil)), rb.Limiter(ratelimit.NewLocal(nil))}
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			d, err := limiters[i%2].Allow(context.Background(), "client:busy", 50, time.Hour)
			switch {
			case err != nil:
				t.Error(err)
			case d.Allowed:
				allowed.Add(1)
			default:
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 50 || refused.Load() != 150 {
		t.Errorf("200 concurrent callers: %d allowed, %d refused; want exactly 50 and 150", allowed.Load(), refused.Load())
	}
	if n := ra.Fallbacks() + rb.Fallbacks(); n != 0 {
		t.Errorf("%d decisions fell back; the test needs them all in Redis", n)
	}
}

func TestRedisFailuresShared(t *testing.T) {
	prefix := ratelimittest.Prefix(t)
	o := ratelimit.RedisOptions{Prefix: prefix, Timeout: patient.Timeout}
	p := ratelimit.FailurePolicy{Base: time.Second, Max: 15 * time.Minute, Forget: time.Hour}
	a := ratelimittest.Open(t, o).Failures(nil, p)
	b := ratelimittest.Open(t, o).Failures(nil, p)
	ctx := context.Background()
	for range 3 {
		if err := a.Fail(ctx, "u:ada", 3); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := b.Wait(ctx, "u:ada", "ip:192.0.2.1"); err != nil || d != 0 {
		t.Fatalf("wait after the free failures = %v, %v; want 0", d, err)
	}
	if err := b.Fail(ctx, "u:ada", 3); err != nil {
		t.Fatal(err)
	}
	d, err := a.Wait(ctx, "ip:192.0.2.1", "u:ada")
	if err != nil || d <= 500*time.Millisecond || d > time.Second {
		t.Fatalf("wait on replica A after a 4th failure on B = %v, %v; want about 1s", d, err)
	}
	for range 40 {
		a.Fail(ctx, "u:ada", 3)
	}
	if d, _ := b.Wait(ctx, "u:ada"); d < 14*time.Minute || d > 15*time.Minute {
		t.Errorf("wait after many failures = %v, want the 15 min cap", d)
	}
	if err := b.Reset(ctx, "u:ada"); err != nil {
		t.Fatal(err)
	}
	if d, _ := a.Wait(ctx, "u:ada"); d != 0 {
		t.Errorf("wait after Reset = %v, want 0", d)
	}
}

// fallbackState polls until r's Down() is want, for up to 5 s, and returns
// how long that took.
func waitDown(t *testing.T, r *ratelimit.Redis, l ratelimit.Limiter, want bool) time.Duration {
	t.Helper()
	start := time.Now()
	for r.Down() != want {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("Down() is still %v after 5 s", !want)
		}
		l.Allow(context.Background(), "poll", 1000000, time.Hour) // the probe runs on demand
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestFallbackWhenRedisStopsAndRecovery(t *testing.T) {
	const password = "s3cret-redis-pw"
	srv := ratelimittest.StartServer(t, password)
	var logs syncBuffer
	r := ratelimittest.OpenURL(t, srv.URL(), ratelimit.RedisOptions{
		ProbeInterval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	local := ratelimit.NewLocal(nil)
	l := r.Limiter(local)
	ctx := context.Background()
	for range 2 {
		if d, err := l.Allow(ctx, "k", 3, time.Hour); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v; want allowed by Redis", d, err)
		}
	}
	if a, _ := r.Decisions(); a != 2 || r.Down() {
		t.Fatalf("Redis decisions = %d, down = %v; want 2, false", a, r.Down())
	}

	srv.Stop()
	// Traffic continues and the limit is still enforced, per process: the
	// local bucket has its own 3 requests, then refuses.
	var got []bool
	for range 5 {
		d, err := l.Allow(ctx, "k", 3, time.Hour)
		if err != nil {
			t.Fatalf("Allow with Redis down: %v", err)
		}
		got = append(got, d.Allowed)
	}
	if want := []bool{true, true, true, false, false}; !equal(got, want) {
		t.Errorf("decisions with Redis down = %v, want %v", got, want)
	}
	if !r.Down() || r.Fallbacks() < 5 {
		t.Errorf("Down = %v, Fallbacks = %d; want true, at least 5", r.Down(), r.Fallbacks())
	}
	if a, lim := local.Decisions(); a != 3 || lim != 2 {
		t.Errorf("local decisions = %d, %d; want 3, 2", a, lim)
	}
	// Down, it does not wait for Redis at every request.
	start := time.Now()
	for range 100 {
		l.Allow(ctx, "other", 1000, time.Hour)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("100 decisions with Redis down took %v; they must not each wait for Redis", el)
	} else {
		t.Logf("100 decisions with Redis down took %v", el)
	}

	srv.Start()
	t.Logf("recovered %v after Redis came back", waitDown(t, r, l, false).Round(time.Millisecond))
	before, _ := r.Decisions()
	if d, err := l.Allow(ctx, "k", 3, time.Hour); err != nil || !d.Allowed {
		t.Fatalf("after recovery: %+v, %v; want allowed (a fresh Redis has a full bucket)", d, err)
	}
	if after, _ := r.Decisions(); after != before+1 {
		t.Errorf("after recovery the decision was not made by Redis (%d → %d)", before, after)
	}

	out := logs.String()
	if n := strings.Count(out, "Redis is unreachable"); n != 1 {
		t.Errorf("logged the outage %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "Redis answers again"); n != 1 {
		t.Errorf("logged the recovery %d times, want once:\n%s", n, out)
	}
	if strings.Contains(out, password) {
		t.Errorf("the log shows the Redis password:\n%s", out)
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFallbackOnSlowRedis(t *testing.T) {
	// A "Redis" that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	defer func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	}()
	r, err := ratelimit.NewRedis("redis://"+ln.Addr().String()+"/0", ratelimit.RedisOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := r.Limiter(ratelimit.NewLocal(nil))
	start := time.Now()
	d, err := l.Allow(context.Background(), "k", 1, time.Hour)
	el := time.Since(start)
	if err != nil || !d.Allowed {
		t.Fatalf("%+v, %v; want allowed by the local fallback", d, err)
	}
	if el > 2*time.Second {
		t.Errorf("a silent Redis stalled the decision for %v", el)
	}
	t.Logf("decision with a silent Redis took %v (timeout %v)", el.Round(time.Millisecond), ratelimit.DefaultTimeout)
	if !r.Down() || r.Fallbacks() != 1 {
		t.Errorf("Down = %v, Fallbacks = %d; want true, 1", r.Down(), r.Fallbacks())
	}
	if d, _ := l.Allow(context.Background(), "k", 1, time.Hour); d.Allowed {
		t.Error("the local fallback did not enforce the limit")
	}
}

func TestConnectUnreachableIsNotFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var logs syncBuffer
	r, err := ratelimit.NewRedis("redis://"+addr, ratelimit.RedisOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Connect(context.Background(), 0); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if !r.Down() || !strings.Contains(logs.String(), "Redis is unreachable") {
		t.Errorf("Down = %v, log %q; want down and a warning", r.Down(), logs.String())
	}
	if d, err := r.Limiter(ratelimit.NewLocal(nil)).Allow(context.Background(), "k", 1, time.Minute); err != nil || !d.Allowed {
		t.Errorf("Allow = %+v, %v; want allowed locally", d, err)
	}
}

// mapFailures is a minimal local FailureCounter: counts only, every
// failure beyond the free ones waits a minute.
type mapFailures struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *mapFailures) Wait(_ context.Context, keys ...string) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		if m.n[k] < 0 {
			return time.Minute, nil
		}
	}
	return 0, nil
}

func (m *mapFailures) Fail(_ context.Context, key string, free int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n[key]++; m.n[key] > free {
		m.n[key] = -1 // blocked
	}
	return nil
}

func (m *mapFailures) Reset(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.n, key)
	return nil
}

func TestFailuresFallBackAndRecover(t *testing.T) {
	srv := ratelimittest.StartServer(t, "")
	r := ratelimittest.OpenURL(t, srv.URL(), ratelimit.RedisOptions{ProbeInterval: 50 * time.Millisecond, Timeout: time.Second})
	local := &mapFailures{n: map[string]int{}}
	f := r.Failures(local, ratelimit.FailurePolicy{Base: time.Minute, Max: time.Hour, Forget: time.Hour})
	ctx := context.Background()
	if err := f.Fail(ctx, "u:ada", 0); err != nil {
		t.Fatal(err)
	}
	if d, err := f.Wait(ctx, "u:ada"); err != nil || d < 50*time.Second {
		t.Fatalf("Wait after a failure in Redis = %v, %v; want about a minute", d, err)
	}
	if len(local.n) != 0 {
		t.Fatal("the local counter was used while Redis was up")
	}
	srv.Stop()
	// Redis is gone: counting goes on locally, nobody is refused for it.
	if d, err := f.Wait(ctx, "u:bob"); err != nil || d != 0 {
		t.Errorf("Wait with Redis down = %v, %v; want 0 (a fresh local count)", d, err)
	}
	if err := f.Fail(ctx, "u:bob", 0); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.Wait(ctx, "u:bob"); d != time.Minute || !r.Down() {
		t.Errorf("Wait after a local failure = %v (down %v); want the local minute", d, r.Down())
	}
	srv.Start() // a fresh, empty Redis
	start := time.Now()
	for r.Down() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("Redis not used again within 5 s of coming back")
		}
		f.Wait(ctx, "poll")
		time.Sleep(20 * time.Millisecond)
	}
	if d, err := f.Wait(ctx, "u:bob"); err != nil || d != 0 {
		t.Errorf("Wait after recovery = %v, %v; want 0 (from the fresh Redis)", d, err)
	}
}
