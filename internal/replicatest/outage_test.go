package replicatest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// tcpProxy forwards TCP connections to a target. cut closes its listener
// and every connection, as a stopped database server would; restore
// listens again on the same address.
type tcpProxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *tcpProxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut stops listening and closes every connection.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// restore listens on the proxy's address again.
func (p *tcpProxy) restore(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen again on %s: %v", p.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probe is one kind of request sent during the outage.
type probe struct {
	name string
	// want is the status the request must get during the outage.
	want int
	send func() answer
}

// TestPostgresOutage cuts the connection between a running server and
// PostgreSQL for a few seconds (a TCP proxy in between, so the shared
// test server keeps running): requests that need the store fail with 503
// within a bound, answers served from memory keep working, and once the
// database is back the server recovers by itself: /readyz is 200 again,
// writes succeed and the change feed follows changes again.
// GATEHOUSE_LONG_TESTS=1 cuts it for 30 s instead of 3 s.
func TestPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gatehouse process")
	}
	pgURL := storetest.PostgresURL(t)
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	proxy := newTCPProxy(t, target)
	u.Host = proxy.addr
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()

	c := newCluster(t, u.String())
	p := c.serve("gatehouse")
	direct := newCluster(t, pgURL) // the CLI, past the proxy
	direct.data = c.data

	m2m := createClient(t, p.Base, ccClientBody)
	flowClient := createClient(t, p.Base, codeFlowClientBody)
	createFlowUser(c)
	b := newBrowser(t, p.Base, 1)
	code, verifier, _ := b.authorize(flowClient)
	flow, a := exchangeCode(p.Base, flowClient, code, verifier)
	if a.status != http.StatusOK {
		t.Fatalf("code exchange: %v", a)
	}
	var key apiKey
	if a := adminJSON("POST", p.Base+"/admin/apikeys", `{"name":"cached","owner":"svc","scopes":["read"]}`); a.status != http.StatusCreated || !a.json(&key) {
		t.Fatalf("create API key: %v", a)
	}
	if ok, a := verifyKey(p.Base, key.Key); !ok {
		t.Fatalf("verify the new key: %v", a)
	}
	at, a := clientCredentials(p.Base, m2m)
	if at == "" {
		t.Fatalf("client credentials: %v", a)
	}

	probes := []probe{
		{"readyz", http.StatusServiceUnavailable, func() answer { return get(p.Base + "/readyz") }},
		{"healthz", http.StatusOK, func() answer { return get(p.Base + "/healthz") }},
		{"jwks", http.StatusOK, func() answer { return get(p.Base + "/.well-known/jwks.json") }},
		{"discovery", http.StatusOK, func() answer { return get(p.Base + "/.well-known/openid-configuration") }},
		{"verify cached API key", http.StatusOK, func() answer {
			ok, a := verifyKey(p.Base, key.Key)
			if a.status == http.StatusOK && !ok {
				a.status = 0
				a.err = errors.New("cached key refused")
			}
			return a
		}},
		{"create API key", http.StatusServiceUnavailable, func() answer {
			return adminJSON("POST", p.Base+"/admin/apikeys", `{"name":"during","owner":"svc","scopes":["read"]}`)
		}},
		{"create client", http.StatusServiceUnavailable, func() answer {
			return adminJSON("POST", p.Base+"/admin/clients", ccClientBody)
		}},
		{"refresh", http.StatusServiceUnavailable, func() answer {
			_, a := refresh(p.Base, flowClient, flow.RefreshToken)
			return a
		}},
		// A known client's grant needs no store: clients are cached and
		// JWT access tokens are signed in memory.
		{"client credentials", http.StatusOK, func() answer { _, a := clientCredentials(p.Base, m2m); return a }},
		{"introspect JWT", http.StatusOK, func() answer {
			a := postForm(p.Base+"/introspect", url.Values{"token": {at}}, m2m.ID, m2m.Secret)
			var v struct{ Active bool }
			if a.status == http.StatusOK && (!a.json(&v) || !v.Active) {
				a.status = 0
				a.err = errors.New("valid JWT reported inactive")
			}
			return a
		}},
		{"revoke refresh token", http.StatusServiceUnavailable, func() answer {
			return postForm(p.Base+"/revoke", url.Values{"token": {flow.RefreshToken}}, flowClient.ID, flowClient.Secret)
		}},
		{"code exchange", http.StatusServiceUnavailable, func() answer {
			_, a := exchangeCode(p.Base, flowClient, "some-code-value", verifier)
			return a
		}},
	}

	// The key's creation reaches the server's caches through the change
	// feed; cut only once the server has applied every change so far, or
	// it would (rightly) forget a key it could not re-read.
	feedCaughtUp(t, pgURL, p.Base)
	proxy.cut()
	cutAt := time.Now()
	type result struct {
		statuses map[string]int // "status" or "error" -> count
		slowest  time.Duration
		bodies   []string
	}
	results := make([]result, len(probes))
	for i := range results {
		results[i].statuses = map[string]int{}
	}
	outage := 3 * time.Second
	if longTests() {
		outage = 30 * time.Second
	}
	for time.Since(cutAt) < outage {
		for i, pr := range probes {
			start := time.Now()
			a := pr.send()
			took := time.Since(start)
			r := &results[i]
			r.slowest = max(r.slowest, took)
			k := fmt.Sprint(a.status)
			if a.err != nil {
				k = "error"
			}
			r.statuses[k]++
			if len(r.bodies) < 1 && a.status >= 500 {
				r.bodies = append(r.bodies, a.String())
			}
		}
	}
	proxy.restore(t)
	restored := time.Now()

	for i, pr := range probes {
		r := results[i]
		var parts []string
		for k, n := range r.statuses {
			parts = append(parts, fmt.Sprintf("%s×%d", k, n))
		}
		sort.Strings(parts)
		t.Logf("during the outage: %-22s %s, slowest %v %v", pr.name, strings.Join(parts, " "), r.slowest.Round(time.Millisecond), r.bodies)
		if pr.want != 0 {
			if n := r.statuses[fmt.Sprint(pr.want)]; n == 0 || len(r.statuses) != 1 {
				t.Errorf("%s during the outage: %v, want only %d", pr.name, r.statuses, pr.want)
			}
		}
		for k := range r.statuses {
			if k == "500" || k == "error" {
				t.Errorf("%s during the outage: %v: never 500, never a broken connection", pr.name, r.statuses)
			}
		}
		if r.slowest > 5*time.Second {
			t.Errorf("%s during the outage took up to %v, want a bounded answer", pr.name, r.slowest)
		}
	}

	// Recovery: ready again, writes succeed, the change feed follows.
	waitFor(t, 15*time.Second, "/readyz 200 after PostgreSQL is back", func() bool {
		return get(p.Base+"/readyz").status == http.StatusOK
	})
	ready := time.Since(restored)
	waitFor(t, 15*time.Second, "a write succeeds after PostgreSQL is back", func() bool {
		return adminJSON("POST", p.Base+"/admin/apikeys", `{"name":"after","owner":"svc","scopes":["read"]}`).status == http.StatusCreated
	})
	write := time.Since(restored)
	if tk, a := refresh(p.Base, flowClient, flow.RefreshToken); a.status != http.StatusOK || tk.RefreshToken == "" {
		t.Errorf("refresh after the outage: %v", a)
	}
	direct.run("", "apikey", "revoke", key.ID)
	feed := waitFor(t, 15*time.Second, "the server refuses a key revoked by the CLI after the outage", func() bool {
		ok, _ := verifyKey(p.Base, key.Key)
		return !ok
	})
	t.Logf("PostgreSQL cut for %v; after it was back: /readyz 200 after %v, first write after %v; a revocation by another process refused %v after it",
		restored.Sub(cutAt).Round(time.Millisecond), ready.Round(time.Millisecond), write.Round(time.Millisecond), feed.Round(time.Millisecond))
}

// feedCaughtUp waits until the server at base has applied every change in
// the store at dbURL to its caches: until its
// gatehouse_change_feed_applied_seq reaches the store's last change.
func feedCaughtUp(t *testing.T, dbURL, base string) {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last int64
	if err := db.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM changes").Scan(&last); err != nil {
		t.Fatalf("last change: %v", err)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("the server applies change %d", last), func() bool {
		a := get(base + "/metrics")
		for line := range strings.Lines(string(a.body)) {
			if v, ok := strings.CutPrefix(line, "gatehouse_change_feed_applied_seq "); ok {
				n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return err == nil && int64(n) >= last
			}
		}
		return false
	})
}
