package server

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/guard"
	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// sseEvent is one dispatched event of a stream read by openFeed.
type sseEvent struct {
	name, id string
	data     feedEvent
}

// feedConn is an open feed stream for tests.
type feedConn struct {
	resp   *http.Response
	events chan sseEvent // closed when the stream ends
	lines  chan string   // every line, heartbeats included
	cancel context.CancelFunc
}

// openFeed connects to the feed at base with the admin token and the
// given Last-Event-ID ("" for none) and parses events in the background.
func openFeed(t *testing.T, base, lastID string) *feedConn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+FeedPath, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		resp.Body.Close()
		t.Fatalf("feed: got %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	fc := &feedConn{resp: resp, events: make(chan sseEvent, 1000), lines: make(chan string, 1000), cancel: cancel}
	go func() {
		defer close(fc.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			select {
			case fc.lines <- line:
			default:
			}
			switch {
			case line == "":
				if ev.name != "" {
					fc.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				json.Unmarshal([]byte(line[len("data: "):]), &ev.data)
			}
		}
	}()
	t.Cleanup(fc.close)
	return fc
}

func (fc *feedConn) close() {
	fc.cancel()
	fc.resp.Body.Close()
}

// next returns the next event, failing the test after 5 s.
func (fc *feedConn) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-fc.events:
		if !ok {
			t.Fatal("feed stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no feed event within 5 s")
	}
	return sseEvent{}
}

