package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// clientTests are the conformance subtests for clients, the access-token
// denylist and used client assertions.
var clientTests = []struct {
	name string
	fn   func(t *testing.T, open func(t *testing.T) *store.Store)
}{
	{"ClientRoundTrip", testClientRoundTrip},
	{"ClientInvalid", testClientInvalid},
	{"ClientsPaged", testClientsPaged},
	{"ClientUpdateDelete", testClientUpdateDelete},
	{"RotateClientSecret", testRotateClientSecret},
	{"RevokeToken", testRevokeToken},
	{"UseAssertion", testUseAssertion},
	{"PruneRevocations", testPruneRevocations},
	{"OpaqueTokens", testOpaqueTokens},
	{"OpaqueFamily", testOpaqueFamily},
}

func runClientTests(t *testing.T, open func(t *testing.T) *store.Store) {
	for _, tc := range clientTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// tms is t0 as it reads back from the store: UTC, millisecond precision.
var tms = t0.Truncate(time.Millisecond).UTC()

// fullClient returns a client with every field set.
func fullClient(id string) store.Client {
	return store.Client{
		ID:                      id,
		Name:                    "Client " + id + " ü",
		SecretHash:              bytes.Repeat([]byte{1}, 32),
		PrevSecretHash:          bytes.Repeat([]byte{2}, 32),
		PrevSecretExpiresAt:     tms.Add(24 * time.Hour),
		GrantTypes:              []string{"client_credentials", "authorization_code"},
		Scopes:                  []string{"read", "write"},
		RedirectURIs:            []string{"https://app.example/cb", "http://127.0.0.1/cb"},
		Audiences:               []string{"https://api.example"},
		AccessTokenTTL:          5 * time.Minute,
		RefreshTokenTTL:         48 * time.Hour,
		AccessTokenAlg:          "EdDSA",
		IDTokenAlg:              "ES256",
		JWKS:                    []byte(`{"keys":[]}`),
		JWKSURI:                 "https://app.example/jwks.json",
		TokenEndpointAuthMethod: "client_secret_basic",
		RegistrationTokenHash:   bytes.Repeat([]byte{3}, 32),
		ExchangeAudiences:       []string{"https://b.example", "https://c.example"},
		MayImpersonate:          true,
		AccessTokenFormat:       store.AccessTokenOpaque,
		Gateway:                 true,
		RateLimit:               100,
		RateWindow:              90 * time.Second,
	}
}

// sameClient compares everything but the timestamps.
func sameClient(got, want store.Client) bool {
	got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(got, want)
}

func changesSince(t *testing.T, s *store.Store, after int64) []store.Change {
	t.Helper()
	cs, err := s.Changes(testCtx(t), after, 100)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	return cs
}

func wantOneChange(t *testing.T, s *store.Store, after int64, kind, ref string) {
	t.Helper()
	cs := changesSince(t, s, after)
	if len(cs) != 1 || cs[0].Kind != kind || cs[0].Ref != ref {
		t.Errorf("changes = %+v, want one %q change for %q", cs, kind, ref)
	}
}

func testClientRoundTrip(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	cases := []struct {
		name string
		c    store.Client
	}{
		{"every field", fullClient("full")},
		{"minimal", store.Client{ID: "min", Name: "m"}},
		{"public", store.Client{ID: "pub", Name: "p", Public: true, GrantTypes: []string{"authorization_code"},
			RedirectURIs: []string{"http://127.0.0.1/cb"}, TokenEndpointAuthMethod: "none"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			last, _ := s.LastChange(ctx)
			before := time.Now().Truncate(time.Millisecond)
			created, err := s.CreateClient(ctx, tc.c)
			if err != nil {
				t.Fatalf("CreateClient: %v", err)
			}
			if !sameClient(created, tc.c) {
				t.Errorf("CreateClient returned\n%+v\nwant\n%+v", created, tc.c)
			}
			if created.CreatedAt.Before(before) || !created.UpdatedAt.Equal(created.CreatedAt) {
				t.Errorf("CreatedAt, UpdatedAt = %v, %v; want equal and not before %v", created.CreatedAt, created.UpdatedAt, before)
			}
			got, err := reopen(t, s).Client(ctx, tc.c.ID)
			if err != nil {
				t.Fatalf("Client: %v", err)
			}
			if !reflect.DeepEqual(got, created) {
				t.Errorf("Client() =\n%+v\nwant\n%+v", got, created)
			}
			wantOneChange(t, s, last, store.ChangeClient, tc.c.ID)
		})
	}
	if _, err := s.CreateClient(ctx, store.Client{ID: "full", Name: "again"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateClient(duplicate ID) error = %v, want ErrConflict", err)
	}
	if _, err := s.Client(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Client(missing) error = %v, want ErrNotFound", err)
	}
}

func testClientInvalid(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	cases := map[string]store.Client{
		"empty ID":          {Name: "x"},
		"long ID":           {ID: string(bytes.Repeat([]byte("a"), 256))},
		"negative TTL":      {ID: "neg", AccessTokenTTL: -time.Second},
		"public with hash":  {ID: "pub", Public: true, SecretHash: []byte{1}},
		"negative refresh":  {ID: "neg2", RefreshTokenTTL: -time.Second},
		"public prev hash.": {ID: "pub2", Public: true, PrevSecretHash: []byte{1}},
		"unknown format":    {ID: "fmt", AccessTokenFormat: "paseto"},
		"negative rate":     {ID: "rate", RateLimit: -1, RateWindow: time.Second},
		"rate no window":    {ID: "rate2", RateLimit: 10},
		"negative window":   {ID: "rate3", RateWindow: -time.Second},
	}
	for name, c := range cases {
		if _, err := s.CreateClient(ctx, c); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: CreateClient error = %v, want ErrInvalid", name, err)
		}
	}
	if n, _ := s.LastChange(ctx); n != 0 {
		t.Errorf("LastChange() after rejected writes = %d, want 0", n)
	}
}

func testClientsPaged(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	var ids []string
	for i := range 7 {
		id := fmt.Sprintf("c%02d", 6-i) // created out of order
		if _, err := s.CreateClient(ctx, store.Client{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		ids = append([]string{id}, ids...)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page, err := s.Clients(ctx, after, 3)
		if err != nil {
			t.Fatalf("Clients(%q, 3): %v", after, err)
		}
		if len(page) > 3 {
			t.Fatalf("Clients(%q, 3) returned %d clients", after, len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			got = append(got, c.ID)
		}
		after = page[len(page)-1].ID
	}
	if !reflect.DeepEqual(got, ids) {
		t.Errorf("paged IDs = %v, want %v", got, ids)
	}
	all, err := s.Clients(ctx, "", 0)
	if err != nil || len(all) != len(ids) {
		t.Errorf("Clients(\"\", 0) = %d clients, %v; want %d", len(all), err, len(ids))
	}
}

func testClientUpdateDelete(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	orig, err := s.CreateClient(ctx, fullClient("u"))
	if err != nil {
		t.Fatal(err)
	}
	upd := store.Client{
		ID: "u", Name: "renamed", GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"},
		Audiences: []string{"a", "b"}, AccessTokenTTL: time.Minute, AccessTokenAlg: "ES256",
		TokenEndpointAuthMethod: "client_secret_post",
		ExchangeAudiences:       []string{"https://d.example"}, MayImpersonate: false,
		AccessTokenFormat: store.AccessTokenJWT, Gateway: false, RateLimit: 5, RateWindow: 10 * time.Second,
		// Secret fields and CreatedAt are not changed by UpdateClient.
		SecretHash: []byte("ignored"), CreatedAt: tms,
	}
	last, _ := s.LastChange(ctx)
	got, err := s.UpdateClient(ctx, upd)
	if err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	want := upd
	want.SecretHash, want.PrevSecretHash, want.PrevSecretExpiresAt = orig.SecretHash, orig.PrevSecretHash, orig.PrevSecretExpiresAt
	if !sameClient(got, want) {
		t.Errorf("UpdateClient returned\n%+v\nwant\n%+v", got, want)
	}
	if !got.CreatedAt.Equal(orig.CreatedAt) || got.UpdatedAt.Before(orig.UpdatedAt) {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v; want %v and not before %v", got.CreatedAt, got.UpdatedAt, orig.CreatedAt, orig.UpdatedAt)
	}
	wantOneChange(t, s, last, store.ChangeClient, "u")

	pub := got
	pub.Public = true
	pub.SecretHash, pub.PrevSecretHash = nil, nil
	if _, err := s.UpdateClient(ctx, pub); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("UpdateClient(confidential to public) error = %v, want ErrInvalid", err)
	}
	if _, err := s.UpdateClient(ctx, store.Client{ID: "missing"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateClient(missing) error = %v, want ErrNotFound", err)
	}

	last, _ = s.LastChange(ctx)
	if err := s.DeleteClient(ctx, "u"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	wantOneChange(t, s, last, store.ChangeClient, "u")
	if _, err := s.Client(ctx, "u"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Client after delete error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteClient(ctx, "u"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteClient(again) error = %v, want ErrNotFound", err)
	}
}

func testRotateClientSecret(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	first, second, third := []byte("first-hash"), []byte("second-hash"), []byte("third-hash")
	if _, err := s.CreateClient(ctx, store.Client{ID: "r", Name: "r", SecretHash: first}); err != nil {
		t.Fatal(err)
	}
	grace := tms.Add(24 * time.Hour)
	last, _ := s.LastChange(ctx)
	c, err := s.RotateClientSecret(ctx, "r", second, grace)
	if err != nil {
		t.Fatalf("RotateClientSecret: %v", err)
	}
	if !bytes.Equal(c.SecretHash, second) || !bytes.Equal(c.PrevSecretHash, first) || !c.PrevSecretExpiresAt.Equal(grace) {
		t.Errorf("after rotation: secret %q, prev %q until %v; want %q, %q until %v",
			c.SecretHash, c.PrevSecretHash, c.PrevSecretExpiresAt, second, first, grace)
	}
	wantOneChange(t, s, last, store.ChangeClient, "r")
	c, err = s.RotateClientSecret(ctx, "r", third, time.Time{})
	if err != nil {
		t.Fatalf("second RotateClientSecret: %v", err)
	}
	if !bytes.Equal(c.SecretHash, third) || !bytes.Equal(c.PrevSecretHash, second) || !c.PrevSecretExpiresAt.IsZero() {
		t.Errorf("after second rotation: secret %q, prev %q until %v; want %q, %q until zero",
			c.SecretHash, c.PrevSecretHash, c.PrevSecretExpiresAt, third, second)
	}

	if _, err := s.CreateClient(ctx, store.Client{ID: "pub", Public: true}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		id   string
		hash []byte
		want error
	}{
		{"public client", "pub", first, store.ErrInvalid},
		{"empty hash", "r", nil, store.ErrInvalid},
		{"missing client", "missing", first, store.ErrNotFound},
	}
	for _, tc := range cases {
		if _, err := s.RotateClientSecret(ctx, tc.id, tc.hash, grace); !errors.Is(err, tc.want) {
			t.Errorf("%s: RotateClientSecret error = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A client created without a secret (private_key_jwt) gets one without
	// a grace period for the empty previous secret.
	if _, err := s.CreateClient(ctx, store.Client{ID: "jwt", TokenEndpointAuthMethod: "private_key_jwt"}); err != nil {
		t.Fatal(err)
	}
	c, err = s.RotateClientSecret(ctx, "jwt", first, grace)
	if err != nil || len(c.PrevSecretHash) != 0 || !c.PrevSecretExpiresAt.IsZero() {
		t.Errorf("rotate without a secret: prev %q until %v, %v; want none", c.PrevSecretHash, c.PrevSecretExpiresAt, err)
	}
}

func testRevokeToken(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	now := time.Now().Truncate(time.Millisecond)
	last, _ := s.LastChange(ctx)
	if err := s.RevokeToken(ctx, "jti-1", "client", now.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	wantOneChange(t, s, last, store.ChangeTokenRevoked, "jti-1")
	last, _ = s.LastChange(ctx)
	if err := s.RevokeToken(ctx, "jti-1", "client", now.Add(time.Hour)); err != nil {
		t.Errorf("RevokeToken(again) = %v, want nil", err)
	}
	if cs := changesSince(t, s, last); len(cs) != 0 {
		t.Errorf("revoking again recorded %+v, want no change", cs)
	}
	r, err := reopen(t, s).RevokedToken(ctx, "jti-1")
	if err != nil || r.ID != "jti-1" || r.ClientID != "client" || !r.ExpiresAt.Equal(now.Add(time.Hour)) || r.RevokedAt.IsZero() {
		t.Errorf("RevokedToken() = %+v, %v; want jti-1 of client until %v", r, err, now.Add(time.Hour))
	}
	if _, err := s.RevokedToken(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokedToken(unknown) error = %v, want ErrNotFound", err)
	}
	if err := s.RevokeToken(ctx, "jti-old", "client", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	list, err := s.RevokedTokens(ctx, now)
	if err != nil || len(list) != 1 || list[0].ID != "jti-1" {
		t.Errorf("RevokedTokens(now) = %+v, %v; want only jti-1 (jti-old has expired)", list, err)
	}
	for name, tc := range map[string]struct {
		jti string
		exp time.Time
	}{"empty jti": {"", now}, "zero expiry": {"x", time.Time{}}} {
		if err := s.RevokeToken(ctx, tc.jti, "c", tc.exp); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: RevokeToken error = %v, want ErrInvalid", name, err)
		}
	}
}

func testUseAssertion(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	exp := time.Now().Add(time.Minute)
	if err := s.UseAssertion(ctx, "c1", "a", exp); err != nil {
		t.Fatalf("UseAssertion: %v", err)
	}
	if err := s.UseAssertion(ctx, "c1", "a", exp); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UseAssertion(replay) error = %v, want ErrConflict", err)
	}
	if err := s.UseAssertion(ctx, "c2", "a", exp); err != nil {
		t.Errorf("UseAssertion(same jti, other client) = %v, want nil", err)
	}
	if err := s.UseAssertion(ctx, "c1", "", exp); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("UseAssertion(empty jti) error = %v, want ErrInvalid", err)
	}
	// Racing replicas: exactly one wins.
	stores := []*store.Store{s, reopen(t, s)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := range 8 {
		wg.Go(func() {
			err := stores[i%2].UseAssertion(ctx, "c1", "race", exp)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("UseAssertion(race): %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != 7 {
		t.Errorf("racing UseAssertion: %d wins, %d conflicts; want 1, 7", wins, conflicts)
	}
}

func testPruneRevocations(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	now := time.Now()
	for i, exp := range []time.Time{now.Add(-time.Hour), now.Add(time.Hour)} {
		if err := s.RevokeToken(ctx, fmt.Sprint("t", i), "c", exp); err != nil {
			t.Fatal(err)
		}
		if err := s.UseAssertion(ctx, "c", fmt.Sprint("a", i), exp); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PruneRevocations(ctx, now); err != nil || n != 2 {
		t.Errorf("PruneRevocations() = %d, %v; want 2, nil", n, err)
	}
	if _, err := s.RevokedToken(ctx, "t0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired entry after pruning: error = %v, want ErrNotFound", err)
	}
	if _, err := s.RevokedToken(ctx, "t1"); err != nil {
		t.Errorf("live entry after pruning: %v", err)
	}
	// A pruned assertion jti can be used again; the live one cannot.
	if err := s.UseAssertion(ctx, "c", "a0", now.Add(time.Minute)); err != nil {
		t.Errorf("UseAssertion(pruned jti) = %v, want nil", err)
	}
	if err := s.UseAssertion(ctx, "c", "a1", now.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UseAssertion(live jti) = %v, want ErrConflict", err)
	}
}
