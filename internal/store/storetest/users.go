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

// userTests are the conformance subtests for users, sessions, consents,
// authorization codes and refresh-token families.
var userTests = []struct {
	name string
	fn   func(t *testing.T, open func(t *testing.T) *store.Store)
}{
	{"UserRoundTrip", testUserRoundTrip},
	{"UserInvalid", testUserInvalid},
	{"UsersPaged", testUsersPaged},
	{"UserPasswordChangeSignsOut", testUserPasswordChangeSignsOut},
	{"DeleteUser", testDeleteUser},
	{"Sessions", testSessions},
	{"Consents", testConsents},
	{"AuthCodeRedeem", testAuthCodeRedeem},
	{"AuthCodeReplayRevokes", testAuthCodeReplayRevokes},
	{"AuthCodeRace", testAuthCodeRace},
	{"RefreshRotation", testRefreshRotation},
	{"RefreshReuseRevokes", testRefreshReuseRevokes},
	{"RefreshGraceRetry", testRefreshGraceRetry},
	{"RefreshRace", testRefreshRace},
	{"RevokeFamily", testRevokeFamily},
}

func runUserTests(t *testing.T, open func(t *testing.T) *store.Store) {
	for _, tc := range userTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func newUser(id, username string) store.User {
	return store.User{ID: id, Username: username, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"}
}

func mustCreateUser(t *testing.T, s *store.Store, u store.User) store.User {
	t.Helper()
	if err := s.CreateUser(testCtx(t), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", u.Username, err)
	}
	return u
}

func testUserRoundTrip(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	before, _ := s.LastChange(ctx)
	want := store.User{
		ID: "u1", Username: "ada", Email: "ada@example.com", EmailVerified: true, Name: "Ada Lovelace",
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$x$y", Admin: true, Disabled: false,
		CreatedAt: t0, UpdatedAt: t0,
	}
	mustCreateUser(t, s, want)
	want.CreatedAt, want.UpdatedAt = ms(t0), ms(t0)
	for name, get := range map[string]func() (store.User, error){
		"User":           func() (store.User, error) { return s.User(ctx, "u1") },
		"UserByUsername": func() (store.User, error) { return s.UserByUsername(ctx, "ada") },
	} {
		got, err := get()
		if err != nil || got != want {
			t.Errorf("%s = %+v, %v; want %+v", name, got, err, want)
		}
	}
	if _, err := s.UserByUsername(ctx, "ADA"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByUsername(ADA) error = %v, want ErrNotFound (usernames are exact)", err)
	}
	if err := s.CreateUser(ctx, newUser("u2", "ada")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser(duplicate username) error = %v, want ErrConflict", err)
	}
	if err := s.CreateUser(ctx, newUser("u1", "other")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser(duplicate ID) error = %v, want ErrConflict", err)
	}
	cs, err := s.Changes(ctx, before, 0)
	if err != nil || len(cs) != 1 || cs[0].Kind != store.ChangeUser || cs[0].Ref != "u1" {
		t.Errorf("changes after CreateUser = %+v, %v; want one %q change for u1", cs, err, store.ChangeUser)
	}

	upd := want
	upd.Email, upd.Admin, upd.Disabled, upd.Name = "", false, true, "Ada"
	if err := s.UpdateUser(ctx, upd); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	got, err := s.User(ctx, "u1")
	if err != nil || got.Email != "" || got.Admin || !got.Disabled || got.Name != "Ada" || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("User after update = %+v, %v; want email empty, not admin, disabled, created unchanged", got, err)
	}
	if d := time.Since(got.UpdatedAt); d < 0 || d > time.Minute {
		t.Errorf("UpdatedAt after update = %v, want about now", got.UpdatedAt)
	}
	if err := s.UpdateUser(ctx, newUser("missing", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateUser(missing) error = %v, want ErrNotFound", err)
	}
}

func testUserInvalid(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	for name, u := range map[string]store.User{
		"empty ID":       newUser("", "x"),
		"empty username": newUser("u", ""),
		"spaces":         newUser("u", " x"),
		"no password":    {ID: "u", Username: "x"},
	} {
		if err := s.CreateUser(ctx, u); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateUser(%s) error = %v, want ErrInvalid", name, err)
		}
	}
	if us, err := s.Users(ctx, "", 0); err != nil || len(us) != 0 {
		t.Errorf("Users after invalid creates = %v, %v; want none", us, err)
	}
}

func testUsersPaged(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	names := []string{"carol", "alice", "dave", "bob", "eve"}
	for i, n := range names {
		mustCreateUser(t, s, newUser(fmt.Sprint("id", i), n))
	}
	var got []string
	after := ""
	for range 10 {
		page, err := s.Users(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("Users(limit 2) returned %d users", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, u := range page {
			got = append(got, u.Username)
		}
		after = page[len(page)-1].Username
	}
	want := []string{"alice", "bob", "carol", "dave", "eve"}
	if !slices.Equal(got, want) {
		t.Errorf("paged usernames = %v, want %v", got, want)
	}
}

// family is a redeemed code's family with one refresh token and one access
// token, for the tests below.
type family struct {
	id      string
	refresh []byte
	jti     string
}

// anAccessToken is an access token record with a fresh ID.
func anAccessToken() store.IssuedToken {
	return store.IssuedToken{ID: "at-" + randomHex(8), ExpiresAt: time.Now().Add(time.Hour)}
}

// newFamily creates a code for user u and client c, redeems it and adds a
// refresh token and an access token to its family.
func newFamily(t *testing.T, s *store.Store, u, c, tag string) family {
	t.Helper()
	ctx := testCtx(t)
	code := store.AuthCode{
		Hash: []byte("code-" + tag), ClientID: c, UserID: u, RedirectURI: "https://app/cb",
		Scopes: []string{"openid", "read"}, CodeChallenge: "ch", ExpiresAt: time.Now().Add(time.Minute),
	}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	f := family{id: "fam-" + tag, refresh: []byte("rt-" + tag), jti: "at-" + tag}
	rt := &store.RefreshToken{Hash: f.refresh, Scopes: code.Scopes, ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := s.RedeemAuthCode(ctx, code.Hash, f.id, time.Now(), rt, store.IssuedToken{ID: f.jti, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	return f
}

// checkRevoked checks that family f is revoked and its access token is on
// the denylist with a token_revoked change.
func checkRevoked(t *testing.T, s *store.Store, f family, want bool) {
	t.Helper()
	ctx := testCtx(t)
	fam, err := s.RefreshFamily(ctx, f.id)
	if err != nil {
		t.Fatalf("RefreshFamily(%s): %v", f.id, err)
	}
	if got := !fam.RevokedAt.IsZero(); got != want {
		t.Errorf("family %s revoked = %v, want %v", f.id, got, want)
	}
	_, err = s.RevokedToken(ctx, f.jti)
	if got := err == nil; got != want {
		t.Errorf("access token %s on denylist = %v (err %v), want %v", f.jti, got, err, want)
	}
	if want {
		cs, err := s.Changes(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(cs, func(c store.Change) bool { return c.Kind == store.ChangeTokenRevoked && c.Ref == f.jti }) {
			t.Errorf("no %q change for %s", store.ChangeTokenRevoked, f.jti)
		}
	}
}

func testUserPasswordChangeSignsOut(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	other := mustCreateUser(t, s, newUser("u2", "bob"))
	for _, id := range []string{"s1", "s2"} {
		if err := s.CreateSession(ctx, store.Session{IDHash: []byte(id), UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, store.Session{IDHash: []byte("s3"), UserID: other.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f := newFamily(t, s, u.ID, "c1", "a")
	fOther := newFamily(t, s, other.ID, "c1", "b")

	u.Email = "new@example.com" // not a security change: sessions stay
	if err := s.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, []byte("s1"), time.Now()); err != nil {
		t.Errorf("Session after an email change: %v, want it kept", err)
	}
	checkRevoked(t, s, f, false)

	u.PasswordHash = "$argon2id$new"
	if err := s.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2"} {
		if _, err := s.Session(ctx, []byte(id), time.Now()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Session(%s) after password change error = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Session(ctx, []byte("s3"), time.Now()); err != nil {
		t.Errorf("another user's session after password change: %v, want it kept", err)
	}
	checkRevoked(t, s, f, true)
	checkRevoked(t, s, fOther, false)
}

func testDeleteUser(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	if err := s.CreateSession(ctx, store.Session{IDHash: []byte("s1"), UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutConsent(ctx, store.Consent{UserID: u.ID, ClientID: "c1", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	f := newFamily(t, s, u.ID, "c1", "a")
	if err := s.DeleteUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, err := s.User(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User after delete error = %v, want ErrNotFound", err)
	}
	if _, err := s.Session(ctx, []byte("s1"), time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session after delete error = %v, want ErrNotFound", err)
	}
	if cs, err := s.Consents(ctx, u.ID); err != nil || len(cs) != 0 {
		t.Errorf("Consents after delete = %v, %v; want none", cs, err)
	}
	if _, _, err := s.RefreshToken(ctx, f.refresh); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RefreshToken after delete error = %v, want ErrNotFound", err)
	}
	if _, err := s.RevokedToken(ctx, f.jti); err != nil {
		t.Errorf("access token of a deleted user not on the denylist: %v", err)
	}
	if err := s.DeleteUser(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUser twice error = %v, want ErrNotFound", err)
	}
	// The username is free again.
	mustCreateUser(t, s, newUser("u2", "ada"))
}

func testSessions(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	now := time.Now()
	want := store.Session{IDHash: []byte{0, 1, 2, 255}, UserID: u.ID, AuthTime: t0, CreatedAt: t0, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, want); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	got, err := s.Session(ctx, want.IDHash, now)
	if err != nil || !bytes.Equal(got.IDHash, want.IDHash) || got.UserID != u.ID ||
		!got.AuthTime.Equal(ms(t0)) || !got.ExpiresAt.Equal(ms(want.ExpiresAt)) {
		t.Errorf("Session = %+v, %v; want %+v", got, err, want)
	}
	if _, err := s.Session(ctx, want.IDHash, now.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session after expiry error = %v, want ErrNotFound", err)
	}
	sess, su, err := s.SessionUser(ctx, want.IDHash, now)
	if err != nil || sess.UserID != u.ID || !sess.AuthTime.Equal(ms(t0)) || !sess.ExpiresAt.Equal(ms(want.ExpiresAt)) ||
		su.ID != u.ID || su.Username != "ada" || su.PasswordHash != u.PasswordHash {
		t.Errorf("SessionUser = %+v, %+v, %v; want the session and user %q", sess, su, err, u.ID)
	}
	if _, _, err := s.SessionUser(ctx, want.IDHash, now.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUser after expiry error = %v, want ErrNotFound", err)
	}
	if _, _, err := s.SessionUser(ctx, []byte("unknown"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUser(unknown) error = %v, want ErrNotFound", err)
	}
	if err := s.CreateSession(ctx, want); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSession(duplicate) error = %v, want ErrConflict", err)
	}
	if err := s.CreateSession(ctx, store.Session{IDHash: []byte("x"), UserID: "nobody", ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateSession(unknown user) error = %v, want ErrNotFound", err)
	}
	if err := s.CreateSession(ctx, store.Session{UserID: u.ID, ExpiresAt: now}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateSession(no ID) error = %v, want ErrInvalid", err)
	}
	expired := store.Session{IDHash: []byte("old"), UserID: u.ID, ExpiresAt: now.Add(-time.Minute)}
	if err := s.CreateSession(ctx, expired); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpired(ctx, now); err != nil || n != 1 {
		t.Errorf("DeleteExpired = %d, %v; want 1 (the expired session)", n, err)
	}
	if err := s.DeleteSession(ctx, want.IDHash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, want.IDHash, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session after DeleteSession error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, want.IDHash); err != nil {
		t.Errorf("DeleteSession twice = %v, want nil", err)
	}
}

func testConsents(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	if _, err := s.Consent(ctx, u.ID, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Consent(none) error = %v, want ErrNotFound", err)
	}
	for _, c := range []store.Consent{
		{UserID: u.ID, ClientID: "c2", Scopes: []string{"openid"}},
		{UserID: u.ID, ClientID: "c1", Scopes: []string{"read"}},
		{UserID: u.ID, ClientID: "c1", Scopes: []string{"read", "write"}}, // replaces
	} {
		if err := s.PutConsent(ctx, c); err != nil {
			t.Fatalf("PutConsent(%+v): %v", c, err)
		}
	}
	got, err := s.Consent(ctx, u.ID, "c1")
	if err != nil || !slices.Equal(got.Scopes, []string{"read", "write"}) {
		t.Errorf("Consent(c1) = %+v, %v; want scopes [read write]", got, err)
	}
	all, err := s.Consents(ctx, u.ID)
	if err != nil || len(all) != 2 || all[0].ClientID != "c1" || all[1].ClientID != "c2" {
		t.Errorf("Consents = %+v, %v; want c1, c2", all, err)
	}
	if err := s.PutConsent(ctx, store.Consent{UserID: "nobody", ClientID: "c1"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutConsent(unknown user) error = %v, want ErrNotFound", err)
	}

	// The session, its user and the consent for one client in one query.
	now := time.Now()
	sid := []byte("session-1")
	if err := s.CreateSession(ctx, store.Session{IDHash: sid, UserID: u.ID, AuthTime: t0, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sess, su, con, err := s.SessionUserConsent(ctx, sid, now, "c1")
	if err != nil || sess.UserID != u.ID || !sess.AuthTime.Equal(ms(t0)) || su.ID != u.ID || su.Username != "ada" ||
		con.UserID != u.ID || con.ClientID != "c1" || !slices.Equal(con.Scopes, []string{"read", "write"}) || con.CreatedAt.IsZero() {
		t.Errorf("SessionUserConsent(c1) = %+v, %+v, %+v, %v; want the session, ada and scopes [read write]", sess, su, con, err)
	}
	if _, su, con, err := s.SessionUserConsent(ctx, sid, now, "c9"); err != nil || su.ID != u.ID || con.Scopes != nil || con.ClientID != "" {
		t.Errorf("SessionUserConsent(no consent) = %+v, %+v, %v; want the user and a zero consent", su, con, err)
	}
	if _, _, _, err := s.SessionUserConsent(ctx, sid, now.Add(2*time.Hour), "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUserConsent after expiry error = %v, want ErrNotFound", err)
	}
	if _, _, _, err := s.SessionUserConsent(ctx, []byte("unknown"), now, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUserConsent(unknown) error = %v, want ErrNotFound", err)
	}

	// A consent and the code it allows, in one transaction.
	code := store.AuthCode{Hash: []byte("consented"), ClientID: "c3", UserID: u.ID, RedirectURI: "https://app/cb",
		Scopes: []string{"openid"}, CodeChallenge: "challenge", ExpiresAt: time.Now().Add(time.Minute)}
	if err := s.CreateAuthCodeWithConsent(ctx, code, store.Consent{UserID: u.ID, ClientID: "c3", Scopes: []string{"openid", "email"}}); err != nil {
		t.Fatalf("CreateAuthCodeWithConsent: %v", err)
	}
	if got, err := s.Consent(ctx, u.ID, "c3"); err != nil || !slices.Equal(got.Scopes, []string{"openid", "email"}) {
		t.Errorf("Consent(c3) = %+v, %v; want scopes [openid email]", got, err)
	}
	if got, err := s.AuthCode(ctx, code.Hash); err != nil || got.ClientID != "c3" || got.UserID != u.ID {
		t.Errorf("AuthCode after CreateAuthCodeWithConsent = %+v, %v", got, err)
	}
	// A failing code insert (a duplicate) leaves the consent as it was.
	if err := s.CreateAuthCodeWithConsent(ctx, code, store.Consent{UserID: u.ID, ClientID: "c3", Scopes: []string{"admin"}}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateAuthCodeWithConsent(duplicate code) error = %v, want ErrConflict", err)
	}
	if got, err := s.Consent(ctx, u.ID, "c3"); err != nil || !slices.Equal(got.Scopes, []string{"openid", "email"}) {
		t.Errorf("Consent(c3) after a failed write = %+v, %v; want scopes [openid email]", got, err)
	}
	other := code
	other.Hash = []byte("other")
	if err := s.CreateAuthCodeWithConsent(ctx, other, store.Consent{UserID: u.ID, ClientID: "c4"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateAuthCodeWithConsent(consent for another client) error = %v, want ErrInvalid", err)
	}
	other.UserID = "nobody"
	if err := s.CreateAuthCodeWithConsent(ctx, other, store.Consent{UserID: "nobody", ClientID: "c3"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateAuthCodeWithConsent(unknown user) error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteConsent(ctx, u.ID, "c3"); err != nil {
		t.Fatal(err)
	}
	f := newFamily(t, s, u.ID, "c1", "a")
	f2 := newFamily(t, s, u.ID, "c2", "b")
	if err := s.DeleteConsent(ctx, u.ID, "c1"); err != nil {
		t.Fatalf("DeleteConsent: %v", err)
	}
	if _, err := s.Consent(ctx, u.ID, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Consent after delete error = %v, want ErrNotFound", err)
	}
	checkRevoked(t, s, f, true)   // withdrawing consent revokes the client's tokens
	checkRevoked(t, s, f2, false) // but not another client's
	if err := s.DeleteConsent(ctx, u.ID, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteConsent twice error = %v, want ErrNotFound", err)
	}
}

func testAuthCodeRedeem(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	want := store.AuthCode{
		Hash: []byte("h1"), ClientID: "c1", UserID: u.ID, RedirectURI: "http://127.0.0.1:5000/cb",
		Scopes: []string{"openid", "profile"}, Nonce: "n-0", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		AuthTime: t0, CreatedAt: t0, ExpiresAt: time.Now().Add(time.Minute),
	}
	if err := s.CreateAuthCode(ctx, want); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	if err := s.CreateAuthCode(ctx, store.AuthCode{Hash: []byte("h2"), ClientID: "c1"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateAuthCode(incomplete) error = %v, want ErrInvalid", err)
	}
	got, err := s.AuthCode(ctx, want.Hash)
	if err != nil || got.ClientID != "c1" || got.UserID != u.ID || got.RedirectURI != want.RedirectURI ||
		!slices.Equal(got.Scopes, want.Scopes) || got.Nonce != "n-0" || got.CodeChallenge != want.CodeChallenge ||
		!got.AuthTime.Equal(ms(t0)) || !got.UsedAt.IsZero() || got.FamilyID != "" {
		t.Errorf("AuthCode = %+v, %v; want %+v unused", got, err, want)
	}
	gc, gu, err := s.AuthCodeUser(ctx, want.Hash)
	if err != nil || gc.ClientID != "c1" || gc.UserID != u.ID || gc.RedirectURI != want.RedirectURI ||
		!slices.Equal(gc.Scopes, want.Scopes) || gc.Nonce != "n-0" || gc.CodeChallenge != want.CodeChallenge ||
		!gc.AuthTime.Equal(ms(t0)) || !gc.ExpiresAt.Equal(ms(want.ExpiresAt)) || !gc.UsedAt.IsZero() ||
		gu.ID != u.ID || gu.Username != "ada" || gu.PasswordHash != u.PasswordHash || gu.Disabled {
		t.Errorf("AuthCodeUser = %+v, %+v, %v; want the code and user %q", gc, gu, err, u.ID)
	}
	if _, _, err := s.AuthCodeUser(ctx, []byte("unknown")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuthCodeUser(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.RedeemAuthCode(ctx, want.Hash, "fam1", time.Now(), nil, store.IssuedToken{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RedeemAuthCode(no access token) error = %v, want ErrInvalid", err)
	}
	at := anAccessToken()
	red, err := s.RedeemAuthCode(ctx, want.Hash, "fam1", time.Now(), nil, at)
	if err != nil || red.FamilyID != "fam1" || red.UsedAt.IsZero() || red.Nonce != "n-0" {
		t.Fatalf("RedeemAuthCode = %+v, %v; want used, family fam1", red, err)
	}
	if gc, _, err := s.AuthCodeUser(ctx, want.Hash); err != nil || gc.UsedAt.IsZero() || gc.FamilyID != "fam1" {
		t.Errorf("AuthCodeUser after redemption = %+v, %v; want used, family fam1", gc, err)
	}
	fam, err := s.RefreshFamily(ctx, "fam1")
	if err != nil || fam.ClientID != "c1" || fam.UserID != u.ID || !slices.Equal(fam.Scopes, want.Scopes) ||
		!fam.AuthTime.Equal(ms(t0)) || !fam.RevokedAt.IsZero() {
		t.Errorf("RefreshFamily(fam1) = %+v, %v; want the code's client, user, scopes, auth time", fam, err)
	}
	checkRevoked(t, s, family{id: "fam1", jti: at.ID}, false)
	if err := s.RevokeFamily(ctx, "fam1"); err != nil {
		t.Fatal(err)
	}
	checkRevoked(t, s, family{id: "fam1", jti: at.ID}, true) // the redemption recorded the access token
	if _, err := s.RedeemAuthCode(ctx, []byte("unknown"), "fam2", time.Now(), nil, anAccessToken()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemAuthCode(unknown) error = %v, want ErrNotFound", err)
	}
	expired := want
	expired.Hash, expired.ExpiresAt = []byte("h-expired"), time.Now().Add(-time.Second)
	if err := s.CreateAuthCode(ctx, expired); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemAuthCode(ctx, expired.Hash, "fam3", time.Now(), nil, anAccessToken()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemAuthCode(expired) error = %v, want ErrNotFound", err)
	}
	if _, err := s.RefreshFamily(ctx, "fam3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired code started family fam3: %v", err)
	}
}

func testAuthCodeReplayRevokes(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	f := newFamily(t, s, u.ID, "c1", "a")
	_, err := s.RedeemAuthCode(ctx, []byte("code-a"), "fam-other", time.Now(), nil, anAccessToken())
	if !errors.Is(err, store.ErrReplay) {
		t.Fatalf("second RedeemAuthCode error = %v, want ErrReplay", err)
	}
	checkRevoked(t, s, f, true)
	if _, err := s.RefreshFamily(ctx, "fam-other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a replayed code started a family: %v", err)
	}
	rt := &store.RefreshToken{Hash: []byte("late"), ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.AddToFamily(ctx, f.id, rt, store.IssuedToken{ID: "late-at", ExpiresAt: time.Now().Add(time.Hour)}); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("AddToFamily(revoked family) error = %v, want ErrRevoked", err)
	}
	next := store.RefreshToken{Hash: []byte("next"), ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := s.RotateRefreshToken(ctx, f.refresh, next, store.IssuedToken{ID: "x", ExpiresAt: time.Now().Add(time.Hour)}, time.Now(), time.Minute); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("RotateRefreshToken(revoked family) error = %v, want ErrRevoked", err)
	}
}

func testAuthCodeRace(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s1 := fresh(t, open)
	stores := []*store.Store{s1, reopen(t, s1)}
	u := mustCreateUser(t, s1, newUser("u1", "ada"))
	code := store.AuthCode{Hash: []byte("race"), ClientID: "c", UserID: u.ID, RedirectURI: "https://a/cb",
		CodeChallenge: "x", ExpiresAt: time.Now().Add(time.Minute)}
	if err := s1.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 6)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			_, errs[i] = stores[i%2].RedeemAuthCode(ctx, code.Hash, fmt.Sprint("fam", i), time.Now(), nil, anAccessToken())
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrReplay):
			t.Errorf("RedeemAuthCode #%d error = %v, want nil or ErrReplay", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d racing redemptions succeeded, want exactly 1", ok)
	}
}

// rotate rotates old into a new token named next with access token jti.
func rotate(s *store.Store, old, next string, grace time.Duration) (store.RefreshFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt := store.RefreshToken{Hash: []byte(next), Scopes: []string{"read"}, ExpiresAt: time.Now().Add(time.Hour)}
	return s.RotateRefreshToken(ctx, []byte(old), rt, store.IssuedToken{ID: "at-" + next, ExpiresAt: time.Now().Add(time.Hour)}, time.Now(), grace)
}

func testRefreshRotation(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	f := newFamily(t, s, u.ID, "c1", "a")
	tok, fam, err := s.RefreshToken(ctx, f.refresh)
	if err != nil || tok.FamilyID != f.id || fam.ID != f.id || fam.ClientID != "c1" || !tok.RotatedAt.IsZero() ||
		!slices.Equal(tok.Scopes, []string{"openid", "read"}) {
		t.Fatalf("RefreshToken = %+v, %+v, %v; want current token of %s", tok, fam, err, f.id)
	}
	got, err := rotate(s, "rt-a", "rt-a2", 0)
	if err != nil || got.ID != f.id || got.UserID != u.ID {
		t.Fatalf("RotateRefreshToken = %+v, %v; want family %s", got, err, f.id)
	}
	old, _, err := s.RefreshToken(ctx, f.refresh)
	if err != nil || old.RotatedAt.IsZero() || !bytes.Equal(old.ReplacedBy, []byte("rt-a2")) {
		t.Errorf("old token after rotation = %+v, %v; want rotated, replaced by rt-a2", old, err)
	}
	next, _, err := s.RefreshToken(ctx, []byte("rt-a2"))
	if err != nil || next.FamilyID != f.id || !next.RotatedAt.IsZero() || !slices.Equal(next.Scopes, []string{"read"}) {
		t.Errorf("new token = %+v, %v; want current, in %s, scopes [read]", next, err, f.id)
	}
	if _, err := rotate(s, "rt-a2", "rt-a3", 0); err != nil {
		t.Errorf("rotating the new token: %v", err)
	}
	if _, err := rotate(s, "nope", "rt-x", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotating an unknown token error = %v, want ErrNotFound", err)
	}
	// An expired token cannot be rotated.
	expired := &store.RefreshToken{Hash: []byte("rt-exp"), ExpiresAt: time.Now().Add(-time.Second)}
	g := newFamily(t, s, u.ID, "c1", "b")
	if err := s.AddToFamily(ctx, g.id, expired, store.IssuedToken{ID: "at-exp", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := rotate(s, "rt-exp", "rt-y", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotating an expired token error = %v, want ErrNotFound", err)
	}
}

func testRefreshReuseRevokes(t *testing.T, open func(t *testing.T) *store.Store) {
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	f := newFamily(t, s, u.ID, "c1", "a")
	other := newFamily(t, s, u.ID, "c1", "b")
	if _, err := rotate(s, "rt-a", "rt-a2", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rotate(s, "rt-a", "rt-a3", 0); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("reusing a rotated token error = %v, want ErrReplay", err)
	}
	checkRevoked(t, s, f, true)
	checkRevoked(t, s, family{id: f.id, jti: "at-rt-a2"}, true) // the access token of the rotation too
	checkRevoked(t, s, other, false)
	if _, err := rotate(s, "rt-a2", "rt-a4", 0); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("rotating the successor after reuse error = %v, want ErrRevoked", err)
	}
	if _, _, err := s.RefreshToken(testCtx(t), []byte("rt-a3")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the replay left a token behind: %v", err)
	}
}

func testRefreshGraceRetry(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	f := newFamily(t, s, u.ID, "c1", "a")
	if _, err := rotate(s, "rt-a", "rt-a2", time.Minute); err != nil {
		t.Fatal(err)
	}
	// The client lost the response and retries with the same token.
	if _, err := rotate(s, "rt-a", "rt-a3", time.Minute); err != nil {
		t.Fatalf("retry within the grace window: %v, want success", err)
	}
	checkRevoked(t, s, f, false)
	lost, _, err := s.RefreshToken(ctx, []byte("rt-a2"))
	if err != nil || lost.RotatedAt.IsZero() {
		t.Errorf("the lost successor = %+v, %v; want retired", lost, err)
	}
	// The client uses the retry's token: from then on a retry of rt-a is
	// reuse, since its successor has been used.
	if _, err := rotate(s, "rt-a3", "rt-a4", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := rotate(s, "rt-a", "rt-a5", time.Minute); !errors.Is(err, store.ErrReplay) {
		t.Errorf("retry after the successor was used error = %v, want ErrReplay", err)
	}
	checkRevoked(t, s, f, true)
}

func testRefreshRace(t *testing.T, open func(t *testing.T) *store.Store) {
	s1 := fresh(t, open)
	stores := []*store.Store{s1, reopen(t, s1)}
	u := mustCreateUser(t, s1, newUser("u1", "ada"))
	newFamily(t, s1, u.ID, "c1", "a")
	errs := make([]error, 6)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			_, errs[i] = rotate(stores[i%2], "rt-a", fmt.Sprint("rt-race-", i), 0)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrReplay) && !errors.Is(err, store.ErrRevoked):
			t.Errorf("rotation #%d error = %v, want nil, ErrReplay or ErrRevoked", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d racing rotations succeeded, want exactly 1", ok)
	}
}

func testRevokeFamily(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	u := mustCreateUser(t, s, newUser("u1", "ada"))
	f := newFamily(t, s, u.ID, "c1", "a")
	expiredAT := store.IssuedToken{ID: "at-old", ExpiresAt: time.Now().Add(-time.Minute)}
	if err := s.AddToFamily(ctx, f.id, nil, expiredAT); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // idempotent
		if err := s.RevokeFamily(ctx, f.id); err != nil {
			t.Fatalf("RevokeFamily #%d: %v", i+1, err)
		}
	}
	checkRevoked(t, s, f, true)
	if _, err := s.RevokedToken(ctx, "at-old"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired access token went on the denylist: %v", err)
	}
	if err := s.RevokeFamily(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeFamily(missing) error = %v, want ErrNotFound", err)
	}
	if _, err := rotate(s, "rt-a", "rt-b", time.Hour); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("rotating in a revoked family error = %v, want ErrRevoked", err)
	}
}
