package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// testAPIKeysAndAudit runs the API-key and audit-log conformance tests.
func testAPIKeysAndAudit(t *testing.T, open func(t *testing.T) *store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) *store.Store)
	}{
		{"RoundTrip", testAPIKeyRoundTrip},
		{"Invalid", testAPIKeyInvalid},
		{"List", testAPIKeyList},
		{"Update", testAPIKeyUpdate},
		{"Revoke", testAPIKeyRevoke},
		{"Rotate", testAPIKeyRotate},
		{"RotateRace", testAPIKeyRotateRace},
		{"Use", testAPIKeyUse},
		{"Exposed", testAPIKeyExposed},
		{"Audit", testAudit},
		{"AuditInvalid", testAuditInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func newAPIKey(id string) store.APIKey {
	return store.APIKey{
		ID:         id,
		Prefix:     "gk",
		Env:        "live",
		Last4:      "x" + id[len(id)-3:],
		Hash:       append([]byte{0, 0xff, 1}, id...),
		Name:       "key " + id,
		Owner:      "owner-" + id[:1],
		Scopes:     []string{"read"},
		AllowedIPs: []string{"10.0.0.0/8", "2001:db8::/32"},
		RateLimit:  100,
		RateWindow: time.Minute,
		CreatedAt:  t0,
		ExpiresAt:  t0.Add(90 * 24 * time.Hour),
	}
}

// stored returns k as a read returns it: times at ms precision in UTC,
// and the defaults CreateAPIKey fills in.
func stored(k store.APIKey) store.APIKey {
	if k.Family == "" {
		k.Family = k.ID
	}
	if k.UpdatedAt.IsZero() {
		k.UpdatedAt = k.CreatedAt
	}
	for _, tm := range []*time.Time{&k.GraceUntil, &k.CreatedAt, &k.UpdatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &k.ExposedAt} {
		*tm = ms(*tm)
	}
	return k
}

func checkAPIKey(t *testing.T, got, want store.APIKey) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("API key %s:\n got %+v\nwant %+v", want.ID, got, want)
	}
}

func changeList(t *testing.T, s *store.Store, after int64) []string {
	t.Helper()
	cs, err := s.Changes(testCtx(t), after, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind+":"+c.Ref)
	}
	return out
}

func testAPIKeyRoundTrip(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	before, _ := s.LastChange(ctx)
	k := newAPIKey("aaaaaaaaaaa1")
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	got, err := s.APIKey(ctx, k.ID)
	if err != nil {
		t.Fatalf("APIKey: %v", err)
	}
	checkAPIKey(t, got, stored(k))

	// A minimal key: no scopes, IPs, limit or expiry; the store's clock.
	min := store.APIKey{ID: "bbbbbbbbbbb2", Prefix: "gk", Env: "test", Last4: "abcd", Hash: []byte{1}, Name: "min"}
	if err := s.CreateAPIKey(ctx, min); err != nil {
		t.Fatalf("CreateAPIKey(minimal): %v", err)
	}
	got, err = s.APIKey(ctx, min.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedAt.IsZero() || !got.UpdatedAt.Equal(got.CreatedAt) || got.Family != min.ID {
		t.Errorf("minimal key: CreatedAt %v, UpdatedAt %v, Family %q; want a creation time, equal times, family %q",
			got.CreatedAt, got.UpdatedAt, got.Family, min.ID)
	}
	if got.Scopes != nil || got.AllowedIPs != nil || got.RateLimit != 0 || !got.ExpiresAt.IsZero() {
		t.Errorf("minimal key: got %+v, want no scopes, IPs, limit or expiry", got)
	}

	if err := s.CreateAPIKey(ctx, k); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateAPIKey(duplicate) = %v, want ErrConflict", err)
	}
	if _, err := s.APIKey(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("APIKey(missing) = %v, want ErrNotFound", err)
	}
	want := []string{"api_key:" + k.ID, "api_key:" + min.ID}
	if got := changeList(t, s, before); !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
}

