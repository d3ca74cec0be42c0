// Package storetest holds the conformance suite that every store backend
// passes, and helpers that give tests a fresh SQLite or PostgreSQL database.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Run runs the conformance suite. open must return a Store on a new, empty
// database (migrated or not) and close it when the test ends; Run migrates
// it. Subtests that need a second process open one with [store.Store.Reopen].
func Run(t *testing.T, open func(t *testing.T) *store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) *store.Store)
	}{
		{"Migrate", testMigrate},
		{"MigrateConcurrent", testMigrateConcurrent},
		{"Ping", testPing},
		{"Meta", testMeta},
		{"MetaRace", testMetaRace},
		{"SigningKeys", testSigningKeys},
		{"SigningKeyInvalid", testSigningKeyInvalid},
		{"SigningKeyTimes", testSigningKeyTimes},
		{"SigningKeyRace", testSigningKeyRace},
		{"DeleteExpiredSigningKeys", testDeleteExpiredSigningKeys},
		{"DeletePendingSigningKeys", testDeletePendingSigningKeys},
		{"Changes", testChanges},
		{"PruneChanges", testPruneChanges},
		{"HousekeepExpired", testHousekeepExpired},
		{"HousekeepRetention", testHousekeepRetention},
		{"Follow", testFollow},
		{"FollowBacklog", testFollowBacklog},
		{"FollowConcurrentWriters", testFollowConcurrentWriters},
		{"Closed", testClosed},
		{"Clients", runClientTests},
		{"Users", runUserTests},
		{"APIKeys", testAPIKeysAndAudit},
		{"AccountSessions", testAccountSessions},
		{"Search", testSearch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// testCtx returns a context that ends with the test or after 60 s.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fresh opens and migrates a new store.
func fresh(t *testing.T, open func(t *testing.T) *store.Store) *store.Store {
	t.Helper()
	s := open(t)
	if err := s.Migrate(testCtx(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// reopen opens a second Store on s's database, as another process would.
func reopen(t *testing.T, s *store.Store) *store.Store {
	t.Helper()
	s2, err := s.Reopen(testCtx(t))
	if err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func testMigrate(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := open(t)
	want := s.KnownSchemaVersion()
	if want < 1 {
		t.Fatalf("KnownSchemaVersion() = %d, want >= 1", want)
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != 0 {
		t.Fatalf("SchemaVersion() before Migrate = %d, %v; want 0, nil", v, err)
	}
	for i := range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("Migrate() #%d: %v", i+1, err)
		}
		if v, err := s.SchemaVersion(ctx); err != nil || v != want {
			t.Fatalf("SchemaVersion() after Migrate #%d = %d, %v; want %d, nil", i+1, v, err, want)
		}
	}
	if n, err := s.LastChange(ctx); err != nil || n != 0 {
		t.Errorf("LastChange() on a new database = %d, %v; want 0, nil", n, err)
	}
}

func testMigrateConcurrent(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s1 := open(t)
	s2 := reopen(t, s1)
	stores := []*store.Store{s1, s2}
	errs := make([]error, 6)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			errs[i] = stores[i%2].Migrate(ctx)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate() #%d: %v", i, err)
		}
	}
	for i, s := range stores {
		if v, err := s.SchemaVersion(ctx); err != nil || v != s.KnownSchemaVersion() {
			t.Errorf("store %d: SchemaVersion() = %d, %v; want %d, nil", i, v, err, s.KnownSchemaVersion())
		}
	}
	// Both stores use the one schema: a write through one is read by the other.
	if _, err := s1.PutMetaIfAbsent(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Meta(ctx, "k"); err != nil || got != "v" {
		t.Errorf("second store: Meta(k) = %q, %v; want %q, nil", got, err, "v")
	}
}

func testPing(t *testing.T, open func(t *testing.T) *store.Store) {
	s := open(t)
	if err := s.Ping(testCtx(t)); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
	if d := s.Dialect(); d != store.DialectSQLite && d != store.DialectPostgres {
		t.Errorf("Dialect() = %q, want %q or %q", d, store.DialectSQLite, store.DialectPostgres)
	}
}

func testMeta(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	if got, err := s.Meta(ctx, "check"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Meta(missing) = %q, %v; want error wrapping ErrNotFound", got, err)
	}
	steps := []struct {
		key, value, want string
	}{
		{"check", "v1", "v1"},
		{"check", "v2", "v1"}, // already present: the first value stays
		{"other", "", ""},
		{"unicode", "é\u2028😀 'quoted' \"double\"", "é\u2028😀 'quoted' \"double\""},
	}
	for _, st := range steps {
		got, err := s.PutMetaIfAbsent(ctx, st.key, st.value)
		if err != nil || got != st.want {
			t.Errorf("PutMetaIfAbsent(%q, %q) = %q, %v; want %q, nil", st.key, st.value, got, err, st.want)
		}
		if got, err := s.Meta(ctx, st.key); err != nil || got != st.want {
			t.Errorf("Meta(%q) = %q, %v; want %q, nil", st.key, got, err, st.want)
		}
	}
	if _, err := s.PutMetaIfAbsent(ctx, "", "x"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutMetaIfAbsent(empty key) error = %v, want ErrInvalid", err)
	}
}

func testMetaRace(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s1 := fresh(t, open)
	stores := []*store.Store{s1, reopen(t, s1)}
	got := make([]string, 8)
	errs := make([]error, len(got))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range got {
		wg.Go(func() {
			<-start
			got[i], errs[i] = stores[i%2].PutMetaIfAbsent(ctx, "race", fmt.Sprint("value-", i))
		})
	}
	close(start)
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("PutMetaIfAbsent #%d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("PutMetaIfAbsent #%d returned %q, #0 returned %q; want all equal", i, got[i], got[0])
		}
	}
	if stored, err := s1.Meta(ctx, "race"); err != nil || stored != got[0] {
		t.Errorf("Meta(race) = %q, %v; want %q", stored, err, got[0])
	}
}

// t0 is a fixed instant with sub-millisecond digits, in a non-UTC zone.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("UTC+2", 2*3600))

// ms is how a stored time comes back: millisecond precision, UTC.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Millisecond).UTC()
}

func newKey(id, alg string, activates time.Time) store.SigningKey {
	return store.SigningKey{
		ID:          id,
		Algorithm:   alg,
		Public:      []byte("public-" + id),
		Private:     append([]byte{0, 1, 2, 0xff, 0}, id...), // binary, with NULs
		CreatedAt:   activates.Add(-time.Hour),
		ActivatesAt: activates,
	}
}

// checkKeys compares got with want as stored: times at ms precision in UTC.
func checkKeys(t *testing.T, got, want []store.SigningKey) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d keys %v, want %d keys %v", len(got), keyIDs(got), len(want), keyIDs(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Algorithm != w.Algorithm {
			t.Errorf("key %d: got %s/%s, want %s/%s", i, g.ID, g.Algorithm, w.ID, w.Algorithm)
		}
		if !bytes.Equal(g.Public, w.Public) || !bytes.Equal(g.Private, w.Private) {
			t.Errorf("key %s: key material changed in the round trip", w.ID)
		}
		times := []struct {
			name      string
			got, want time.Time
		}{
			{"CreatedAt", g.CreatedAt, w.CreatedAt},
			{"ActivatesAt", g.ActivatesAt, w.ActivatesAt},
			{"RetiresAt", g.RetiresAt, w.RetiresAt},
			{"ExpiresAt", g.ExpiresAt, w.ExpiresAt},
		}
		for _, tm := range times {
			want := ms(tm.want)
			if !tm.got.Equal(want) || tm.got.IsZero() != want.IsZero() {
				t.Errorf("key %s: %s = %v, want %v", w.ID, tm.name, tm.got, want)
			}
			if !tm.got.IsZero() && tm.got.Location() != time.UTC {
				t.Errorf("key %s: %s location = %v, want UTC", w.ID, tm.name, tm.got.Location())
			}
		}
	}
}

