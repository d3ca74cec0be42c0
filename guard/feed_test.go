package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []sseMessage
	}{
		{"one event", "event: revoked\nid: 7\ndata: {\"id\":\"a\"}\n\n",
			[]sseMessage{{event: "revoked", data: []byte(`{"id":"a"}`), hasData: true, id: "7", hasID: true}}},
		{"CRLF and no space after colon", "event:changed\r\ndata:x\r\n\r\n",
			[]sseMessage{{event: "changed", data: []byte("x"), hasData: true}}},
		{"multi-line data", "data: a\ndata: b\n\n",
			[]sseMessage{{data: []byte("a\nb"), hasData: true}}},
		{"comment only", ": ping\n\n", []sseMessage{{}}},
		{"bare id", "id: 42\n\n", []sseMessage{{id: "42", hasID: true}}},
		{"blank lines between", "\n\n: a\n\nevent: x\ndata\n\n",
			[]sseMessage{{}, {event: "x", hasData: true}}},
		{"unknown field and retry ignored", "retry: 1000\nfoo: bar\n\n", []sseMessage{{}}},
		{"id with NUL ignored", "id: 1\x002\n\n", []sseMessage{{}}},
		{"value keeps second space", "data:  two\n\n", []sseMessage{{data: []byte(" two"), hasData: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := newSSEReader(strings.NewReader(tt.input))
			for i, want := range tt.want {
				got, err := rd.next()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if got.event != want.event || string(got.data) != string(want.data) || got.hasData != want.hasData ||
					got.id != want.id || got.hasID != want.hasID {
					t.Errorf("message %d: got %+v, want %+v", i, got, want)
				}
			}
			if _, err := rd.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("after the last message: got %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

func TestSSEReaderLimits(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{"long line", "data: " + strings.Repeat("x", maxSSELine+1) + "\n\n"},
		{"long data", strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", maxSSEData/1000+1) + "\n"},
		{"truncated", "event: revoked\ndata: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := newSSEReader(strings.NewReader(tt.input)).next(); err == nil {
				t.Errorf("got message %+v, want an error", m)
			}
		})
	}
}

func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"event: revoked\nid: 7\ndata: {\"kind\":\"jwt\",\"id\":\"a\",\"seq\":7}\n\n",
		": ping\n\nid: 9\n\n", "data:a\r\ndata:b\r\n\r\n", "retry: 10\n\n", "\n\n\n", "id\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := newSSEReader(strings.NewReader(string(b)))
		g, err := New(Config{APIKeys: newFakeKeys()})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			m, err := rd.next()
			if err != nil {
				return
			}
			if i > len(b) {
				t.Fatalf("%d messages from %d bytes", i, len(b))
			}
			if len(m.data) > maxSSEData {
				t.Fatalf("data of %d bytes, limit %d", len(m.data), maxSSEData)
			}
			if !m.hasData && len(m.data) > 0 {
				t.Fatal("data without hasData")
			}
			if strings.ContainsRune(m.id, 0) {
				t.Fatal("id with NUL accepted")
			}
			g.applyFeedEvent(m.event, m.data) // must not panic
		}
	})
}

// fakeFeed is an SSE server: each connection gets the messages of the
// next script (then stays open until the client leaves), and the
// Last-Event-ID of every connection is recorded.
type fakeFeed struct {
	srv     *httptest.Server
	mu      sync.Mutex
	scripts []string
	lastIDs []string
	status  int // if not 0, answer it instead of a stream
}

func newFakeFeed(t *testing.T, scripts ...string) *fakeFeed {
	f := &fakeFeed{scripts: scripts}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.lastIDs = append(f.lastIDs, r.Header.Get("Last-Event-ID"))
		status := f.status
		script := ""
		if len(f.scripts) > 0 {
			script, f.scripts = f.scripts[0], f.scripts[1:]
		}
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer feed-token" {
			status = http.StatusUnauthorized
		}
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		if script == "close" {
			return // the stream ends at once
		}
		io.WriteString(w, script)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFeed) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lastIDs...)
}

// follow runs g.Follow in the background until the test ends.
func follow(t *testing.T, g *Guard, cfg FeedConfig) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Follow(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Follow: got %v, want context.Canceled", err)
		}
	})
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFollowAppliesEvents(t *testing.T) {
	e := newEnv(t, nil)
	h := e.guard.Require(Policy{})(echo)
	c := e.issuer.claims("read")
	c.ID = "jti-1"
	tok := e.issuer.issue(t, c)
	const revokedID, changedID = "AAAAAAAAAAA1", "AAAAAAAAAAA2"
	revokedKey, changedKey := makeKey(revokedID, "r"), makeKey(changedID, "c")
	e.keys.set(revokedKey, activeKey(revokedID))
	e.keys.set(changedKey, activeKey(changedID))
	for _, hdr := range [][2]string{{"Authorization", "Bearer " + tok}, {"X-API-Key", revokedKey}, {"X-API-Key", changedKey}} {
		if rec := do(h, "/r", hdr[0], hdr[1]); rec.Code != 200 {
			t.Fatalf("before the feed: %s: got %d, want 200", hdr[0], rec.Code)
		}
	}
	feed := newFakeFeed(t, "retry: 1000\n\n: ping\n\n"+
		"event: revoked\nid: 3\ndata: {\"kind\":\"jwt\",\"id\":\"jti-1\",\"seq\":3}\n\n"+
		"event: revoked\nid: 4\ndata: {\"kind\":\"apikey\",\"id\":\""+revokedID+"\",\"seq\":4}\n\n"+
		"event: changed\nid: 5\ndata: {\"kind\":\"apikey\",\"id\":\""+changedID+"\",\"seq\":5}\n\n"+
		"event: future\nid: 6\ndata: {}\n\n"+
		"event: revoked\ndata: {\"kind\":\"family\",\"id\":\"x\"}\n\n"+
		"id: 9\n\n")
	follow(t, e.guard, FeedConfig{URL: feed.srv.URL, Token: "feed-token"})
	waitFor(t, "seq 9", func() bool { return e.guard.FeedStatus().Seq == 9 })

	st := e.guard.FeedStatus()
	if !st.Connected || st.Events != 3 || st.LastMessage.IsZero() || st.Failures != 0 {
		t.Errorf("status: got %+v, want connected, 3 events, a last message, no failures", st)
	}
	calls := e.keys.callCount()
	if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != 401 {
		t.Errorf("revoked JWT: got %d, want 401", rec.Code)
	}
	if rec := do(h, "/r", "X-API-Key", revokedKey); rec.Code != 401 {
		t.Errorf("revoked API key: got %d, want 401", rec.Code)
	}
	// A changed key is asked about again, and still accepted.
	if rec := do(h, "/r", "X-API-Key", changedKey); rec.Code != 200 {
		t.Errorf("changed API key: got %d, want 200", rec.Code)
	}
	if got := e.keys.callCount() - calls; got != 1 {
		t.Errorf("verifier calls after the events: got %d, want 1 (the changed key only)", got)
	}
}

