package keyauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/token"
)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a concurrency-safe log sink.
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

var backends = []struct {
	name string
	open func(testing.TB) *store.Store
}{
	{"sqlite", storetest.OpenSQLite},
	{"postgres", storetest.OpenPostgres},
}

// forEachBackend runs fn against a fresh store of each backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

var testPepper = bytes.Repeat([]byte("p"), 32)

type fixture struct {
	svc   *Service
	st    *store.Store
	clock *clock
	logs  *syncBuffer
}

func newFixture(t testing.TB, st *store.Store) *fixture {
	t.Helper()
	h, err := apikey.NewHasher(testPepper)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, clock: &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}, logs: &syncBuffer{}}
	f.svc, err = New(Config{Store: st, Hasher: h, Logger: slog.New(slog.NewJSONHandler(f.logs, nil)), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) create(t testing.TB, p Params) (store.APIKey, string) {
	t.Helper()
	rec, key, err := f.svc.Create(context.Background(), p, Actor{Name: "test"})
	if err != nil {
		t.Fatalf("Create(%+v): %v", p, err)
	}
	return rec, key.Plaintext()
}

// withChecksum appends the CRC32 of body as 6 base62 digits, like the key
// format does; the test's own implementation of it.
func withChecksum(body string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	var out [6]byte
	for i := 5; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return body + string(out[:])
}

// otherSecret returns key with one secret character changed and a valid
// checksum: same ID, wrong secret.
func otherSecret(key string) string {
	body := []byte(key[:len(key)-6])
	i := len(body) - 1 // last secret character
	if body[i] == 'a' {
		body[i] = 'b'
	} else {
		body[i] = 'a'
	}
	return withChecksum(string(body))
}

var (
	ipInside  = netip.MustParseAddr("10.1.2.3")
	ipOutside = netip.MustParseAddr("192.0.2.7")
)

func TestVerifyReasons(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		now := f.clock.Now()
		active, activeKey := f.create(t, Params{Name: "active", Owner: "svc-a", Scopes: []string{"read", "write"},
			ExpiresAt: now.Add(time.Hour)})
		_, revokedKey := f.create(t, Params{Name: "revoked", Owner: "svc-b"})
		revoked, _ := f.svc.Show(ctx, strings.Split(revokedKey, "_")[2][:apikey.IDLen])
		if _, err := f.svc.Revoke(ctx, revoked.ID, Actor{Name: "test"}); err != nil {
			t.Fatal(err)
		}
		_, expiringKey := f.create(t, Params{Name: "expires", ExpiresAt: now.Add(time.Minute)})
		rotated, rotatedKey := f.create(t, Params{Name: "rotated"})
		if _, _, _, err := f.svc.Rotate(ctx, rotated.ID, time.Minute, Actor{Name: "test"}); err != nil {
			t.Fatal(err)
		}
		_, ipKey := f.create(t, Params{Name: "ip", AllowedIPs: []string{"10.0.0.0/8", "2001:db8::1"}})
		_, limitedKey := f.create(t, Params{Name: "limited", RateLimit: 2, RateWindow: time.Minute})
		testKey, err := apikey.Format{Env: apikey.EnvTest}.Generate()
		if err != nil {
			t.Fatal(err)
		}
		unknown, err := apikey.Format{}.Generate()
		if err != nil {
			t.Fatal(err)
		}
		// Let the expiring key expire and the rotated key's grace end.
		f.clock.Add(2 * time.Minute)

		tests := []struct {
			name string
			key  string
			ip   netip.Addr
			want apikey.Reason
		}{
			{"valid", activeKey, ipOutside, ""},
			{"wrong prefix", "xx" + activeKey[2:], ipOutside, apikey.ReasonWrongPrefix},
			{"wrong environment", testKey.Plaintext(), ipOutside, apikey.ReasonWrongEnv},
			{"too short", activeKey[:len(activeKey)-1], ipOutside, apikey.ReasonWrongLength},
			{"too long", activeKey + "0", ipOutside, apikey.ReasonWrongLength},
			{"non-base62", activeKey[:20] + "-" + activeKey[21:], ipOutside, apikey.ReasonInvalidChar},
			{"bad checksum", otherSecret(activeKey)[:len(activeKey)-6] + activeKey[len(activeKey)-6:], ipOutside, apikey.ReasonBadChecksum},
			{"unknown ID", unknown.Plaintext(), ipOutside, apikey.ReasonUnknownID},
			{"wrong secret", otherSecret(activeKey), ipOutside, apikey.ReasonWrongSecret},
			{"revoked", revokedKey, ipOutside, apikey.ReasonRevoked},
			{"expired", expiringKey, ipOutside, apikey.ReasonExpired},
			{"rotated past grace", rotatedKey, ipOutside, apikey.ReasonRotated},
			{"IP allowed (v4)", ipKey, ipInside, ""},
			{"IP allowed (v6 single address)", ipKey, netip.MustParseAddr("2001:db8::1"), ""},
			{"IP allowed (v4-mapped v6)", ipKey, netip.MustParseAddr("::ffff:10.9.9.9"), ""},
			{"IP outside allow-list", ipKey, ipOutside, apikey.ReasonIPDenied},
			{"IP unknown", ipKey, netip.Addr{}, apikey.ReasonIPDenied},
			{"rate limit 1", limitedKey, ipOutside, ""},
			{"rate limit 2", limitedKey, ipOutside, ""},
			{"rate limit exceeded", limitedKey, ipOutside, apikey.ReasonRateLimited},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				p, reason, err := f.svc.Verify(ctx, tc.key, tc.ip)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if reason != tc.want {
					t.Fatalf("reason = %q, want %q", reason, tc.want)
				}
				if tc.want != "" {
					if p.Subject != "" || p.KeyID != "" || p.Scopes != nil {
						t.Errorf("refused key: principal = %+v, want zero", p)
					}
					return
				}
				if p.Kind != token.KindAPIKey || p.KeyID == "" || p.Subject == "" {
					t.Errorf("principal = %+v, want an API-key principal", p)
				}
			})
		}

		p, _, _ := f.svc.Verify(ctx, activeKey, ipOutside)
		want := token.Principal{Subject: "svc-a", Scopes: []string{"read", "write"}, Kind: token.KindAPIKey,
			KeyID: active.ID, ExpiresAt: active.ExpiresAt}
		if p.Subject != want.Subject || p.KeyID != want.KeyID || !p.ExpiresAt.Equal(want.ExpiresAt) ||
			strings.Join(p.Scopes, " ") != "read write" {
			t.Errorf("principal = %+v, want %+v", p, want)
		}

		// The log and the audit log name reasons, never the key.
		if err := f.svc.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		evs, err := st.AuditEvents(ctx, store.AuditFilter{Event: EventVerify})
		if err != nil {
			t.Fatal(err)
		}
		reasons := map[string]bool{}
		for _, ev := range evs {
			reasons[ev.Reason] = true
			for _, k := range []string{activeKey, revokedKey, expiringKey, rotatedKey, ipKey, limitedKey} {
				if strings.Contains(string(ev.Details), k) || strings.Contains(ev.Target, k) {
					t.Errorf("audit event %+v contains a key", ev)
				}
			}
		}
		for _, tc := range tests {
			if tc.want != "" && !reasons[string(tc.want)] {
				t.Errorf("no audit event with reason %q", tc.want)
			}
		}
		logs := f.logs.String()
		for _, k := range []string{activeKey, revokedKey, expiringKey, rotatedKey, ipKey, limitedKey, unknown.Plaintext()} {
			if strings.Contains(logs, k) || strings.Contains(logs, k[len(k)-20:]) {
				t.Errorf("log contains a key or its secret part")
			}
		}
		if !strings.Contains(logs, `"reason":"wrong_secret"`) {
			t.Errorf("log lacks the wrong_secret refusal line:\n%s", logs)
		}
	})
}

