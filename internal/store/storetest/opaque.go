package storetest

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// newOpaque returns an opaque token record expiring at exp.
func newOpaque(id, family string, exp time.Time) store.OpaqueToken {
	return store.OpaqueToken{
		Hash: bytes.Repeat([]byte(id[:1]), 32), ID: "jti-" + id, ClientID: "c", FamilyID: family,
		Claims:    []byte(`{"sub":"u1","client_id":"c","jti":"jti-` + id + `","scope":"read"}`),
		ExpiresAt: exp,
	}
}

func testOpaqueTokens(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond).UTC()
	want := newOpaque("a", "", exp)
	before := time.Now().Truncate(time.Millisecond)
	if err := s.CreateOpaqueToken(ctx, want); err != nil {
		t.Fatalf("CreateOpaqueToken: %v", err)
	}
	got, err := reopen(t, s).OpaqueToken(ctx, want.Hash)
	if err != nil {
		t.Fatalf("OpaqueToken: %v", err)
	}
	if got.CreatedAt.Before(before) || !got.RevokedAt.IsZero() {
		t.Errorf("CreatedAt, RevokedAt = %v, %v; want not before %v, zero", got.CreatedAt, got.RevokedAt, before)
	}
	got.CreatedAt = time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("OpaqueToken() =\n%+v\nwant\n%+v", got, want)
	}
	if _, err := s.OpaqueToken(ctx, []byte("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OpaqueToken(unknown) error = %v, want ErrNotFound", err)
	}
	dup := newOpaque("b", "", exp)
	dup.ID = want.ID
	if err := s.CreateOpaqueToken(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOpaqueToken(same jti) error = %v, want ErrConflict", err)
	}
	if err := s.CreateOpaqueToken(ctx, want); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOpaqueToken(same hash) error = %v, want ErrConflict", err)
	}
	for name, bad := range map[string]store.OpaqueToken{
		"no hash":   {ID: "x", ClientID: "c", Claims: []byte("{}"), ExpiresAt: exp},
		"no jti":    {Hash: []byte{9}, ClientID: "c", Claims: []byte("{}"), ExpiresAt: exp},
		"no client": {Hash: []byte{9}, ID: "x", Claims: []byte("{}"), ExpiresAt: exp},
		"no claims": {Hash: []byte{9}, ID: "x", ClientID: "c", ExpiresAt: exp},
		"no expiry": {Hash: []byte{9}, ID: "x", ClientID: "c", Claims: []byte("{}")},
	} {
		if err := s.CreateOpaqueToken(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: CreateOpaqueToken error = %v, want ErrInvalid", name, err)
		}
	}

	// Revocation: marked revoked, on the denylist, one token_revoked change
	// with the jti; a second revocation records nothing.
	last, _ := s.LastChange(ctx)
	r, err := s.RevokeOpaqueToken(ctx, want.Hash)
	if err != nil || r.ID != want.ID || r.RevokedAt.IsZero() {
		t.Fatalf("RevokeOpaqueToken = %+v, %v; want the token, revoked", r, err)
	}
	wantOneChange(t, s, last, store.ChangeTokenRevoked, want.ID)
	if got, _ := s.OpaqueToken(ctx, want.Hash); got.RevokedAt.IsZero() {
		t.Error("OpaqueToken after revocation: RevokedAt is zero")
	}
	if d, err := s.RevokedToken(ctx, want.ID); err != nil || !d.ExpiresAt.Equal(exp) || d.ClientID != "c" {
		t.Errorf("RevokedToken(jti) = %+v, %v; want a denylist entry until %v", d, err, exp)
	}
	last, _ = s.LastChange(ctx)
	if _, err := s.RevokeOpaqueToken(ctx, want.Hash); err != nil {
		t.Errorf("RevokeOpaqueToken(again) = %v", err)
	}
	if cs := changesSince(t, s, last); len(cs) != 0 {
		t.Errorf("second revocation recorded %+v", cs)
	}
	if _, err := s.RevokeOpaqueToken(ctx, []byte("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeOpaqueToken(unknown) error = %v, want ErrNotFound", err)
	}

	// Expired rows go with PruneRevocations.
	old := newOpaque("o", "", time.Now().Add(-time.Minute))
	if err := s.CreateOpaqueToken(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PruneRevocations(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpaqueToken(ctx, old.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired opaque token after pruning: error = %v, want ErrNotFound", err)
	}
	if _, err := s.OpaqueToken(ctx, want.Hash); err != nil {
		t.Errorf("live opaque token after pruning: %v", err)
	}
}

// testOpaqueFamily checks that revoking a refresh family revokes the
// opaque access tokens issued in it, with their jti on the denylist.
func testOpaqueFamily(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	now := time.Now()
	if _, err := s.CreateClient(ctx, store.Client{ID: "c", Name: "c"}); err != nil {
		t.Fatal(err)
	}
	mustCreateUser(t, s, newUser("u1", "ada"))
	code := store.AuthCode{Hash: []byte("code"), ClientID: "c", UserID: "u1", RedirectURI: "https://app/cb",
		CodeChallenge: "x", ExpiresAt: now.Add(time.Minute), AuthTime: now}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	tok := newOpaque("f", "fam1", now.Add(time.Hour))
	other := newOpaque("g", "", now.Add(time.Hour))
	for _, o := range []store.OpaqueToken{tok, other} {
		if err := s.CreateOpaqueToken(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RedeemAuthCode(ctx, code.Hash, "fam1", now, nil, store.IssuedToken{ID: tok.ID, ExpiresAt: tok.ExpiresAt}); err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	last, _ := s.LastChange(ctx)
	if err := s.RevokeFamily(ctx, "fam1"); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	wantOneChange(t, s, last, store.ChangeTokenRevoked, tok.ID)
	if got, err := s.OpaqueToken(ctx, tok.Hash); err != nil || got.RevokedAt.IsZero() {
		t.Errorf("family token after RevokeFamily = %+v, %v; want revoked", got, err)
	}
	if got, err := s.OpaqueToken(ctx, other.Hash); err != nil || !got.RevokedAt.IsZero() {
		t.Errorf("token of no family after RevokeFamily = %+v, %v; want live", got, err)
	}
	// Revoking it directly afterwards records nothing more.
	last, _ = s.LastChange(ctx)
	if _, err := s.RevokeOpaqueToken(ctx, tok.Hash); err != nil {
		t.Fatal(err)
	}
	if cs := changesSince(t, s, last); len(cs) != 0 {
		t.Errorf("revoking a family-revoked token recorded %+v", cs)
	}
}