func TestFollowReconnects(t *testing.T) {
	e := newEnv(t, nil)
	feed := newFakeFeed(t,
		"event: revoked\nid: 3\ndata: {\"kind\":\"jwt\",\"id\":\"a\",\"seq\":3}\n\n", // then silence
		"close",
		"event: reset\nid: 4\ndata: {\"seq\":4}\n\n")
	follow(t, e.guard, FeedConfig{URL: feed.srv.URL, Token: "feed-token", IdleTimeout: 200 * time.Millisecond})
	waitFor(t, "the third connection", func() bool { return len(feed.ids()) == 3 && e.guard.FeedStatus().Seq == 4 })
	// The silent stream was dropped after the idle timeout; the closed one
	// at once; each reconnection sent the last id.
	if got, want := strings.Join(feed.ids(), ","), ",3,3"; got != want {
		t.Errorf("Last-Event-IDs: got %q, want %q", got, want)
	}
	if st := e.guard.FeedStatus(); st.Failures != 2 || !st.Connected || st.Events != 2 {
		t.Errorf("status: got %+v, want 2 failures, connected, 2 events", st)
	}
}

func TestFollowUnauthorized(t *testing.T) {
	e := newEnv(t, nil)
	feed := newFakeFeed(t)
	follow(t, e.guard, FeedConfig{URL: feed.srv.URL, Token: "wrong", MaxBackoff: 50 * time.Millisecond})
	waitFor(t, "three attempts", func() bool { return len(feed.ids()) >= 3 })
	if st := e.guard.FeedStatus(); st.Connected || st.Failures < 2 {
		t.Errorf("status: got %+v, want not connected, failures counted", st)
	}
}

func TestFollowBadConfig(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		cfg  FeedConfig
	}{
		{"no URL", FeedConfig{Token: "t"}},
		{"plain http off loopback", FeedConfig{URL: "http://auth.example.com/feed/revocations", Token: "t"}},
		{"no credentials", FeedConfig{URL: "https://auth.example.com/feed/revocations"}},
		{"both credentials", FeedConfig{URL: "https://auth.example.com/feed/revocations", Token: "t", ClientID: "c"}},
		{"negative timeout", FeedConfig{URL: "https://auth.example.com/feed/revocations", Token: "t", IdleTimeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := e.guard.Follow(ctx, tt.cfg)
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want a configuration error", err)
			}
		})
	}
	t.Run("second Follow", func(t *testing.T) {
		feed := newFakeFeed(t)
		cfg := FeedConfig{URL: feed.srv.URL, Token: "feed-token"}
		follow(t, e.guard, cfg)
		waitFor(t, "the first Follow", func() bool { return e.guard.FeedStatus().Connected })
		if err := e.guard.Follow(context.Background(), cfg); err == nil {
			t.Error("second concurrent Follow: got nil, want an error")
		}
	})
}

// ExampleGuard_Follow shows a service subscribing its Guard to the
// revocation feed.
func ExampleGuard_Follow() {
	g, err := New(Config{Issuer: "https://auth.example.com", Audience: "https://api.example.com"})
	if err != nil {
		panic(err)
	}
	go func() {
		// Follow returns only when its context is done (or at once for a
		// bad configuration).
		err := g.Follow(context.Background(), FeedConfig{
			URL:   "https://auth.example.com/feed/revocations",
			Token: os.Getenv("GATEHOUSE_ADMIN_TOKEN"),
		})
		log.Print(err)
	}()
	// In a readiness or metrics handler:
	if st := g.FeedStatus(); !st.Connected {
		fmt.Println("revocation feed down since", st.LastMessage)
	}
}

func TestFollowServerDown(t *testing.T) {
	var logs syncLog
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there now
	follow(t, e.guard, FeedConfig{URL: srv.URL, Token: "feed-token", MaxBackoff: 20 * time.Millisecond})
	waitFor(t, "two failures", func() bool { return e.guard.FeedStatus().Failures >= 2 })
	if got := logs.String(); !strings.Contains(got, "revocation feed down") || strings.Contains(got, "%!") ||
		strings.Contains(got, "feed-token") {
		t.Errorf("log: got %q, want the failure logged with its cause and without the token", got)
	}
}

// syncLog is a concurrency-safe log sink.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
