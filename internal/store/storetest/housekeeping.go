package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// housekeepingBatch is the batch size of the housekeeping tests: small, so
// that every table needs several batches.
const housekeepingBatch = 3

// deletedLog records what Housekeeping.Deleted reports.
type deletedLog struct {
	mu      sync.Mutex
	total   map[string]int
	batches int
	maxN    int
}

func (l *deletedLog) add(table string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total == nil {
		l.total = map[string]int{}
	}
	l.total[table] += n
	l.batches++
	l.maxN = max(l.maxN, n)
}

// testHousekeepExpired stores expired and live rows in every table
// Housekeep prunes by expiry, runs it with a small batch size and checks
// that exactly the expired rows are gone.
func testHousekeepExpired(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	const expired, live = 7, 4
	now := time.Now()
	at := now.Add(2 * time.Hour) // Housekeep's "now"
	exp := func(i int) time.Time {
		if i < expired {
			return now.Add(time.Hour) // before at: expired then
		}
		return now.Add(3 * time.Hour)
	}
	u := mustCreateUser(t, s, newUser("hk-u", "hk"))
	type probe struct {
		what  string
		alive func() (bool, error)
	}
	var probes []probe
	found := func(err error) (bool, error) {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	for i := range expired + live {
		tag := fmt.Sprintf("%s-%d", map[bool]string{true: "exp", false: "live"}[i < expired], i)
		sess := store.Session{IDHash: []byte("sess-" + tag), UserID: u.ID, AuthTime: now, ExpiresAt: exp(i)}
		code := store.AuthCode{Hash: []byte("code-" + tag), ClientID: "c", UserID: u.ID, RedirectURI: "https://app/cb",
			CodeChallenge: "ch", ExpiresAt: exp(i)}
		op := store.OpaqueToken{Hash: []byte("op-" + tag), ID: "op-" + tag, ClientID: "c", Claims: []byte(`{}`), ExpiresAt: exp(i)}
		for _, err := range []error{
			s.CreateSession(ctx, sess),
			s.CreateAuthCode(ctx, code),
			s.CreateOpaqueToken(ctx, op),
			s.RevokeToken(ctx, "rev-"+tag, "c", exp(i)),
			s.UseAssertion(ctx, "c", "jti-"+tag, exp(i)),
		} {
			if err != nil {
				t.Fatalf("store row %s: %v", tag, err)
			}
		}
		probes = append(probes,
			probe{"session " + tag, func() (bool, error) { _, err := s.Session(ctx, sess.IDHash, now); return found(err) }},
			probe{"code " + tag, func() (bool, error) { _, err := s.AuthCode(ctx, code.Hash); return found(err) }},
			probe{"opaque token " + tag, func() (bool, error) { _, err := s.OpaqueToken(ctx, op.Hash); return found(err) }},
			probe{"denylist " + tag, func() (bool, error) { _, err := s.RevokedToken(ctx, "rev-"+tag); return found(err) }},
			probe{"used assertion " + tag, func() (bool, error) {
				// Still remembered: a second use is a conflict. Forgotten:
				// it is recorded again, which is harmless here.
				err := s.UseAssertion(ctx, "c", "jti-"+tag, exp(i))
				if errors.Is(err, store.ErrConflict) {
					return true, nil
				}
				return false, err
			}},
		)
	}

	// Refresh families: "dead" has everything expired and goes whole;
	// "partial" keeps a live access token, so only its expired refresh
	// token goes; "live" keeps everything.
	redeem := func(tag string, rtExp, atExp time.Time) {
		t.Helper()
		code := store.AuthCode{Hash: []byte("fcode-" + tag), ClientID: "c", UserID: u.ID, RedirectURI: "https://app/cb",
			Scopes: []string{"openid"}, CodeChallenge: "ch", ExpiresAt: now.Add(3 * time.Hour)}
		if err := s.CreateAuthCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		rt := &store.RefreshToken{Hash: []byte("frt-" + tag), Scopes: code.Scopes, ExpiresAt: rtExp}
		if _, err := s.RedeemAuthCode(ctx, code.Hash, "fam-"+tag, now, rt, store.IssuedToken{ID: "fat-" + tag, ExpiresAt: atExp}); err != nil {
			t.Fatalf("RedeemAuthCode(%s): %v", tag, err)
		}
	}
	early, late := now.Add(time.Hour), now.Add(3*time.Hour)
	redeem("dead", early, early)
	redeem("partial", early, late)
	redeem("live", late, late)
	refresh := func(tag string) (bool, error) {
		_, _, err := s.RefreshToken(ctx, []byte("frt-"+tag))
		return found(err)
	}
	family := func(tag string) (bool, error) { _, err := s.RefreshFamily(ctx, "fam-"+tag); return found(err) }

	var log deletedLog
	deleted, err := s.Housekeep(ctx, store.Housekeeping{Now: at, BatchSize: housekeepingBatch, Pause: -1, Deleted: log.add})
	if err != nil {
		t.Fatalf("Housekeep: %v", err)
	}
	for i, p := range probes {
		alive, err := p.alive()
		if err != nil {
			t.Fatalf("%s: %v", p.what, err)
		}
		// probes hold 5 per row, rows in order: expired first.
		if want := i/5 >= expired; alive != want {
			t.Errorf("%s present = %v after Housekeep, want %v", p.what, alive, want)
		}
	}
	for _, c := range []struct {
		what  string
		alive func(string) (bool, error)
		tag   string
		want  bool
	}{
		{"refresh token", refresh, "dead", false},
		{"family", family, "dead", false},
		{"refresh token", refresh, "partial", false},
		{"family", family, "partial", true},
		{"refresh token", refresh, "live", true},
		{"family", family, "live", true},
	} {
		alive, err := c.alive(c.tag)
		if err != nil {
			t.Fatalf("%s %s: %v", c.what, c.tag, err)
		}
		if alive != c.want {
			t.Errorf("%s %q present = %v after Housekeep, want %v", c.what, c.tag, alive, c.want)
		}
	}
	wantDeleted := map[string]int{
		"sessions": expired, "auth_codes": expired, "opaque_tokens": expired, "revoked_tokens": expired,
		"used_assertions": expired, "refresh_tokens": 2, "family_access_tokens": 1, "refresh_families": 1,
	}
	for table, want := range wantDeleted {
		if deleted[table] != want {
			t.Errorf("Housekeep deleted %d rows from %s, want %d", deleted[table], table, want)
		}
		if log.total[table] != want {
			t.Errorf("Deleted callback reported %d rows from %s, want %d", log.total[table], table, want)
		}
	}
	if log.maxN > housekeepingBatch {
		t.Errorf("a batch deleted %d rows, want at most %d", log.maxN, housekeepingBatch)
	}
	// 7 rows in batches of 3 take 3 statements, in each of five tables.
	if log.batches < 5*3 {
		t.Errorf("Deleted was called %d times, want at least 15 (batches of %d)", log.batches, housekeepingBatch)
	}

	// A second run finds nothing but the assertions the probes recorded
	// again.
	again, err := s.Housekeep(ctx, store.Housekeeping{Now: at, BatchSize: housekeepingBatch, Pause: -1})
	if err != nil {
		t.Fatalf("second Housekeep: %v", err)
	}
	for table, n := range again {
		want := 0
		if table == "used_assertions" {
			want = expired
		}
		if n != want {
			t.Errorf("second Housekeep deleted %d rows from %s, want %d", n, table, want)
		}
	}
}

// testHousekeepRetention checks that audit events and change-feed rows go
// by their retention cut-offs, in batches, and that the newest change
// always stays.
func testHousekeepRetention(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	const old, recent = 8, 3
	cut := time.Now().Add(-time.Hour)
	var evs []store.AuditEvent
	for i := range old + recent {
		at := cut.Add(-time.Duration(old-i) * time.Minute) // old ones before cut
		if i >= old {
			at = cut.Add(time.Duration(i) * time.Minute)
		}
		evs = append(evs, store.AuditEvent{At: at, Event: "test.event", Target: fmt.Sprint(i)})
	}
	if err := s.AppendAudit(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	for i := range old {
		if _, err := s.RecordChange(ctx, "test", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // changes are stamped in milliseconds
	changesCut := time.Now()
	time.Sleep(5 * time.Millisecond)
	for i := range recent {
		if _, err := s.RecordChange(ctx, "test", fmt.Sprint(old+i)); err != nil {
			t.Fatal(err)
		}
	}
	last, err := s.LastChange(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var log deletedLog
	deleted, err := s.Housekeep(ctx, store.Housekeeping{AuditBefore: cut, ChangesBefore: changesCut,
		BatchSize: housekeepingBatch, Pause: time.Millisecond, Deleted: log.add})
	if err != nil {
		t.Fatalf("Housekeep: %v", err)
	}
	if deleted["audit_events"] != old || deleted["changes"] != old {
		t.Errorf("Housekeep deleted %d audit events and %d changes, want %d and %d",
			deleted["audit_events"], deleted["changes"], old, old)
	}
	if log.maxN > housekeepingBatch {
		t.Errorf("a batch deleted %d rows, want at most %d", log.maxN, housekeepingBatch)
	}
	left, err := s.AuditEvents(ctx, store.AuditFilter{Event: "test.event"})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != recent || left[0].Target != fmt.Sprint(old) {
		t.Errorf("audit events left: %d starting at %v, want %d starting at %d", len(left), left, recent, old)
	}
	cs, err := s.Changes(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != recent || cs[0].Ref != fmt.Sprint(old) {
		t.Errorf("changes left: %v, want the %d recent ones", cs, recent)
	}

	// Even a cut-off in the future keeps the newest change.
	if _, err := s.Housekeep(ctx, store.Housekeeping{ChangesBefore: time.Now().Add(time.Hour), BatchSize: housekeepingBatch, Pause: -1}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LastChange(ctx); err != nil || got != last {
		t.Errorf("LastChange after pruning all = %d, %v; want %d", got, err, last)
	}
	if cs, err := s.Changes(ctx, 0, 0); err != nil || len(cs) != 1 {
		t.Errorf("changes after pruning all: %v, %v; want only the newest", cs, err)
	}
}