func testAPIKeyInvalid(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	tests := []struct {
		name   string
		modify func(k *store.APIKey)
	}{
		{"empty ID", func(k *store.APIKey) { k.ID = "" }},
		{"empty prefix", func(k *store.APIKey) { k.Prefix = "" }},
		{"empty env", func(k *store.APIKey) { k.Env = "" }},
		{"no hash", func(k *store.APIKey) { k.Hash = nil }},
		{"empty name", func(k *store.APIKey) { k.Name = "" }},
		{"empty scope", func(k *store.APIKey) { k.Scopes = []string{"read", ""} }},
		{"scope with space", func(k *store.APIKey) { k.Scopes = []string{"read write"} }},
		{"IP with space", func(k *store.APIKey) { k.AllowedIPs = []string{"10.0.0.0/8 x"} }},
		{"negative rate limit", func(k *store.APIKey) { k.RateLimit = -1 }},
		{"rate limit without window", func(k *store.APIKey) { k.RateWindow = 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := newAPIKey("ccccccccccc3")
			tc.modify(&k)
			if err := s.CreateAPIKey(ctx, k); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateAPIKey() = %v, want ErrInvalid", err)
			}
		})
	}
	if keys, err := s.APIKeys(ctx, store.APIKeyFilter{}); err != nil || len(keys) != 0 {
		t.Errorf("APIKeys() = %d keys, %v; want none", len(keys), err)
	}
	if n, _ := s.LastChange(ctx); n != 0 {
		t.Errorf("LastChange() = %d after failed creates, want 0", n)
	}
}

