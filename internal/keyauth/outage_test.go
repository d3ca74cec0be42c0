package keyauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// cutProxy forwards TCP connections to a backend, and can cut every
// connection and refuse new ones for a while: a brief network outage
// between Gatehouse and its database.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		p.setDown(true)
	})
	go p.serve()
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	b, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down { // cut while dialing
		p.mu.Unlock()
		c.Close()
		b.Close()
		return
	}
	p.conns[c], p.conns[b] = true, true
	p.mu.Unlock()
	go func() { io.Copy(b, c); b.Close() }()
	io.Copy(c, b)
	c.Close()
}

// setDown cuts every connection and refuses new ones (true), or lets
// connections through again (false).
func (p *cutProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// TestBriefStoreOutage runs the service on PostgreSQL through a proxy that
// cuts the connection for a while. During the outage, cached keys keep
// working, an uncached key fails closed (503, never a refusal), and
// flushing fails; afterwards everything recovers and nothing counted during
// the outage is lost: uses, last-used time and audit events, each once.
func TestBriefStoreOutage(t *testing.T) {
	direct := storetest.PostgresURL(t)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	st := storetest.OpenURL(t, u.String())
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st)
	f.svc.log = discardLogger()
	srv := newHTTP(t, f)

	rec, key := f.create(t, Params{Name: "busy"})
	_, uncached := f.create(t, Params{Name: "not yet used"})
	for range 3 {
		if _, r, err := f.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
			t.Fatalf("before the outage: Verify = %q, %v; want accepted", r, err)
		}
	}

	proxy.setDown(true)
	f.clock.Add(time.Second)
	for range 2 {
		if _, r, err := f.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
			t.Fatalf("cached key during the outage: Verify = %q, %v; want accepted", r, err)
		}
	}
	if _, r, _ := f.svc.Verify(ctx, otherSecret(key), ipInside); r != apikey.ReasonWrongSecret {
		t.Fatalf("wrong secret during the outage: reason %q, want wrong_secret", r)
	}
	p, r, err := f.svc.Verify(ctx, uncached, ipInside)
	if !errors.Is(err, store.ErrUnavailable) || r != "" || p.KeyID != "" {
		t.Errorf("uncached key during the outage: Verify = %+v, %q, %v; want no principal, no reason, ErrUnavailable", p, r, err)
	}
	if res := do(t, "POST", srv.URL+VerifyPath, serviceToken, map[string]string{HeaderAPIKey: uncached}, ""); res.status != 503 {
		t.Errorf("uncached key during the outage: status %d, want 503; %s", res.status, res.raw)
	}
	if err := f.svc.Flush(ctx); err == nil {
		t.Error("Flush during the outage: no error")
	}
	// A use after the failed flush adds up with the ones it could not write.
	f.clock.Add(time.Second)
	if _, r, err := f.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
		t.Fatalf("cached key after a failed flush: Verify = %q, %v; want accepted", r, err)
	}

	proxy.setDown(false)
	// The pool may hand out a connection the cut killed before it notices;
	// flushing is retried, as Run would every interval.
	deadline := time.Now().Add(10 * time.Second)
	for err := f.svc.Flush(ctx); err != nil; err = f.svc.Flush(ctx) {
		if time.Now().After(deadline) {
			t.Fatalf("Flush after the outage: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, r, err := f.svc.Verify(ctx, uncached, ipInside); r != "" || err != nil {
		t.Errorf("uncached key after the outage: Verify = %q, %v; want accepted", r, err)
	}

	got, err := st.APIKey(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UseCount != 6 || !got.LastUsedAt.Equal(f.clock.Now()) {
		t.Errorf("after the outage: UseCount %d, LastUsedAt %v; want 6, %v", got.UseCount, got.LastUsedAt, f.clock.Now())
	}
	evs, err := st.AuditEvents(ctx, store.AuditFilter{Target: rec.ID, Event: EventVerify})
	if err != nil {
		t.Fatal(err)
	}
	var uses int
	refused := false
	for _, ev := range evs {
		switch ev.Outcome {
		case OutcomeSuccess:
			var d struct{ Count int }
			json.Unmarshal(ev.Details, &d)
			uses += d.Count
		case OutcomeFailure:
			refused = refused || ev.Reason == string(apikey.ReasonWrongSecret)
		}
	}
	if uses != 6 || !refused {
		t.Errorf("audit log after the outage: %d successful uses, wrong_secret refusal %v; want 6, true (%+v)", uses, refused, evs)
	}
}