func keyIDs(keys []store.SigningKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

func testSigningKeys(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Fatalf("SigningKeys() on a new database = %v, %v; want none", keyIDs(keys), err)
	}
	es1 := newKey("es-1", "ES256", t0)
	es2 := newKey("es-2", "ES256", t0.Add(30*24*time.Hour))
	es3 := newKey("es-3", "ES256", t0.Add(60*24*time.Hour))
	rs1 := newKey("rs-1", "RS256", t0)
	es2Expiry := t0.Add(31 * 24 * time.Hour)

	steps := []struct {
		name          string
		next          store.SigningKey
		expectNewest  string
		prevExpiresAt time.Time
		wantErr       error
	}{
		{"first ES256", es1, "", time.Time{}, nil},
		{"first ES256 again", newKey("es-x", "ES256", t0.Add(time.Hour)), "", time.Time{}, store.ErrConflict},
		{"wrong expectNewest", es2, "es-0", es2Expiry, store.ErrConflict},
		{"second ES256", es2, "es-1", es2Expiry, nil},
		{"stale expectNewest", newKey("es-y", "ES256", t0.Add(90*24*time.Hour)), "es-1", time.Time{}, store.ErrConflict},
		{"first RS256, own chain", rs1, "", time.Time{}, nil},
		{"duplicate ID", newKey("es-1", "EdDSA", t0), "", time.Time{}, store.ErrConflict},
		{"activates before newest", newKey("es-z", "ES256", t0.Add(time.Hour)), "es-2", time.Time{}, store.ErrInvalid},
		{"third ES256, no expiry", es3, "es-2", time.Time{}, nil},
	}
	for _, st := range steps {
		err := s.AddSigningKey(ctx, st.next, st.expectNewest, st.prevExpiresAt)
		if (st.wantErr == nil && err != nil) || !errors.Is(err, st.wantErr) {
			t.Errorf("%s: AddSigningKey(%s, %q) = %v, want %v", st.name, st.next.ID, st.expectNewest, err, st.wantErr)
		}
	}

	es1.RetiresAt, es1.ExpiresAt = es2.ActivatesAt, es2Expiry
	es2.RetiresAt = es3.ActivatesAt // no prevExpiresAt: ExpiresAt stays zero
	keys, err = s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, keys, []store.SigningKey{es1, es2, es3, rs1})

	// Only the successful writes recorded changes; the failed ones rolled back.
	changes, err := s.Changes(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Kind+":"+c.Ref)
	}
	want := []string{"signing_key:es-1", "signing_key:es-2", "signing_key:rs-1", "signing_key:es-3"}
	if !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
}