func testAPIKeyList(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	ids := []string{"a00000000003", "b00000000001", "a00000000001", "c00000000001", "a00000000002"}
	for _, id := range ids {
		if err := s.CreateAPIKey(ctx, newAPIKey(id)); err != nil {
			t.Fatal(err)
		}
	}
	ofIDs := func(keys []store.APIKey) []string {
		var out []string
		for _, k := range keys {
			out = append(out, k.ID)
		}
		return out
	}
	tests := []struct {
		name string
		f    store.APIKeyFilter
		want []string
	}{
		{"all", store.APIKeyFilter{}, []string{"a00000000001", "a00000000002", "a00000000003", "b00000000001", "c00000000001"}},
		{"first page", store.APIKeyFilter{Limit: 2}, []string{"a00000000001", "a00000000002"}},
		{"next page", store.APIKeyFilter{After: "a00000000002", Limit: 2}, []string{"a00000000003", "b00000000001"}},
		{"owner", store.APIKeyFilter{Owner: "owner-a"}, []string{"a00000000001", "a00000000002", "a00000000003"}},
		{"owner paged", store.APIKeyFilter{Owner: "owner-a", After: "a00000000001", Limit: 1}, []string{"a00000000002"}},
		{"unknown owner", store.APIKeyFilter{Owner: "nobody"}, nil},
		{"past the end", store.APIKeyFilter{After: "z"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := s.APIKeys(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ofIDs(keys); !slices.Equal(got, tc.want) {
				t.Errorf("APIKeys(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		})
	}
}

func testAPIKeyUpdate(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	k := newAPIKey("ddddddddddd4")
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	before, _ := s.LastChange(ctx)
	upd := k
	upd.Name, upd.Scopes, upd.AllowedIPs = "renamed", []string{"read", "write"}, nil
	upd.RateLimit, upd.RateWindow, upd.ExpiresAt = 5, time.Second, time.Time{}
	upd.Hash, upd.Owner = []byte("ignored"), "ignored" // not updatable
	got, err := s.UpdateAPIKey(ctx, upd)
	if err != nil {
		t.Fatalf("UpdateAPIKey: %v", err)
	}
	want := stored(k)
	want.Name, want.Scopes, want.AllowedIPs = "renamed", []string{"read", "write"}, nil
	want.RateLimit, want.RateWindow, want.ExpiresAt = 5, time.Second, time.Time{}
	if got.UpdatedAt.IsZero() || got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("UpdatedAt = %v, want the store's clock, not zero or %v", got.UpdatedAt, want.UpdatedAt)
	}
	want.UpdatedAt = got.UpdatedAt
	checkAPIKey(t, got, want)
	if reread, err := s.APIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	} else {
		checkAPIKey(t, reread, want)
	}
	if got := changeList(t, s, before); !slices.Equal(got, []string{"api_key:" + k.ID}) {
		t.Errorf("changes = %v, want one api_key change", got)
	}

	bad := upd
	bad.Name = ""
	if _, err := s.UpdateAPIKey(ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("UpdateAPIKey(empty name) = %v, want ErrInvalid", err)
	}
	bad = upd
	bad.Scopes = []string{"a b"}
	if _, err := s.UpdateAPIKey(ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("UpdateAPIKey(scope with space) = %v, want ErrInvalid", err)
	}
	bad = upd
	bad.ID = "missing"
	if _, err := s.UpdateAPIKey(ctx, bad); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateAPIKey(missing) = %v, want ErrNotFound", err)
	}
}

func testAPIKeyRevoke(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	k := newAPIKey("eeeeeeeeeee5")
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	before, _ := s.LastChange(ctx)
	at := t0.Add(time.Hour)
	got, err := s.RevokeAPIKey(ctx, k.ID, at)
	if err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	if !got.RevokedAt.Equal(ms(at)) {
		t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, ms(at))
	}
	// Again: no change, the first revocation time stays.
	again, err := s.RevokeAPIKey(ctx, k.ID, at.Add(time.Hour))
	if err != nil || !again.RevokedAt.Equal(ms(at)) {
		t.Errorf("RevokeAPIKey(revoked) = RevokedAt %v, %v; want %v, nil", again.RevokedAt, err, ms(at))
	}
	if got := changeList(t, s, before); !slices.Equal(got, []string{"api_key:" + k.ID}) {
		t.Errorf("changes = %v, want exactly one api_key change", got)
	}
	if _, err := s.RevokeAPIKey(ctx, "missing", at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeAPIKey(missing) = %v, want ErrNotFound", err)
	}
}

func testAPIKeyRotate(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	old := newAPIKey("fffffffffff6")
	old.UseCount = 41
	if err := s.CreateAPIKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordAPIKeyUse(ctx, []store.APIKeyUse{{ID: old.ID, Count: 1, LastAt: t0}}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.LastChange(ctx)
	next := store.APIKey{ID: "ggggggggggg7", Prefix: "gk", Env: "live", Last4: "new4", Hash: []byte("new hash"),
		CreatedAt: t0.Add(time.Hour), Name: "ignored", Scopes: []string{"ignored"}}
	grace := t0.Add(25 * time.Hour)
	gotOld, gotNew, err := s.RotateAPIKey(ctx, old.ID, next, grace)
	if err != nil {
		t.Fatalf("RotateAPIKey: %v", err)
	}
	wantNew := stored(old)
	wantNew.ID, wantNew.Last4, wantNew.Hash = next.ID, next.Last4, next.Hash
	wantNew.CreatedAt, wantNew.UpdatedAt = ms(next.CreatedAt), ms(next.CreatedAt)
	wantNew.UseCount, wantNew.Family = 42, old.ID // counters and family carry over
	checkAPIKey(t, gotNew, wantNew)
	if reread, err := s.APIKey(ctx, next.ID); err != nil {
		t.Fatal(err)
	} else {
		checkAPIKey(t, reread, wantNew)
	}
	reOld, err := s.APIKey(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if reOld.ReplacedBy != next.ID || !reOld.GraceUntil.Equal(ms(grace)) || !slices.Equal(reOld.Hash, old.Hash) {
		t.Errorf("old key after rotation: ReplacedBy %q, GraceUntil %v; want %q, %v, hash unchanged",
			reOld.ReplacedBy, reOld.GraceUntil, next.ID, ms(grace))
	}
	checkAPIKey(t, gotOld, reOld)
	want := []string{"api_key:" + old.ID, "api_key:" + next.ID}
	if got := changeList(t, s, before); !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}

	// The new key rotates again, and its successor stays in the family.
	third := next
	third.ID, third.Hash = "hhhhhhhhhhh8", []byte("third")
	if _, k3, err := s.RotateAPIKey(ctx, next.ID, third, time.Time{}); err != nil || k3.Family != old.ID {
		t.Errorf("second rotation: family %q, %v; want %q, nil", k3.Family, err, old.ID)
	}
	if k2, err := s.APIKey(ctx, next.ID); err != nil || k2.GraceUntil.IsZero() {
		t.Errorf("zero grace: GraceUntil = %v, %v; want the rotation time", k2.GraceUntil, err)
	}

	steps := []struct {
		name  string
		oldID string
		newID string
		want  error
	}{
		{"already rotated", old.ID, "iiiiiiiiiii9", store.ErrConflict},
		{"unknown", "missing", "jjjjjjjjjj10", store.ErrNotFound},
		{"duplicate new ID", third.ID, old.ID, store.ErrConflict},
	}
	for _, st := range steps {
		n := next
		n.ID = st.newID
		if _, _, err := s.RotateAPIKey(ctx, st.oldID, n, grace); !errors.Is(err, st.want) {
			t.Errorf("%s: RotateAPIKey = %v, want %v", st.name, err, st.want)
		}
	}
	if _, err := s.RevokeAPIKey(ctx, third.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	n := next
	n.ID = "kkkkkkkkkk11"
	if _, _, err := s.RotateAPIKey(ctx, third.ID, n, grace); !errors.Is(err, store.ErrConflict) {
		t.Errorf("revoked: RotateAPIKey = %v, want ErrConflict", err)
	}
	if _, err := s.APIKey(ctx, n.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed rotation left key %s behind: %v", n.ID, err)
	}
}

func testAPIKeyRotateRace(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s1 := fresh(t, open)
	stores := []*store.Store{s1, reopen(t, s1)}
	old := newAPIKey("racerace0001")
	if err := s1.CreateAPIKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 8)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			next := store.APIKey{ID: fmt.Sprintf("racenext%04d", i), Prefix: "gk", Env: "live", Last4: "1234", Hash: []byte{byte(i)}}
			_, _, errs[i] = stores[i%2].RotateAPIKey(ctx, old.ID, next, t0)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("rotation %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d rotations won, want exactly 1", wins)
	}
	keys, err := s1.APIKeys(ctx, store.APIKeyFilter{})
	if err != nil || len(keys) != 2 {
		t.Errorf("APIKeys() = %d keys, %v; want the old key and one new key", len(keys), err)
	}
}

func testAPIKeyUse(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	a, b := newAPIKey("useuseuse001"), newAPIKey("useuseuse002")
	for _, k := range []store.APIKey{a, b} {
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.LastChange(ctx)
	batches := [][]store.APIKeyUse{
		{{ID: a.ID, Count: 3, LastAt: t0.Add(time.Minute)}, {ID: b.ID, Count: 1, LastAt: t0}, {ID: "unknown", Count: 9, LastAt: t0}},
		{{ID: a.ID, Count: 2, LastAt: t0}}, // older: LastUsedAt stays
		nil,
	}
	for _, batch := range batches {
		if err := s.RecordAPIKeyUse(ctx, batch); err != nil {
			t.Fatalf("RecordAPIKeyUse: %v", err)
		}
	}
	tests := []struct {
		id    string
		count int64
		last  time.Time
	}{
		{a.ID, 5, t0.Add(time.Minute)},
		{b.ID, 1, t0},
	}
	for _, tc := range tests {
		k, err := s.APIKey(ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if k.UseCount != tc.count || !k.LastUsedAt.Equal(ms(tc.last)) {
			t.Errorf("key %s: UseCount %d, LastUsedAt %v; want %d, %v", tc.id, k.UseCount, k.LastUsedAt, tc.count, ms(tc.last))
		}
	}
	if got := changeList(t, s, before); len(got) != 0 {
		t.Errorf("RecordAPIKeyUse recorded changes %v, want none", got)
	}
}

func testAPIKeyExposed(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	k := newAPIKey("exposed00001")
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkAPIKeyExposed(ctx, k.ID, t0); err != nil {
		t.Fatalf("MarkAPIKeyExposed: %v", err)
	}
	if got, err := s.APIKey(ctx, k.ID); err != nil || !got.ExposedAt.Equal(ms(t0)) {
		t.Errorf("ExposedAt = %v, %v; want %v", got.ExposedAt, err, ms(t0))
	}
	if err := s.MarkAPIKeyExposed(ctx, "missing", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkAPIKeyExposed(missing) = %v, want ErrNotFound", err)
	}
}

func testAudit(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	if evs, err := s.AuditEvents(ctx, store.AuditFilter{}); err != nil || len(evs) != 0 {
		t.Fatalf("AuditEvents() on a new database = %v, %v; want none", evs, err)
	}
	in := []store.AuditEvent{
		{At: t0, Actor: "admin", Event: "apikey.create", Target: "k1", Outcome: "success", SourceIP: "192.0.2.1",
			Details: json.RawMessage(`{"name":"é \"quoted\"","scopes":["read"]}`)},
		{At: t0.Add(time.Second), Event: "apikey.verify", Target: "k1", Outcome: "failure", Reason: "wrong_secret", SourceIP: "2001:db8::1"},
		{At: t0.Add(2 * time.Second), Actor: "cli", Event: "apikey.revoke", Target: "k2", Outcome: "success"},
	}
	if err := s.AppendAudit(ctx, in[:2]...); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.AppendAudit(ctx, in[2]); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.AppendAudit(ctx); err != nil {
		t.Errorf("AppendAudit() with no events = %v, want nil", err)
	}
	all, err := s.AuditEvents(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(in) {
		t.Fatalf("AuditEvents() = %d events, want %d", len(all), len(in))
	}
	for i, got := range all {
		want := in[i]
		if i > 0 && got.ID <= all[i-1].ID {
			t.Errorf("event %d: ID %d not after %d", i, got.ID, all[i-1].ID)
		}
		if !got.At.Equal(ms(want.At)) || got.Actor != want.Actor || got.Event != want.Event || got.Target != want.Target ||
			got.Outcome != want.Outcome || got.Reason != want.Reason || got.SourceIP != want.SourceIP {
			t.Errorf("event %d: got %+v, want %+v", i, got, want)
		}
		wantDetails := want.Details
		if wantDetails == nil {
			wantDetails = json.RawMessage(`{}`)
		}
		var g, w any
		if err := json.Unmarshal(got.Details, &g); err != nil {
			t.Errorf("event %d: details %q are not JSON: %v", i, got.Details, err)
		}
		json.Unmarshal(wantDetails, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("event %d: details = %s, want %s", i, got.Details, wantDetails)
		}
	}
	ids := func(evs []store.AuditEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Event+"@"+e.Target)
		}
		return out
	}
	filters := []struct {
		name string
		f    store.AuditFilter
		want []string
	}{
		{"target", store.AuditFilter{Target: "k1"}, []string{"apikey.create@k1", "apikey.verify@k1"}},
		{"event", store.AuditFilter{Event: "apikey.revoke"}, []string{"apikey.revoke@k2"}},
		{"target and event", store.AuditFilter{Target: "k1", Event: "apikey.verify"}, []string{"apikey.verify@k1"}},
		{"paged", store.AuditFilter{After: all[0].ID, Limit: 1}, []string{"apikey.verify@k1"}},
		{"no match", store.AuditFilter{Target: "k3"}, nil},
	}
	for _, tc := range filters {
		evs, err := s.AuditEvents(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(evs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: AuditEvents(%+v) = %v, want %v", tc.name, tc.f, got, tc.want)
		}
	}
	n, err := s.PruneAudit(ctx, t0.Add(1500*time.Millisecond))
	if err != nil || n != 2 {
		t.Errorf("PruneAudit() = %d, %v; want 2, nil", n, err)
	}
	if evs, _ := s.AuditEvents(ctx, store.AuditFilter{}); !slices.Equal(ids(evs), []string{"apikey.revoke@k2"}) {
		t.Errorf("after PruneAudit: %v, want only the newest event", ids(evs))
	}
}

func testAuditInvalid(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	tests := []struct {
		name string
		ev   store.AuditEvent
	}{
		{"empty event", store.AuditEvent{Target: "x"}},
		{"details not JSON", store.AuditEvent{Event: "e", Details: json.RawMessage(`{`)}},
		{"details an array", store.AuditEvent{Event: "e", Details: json.RawMessage(`[1]`)}},
		{"details null", store.AuditEvent{Event: "e", Details: json.RawMessage(`null`)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok := store.AuditEvent{Event: "ok"}
			if err := s.AppendAudit(ctx, ok, tc.ev); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("AppendAudit() = %v, want ErrInvalid", err)
			}
		})
	}
	if evs, err := s.AuditEvents(ctx, store.AuditFilter{}); err != nil || len(evs) != 0 {
		t.Errorf("AuditEvents() = %d events, %v; want none (nothing written)", len(evs), err)
	}
}
