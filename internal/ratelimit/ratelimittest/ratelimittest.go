// Package ratelimittest gives tests a real Redis: the shared test server
// named by GATEHOUSE_TEST_REDIS (each test under its own key prefix), or a
// private redis-server child process a test may stop and restart.
//
// Without GATEHOUSE_TEST_REDIS (or without redis-server) the tests that
// need it are skipped, except under CI=true, where they fail.
package ratelimittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
)

// EnvURL names the environment variable with the test server's URL, such
// as redis://127.0.0.1:6379/15. Use a database of its own: tests write
// keys there (and delete them again).
const EnvURL = "GATEHOUSE_TEST_REDIS"

// unavailable skips the test, or fails it under CI.
func unavailable(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s (required when CI=true)", why)
	}
	tb.Skip(why)
}

// URL returns the shared test server's URL.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		unavailable(tb, EnvURL+" is not set")
	}
	return u
}

// Prefix returns a key prefix no other test uses, and deletes every key
// under it on the shared test server when the test ends.
func Prefix(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	rand.Read(b) // never fails
	prefix := "gatehouse:rl:test:" + hex.EncodeToString(b) + ":"
	opts, err := redis.ParseURL(URL(tb))
	if err != nil {
		tb.Fatalf("%s: %v", EnvURL, err)
	}
	tb.Cleanup(func() {
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}

// Open returns a Redis on the shared test server, closed when the test
// ends. Two calls with the same o.Prefix (see [Prefix]) behave like two
// replicas; an empty o.Prefix gets a fresh one. Logs are discarded unless
// o.Logger is set.
func Open(tb testing.TB, o ratelimit.RedisOptions) *ratelimit.Redis {
	tb.Helper()
	return OpenURL(tb, URL(tb), o)
}

// OpenURL is [Open] for the server at rawURL, such as a [Server]'s.
func OpenURL(tb testing.TB, rawURL string, o ratelimit.RedisOptions) *ratelimit.Redis {
	tb.Helper()
	if o.Prefix == "" {
		o.Prefix = Prefix(tb)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := ratelimit.NewRedis(rawURL, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	if err := r.Connect(context.Background(), 5*time.Second); err != nil {
		tb.Fatalf("Redis at %s: %v", r.Addr(), err)
	}
	return r
}

// Server is a private redis-server child process on a fixed port of
// 127.0.0.1, which a test may stop and start again.
type Server struct {
	tb       testing.TB
	port     int
	password string
	cmd      *exec.Cmd
}

// StartServer starts a redis-server on a free port, stopped when the test
// ends. A non-empty password is required of clients (and is in [Server.URL]).
func StartServer(tb testing.TB, password string) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(tb, "redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &Server{tb: tb, port: port, password: password}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// URL returns the server's URL.
func (s *Server) URL() string {
	auth := ""
	if s.password != "" {
		auth = ":" + s.password + "@"
	}
	return "redis://" + auth + "127.0.0.1:" + strconv.Itoa(s.port) + "/0"
}

// Start starts the server (again) and waits until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		return
	}
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	opts, _ := redis.ParseURL(s.URL())
	c := redis.NewClient(opts)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on port %d did not answer: %v", s.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// String describes the server for test messages.
func (s *Server) String() string { return fmt.Sprintf("redis-server on 127.0.0.1:%d", s.port) }
