package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit/ratelimittest"
)

func TestRedisSetting(t *testing.T) {
	t.Run("malformed URL is refused before the store is touched", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		for _, u := range []string{"127.0.0.1:6379", "http://x", "redis://:hunter2-pw@h:port/0", "redis://h/db"} {
			_, err := New(context.Background(), Config{Issuer: "http://127.0.0.1:1", DataDir: dir, RedisURL: u})
			if !errors.Is(err, ratelimit.ErrBadURL) {
				t.Errorf("RedisURL %q: error %v, want ErrBadURL", u, err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the data directory was created (%v)", err)
		}
	})

	t.Run("unreachable Redis starts with a warning and per-process limits", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		logs := &syncBuffer{}
		srv, base := start(t, Config{RedisURL: "redis://:hunter2-pw@" + addr + "/0",
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if !strings.Contains(logs.String(), "Redis is unreachable") {
			t.Errorf("no warning logged:\n%s", logs)
		}
		if strings.Contains(logs.String(), "hunter2") {
			t.Errorf("the log shows the Redis password:\n%s", logs)
		}
		limited := checkLimitedKey(t, srv.APIKeys(), 2)
		if limited != 1 {
			t.Errorf("3 uses of a 2-per-minute key with Redis down: %d refused, want 1", limited)
		}
		_, body := get(t, base+"/metrics")
		for _, want := range []string{
			"gatehouse_ratelimit_fallback 1",
			`gatehouse_ratelimit_decisions_total{backend="local",result="allowed"} 2`,
			`gatehouse_ratelimit_decisions_total{backend="local",result="limited"} 1`,
			"gatehouse_ratelimit_fallbacks_total 3",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	t.Run("reachable Redis decides", func(t *testing.T) {
		srv, base := start(t, Config{RedisURL: ratelimittest.URL(t)})
		if limited := checkLimitedKey(t, srv.APIKeys(), 2); limited != 1 {
			t.Errorf("3 uses of a 2-per-minute key: %d refused, want 1", limited)
		}
		_, body := get(t, base+"/metrics")
		for _, want := range []string{
			"gatehouse_ratelimit_fallback 0",
			`gatehouse_ratelimit_decisions_total{backend="redis",result="allowed"} 2`,
			`gatehouse_ratelimit_decisions_total{backend="redis",result="limited"} 1`,
			"gatehouse_ratelimit_fallbacks_total 0",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// checkLimitedKey creates a key limited to limit uses a minute, uses it
// limit+1 times and returns how many uses were refused for the limit.
func checkLimitedKey(t *testing.T, svc *keyauth.Service, limit int) int {
	t.Helper()
	ctx := context.Background()
	_, key, err := svc.Create(ctx, keyauth.Params{Name: "limited", RateLimit: limit, RateWindow: time.Minute}, keyauth.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for range limit + 1 {
		r, err := svc.Check(ctx, key.Plaintext(), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Reason != "" {
			refused++
		}
	}
	return refused
}

// TestRedisStoppedDuringLoad runs two replicas on one store and one Redis
// under steady API-key verifications, kills Redis and brings it back: no
// request fails, decisions fall back to per process while Redis is gone,
// and both replicas use Redis again once it is back.
func TestRedisStoppedDuringLoad(t *testing.T) {
	redisSrv := ratelimittest.StartServer(t, "")
	cfg := Config{DBURL: "sqlite:" + filepath.Join(t.TempDir(), "shared.db"), Secret: strings.Repeat("shared-secret-", 3),
		AdminToken: testAdminToken, Logger: slog.New(slog.DiscardHandler), RedisURL: redisSrv.URL()}
	a, baseA := start(t, cfg)
	b, baseB := start(t, cfg)
	_, key, err := a.APIKeys().Create(context.Background(), keyauth.Params{Name: "busy", RateLimit: 1000000, RateWindow: time.Hour}, keyauth.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var requests, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for i := range 4 {
		base := []string{baseA, baseB}[i%2]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				requests.Add(1)
				if err := verifyActive(base, key.Plaintext()); err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()

	waitFor := func(what string, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: not within 5 s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	redisDecisions := func(s *Server) uint64 { n, _ := s.limits.Decisions(); return n }
	waitFor("Redis decides on both replicas", func() bool { return redisDecisions(a) > 20 && redisDecisions(b) > 20 })

	redisSrv.Stop()
	waitFor("both replicas fall back", func() bool { return a.limits.Down() && b.limits.Down() })
	localA, _ := a.localLimits.Decisions()
	waitFor("local decisions while Redis is down", func() bool { n, _ := a.localLimits.Decisions(); return n > localA+20 })
	if _, body := get(t, baseA+"/metrics"); !strings.Contains(string(body), "gatehouse_ratelimit_fallback 1") {
		t.Error("metrics do not show the fallback")
	}

	redisSrv.Start()
	took := waitFor("both replicas use Redis again", func() bool { return !a.limits.Down() && !b.limits.Down() })
	t.Logf("both replicas used Redis again %v after it came back", took.Round(time.Millisecond))
	ra, rb := redisDecisions(a), redisDecisions(b)
	waitFor("Redis decides again", func() bool { return redisDecisions(a) > ra+20 && redisDecisions(b) > rb+20 })

	halt()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d verifications failed; first: %v", n, requests.Load(), firstFailure.Load())
	}
	t.Logf("%d verifications, %d fallbacks on A, %d on B", requests.Load(), a.limits.Fallbacks(), b.limits.Fallbacks())
}

// verifyActive asks base to verify key and returns an error unless the
// answer is 200 with "active": true.
func verifyActive(base, key string) error {
	req, err := http.NewRequest("POST", base+keyauth.VerifyPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set(keyauth.HeaderAPIKey, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Active bool   `json:"active"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || !out.Active {
		return fmt.Errorf("status %d, active %v, reason %q", resp.StatusCode, out.Active, out.Reason)
	}
	return nil
}
