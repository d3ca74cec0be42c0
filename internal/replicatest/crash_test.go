package replicatest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// TestKillDuringWrites SIGKILLs a `gatehouse serve` process at a random
// moment of a write-heavy load (creating API keys and clients, revoking
// keys and access tokens, rotating refresh tokens), restarts it on the
// same store, and checks that every write the client saw acknowledged is
// there, that nothing half-written is visible, and that the server starts
// without repair. GATEHOUSE_LONG_TESTS=1 runs 20 cycles instead of 3.
func TestKillDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills gatehouse processes")
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db := storetest.SQLiteURL(t)
			if backend == "postgres" {
				db = storetest.PostgresURL(t)
			}
			cycles := 3
			if longTests() {
				cycles = 20
			}
			killCycles(t, newCluster(t, db), cycles)
		})
	}
}

// ledger is what the load's client saw acknowledged.
type ledger struct {
	mu          sync.Mutex
	keys        map[string]apiKey // by ID: created (201)
	revoked     map[string]bool   // key IDs whose revocation was acknowledged
	pending     map[string]bool   // key IDs with a revocation in flight at the kill
	clients     []oauthClient     // created (201)
	deadTokens  []string          // access tokens whose revocation was acknowledged
	chains      []string          // per refresh chain, the newest refresh token received
	rotations   int
	unconfirmed int // writes whose answer never came (the kill)
}

func killCycles(t *testing.T, c *cluster, cycles int) {
	p := c.serve("gatehouse-0")
	createFlowUser(c)
	flowClient := createClient(t, p.Base, codeFlowClientBody)
	m2m := createClient(t, p.Base, ccClientBody)
	l := &ledger{keys: map[string]apiKey{}, revoked: map[string]bool{}, pending: map[string]bool{}}
	const nChains = 3
	b := newBrowser(t, p.Base, 1)
	for range nChains {
		code, verifier, _ := b.authorize(flowClient)
		tk, a := exchangeCode(p.Base, flowClient, code, verifier)
		if a.status != http.StatusOK {
			t.Fatalf("code exchange: %v", a)
		}
		l.chains = append(l.chains, tk.RefreshToken)
	}

	var restarts []time.Duration
	for cycle := range cycles {
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		base := p.Base
		for w := range 6 {
			wg.Go(func() { loadWorker(ctx, w, base, l, flowClient, m2m) })
		}
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		p.Kill9(t, stop)
		wg.Wait()

		started := time.Now()
		p = c.serve(fmt.Sprintf("gatehouse-%d", cycle+1))
		restart := time.Since(started)
		restarts = append(restarts, restart)
		if a := get(p.Base + "/readyz"); a.status != http.StatusOK {
			t.Fatalf("cycle %d: /readyz after restart: %v", cycle, a)
		}
		checkLedger(t, cycle, p.Base, l, flowClient, m2m)
		l.mu.Lock()
		t.Logf("cycle %d: acknowledged so far: %d keys, %d key revocations, %d clients, %d token revocations, %d rotations (%d requests unanswered); restart took %v",
			cycle, len(l.keys), len(l.revoked), len(l.clients), len(l.deadTokens), l.rotations, l.unconfirmed, restart.Round(time.Millisecond))
		l.mu.Unlock()
	}
	if len(l.keys) == 0 || len(l.revoked) == 0 || len(l.clients) == 0 || len(l.deadTokens) == 0 || l.rotations == 0 {
		t.Errorf("the load acknowledged too little to check: %d keys, %d revocations, %d clients, %d revoked tokens, %d rotations",
			len(l.keys), len(l.revoked), len(l.clients), len(l.deadTokens), l.rotations)
	}
}

// loadWorker writes until ctx is done. Worker w does one kind of write;
// workers 0-2 each rotate one refresh chain.
func loadWorker(ctx context.Context, w int, base string, l *ledger, flowClient, m2m oauthClient) {
	for i := 0; ctx.Err() == nil; i++ {
		switch w {
		case 0, 1, 2: // rotate refresh chain w
			l.mu.Lock()
			rt := l.chains[w]
			l.mu.Unlock()
			tk, a := refresh(base, flowClient, rt)
			l.mu.Lock()
			switch {
			case a.status == http.StatusOK && tk.RefreshToken != "":
				l.chains[w] = tk.RefreshToken
				l.rotations++
			case a.err != nil:
				l.unconfirmed++
			}
			l.mu.Unlock()
		case 3: // create API keys, revoke every other one
			var k apiKey
			a := adminJSON("POST", base+"/admin/apikeys", fmt.Sprintf(`{"name":"load-%d","owner":"crash","scopes":["read"]}`, i))
			if a.status != http.StatusCreated || !a.json(&k) || k.ID == "" {
				l.note(a)
				continue
			}
			l.mu.Lock()
			l.keys[k.ID] = k
			l.mu.Unlock()
			if i%2 == 0 {
				l.mu.Lock()
				l.pending[k.ID] = true
				l.mu.Unlock()
				a := adminJSON("POST", base+"/admin/apikeys/"+k.ID+"/revoke", `{}`)
				l.mu.Lock()
				if a.status == http.StatusOK {
					l.revoked[k.ID] = true
					delete(l.pending, k.ID)
				} else if a.err == nil {
					delete(l.pending, k.ID) // refused: not revoked
				}
				l.mu.Unlock()
			}
		case 4: // create clients
			a := adminJSON("POST", base+"/admin/clients", ccClientBody)
			var c oauthClient
			if a.status != http.StatusCreated || !a.json(&c) || c.ID == "" {
				l.note(a)
				continue
			}
			l.mu.Lock()
			l.clients = append(l.clients, c)
			l.mu.Unlock()
		case 5: // issue and revoke access tokens
			at, a := clientCredentials(base, m2m)
			if at == "" {
				l.note(a)
				continue
			}
			a = postForm(base+"/revoke", url.Values{"token": {at}}, m2m.ID, m2m.Secret)
			if a.status == http.StatusOK {
				l.mu.Lock()
				l.deadTokens = append(l.deadTokens, at)
				l.mu.Unlock()
			} else {
				l.note(a)
			}
		}
	}
}