func TestRotationGrace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		old, oldKey := f.create(t, Params{Name: "rotating", Owner: "svc", Scopes: []string{"read", "x"},
			AllowedIPs: []string{"10.0.0.0/8"}, RateLimit: 3, RateWindow: time.Hour})
		for range 2 {
			if _, r, err := f.svc.Verify(ctx, oldKey, ipInside); r != "" || err != nil {
				t.Fatalf("before rotation: %q, %v", r, err)
			}
		}
		if err := f.svc.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		gotOld, gotNew, newKey, err := f.svc.Rotate(ctx, old.ID, 0, Actor{Name: "test"})
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if want := f.clock.Now().Add(DefaultGrace); !gotOld.GraceUntil.Equal(want) {
			t.Errorf("GraceUntil = %v, want the default grace, %v", gotOld.GraceUntil, want)
		}
		if gotNew.UseCount != 2 || gotNew.Owner != "svc" || strings.Join(gotNew.Scopes, " ") != "read x" ||
			gotNew.RateLimit != 3 || len(gotNew.AllowedIPs) != 1 {
			t.Errorf("new key = %+v, want owner, scopes, limits and counters carried over", gotNew)
		}
		steps := []struct {
			name    string
			advance time.Duration
			key     string
			want    apikey.Reason
		}{
			{"new key works", 0, newKey.Plaintext(), ""},
			// The bucket is shared: 3 per hour across old and new key.
			{"shared rate limit", 0, oldKey, apikey.ReasonRateLimited},
			{"old key in grace", 23 * time.Hour, oldKey, ""},
			{"old key at the deadline", time.Hour, oldKey, apikey.ReasonRotated},
			{"new key after the deadline", 0, newKey.Plaintext(), ""},
		}
		for _, st := range steps {
			f.clock.Add(st.advance)
			if _, r, err := f.svc.Verify(ctx, st.key, ipInside); r != st.want || err != nil {
				t.Errorf("%s: reason %q, %v; want %q", st.name, r, err, st.want)
			}
		}
		if _, _, _, err := f.svc.Rotate(ctx, old.ID, 0, Actor{}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("rotating a rotated key: %v, want ErrConflict", err)
		}
		// Negative grace: the old key stops at once.
		_, _, third, err := f.svc.Rotate(ctx, gotNew.ID, -1, Actor{Name: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, r, _ := f.svc.Verify(ctx, newKey.Plaintext(), ipInside); r != apikey.ReasonRotated {
			t.Errorf("no grace: old key reason %q, want rotated", r)
		}
		f.clock.Add(time.Hour) // refill
		if _, r, _ := f.svc.Verify(ctx, third.Plaintext(), ipInside); r != "" {
			t.Errorf("third key: reason %q, want accepted", r)
		}
	})
}