func testSigningKeyInvalid(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	valid := newKey("k", "ES256", t0)
	tests := []struct {
		name   string
		modify func(k *store.SigningKey)
	}{
		{"empty ID", func(k *store.SigningKey) { k.ID = "" }},
		{"empty algorithm", func(k *store.SigningKey) { k.Algorithm = "" }},
		{"no public key", func(k *store.SigningKey) { k.Public = nil }},
		{"no private key", func(k *store.SigningKey) { k.Private = nil }},
		{"zero activation", func(k *store.SigningKey) { k.ActivatesAt = time.Time{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := valid
			tc.modify(&k)
			if err := s.AddSigningKey(ctx, k, "", time.Time{}); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("AddSigningKey() = %v, want ErrInvalid", err)
			}
		})
	}
	if keys, err := s.SigningKeys(ctx); err != nil || len(keys) != 0 {
		t.Errorf("SigningKeys() = %v, %v; want none", keyIDs(keys), err)
	}
}

func testSigningKeyTimes(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	k := store.SigningKey{
		ID:          "times",
		Algorithm:   "EdDSA",
		Public:      []byte{1},
		Private:     []byte{2},
		CreatedAt:   time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("UTC-5", -5*3600)),
		ActivatesAt: t0,
		RetiresAt:   time.Date(2100, 1, 1, 0, 0, 0, 1, time.UTC), // below ms: truncated
		ExpiresAt:   time.Date(2100, 1, 2, 0, 0, 0, 999_000_000, time.Local),
	}
	if err := s.AddSigningKey(ctx, k, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, keys, []store.SigningKey{k})
	if len(keys) == 1 {
		if got, want := keys[0].CreatedAt, time.Date(2000, 1, 1, 4, 59, 59, 999_000_000, time.UTC); !got.Equal(want) {
			t.Errorf("CreatedAt = %v, want exactly %v", got, want)
		}
	}
}

