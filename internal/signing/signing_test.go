package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/token"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testMaster(t *testing.T, b byte) *secret.Master {
	t.Helper()
	m, err := secret.New(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newManager(t *testing.T, st *store.Store, c *clock) *Manager {
	t.Helper()
	m, err := New(Config{
		Store:    st,
		Sealer:   testMaster(t, 1).Sealer(secret.PurposeSigningKeys),
		Rotation: 24 * time.Hour,
		Now:      c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func backends(t *testing.T, f func(t *testing.T, st *store.Store)) {
	t.Run("sqlite", func(t *testing.T) { f(t, storetest.OpenSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, storetest.OpenPostgres(t)) })
}

func jwksKIDs(t *testing.T, m *Manager) map[string]bool {
	t.Helper()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(m.JWKS(), &doc); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	kids := map[string]bool{}
	for _, k := range doc.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWKS key %v has private member %q", k["kid"], private)
			}
		}
		kids[k["kid"].(string)] = true
	}
	return kids
}

func TestInitCreatesOneKeyPerAlgorithmAndSigns(t *testing.T) {
	backends(t, func(t *testing.T, st *store.Store) {
		c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		m := newManager(t, st, c)
		if m.Ready() {
			t.Fatal("Ready before Init")
		}
		if err := m.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !m.Ready() {
			t.Fatal("not Ready after Init")
		}
		kids := jwksKIDs(t, m)
		if len(kids) != len(Algorithms) {
			t.Errorf("JWKS has %d keys, want %d", len(kids), len(Algorithms))
		}
		for _, alg := range Algorithms {
			k, err := m.Active(alg)
			if err != nil {
				t.Fatalf("Active(%s): %v", alg, err)
			}
			if !kids[k.ID] {
				t.Errorf("active %s key %s not in JWKS", alg, k.ID)
			}
			// The key really signs, and its public half verifies.
			iss, _ := token.NewIssuer(token.IssuerConfig{Issuer: "https://gh.test", Key: func() (token.SigningKey, error) { return m.Active(alg) }, Now: c.Now})
			ks, _ := token.NewStaticKeySet(k.Public())
			v, _ := token.NewVerifier(token.VerifierConfig{Issuer: "https://gh.test", Audience: "api", Keys: ks, Now: c.Now})
			raw, _, err := iss.Issue(token.Claims{Subject: "u", ClientID: "c", Audience: token.Audience{"api"}, ExpiresAt: c.Now().Add(time.Minute).Unix()})
			if err != nil {
				t.Fatalf("Issue with %s: %v", alg, err)
			}
			if _, err := v.Verify(context.Background(), raw); err != nil {
				t.Errorf("Verify %s token: %v", alg, err)
			}
		}
		// A second manager (another replica) on the same store agrees and
		// creates nothing.
		m2 := newManager(t, st, c)
		if err := m2.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, alg := range Algorithms {
			a, _ := m.Active(alg)
			b, _ := m2.Active(alg)
			if a.ID != b.ID {
				t.Errorf("%s: replicas disagree: %s vs %s", alg, a.ID, b.ID)
			}
		}
		recs, _ := st.SigningKeys(context.Background())
		if len(recs) != len(Algorithms) {
			t.Errorf("store has %d keys after two Inits, want %d", len(recs), len(Algorithms))
		}
	})
}

func TestScheduledRotation(t *testing.T) {
	backends(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		m := newManager(t, st, c)
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		first, _ := m.Active(token.ES256)

		// Before the publish-ahead window: nothing happens.
		c.Add(24*time.Hour - DefaultPublishAhead - time.Minute)
		if err := m.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(m.Keys()); n != len(Algorithms) {
			t.Fatalf("keys before rotation due: got %d, want %d", n, len(Algorithms))
		}

		// Inside the window: the next key is published but does not sign.
		c.Add(2 * time.Minute)
		if err := m.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(m.Keys()); n != 2*len(Algorithms) {
			t.Fatalf("keys after rotation scheduled: got %d, want %d", n, 2*len(Algorithms))
		}
		if k, _ := m.Active(token.ES256); k.ID != first.ID {
			t.Fatalf("next key signs before its handover")
		}
		var next Key
		for _, k := range m.Keys() {
			if k.Algorithm == token.ES256 && k.ID != first.ID {
				next = k
			}
		}
		if !jwksKIDs(t, m)[next.ID] {
			t.Fatal("next key not published in JWKS before it signs")
		}
		if got := next.ActivatesAt.Sub(c.Now()); got < DefaultJWKSMaxAge {
			t.Errorf("next key published only %v before it signs, want >= JWKS max-age %v", got, DefaultJWKSMaxAge)
		}
		// A second Tick does not schedule yet another key.
		if err := m.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(m.Keys()); n != 2*len(Algorithms) {
			t.Fatalf("keys after a second Tick: got %d, want %d", n, 2*len(Algorithms))
		}

		// After the handover the next key signs; the old one stays published.
		c.Add(DefaultPublishAhead)
		if k, _ := m.Active(token.ES256); k.ID != next.ID {
			t.Fatalf("after handover active is %s, want %s", k.ID, next.ID)
		}
		if !jwksKIDs(t, m)[first.ID] {
			t.Fatal("retired key left JWKS before its tokens expired")
		}

		// After retention the old key is deleted and leaves the JWKS.
		c.Add(DefaultRetention + DefaultJWKSMaxAge + time.Minute)
		if err := m.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if jwksKIDs(t, m)[first.ID] {
			t.Fatal("retired key still in JWKS after retention")
		}
	})
}