func TestChangePropagation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		a := newFixture(t, st)
		other, err := st.Reopen(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		b := newFixture(t, other)
		b.clock = a.clock
		b.svc.now = a.clock.Now

		rec, key := a.create(t, Params{Name: "shared"})
		if _, r, err := b.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
			t.Fatalf("b: before revocation: %q, %v", r, err)
		}
		from, _ := st.LastChange(ctx)
		if _, err := a.svc.Revoke(ctx, rec.ID, Actor{Name: "test"}); err != nil {
			t.Fatal(err)
		}
		// b still has the record cached until it hears of the change.
		if _, r, _ := b.svc.Verify(ctx, key, ipInside); r != "" {
			t.Fatalf("b: cached record: reason %q, want accepted (the cache is warm)", r)
		}
		changes, err := other.Changes(ctx, from, 10)
		if err != nil || len(changes) != 1 {
			t.Fatalf("changes = %v, %v; want one", changes, err)
		}
		if err := b.svc.OnChange(ctx, changes); err != nil {
			t.Fatal(err)
		}
		if _, r, _ := b.svc.Verify(ctx, key, ipInside); r != apikey.ReasonRevoked {
			t.Errorf("b: after OnChange: reason %q, want revoked", r)
		}

		// Without a change event, the cache TTL bounds staleness.
		rec2, key2 := a.create(t, Params{Name: "ttl"})
		if _, r, _ := b.svc.Verify(ctx, key2, ipInside); r != "" {
			t.Fatalf("b: %q", r)
		}
		if _, err := a.svc.Revoke(ctx, rec2.ID, Actor{}); err != nil {
			t.Fatal(err)
		}
		a.clock.Add(DefaultCacheTTL)
		if _, r, _ := b.svc.Verify(ctx, key2, ipInside); r != apikey.ReasonRevoked {
			t.Errorf("b: after the cache TTL: reason %q, want revoked", r)
		}
	})
}

func TestStoreUnavailableFailsClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		_, cached := f.create(t, Params{Name: "cached"})
		_, uncached := f.create(t, Params{Name: "uncached"})
		if _, r, err := f.svc.Verify(ctx, cached, ipInside); r != "" || err != nil {
			t.Fatal(r, err)
		}
		st.Close()
		for _, tc := range []struct {
			name, key string
			advance   time.Duration
		}{
			{"uncached", uncached, 0},
			{"cached past its TTL", cached, DefaultCacheTTL},
		} {
			f.clock.Add(tc.advance)
			p, r, err := f.svc.Verify(ctx, tc.key, ipInside)
			if err == nil || r != "" || p.KeyID != "" {
				t.Errorf("%s: Verify = %+v, %q, %v; want an error and no principal", tc.name, p, r, err)
			}
		}
		// A malformed key needs no store.
		if _, r, err := f.svc.Verify(ctx, "gk_live_nope", ipInside); r != apikey.ReasonWrongLength || err != nil {
			t.Errorf("malformed key with store down: %q, %v; want wrong_length, nil", r, err)
		}
	})
}

func TestFlush(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		rec, key := f.create(t, Params{Name: "used"})
		for range 5 {
			if _, r, err := f.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
				t.Fatal(r, err)
			}
		}
		if got, _ := st.APIKey(ctx, rec.ID); got.UseCount != 0 {
			t.Errorf("UseCount before flush = %d, want 0 (batched)", got.UseCount)
		}
		if err := f.svc.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := st.APIKey(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.UseCount != 5 || !got.LastUsedAt.Equal(f.clock.Now()) {
			t.Errorf("after flush: UseCount %d, LastUsedAt %v; want 5, %v", got.UseCount, got.LastUsedAt, f.clock.Now())
		}
		evs, err := st.AuditEvents(ctx, store.AuditFilter{Target: rec.ID, Event: EventVerify})
		if err != nil || len(evs) != 1 {
			t.Fatalf("verify audit events = %v, %v; want one summary", evs, err)
		}
		var d struct{ Count int }
		json.Unmarshal(evs[0].Details, &d)
		if evs[0].Outcome != OutcomeSuccess || d.Count != 5 || evs[0].SourceIP != ipInside.String() {
			t.Errorf("summary event = %+v, want success, count 5, source %s", evs[0], ipInside)
		}
		// Nothing pending: a second flush writes nothing.
		if err := f.svc.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if evs, _ := st.AuditEvents(ctx, store.AuditFilter{Target: rec.ID, Event: EventVerify}); len(evs) != 1 {
			t.Errorf("after a second flush: %d events, want 1", len(evs))
		}
	})
}

