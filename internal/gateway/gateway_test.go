package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// upstream records what it receives and answers "ok <path>".
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	last *http.Request
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Clone(context.Background())
		u.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) lastRequest() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := u.last
	u.last = nil
	return r
}

func send(t testing.TB, url string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestCredentials(t *testing.T) {
	f := newFakeGatehouse(t)
	up := newUpstream(t)
	routes := fmt.Sprintf(`
[[route]]
path = "/orders/"
upstream = %q
audience = "http://orders.internal"
all_of = ["orders:read"]

[[route]]
path = "/jwt-only/"
upstream = %q
accept = ["jwt"]
`, up.srv.URL, up.srv.URL)
	_, gw, _ := newTestGateway(t, f, routes)

	jwt := f.jwt(t, "alice", "orders:read")
	noScope := f.jwt(t, "alice", "profile")
	opaque := f.opaque("bob", "orders:read", "op-1")
	key := f.apiKey("KEY000000001", "carol", "orders:read")

	// Bad JWTs.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forger, _ := token.NewIssuer(token.IssuerConfig{Issuer: f.url, Key: func() (token.SigningKey, error) {
		return token.SigningKey{ID: "k1", Algorithm: token.ES256, Signer: other}, nil
	}})
	forged, _, _ := forger.Issue(token.Claims{Subject: "eve", ClientID: "app", Scope: "orders:read", Audience: token.Audience{extAudience}, ExpiresAt: time.Now().Add(time.Hour).Unix()})
	wrongAud, _, _ := f.iss.Issue(token.Claims{Subject: "eve", ClientID: "app", Scope: "orders:read", Audience: token.Audience{"https://other"}, ExpiresAt: time.Now().Add(time.Hour).Unix()})
	expired, _, _ := f.iss.Issue(token.Claims{Subject: "eve", ClientID: "app", Scope: "orders:read", Audience: token.Audience{extAudience},
		IssuedAt: time.Now().Add(-2 * time.Hour).Unix(), ExpiresAt: time.Now().Add(-time.Hour).Unix()})
	parts := strings.Split(jwt, ".")
	b64 := base64.RawURLEncoding
	none := b64.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`)) + "." + parts[1] + "."
	payload, _ := b64.DecodeString(parts[1])
	tampered := parts[0] + "." + b64.EncodeToString([]byte(strings.Replace(string(payload), "alice", "admin", 1))) + "." + parts[2]

	tests := []struct {
		name    string
		path    string
		headers []string
		status  int
		kind    token.Kind // for accepted requests
	}{
		{"jwt", "/orders/1", []string{"Authorization", "Bearer " + jwt}, 200, token.KindJWT},
		{"opaque", "/orders/1", []string{"Authorization", "Bearer " + opaque}, 200, token.KindOpaque},
		{"api key header", "/orders/1", []string{"X-API-Key", key}, 200, token.KindAPIKey},
		{"api key bearer", "/orders/1", []string{"Authorization", "Bearer " + key}, 200, token.KindAPIKey},
		{"jwt on jwt-only route", "/jwt-only/x", []string{"Authorization", "Bearer " + jwt}, 200, token.KindJWT},
		{"opaque on jwt-only route", "/jwt-only/x", []string{"Authorization", "Bearer " + opaque}, 401, ""},
		{"api key on jwt-only route", "/jwt-only/x", []string{"X-API-Key", key}, 401, ""},
		{"no credential", "/orders/1", nil, 401, ""},
		{"insufficient scope", "/orders/1", []string{"Authorization", "Bearer " + noScope}, 403, ""},
		{"alg none", "/orders/1", []string{"Authorization", "Bearer " + none}, 401, ""},
		{"forged", "/orders/1", []string{"Authorization", "Bearer " + forged}, 401, ""},
		{"wrong audience", "/orders/1", []string{"Authorization", "Bearer " + wrongAud}, 401, ""},
		{"expired", "/orders/1", []string{"Authorization", "Bearer " + expired}, 401, ""},
		{"tampered", "/orders/1", []string{"Authorization", "Bearer " + tampered}, 401, ""},
		{"unknown opaque", "/orders/1", []string{"Authorization", "Bearer gho_unknown"}, 401, ""},
		{"credential in query", "/orders/1?access_token=" + jwt, nil, 400, ""},
		{"key in query", "/orders/1?x=" + key, nil, 400, ""},
		{"duplicated Authorization", "/orders/1", []string{"Authorization", "Bearer " + jwt, "Authorization", "Bearer " + jwt}, 400, ""},
		{"two credentials", "/orders/1", []string{"Authorization", "Bearer " + jwt, "X-API-Key", key}, 400, ""},
		{"internal token header", "/orders/1", []string{"Authorization", "Bearer " + jwt, "X-Gatehouse-Internal-Token", jwt}, 400, ""},
		{"dot segments", "/orders/../admin", []string{"Authorization", "Bearer " + jwt}, 400, ""},
		{"unknown route", "/nowhere", []string{"Authorization", "Bearer " + jwt}, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.lastRequest()
			req, _ := http.NewRequest(http.MethodGet, gw.URL+tt.path, nil)
			req.URL.Opaque = tt.path[:strings.IndexAny(tt.path+"?", "?")] // keep dot segments as sent
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header.Add(tt.headers[i], tt.headers[i+1])
			}
			req.Header.Set("X-Request-ID", "req-123")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			got := up.lastRequest()
			if tt.status != 200 {
				if got != nil {
					t.Fatalf("refused request reached the upstream")
				}
				if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("401 without a Bearer challenge")
				}
				for _, secret := range []string{jwt, opaque, key} {
					if strings.Contains(string(body), secret) {
						t.Errorf("body contains the credential")
					}
				}
				return
			}
			if got == nil {
				t.Fatal("upstream got nothing")
			}
			if a := got.Header.Values("Authorization"); len(a) != 1 || !strings.HasPrefix(a[0], "Bearer ") {
				t.Fatalf("upstream Authorization = %q, want one bearer", a)
			}
			if got.Header.Get("X-API-Key") != "" {
				t.Error("upstream received X-API-Key")
			}
			if id := got.Header.Get("X-Request-ID"); id != "req-123" || resp.Header.Get("X-Request-ID") != "req-123" {
				t.Errorf("X-Request-ID upstream %q, response %q", id, resp.Header.Get("X-Request-ID"))
			}
			if got.Header.Get("X-Forwarded-For") == "" {
				t.Error("no X-Forwarded-For")
			}
			aud := "http://orders.internal"
			if strings.HasPrefix(tt.path, "/jwt-only/") {
				aud = up.srv.URL
			}
			internal := strings.TrimPrefix(got.Header.Get("Authorization"), "Bearer ")
			cl, err := f.verifier(t, aud).Verify(context.Background(), internal)
			if err != nil {
				t.Fatalf("internal token does not verify for %s: %v", aud, err)
			}
			if cl.Kind != tt.kind || cl.Actor == nil || cl.Actor.Subject != gwClient {
				t.Errorf("internal token gh_kind %q act %+v, want %q acted by the gateway", cl.Kind, cl.Actor, tt.kind)
			}
			if internal == jwt {
				t.Error("the external token was forwarded")
			}
		})
	}
}

func TestRequestIDGenerated(t *testing.T) {
	for _, in := range []string{"", strings.Repeat("a", 129), "bad id\x01"} {
		if got := requestID(in); got == in || len(got) != 32 {
			t.Errorf("requestID(%q) = %q, want a new id", in, got)
		}
	}
	if got := requestID("abc-123_x.y:z"); got != "abc-123_x.y:z" {
		t.Errorf("well-formed id replaced: %q", got)
	}
}

func TestOversizedHeader(t *testing.T) {
	f := newFakeGatehouse(t)
	up := newUpstream(t)
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf("[[route]]\npath = \"/\"\nupstream = %q\n", up.srv.URL))
	resp := send(t, gw.URL+"/x", "X-Big", strings.Repeat("a", 64<<10))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status = %d, want 431", resp.StatusCode)
	}
}

func TestDeadUpstream(t *testing.T) {
	f := newFakeGatehouse(t)
	up := newUpstream(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf("[[route]]\npath = \"/dead/\"\nupstream = %q\n[[route]]\npath = \"/live/\"\nupstream = %q\n", dead, up.srv.URL))
	jwt := f.jwt(t, "alice", "")
	if resp := send(t, gw.URL+"/dead/x", "Authorization", "Bearer "+jwt); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("dead upstream: status %d, want 502", resp.StatusCode)
	}
	if resp := send(t, gw.URL+"/live/x", "Authorization", "Bearer "+jwt); resp.StatusCode != 200 {
		t.Fatalf("live upstream: status %d, want 200", resp.StatusCode)
	}
}

func TestStripPrefixAndHost(t *testing.T) {
	f := newFakeGatehouse(t)
	up := newUpstream(t)
	up2 := newUpstream(t)
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf(`
[[route]]
path = "/api/"
upstream = %q
strip_prefix = true
[[route]]
path = "/api/"
host = "special.example"
upstream = %q
`, up.srv.URL+"/base", up2.srv.URL))
	jwt := f.jwt(t, "alice", "")
	send(t, gw.URL+"/api/v1/items", "Authorization", "Bearer "+jwt)
	if r := up.lastRequest(); r == nil || r.URL.Path != "/base/v1/items" {
		t.Fatalf("upstream path = %v, want /base/v1/items", r)
	}
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/x", nil)
	req.Host = "Special.Example:8080"
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := up2.lastRequest(); r == nil || r.URL.Path != "/api/x" {
		t.Fatalf("host route not used")
	}
}

func TestRateLimit(t *testing.T) {
	f := newFakeGatehouse(t)
	up := newUpstream(t)
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf("[[route]]\npath = \"/\"\nupstream = %q\nrate = \"2/h\"\n", up.srv.URL))
	a, b := f.jwt(t, "a", ""), f.jwt(t, "b", "")
	for i, want := range []int{200, 200, 429} {
		resp := send(t, gw.URL+"/x", "Authorization", "Bearer "+a)
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if resp := send(t, gw.URL+"/x", "Authorization", "Bearer "+b); resp.StatusCode != 200 {
		t.Fatalf("other credential: status %d, want 200", resp.StatusCode)
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(2, time.Second)
	now := time.Unix(1000, 0)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.allow("k", now); ok != want {
			t.Fatalf("take %d: %v, want %v", i, ok, want)
		}
	}
	_, wait := l.allow("k", now)
	if wait <= 0 || wait > 500*time.Millisecond {
		t.Errorf("wait = %v, want about 500ms", wait)
	}
	if ok, _ := l.allow("k", now.Add(600*time.Millisecond)); !ok {
		t.Error("no token after refill")
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	f := newFakeGatehouse(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo
	}))
	defer echo.Close()
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf("[[route]]\npath = \"/ws\"\nupstream = %q\n", echo.URL))
	jwt := f.jwt(t, "alice", "")
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", jwt)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	fmt.Fprint(conn, "hello through the gateway")
	buf := make([]byte, len("hello through the gateway"))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hello through the gateway" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

func TestLargeBodyStreamed(t *testing.T) {
	f := newFakeGatehouse(t)
	var got atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		fmt.Fprint(w, n)
	}))
	defer sink.Close()
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf("[[route]]\npath = \"/\"\nupstream = %q\n", sink.URL))
	const size = 20 << 20
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/upload", io.LimitReader(zeros{}, size))
	req.Header.Set("Authorization", "Bearer "+f.jwt(t, "alice", ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Load() != size {
		t.Fatalf("status %d, upstream got %d bytes, want %d", resp.StatusCode, got.Load(), size)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestServerSentEvents(t *testing.T) {
	f := newFakeGatehouse(t)
	release := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: second\n\n")
	}))
	defer sse.Close()
	defer close(release)
	_, gw, _ := newTestGateway(t, f, fmt.Sprintf("[[route]]\npath = \"/events\"\nupstream = %q\n", sse.URL))
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+f.jwt(t, "alice", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first line %q, %v; want it before the upstream finishes", line, err)
	}
}