func TestRotateNowAndImmediate(t *testing.T) {
	backends(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		m := newManager(t, st, c)
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		c.Add(time.Minute)
		old, _ := m.Active(token.EdDSA)
		k, err := m.Rotate(ctx, token.EdDSA, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.State(c.Now()); got != "next" {
			t.Errorf("rotated key state: got %q, want next", got)
		}
		if a, _ := m.Active(token.EdDSA); a.ID != old.ID {
			t.Error("plain rotate switched signing at once")
		}
		again, err := m.Rotate(ctx, token.EdDSA, false)
		if err != nil || again.ID != k.ID {
			t.Errorf("second plain rotate: got %s, %v; want the scheduled key %s", again.ID, err, k.ID)
		}
		k2, err := m.Rotate(ctx, token.EdDSA, true)
		if err != nil {
			t.Fatal(err)
		}
		if a, _ := m.Active(token.EdDSA); a.ID != k2.ID {
			t.Errorf("immediate rotate: active %s, want %s", a.ID, k2.ID)
		}
		kids := jwksKIDs(t, m)
		if !kids[old.ID] || !kids[k2.ID] {
			t.Error("JWKS lost the old key or lacks the new one")
		}
		if kids[k.ID] {
			t.Error("the superseded scheduled key is still published")
		}
		c.Add(time.Hour)
		if a, _ := m.Active(token.EdDSA); a.ID != k2.ID {
			t.Errorf("an hour after the emergency rotation active is %s, want %s", a.ID, k2.ID)
		}
	})
}

func TestConcurrentRotationCreatesOneKey(t *testing.T) {
	backends(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		if err := newManager(t, st, c).Init(ctx); err != nil {
			t.Fatal(err)
		}
		c.Add(24*time.Hour - time.Minute) // rotation due
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			m := newManager(t, st, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.Reload(ctx); err != nil {
					errs <- err
					return
				}
				errs <- m.Tick(ctx)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Tick: %v", err)
			}
		}
		recs, err := st.SigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2*len(Algorithms) {
			t.Errorf("after racing Ticks the store has %d keys, want %d", len(recs), 2*len(Algorithms))
		}
	})
}

func TestWrongMasterSecretCannotLoad(t *testing.T) {
	st := storetest.OpenSQLite(t)
	c := &clock{t: time.Now()}
	if err := newManager(t, st, c).Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	other, err := New(Config{Store: st, Sealer: testMaster(t, 2).Sealer(secret.PurposeSigningKeys), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Reload(context.Background()); !errors.Is(err, secret.ErrOpen) {
		t.Errorf("Reload under another master secret: got %v, want ErrOpen", err)
	}
	if recs, _ := st.SigningKeys(context.Background()); len(recs) != len(Algorithms) {
		t.Errorf("store changed: %d keys", len(recs))
	}
}

func TestConfigChecks(t *testing.T) {
	st := storetest.OpenSQLite(t)
	sealer := testMaster(t, 1).Sealer(secret.PurposeSigningKeys)
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{Sealer: sealer}},
		{"no sealer", Config{Store: st}},
		{"publish-ahead below JWKS max-age", Config{Store: st, Sealer: sealer, JWKSMaxAge: time.Hour, PublishAhead: time.Minute}},
		{"rotation shorter than publish-ahead", Config{Store: st, Sealer: sealer, Rotation: time.Minute}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(c.cfg); err == nil {
				t.Error("got nil error")
			}
		})
	}
}