func testSigningKeyRace(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s1 := fresh(t, open)
	stores := []*store.Store{s1, reopen(t, s1)}

	// race adds n keys of alg concurrently, all expecting expectNewest, and
	// returns the index of the single winner.
	race := func(alg, expectNewest string, base time.Time) int {
		t.Helper()
		errs := make([]error, 8)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range errs {
			wg.Go(func() {
				<-start
				k := newKey(fmt.Sprintf("%s-%d", alg, i), alg, base.Add(time.Duration(i+1)*time.Minute))
				errs[i] = stores[i%2].AddSigningKey(ctx, k, expectNewest, base.Add(48*time.Hour))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("%s: AddSigningKey #%d and #%d both succeeded, want exactly one", alg, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("%s: AddSigningKey #%d = %v, want nil or ErrConflict", alg, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: no AddSigningKey succeeded, want exactly one", alg)
		}
		return winner
	}

	first := race("EdDSA", "", t0)
	firstID := fmt.Sprintf("EdDSA-%d", first)
	second := race("EdDSA", firstID, t0.Add(24*time.Hour))
	keys, err := s1.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keyIDs(keys), []string{firstID, fmt.Sprintf("EdDSA-%d", second)}; !slices.Equal(got, want) {
		t.Fatalf("keys = %v, want %v", got, want)
	}
	if got, want := keys[0].RetiresAt, ms(keys[1].ActivatesAt); !got.Equal(want) {
		t.Errorf("first key RetiresAt = %v, want the second's ActivatesAt %v", got, want)
	}
	if n, err := s1.LastChange(ctx); err != nil || n < 2 {
		t.Errorf("LastChange() = %d, %v; want >= 2", n, err)
	}
	changes, err := s1.Changes(ctx, 0, 100)
	if err != nil || len(changes) != 2 {
		t.Errorf("Changes() = %d changes, %v; want 2 (one per winner)", len(changes), err)
	}
}

func testDeleteExpiredSigningKeys(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	now := time.Now()
	expired := newKey("expired", "ES256", now.Add(-48*time.Hour))
	expired.ExpiresAt = now.Add(-time.Hour)
	later := newKey("later", "RS256", now.Add(-48*time.Hour))
	later.ExpiresAt = now.Add(time.Hour)
	never := newKey("never", "EdDSA", now.Add(-48*time.Hour))
	for _, k := range []store.SigningKey{expired, later, never} {
		if err := s.AddSigningKey(ctx, k, "", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	last, err := s.LastChange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteExpiredSigningKeys(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpiredSigningKeys() = %d, %v; want 1, nil", n, err)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keyIDs(keys), []string{"never", "later"}; !slices.Equal(got, want) {
		t.Errorf("keys left = %v, want %v", got, want)
	}
	changes, err := s.Changes(ctx, last, 10)
	if err != nil || len(changes) != 1 || changes[0].Kind != store.ChangeSigningKey || changes[0].Ref != "expired" {
		t.Errorf("changes after delete = %+v, %v; want one signing_key change for %q", changes, err, "expired")
	}
	last, _ = s.LastChange(ctx)
	if n, err := s.DeleteExpiredSigningKeys(ctx, now); err != nil || n != 0 {
		t.Errorf("second DeleteExpiredSigningKeys() = %d, %v; want 0, nil", n, err)
	}
	if again, err := s.LastChange(ctx); err != nil || again != last {
		t.Errorf("LastChange() after deleting nothing = %d, %v; want %d (no change recorded)", again, err, last)
	}
}

func testDeletePendingSigningKeys(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	now := time.Now()
	active := newKey("active", "ES256", now.Add(-time.Hour))
	pending := newKey("pending", "ES256", now.Add(time.Hour))
	other := newKey("other-alg", "EdDSA", now.Add(time.Hour))
	if err := s.AddSigningKey(ctx, active, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSigningKey(ctx, pending, "active", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSigningKey(ctx, other, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	last, _ := s.LastChange(ctx)
	n, err := s.DeletePendingSigningKeys(ctx, "ES256", now)
	if err != nil || n != 1 {
		t.Fatalf("DeletePendingSigningKeys() = %d, %v; want 1, nil", n, err)
	}
	keys, _ := s.SigningKeys(ctx)
	got := keyIDs(keys)
	slices.Sort(got)
	if want := []string{"active", "other-alg"}; !slices.Equal(got, want) {
		t.Errorf("keys left = %v, want %v", got, want)
	}
	changes, err := s.Changes(ctx, last, 10)
	if err != nil || len(changes) != 1 || changes[0].Ref != "pending" {
		t.Errorf("changes after delete = %+v, %v; want one for %q", changes, err, "pending")
	}
	// With the pending key gone, a key activating now can follow the active one.
	if err := s.AddSigningKey(ctx, newKey("emergency", "ES256", now), "active", time.Time{}); err != nil {
		t.Errorf("AddSigningKey after deleting the pending key: %v", err)
	}
}

func testChanges(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	if cs, err := s.Changes(ctx, 0, 10); err != nil || len(cs) != 0 {
		t.Fatalf("Changes() on a new database = %v, %v; want none", cs, err)
	}
	before := time.Now().Truncate(time.Millisecond)
	want := []store.Change{{Kind: "k1", Ref: "a"}, {Kind: "k2", Ref: ""}, {Kind: "k3", Ref: "c/ü"}}
	for i := range want {
		seq, err := s.RecordChange(ctx, want[i].Kind, want[i].Ref)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && seq <= want[i-1].Seq {
			t.Errorf("RecordChange #%d seq = %d, want > %d", i, seq, want[i-1].Seq)
		}
		want[i].Seq = seq
	}
	after := time.Now()
	if last, err := s.LastChange(ctx); err != nil || last != want[2].Seq {
		t.Errorf("LastChange() = %d, %v; want %d", last, err, want[2].Seq)
	}
	got, err := s.Changes(ctx, 0, 0)
	if err != nil || len(got) != len(want) {
		t.Fatalf("Changes(0, 0) = %+v, %v; want %d changes", got, err, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Kind != w.Kind || g.Ref != w.Ref {
			t.Errorf("change %d = %d %q %q, want %d %q %q", i, g.Seq, g.Kind, g.Ref, w.Seq, w.Kind, w.Ref)
		}
		if g.At.Before(before) || g.At.After(after) || g.At.Location() != time.UTC {
			t.Errorf("change %d At = %v, want in [%v, %v], UTC", i, g.At, before, after)
		}
	}
	pages := []struct {
		after    int64
		limit    int
		wantSeqs []int64
	}{
		{want[0].Seq, 1, []int64{want[1].Seq}},
		{want[0].Seq, 10, []int64{want[1].Seq, want[2].Seq}},
		{want[2].Seq, 10, nil},
		{0, 2, []int64{want[0].Seq, want[1].Seq}},
	}
	for _, p := range pages {
		cs, err := s.Changes(ctx, p.after, p.limit)
		var seqs []int64
		for _, c := range cs {
			seqs = append(seqs, c.Seq)
		}
		if err != nil || !slices.Equal(seqs, p.wantSeqs) {
			t.Errorf("Changes(%d, %d) seqs = %v, %v; want %v", p.after, p.limit, seqs, err, p.wantSeqs)
		}
	}
	if _, err := s.RecordChange(ctx, "", "x"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RecordChange(empty kind) error = %v, want ErrInvalid", err)
	}
}

func testPruneChanges(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	var last int64
	for i := range 3 {
		seq, err := s.RecordChange(ctx, "prune", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if n, err := s.PruneChanges(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("PruneChanges(an hour ago) = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.PruneChanges(ctx, time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Errorf("PruneChanges(in an hour) = %d, %v; want 2 (all but the newest), nil", n, err)
	}
	if got, err := s.LastChange(ctx); err != nil || got != last {
		t.Errorf("LastChange() after pruning = %d, %v; want %d", got, err, last)
	}
	cs, err := s.Changes(ctx, 0, 10)
	if err != nil || len(cs) != 1 || cs[0].Seq != last {
		t.Errorf("Changes() after pruning = %+v, %v; want only seq %d", cs, err, last)
	}
	seq, err := s.RecordChange(ctx, "prune", "next")
	if err != nil || seq <= last {
		t.Errorf("RecordChange() after pruning = %d, %v; want seq > %d", seq, err, last)
	}
}

// follow starts s.Follow(after) in the background and returns a channel of
// the changes it delivers and a function that stops it and returns its
// error.
func follow(t *testing.T, s *store.Store, after int64) (<-chan store.Change, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	got := make(chan store.Change, 10000)
	done := make(chan error, 1)
	go func() {
		done <- s.Follow(ctx, after, func(batch []store.Change) {
			for _, c := range batch {
				got <- c
			}
		})
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Follow did not return within 10 s of cancel")
			return nil
		}
	}
	t.Cleanup(func() { cancel() })
	return got, stop
}

// next waits up to d for the next change from got.
func next(t *testing.T, got <-chan store.Change, d time.Duration) (store.Change, bool) {
	t.Helper()
	select {
	case c := <-got:
		return c, true
	case <-time.After(d):
		return store.Change{}, false
	}
}

func testFollow(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s1 := fresh(t, open)
	s2 := reopen(t, s1)
	// A change from before Follow starts, but after its cursor, is delivered.
	old, err := s1.RecordChange(ctx, "before", "0")
	if err != nil {
		t.Fatal(err)
	}
	got, stop := follow(t, s1, old-1)
	if c, ok := next(t, got, 2*time.Second); !ok || c.Seq != old || c.Kind != "before" {
		t.Fatalf("first change = %+v, %v; want seq %d kind %q", c, ok, old, "before")
	}
	// Changes through a second store (another process) arrive within 1 s.
	writes := []func() (int64, error){
		func() (int64, error) { return s2.RecordChange(ctx, "follow", "1") },
		func() (int64, error) { return s2.RecordChange(ctx, "follow", "2") },
		func() (int64, error) {
			err := s2.AddSigningKey(ctx, newKey("followed", "ES256", t0), "", time.Time{})
			if err != nil {
				return 0, err
			}
			return s2.LastChange(ctx)
		},
	}
	prev := old
	for i, write := range writes {
		start := time.Now()
		seq, err := write()
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		c, ok := next(t, got, 5*time.Second)
		elapsed := time.Since(start)
		if !ok {
			t.Fatalf("write %d (seq %d): not delivered within 5 s", i, seq)
		}
		if c.Seq != seq || c.Seq <= prev {
			t.Errorf("write %d: delivered seq %d, want %d (> %d)", i, c.Seq, seq, prev)
		}
		if elapsed > time.Second {
			t.Errorf("write %d: delivered after %v, want within 1 s", i, elapsed)
		}
		prev = c.Seq
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow() after cancel = %v, want context.Canceled", err)
	}
	if c, ok := next(t, got, 0); ok {
		t.Errorf("unexpected extra change %+v", c)
	}
}

func testFollowBacklog(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	// More than one batch, written by concurrent writers.
	const n = 1100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				if _, err := s.RecordChange(ctx, "backlog", fmt.Sprint(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, stop := follow(t, s, 0)
	var prev int64
	seen := make(map[string]bool)
	for i := range n {
		c, ok := next(t, got, 5*time.Second)
		if !ok {
			t.Fatalf("got %d of %d changes", i, n)
		}
		if c.Seq <= prev {
			t.Fatalf("change %d: seq %d after %d, want increasing", i, c.Seq, prev)
		}
		prev = c.Seq
		seen[c.Ref] = true
	}
	if len(seen) != n {
		t.Errorf("got %d distinct changes, want %d", len(seen), n)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow() after cancel = %v, want context.Canceled", err)
	}
}

// testFollowConcurrentWriters checks that a follower running while several
// processes write sees every change exactly once, in increasing order: a
// transaction that took a sequence number early but committed late must not
// be skipped.
func testFollowConcurrentWriters(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s1 := fresh(t, open)
	stores := []*store.Store{s1, reopen(t, s1)}
	got, stop := follow(t, s1, 0)
	const writers, perWriter = 6, 40
	written := make(chan int64, writers*perWriter)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				seq, err := stores[w%2].RecordChange(ctx, "concurrent", fmt.Sprint(w, "-", i))
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				written <- seq
			}
		})
	}
	wg.Wait()
	close(written)
	want := make(map[int64]bool)
	for seq := range written {
		want[seq] = true
	}
	var prev int64
	for range len(want) {
		c, ok := next(t, got, 5*time.Second)
		if !ok {
			break
		}
		if c.Seq <= prev {
			t.Errorf("seq %d delivered after %d, want increasing", c.Seq, prev)
		}
		prev = c.Seq
		if !want[c.Seq] {
			t.Errorf("seq %d delivered but not written, or delivered twice", c.Seq)
		}
		delete(want, c.Seq)
	}
	if len(want) > 0 {
		t.Errorf("%d written changes never delivered", len(want))
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow() after cancel = %v, want context.Canceled", err)
	}
}

func testClosed(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping() after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.LastChange(ctx); err == nil {
		t.Error("LastChange() after Close = nil error, want an error")
	}
	if _, err := s.Meta(ctx, "x"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Meta() after Close = %v, want an error other than ErrNotFound", err)
	}
}