// revoke adds a token to the denylist through the store, as another
// process would.
func revoke(t *testing.T, srv *Server, jti string) {
	t.Helper()
	if err := srv.Store().RevokeToken(t.Context(), jti, "client", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func quietConfig() Config {
	return Config{AdminToken: testAdminToken, Logger: slog.New(slog.DiscardHandler)}
}

func TestFeedAuthentication(t *testing.T) {
	_, base := start(t, quietConfig())
	status, client := call(t, "POST", base+"/admin/clients", nil,
		`{"client_name":"gw","grant_types":["client_credentials"],"scope":"read"}`)
	id, _ := client["client_id"].(string)
	secret, _ := client["client_secret"].(string)
	if status != 201 {
		t.Fatalf("create client: %d %v", status, client)
	}
	tests := []struct {
		name   string
		auth   func(*http.Request)
		query  string
		lastID string
		want   int
	}{
		{"no credentials", func(*http.Request) {}, "", "", 401},
		{"wrong admin token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, "", "", 401},
		{"wrong client secret", func(r *http.Request) { r.SetBasicAuth(id, secret+"x") }, "", "", 401},
		{"admin token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testAdminToken) }, "", "", 200},
		{"client credentials", func(r *http.Request) { r.SetBasicAuth(id, secret) }, "", "", 200},
		{"bad Last-Event-ID", func(r *http.Request) { r.SetBasicAuth(id, secret) }, "", "x1", 400},
		{"negative after", func(r *http.Request) { r.SetBasicAuth(id, secret) }, "?after=-1", "", 400},
		{"after", func(r *http.Request) { r.SetBasicAuth(id, secret) }, "?after=0", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", base+FeedPath+tt.query, nil)
			tt.auth(req)
			if tt.lastID != "" {
				req.Header.Set("Last-Event-ID", tt.lastID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate: got %q, want a Bearer challenge", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestFeedEvents checks what the stream says: the denylist first, then
// live events, API key revocations vs other key changes, and ids that let
// a client resume.
func TestFeedEvents(t *testing.T) {
	srv, base := start(t, quietConfig())
	revoke(t, srv, "before-connect")
	waitSeq(t, srv)
	fc := openFeed(t, base, "")
	if ev := fc.next(t); ev.name != "revoked" || ev.data.Kind != "jwt" || ev.data.ID != "before-connect" || ev.id != "" {
		t.Errorf("first event: got %+v, want the denylisted jti without an id", ev)
	}

	revoke(t, srv, "live-1")
	ev := fc.next(t)
	if ev.name != "revoked" || ev.data.Kind != "jwt" || ev.data.ID != "live-1" || ev.id != strconv.FormatInt(ev.data.Seq, 10) {
		t.Errorf("live revocation: got %+v, want revoked jwt live-1 with id = seq", ev)
	}

	status, created := call(t, "POST", base+keyauth.AdminKeysPath, nil, `{"name":"k","owner":"svc"}`)
	if status != 201 {
		t.Fatalf("create key: %d %v", status, created)
	}
	keyID := created["id"].(string)
	if ev := fc.next(t); ev.name != "changed" || ev.data.Kind != "apikey" || ev.data.ID != keyID {
		t.Errorf("created key: got %+v, want changed apikey %s", ev, keyID)
	}
	status, rotated := call(t, "POST", base+keyauth.AdminKeysPath+"/"+keyID+"/rotate", nil, `{"grace":"1h"}`)
	if status != 201 {
		t.Fatalf("rotate: %d %v", status, rotated)
	}
	got := map[string]string{}
	for range 2 {
		ev := fc.next(t)
		got[ev.data.ID] = ev.name
	}
	if got[keyID] != "changed" || got[rotated["id"].(string)] != "changed" {
		t.Errorf("rotation with grace: got %v, want both keys changed (not revoked)", got)
	}
	if status, _ := call(t, "POST", base+keyauth.AdminKeysPath+"/"+keyID+"/revoke", nil, ""); status != 200 {
		t.Fatalf("revoke key: %d", status)
	}
	if ev := fc.next(t); ev.name != "revoked" || ev.data.Kind != "apikey" || ev.data.ID != keyID {
		t.Errorf("revoked key: got %+v, want revoked apikey %s", ev, keyID)
	}
}

// waitSeq waits until the server's follow loop has published the newest
// change.
func waitSeq(t *testing.T, srv *Server) {
	t.Helper()
	last, err := srv.Store().LastChange(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.feed.current() < last {
		if time.Now().After(deadline) {
			t.Fatalf("feed at %d, want %d", srv.feed.current(), last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFeedResume checks that a client reconnecting with Last-Event-ID gets
// what it missed: from the hub's backlog, and from the store when the
// server started after the missed events.
func TestFeedResume(t *testing.T) {
	for _, be := range []backend{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") }},
		{"postgres", func(t *testing.T) string { return storetest.PostgresURL(t) }},
	} {
		t.Run(be.name, func(t *testing.T) {
			cfg := quietConfig()
			cfg.DBURL, cfg.Secret = be.db(t), strings.Repeat("shared-secret-", 3)
			srv, base := start(t, cfg)
			fc := openFeed(t, base, "")
			revoke(t, srv, "seen")
			last := fc.next(t).id
			fc.close()

			revoke(t, srv, "missed-1")
			revoke(t, srv, "missed-2")
			waitSeq(t, srv)
			fc = openFeed(t, base, last)
			for _, want := range []string{"missed-1", "missed-2"} {
				if ev := fc.next(t); ev.data.ID != want {
					t.Errorf("resumed from the backlog: got %+v, want %s", ev, want)
				}
			}

			// A server started now has none of these in its backlog: it
			// reads them from the store.
			_, other := start(t, cfg)
			fc2 := openFeed(t, other, last)
			for _, want := range []string{"missed-1", "missed-2"} {
				if ev := fc2.next(t); ev.data.ID != want {
					t.Errorf("resumed from the store: got %+v, want %s", ev, want)
				}
			}
			// A cursor ahead of the store cannot be served: reset.
			fc3 := openFeed(t, other, "999999999")
			if ev := fc3.next(t); ev.name != "reset" {
				t.Errorf("cursor ahead of the store: got %+v, want reset", ev)
			}
		})
	}
}

func TestFeedHubBacklog(t *testing.T) {
	h := newFeedHub(10)
	var evs []feedEvent
	for i := range int64(2*feedBacklog + 1) {
		evs = append(evs, feedEvent{name: feedRevoked, Kind: "jwt", ID: "x", Seq: 11 + i})
	}
	h.publish(evs, 11+2*feedBacklog)
	got, seq, floor, covered, _ := h.since(10)
	if covered || got != nil || seq != 11+2*feedBacklog || floor != 11+feedBacklog {
		t.Errorf("since before the backlog: got covered=%v, %d events, seq %d, floor %d; want false, 0, %d, %d",
			covered, len(got), seq, floor, 11+2*feedBacklog, 11+feedBacklog)
	}
	got, _, _, covered, _ = h.since(floor)
	if !covered || len(got) != feedBacklog || got[0].Seq != floor+1 {
		t.Errorf("since the floor: got covered=%v, %d events; want true, %d from seq %d", covered, len(got), feedBacklog, floor+1)
	}
}

// TestFeedSurvivesServerTimeouts checks that a stream outlives the
// server's read and write timeouts and sends heartbeats.
func TestFeedSurvivesServerTimeouts(t *testing.T) {
	srv, _ := start(t, quietConfig())
	srv.feed.heartbeat = 50 * time.Millisecond
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.ReadTimeout, hs.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	hs.Start()
	defer hs.Close()
	fc := openFeed(t, hs.URL, "0")
	defer fc.close()
	pings := 0
	deadline := time.After(2 * time.Second)
	for pings < 10 { // 10 heartbeats: 500 ms, over twice the timeouts
		select {
		case line := <-fc.lines:
			if line == ": ping" {
				pings++
			}
		case <-deadline:
			t.Fatalf("got %d heartbeats in 2 s, want 10 (the stream died?)", pings)
		}
	}
	revoke(t, srv, "late")
	if ev := fc.next(t); ev.data.ID != "late" {
		t.Errorf("after the timeouts: got %+v, want the revocation", ev)
	}
}

// TestFeedShutdown checks that Serve returns promptly with a stream open.
func TestFeedShutdown(t *testing.T) {
	cfg := quietConfig()
	cfg.DataDir = t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg.Issuer = base
	srv, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	fc := openFeed(t, base, "0")
	metrics := func() string {
		_, b := get(t, base+"/metrics")
		return string(b)
	}
	if m := metrics(); !strings.Contains(m, "gatehouse_feed_subscribers 1") || !strings.Contains(m, "gatehouse_feed_seq ") {
		t.Errorf("metrics: want gatehouse_feed_subscribers 1 and gatehouse_feed_seq")
	}
	began := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return within 3 s with a feed stream open")
	}
	t.Logf("shutdown with an open stream took %v", time.Since(began))
	select {
	case _, ok := <-fc.events:
		for ok {
			_, ok = <-fc.events
		}
	case <-time.After(time.Second):
		t.Error("the client's stream did not end")
	}
}

// TestFeedGuardEndToEnd revokes an access token and an API key through one
// server and measures how long a guard, cached and following the feed of
// another server on the same database, keeps accepting them.
func TestFeedGuardEndToEnd(t *testing.T) {
	const audience = "https://api.example.com"
	for _, be := range []backend{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") }},
		{"postgres", func(t *testing.T) string { return storetest.PostgresURL(t) }},
	} {
		t.Run(be.name, func(t *testing.T) {
			cfg := quietConfig()
			cfg.DBURL, cfg.Secret = be.db(t), strings.Repeat("shared-secret-", 3)
			_, a := start(t, cfg) // where credentials are revoked
			_, b := start(t, cfg) // whose feed the guard follows

			status, client := call(t, "POST", a+"/admin/clients", nil,
				`{"client_name":"svc","grant_types":["client_credentials"],"scope":"read","audiences":["`+audience+`"]}`)
			if status != 201 {
				t.Fatalf("create client: %d %v", status, client)
			}
			clientID, secret := client["client_id"].(string), client["client_secret"].(string)
			status, created := call(t, "POST", a+keyauth.AdminKeysPath, nil, `{"name":"k","owner":"svc","scopes":["read"]}`)
			if status != 201 {
				t.Fatalf("create key: %d %v", status, created)
			}
			apiKey, keyID := created["key"].(string), created["id"].(string)

			verifier, err := guard.NewHTTPKeyVerifier(guard.HTTPKeyVerifierConfig{URL: b + keyauth.VerifyPath, Token: testAdminToken})
			if err != nil {
				t.Fatal(err)
			}
			g, err := guard.New(guard.Config{Issuer: a, Audience: audience, APIKeys: verifier})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			followed := make(chan error, 1)
			go func() { followed <- g.Follow(ctx, guard.FeedConfig{URL: b + FeedPath, Token: testAdminToken}) }()
			defer func() { cancel(); <-followed }()
			waitUntil(t, "the feed connects", func() bool { return g.FeedStatus().Connected })

			h := g.Require(guard.Policy{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := func(header, value string) int {
				r := httptest.NewRequest("GET", "/", nil)
				r.RemoteAddr = "127.0.0.1:1234"
				r.Header.Set(header, value)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				return rec.Code
			}

			// Access token: cached by the guard, revoked at A with RFC 7009.
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
			tr, _ := http.NewRequest("POST", a+"/token", strings.NewReader(form.Encode()))
			tr.SetBasicAuth(clientID, secret)
			tr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(tr)
			if err != nil {
				t.Fatal(err)
			}
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			json.NewDecoder(resp.Body).Decode(&tok)
			resp.Body.Close()
			if tok.AccessToken == "" {
				t.Fatalf("token: status %d, no access token", resp.StatusCode)
			}
			if got := req("Authorization", "Bearer "+tok.AccessToken); got != 200 {
				t.Fatalf("guard before revocation: got %d, want 200", got)
			}
			rr, _ := http.NewRequest("POST", a+"/revoke", strings.NewReader(url.Values{"token": {tok.AccessToken}}.Encode()))
			rr.SetBasicAuth(clientID, secret)
			rr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			began := time.Now()
			resp, err = http.DefaultClient.Do(rr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("revoke: status %d", resp.StatusCode)
			}
			took := waitStatus(t, began, func() int { return req("Authorization", "Bearer "+tok.AccessToken) }, 401)
			t.Logf("%s: revoked access token refused by the guard after %v", be.name, took)

			// API key: the guard's cache is warm (KeyTTL 30 s); revoked at A.
			if got := req(guard.HeaderAPIKey, apiKey); got != 200 {
				t.Fatalf("guard before key revocation: got %d, want 200", got)
			}
			began = time.Now()
			if status, _ := call(t, "POST", a+keyauth.AdminKeysPath+"/"+keyID+"/revoke", nil, ""); status != 200 {
				t.Fatalf("revoke key: %d", status)
			}
			took = waitStatus(t, began, func() int { return req(guard.HeaderAPIKey, apiKey) }, 401)
			t.Logf("%s: revoked API key refused by the guard after %v", be.name, took)
		})
	}
}

// waitStatus polls do until it answers want and returns how long that
// took, failing the test after 1 s.
func waitStatus(t *testing.T, from time.Time, do func() int, want int) time.Duration {
	t.Helper()
	for {
		got := do()
		if got == want {
			return time.Since(from)
		}
		if time.Since(from) > time.Second {
			t.Fatalf("still %d after 1 s, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