// note counts a write whose answer never came.
func (l *ledger) note(a answer) {
	if a.err != nil {
		l.mu.Lock()
		l.unconfirmed++
		l.mu.Unlock()
	}
}

// checkLedger checks, on a restarted server, that every acknowledged write
// is there and every chain goes on.
func checkLedger(t *testing.T, cycle int, base string, l *ledger, flowClient, m2m oauthClient) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, k := range l.keys {
		if l.pending[id] {
			continue // revocation unanswered: either state is right
		}
		ok, a := verifyKey(base, k.Key)
		if a.status != http.StatusOK {
			t.Fatalf("cycle %d: verify key %s: %v", cycle, id, a)
		}
		if want := !l.revoked[id]; ok != want {
			t.Fatalf("cycle %d: key %s active = %t after restart, want %t (revoked: %t)", cycle, id, ok, want, l.revoked[id])
		}
	}
	// Settle the keys whose revocation was unanswered: ask the server.
	for id := range l.pending {
		var v struct{ Status string }
		a := adminJSON("GET", base+"/admin/apikeys/"+id, "")
		if a.status != http.StatusOK || !a.json(&v) || (v.Status != "active" && v.Status != "revoked") {
			t.Fatalf("cycle %d: key %s with an unanswered revocation: %v", cycle, id, a)
		}
		if v.Status == "revoked" {
			l.revoked[id] = true
		}
		delete(l.pending, id)
	}
	for _, c := range l.clients {
		if at, a := clientCredentials(base, c); at == "" {
			t.Fatalf("cycle %d: client %s created before the kill cannot get a token: %v", cycle, c.ID, a)
		}
	}
	for i, at := range l.deadTokens {
		if got := introspect(base, m2m, at); got != "inactive" {
			t.Fatalf("cycle %d: revoked access token %d is %s after restart", cycle, i, got)
		}
	}
	// The newest refresh token each chain received works: it is either
	// live, or its rotation by the killed request was never answered and
	// the retry grace (10 s) lets the client try again.
	for i, rt := range l.chains {
		tk, a := refresh(base, flowClient, rt)
		if a.status != http.StatusOK || tk.RefreshToken == "" {
			t.Fatalf("cycle %d: chain %d: the newest acknowledged refresh token: %v", cycle, i, a)
		}
		l.chains[i] = tk.RefreshToken
	}
	// Nothing half-written: every listed key and client reads back whole.
	var keys struct {
		Keys []struct{ ID, Name, Status string }
	}
	listAll(t, base+"/admin/apikeys", func(a answer) string {
		var page struct {
			Keys []struct{ ID, Name, Status string }
			Next string
		}
		if !a.json(&page) {
			t.Fatalf("cycle %d: list keys: %v", cycle, a)
		}
		keys.Keys = append(keys.Keys, page.Keys...)
		return page.Next
	})
	listed := map[string]bool{}
	for _, k := range keys.Keys {
		if k.ID == "" || k.Name == "" || k.Status == "" {
			t.Fatalf("cycle %d: half-written key in the list: %+v", cycle, k)
		}
		listed[k.ID] = true
	}
	for id := range l.keys {
		if !listed[id] {
			t.Fatalf("cycle %d: acknowledged key %s not listed", cycle, id)
		}
	}
	var clients struct {
		Clients []struct {
			ID         string   `json:"client_id"`
			GrantTypes []string `json:"grant_types"`
		}
	}
	listAll(t, base+"/admin/clients", func(a answer) string {
		var page struct {
			Clients []struct {
				ID         string   `json:"client_id"`
				GrantTypes []string `json:"grant_types"`
			}
			Next string
		}
		if !a.json(&page) {
			t.Fatalf("cycle %d: list clients: %v", cycle, a)
		}
		clients.Clients = append(clients.Clients, page.Clients...)
		return page.Next
	})
	if len(clients.Clients) < len(l.clients)+2 {
		t.Fatalf("cycle %d: %d clients listed, want at least the %d acknowledged", cycle, len(clients.Clients), len(l.clients)+2)
	}
	for _, c := range clients.Clients {
		if c.ID == "" || len(c.GrantTypes) == 0 {
			t.Fatalf("cycle %d: half-written client in the list: %+v", cycle, c)
		}
	}
}

// listAll pages through an admin list at u (100 records a page): page
// decodes one answer and returns the cursor of the next page, or "".
func listAll(t *testing.T, u string, page func(answer) string) {
	t.Helper()
	after := ""
	for range 10000 {
		a := adminJSON("GET", u+"?limit=100&after="+url.QueryEscape(after), "")
		if a.status != http.StatusOK {
			t.Fatalf("GET %s: %v", u, a)
		}
		if after = page(a); after == "" {
			return
		}
	}
	t.Fatalf("GET %s: too many pages", u)
}