func TestAuditQueueBound(t *testing.T) {
	st := storetest.OpenSQLite(t)
	h, _ := apikey.NewHasher(testPepper)
	logs := &syncBuffer{}
	svc, err := New(Config{Store: st, Hasher: h, AuditQueue: 3, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 10 {
		svc.Verify(ctx, "gk_live_garbage", netip.Addr{})
	}
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, _ := st.AuditEvents(ctx, store.AuditFilter{})
	if len(evs) != 3 {
		t.Errorf("audit events = %d, want 3 (the queue bound)", len(evs))
	}
	if !strings.Contains(logs.String(), "dropped=7") {
		t.Errorf("log does not report 7 dropped events:\n%s", logs)
	}
}

func TestAdminActions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		now := f.clock.Now()
		invalid := []struct {
			name string
			p    Params
		}{
			{"no name", Params{}},
			{"blank name", Params{Name: "  "}},
			{"scope with space", Params{Name: "n", Scopes: []string{"a b"}}},
			{"scope with quote", Params{Name: "n", Scopes: []string{`a"`}}},
			{"bad CIDR", Params{Name: "n", AllowedIPs: []string{"10.0.0.0/33"}}},
			{"not an IP", Params{Name: "n", AllowedIPs: []string{"example.com"}}},
			{"negative limit", Params{Name: "n", RateLimit: -1, RateWindow: time.Second}},
			{"limit without window", Params{Name: "n", RateLimit: 5}},
			{"expiry in the past", Params{Name: "n", ExpiresAt: now.Add(-time.Second)}},
		}
		for _, tc := range invalid {
			t.Run(tc.name, func(t *testing.T) {
				if _, _, err := f.svc.Create(ctx, tc.p, Actor{}); !errors.Is(err, ErrInvalid) {
					t.Errorf("Create() = %v, want ErrInvalid", err)
				}
			})
		}
		if keys, _ := f.svc.List(ctx, store.APIKeyFilter{}); len(keys) != 0 {
			t.Fatalf("invalid creates stored %d keys", len(keys))
		}

		rec, key := f.create(t, Params{Name: "n", Owner: "o", AllowedIPs: []string{"192.0.2.1", "10.1.0.0/8"}})
		if strings.Join(rec.Scopes, " ") != DefaultScope {
			t.Errorf("default scopes = %v, want [%s]", rec.Scopes, DefaultScope)
		}
		if strings.Join(rec.AllowedIPs, " ") != "192.0.2.1/32 10.0.0.0/8" {
			t.Errorf("AllowedIPs = %v, want normalised CIDRs", rec.AllowedIPs)
		}
		if rec.Last4 != key[len(key)-4:] || Masked(rec) != rec.Prefix+"_live_"+rec.ID+"…"+rec.Last4 {
			t.Errorf("Last4 %q / Masked %q do not match the key", rec.Last4, Masked(rec))
		}
		if Status(rec, now) != "active" {
			t.Errorf("Status = %q, want active", Status(rec, now))
		}

		upd, err := f.svc.Update(ctx, rec.ID, Params{Name: "renamed", Scopes: []string{"write", "read", "write"}}, Actor{Name: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		if upd.Name != "renamed" || strings.Join(upd.Scopes, " ") != "read write" || upd.AllowedIPs != nil || upd.Owner != "o" {
			t.Errorf("Update = %+v", upd)
		}
		if p, _, _ := f.svc.Verify(ctx, key, ipOutside); strings.Join(p.Scopes, " ") != "read write" {
			t.Errorf("after update, principal scopes = %v, want the new scopes", p.Scopes)
		}
		for _, id := range []string{"nope", "000000000000"} {
			if _, err := f.svc.Update(ctx, id, Params{Name: "x"}, Actor{}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Update(%q) = %v, want ErrNotFound", id, err)
			}
			if _, err := f.svc.Revoke(ctx, id, Actor{}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Revoke(%q) = %v, want ErrNotFound", id, err)
			}
			if _, err := f.svc.Show(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Show(%q) = %v, want ErrNotFound", id, err)
			}
		}
		_, _, newKey, err := f.svc.Rotate(ctx, rec.ID, time.Hour, Actor{Name: "admin", IP: "192.0.2.9"})
		if err != nil {
			t.Fatal(err)
		}
		newRec, _ := f.svc.Show(ctx, newKey.ID)
		if _, err := f.svc.Revoke(ctx, newRec.ID, Actor{Name: "cli"}); err != nil {
			t.Fatal(err)
		}
		if _, r, _ := f.svc.Verify(ctx, newKey.Plaintext(), ipOutside); r != apikey.ReasonRevoked {
			t.Errorf("revoked key: reason %q, want revoked", r)
		}
		want := []string{EventCreate + "@" + rec.ID, EventUpdate + "@" + rec.ID, EventRotate + "@" + rec.ID, EventRevoke + "@" + newRec.ID}
		evs, err := st.AuditEvents(ctx, store.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range evs {
			if ev.Event != EventVerify {
				got = append(got, ev.Event+"@"+ev.Target)
			}
			for _, k := range []string{key, newKey.Plaintext()} {
				if strings.Contains(string(ev.Details), k) {
					t.Errorf("audit event %s contains a key", ev.Event)
				}
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("audit events = %v, want %v", got, want)
		}
		if strings.Contains(f.logs.String(), key) || strings.Contains(f.logs.String(), newKey.Plaintext()) {
			t.Error("log contains a key")
		}
	})
}

func TestReportExposed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		rec, key := f.create(t, Params{Name: "leaky", RateLimit: 1, RateWindow: time.Hour})
		unknown, _ := apikey.Format{}.Generate()
		tests := []struct {
			name string
			key  string
			want bool
		}{
			{"valid key", key, true},
			{"wrong secret", otherSecret(key), false},
			{"unknown", unknown.Plaintext(), false},
			{"garbage", "gk_live_x", false},
		}
		for _, tc := range tests {
			got, err := f.svc.ReportExposed(ctx, tc.key, ipOutside, WhereQuery)
			if err != nil || got != tc.want {
				t.Errorf("%s: ReportExposed = %v, %v; want %v", tc.name, got, err, tc.want)
			}
		}
		r, _ := st.APIKey(ctx, rec.ID)
		if r.ExposedAt.IsZero() {
			t.Error("ExposedAt not set")
		}
		evs, _ := st.AuditEvents(ctx, store.AuditFilter{Event: EventExposed})
		if len(evs) != 1 || evs[0].Target != rec.ID || evs[0].Reason != string(apikey.ReasonInQuery) {
			t.Errorf("exposed events = %+v, want one for %s", evs, rec.ID)
		}
		// Reporting did not use the key's single request.
		if _, reason, _ := f.svc.Verify(ctx, key, ipOutside); reason != "" {
			t.Errorf("after ReportExposed: reason %q, want accepted", reason)
		}
	})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestUnknownAndWrongSecretTiming checks that an unknown ID and a wrong
// secret cost about the same (both do one keyed hash and compare), so
// timing does not tell an attacker which IDs exist. The bound is loose:
// the machine is shared.
func TestUnknownAndWrongSecretTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	f := newFixture(t, storetest.OpenSQLite(t))
	f.svc.log = discardLogger()
	f.svc.auditLog.max = 0 // measure verification, not the audit queue
	ctx := context.Background()
	_, key := f.create(t, Params{Name: "timing"})
	unknown, _ := apikey.Format{}.Generate()
	wrong := otherSecret(key)
	median := func(k string, want apikey.Reason) time.Duration {
		d := make([]time.Duration, 3001)
		for i := range d {
			start := time.Now()
			_, r, _ := f.svc.Verify(ctx, k, ipInside)
			d[i] = time.Since(start)
			if r != want {
				t.Fatalf("reason %q, want %q", r, want)
			}
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	median(unknown.Plaintext(), apikey.ReasonUnknownID) // warm both caches
	median(wrong, apikey.ReasonWrongSecret)
	u, w := median(unknown.Plaintext(), apikey.ReasonUnknownID), median(wrong, apikey.ReasonWrongSecret)
	t.Logf("median: unknown ID %v, wrong secret %v", u, w)
	if ratio := float64(u) / float64(w); ratio < 0.5 || ratio > 2 {
		t.Errorf("unknown ID takes %v, wrong secret %v: ratio %.2f, want within 0.5–2", u, w, ratio)
	}
}

// TestRun checks that Run flushes on its interval and once more when it
// stops.
func TestRun(t *testing.T) {
	st := storetest.OpenSQLite(t)
	h, _ := apikey.NewHasher(testPepper)
	svc, err := New(Config{Store: st, Hasher: h, FlushInterval: 20 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	rec, key, err := svc.Create(ctx, Params{Name: "run"}, Actor{})
	if err != nil {
		t.Fatal(err)
	}
	uses := func() int64 {
		k, err := st.APIKey(context.Background(), rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		return k.UseCount
	}
	svc.Verify(ctx, key.Plaintext(), ipInside)
	deadline := time.Now().Add(5 * time.Second)
	for uses() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the periodic flush did not write the use")
		}
		time.Sleep(10 * time.Millisecond)
	}
	svc.Verify(ctx, key.Plaintext(), ipInside)
	cancel()
	<-done
	if got := uses(); got != 2 {
		t.Errorf("after Run returned: UseCount %d, want 2 (final flush)", got)
	}
}
