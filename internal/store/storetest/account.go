package storetest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// testAccountSessions covers what the account pages need: a user's
// sessions with their browser details, ending one or all but one, never
// touching another user's sessions, and the coarse last-seen time.
func testAccountSessions(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	ada := mustCreateUser(t, s, newUser("u1", "ada"))
	bob := mustCreateUser(t, s, newUser("u2", "bob"))
	now := time.Now()
	longUA := strings.Repeat("é", 400) // 800 bytes: cut at a character boundary
	mk := func(id string, u store.User, created time.Time, ua, ip string, ttl time.Duration) store.Session {
		t.Helper()
		sess := store.Session{IDHash: []byte(id), UserID: u.ID, AuthTime: created, CreatedAt: created,
			ExpiresAt: now.Add(ttl), UserAgent: ua, IP: ip}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatalf("CreateSession(%s): %v", id, err)
		}
		return sess
	}
	a1 := mk("a1", ada, now.Add(-3*time.Hour), "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "192.0.2.1", time.Hour)
	a2 := mk("a2", ada, now.Add(-2*time.Hour), longUA, "2001:db8::1", time.Hour)
	a3 := mk("a3", ada, now.Add(-1*time.Hour), "", "", time.Hour)
	mk("a-expired", ada, now.Add(-4*time.Hour), "old", "", -time.Minute)
	b1 := mk("b1", bob, now.Add(-time.Hour), "bob's browser", "198.51.100.7", time.Hour)

	got, err := s.SessionsByUser(ctx, ada.ID, now)
	if err != nil {
		t.Fatalf("SessionsByUser: %v", err)
	}
	if ids := sessionIDs(got); ids != "a3 a2 a1" {
		t.Fatalf("SessionsByUser = %s, want a3 a2 a1 (live ones, newest first)", ids)
	}
	if g := got[2]; g.UserAgent != a1.UserAgent || g.IP != "192.0.2.1" || g.UserID != ada.ID ||
		!g.CreatedAt.Equal(ms(a1.CreatedAt)) || !g.ExpiresAt.Equal(ms(a1.ExpiresAt)) || !g.LastSeenAt.IsZero() {
		t.Errorf("SessionsByUser[a1] = %+v, want %+v with no last-seen time", g, a1)
	}
	if ua := got[1].UserAgent; len(ua) != 512 || !strings.HasPrefix(longUA, ua) {
		t.Errorf("long user agent stored as %d bytes (%q...), want the first 512 bytes", len(ua), ua[:min(len(ua), 10)])
	}
	if h := got[0].Handle(); h != a3.Handle() || h == got[1].Handle() || len(h) != 22 {
		t.Errorf("Handle = %q, want a stable 22-character name distinct per session", h)
	}

	// Last seen.
	seen := now.Add(-time.Minute)
	if err := s.TouchSession(ctx, a2.IDHash, seen); err != nil {
		t.Fatalf("TouchSession: %v", err)
	}
	if err := s.TouchSession(ctx, []byte("nobody"), seen); err != nil {
		t.Errorf("TouchSession(unknown) = %v, want nil", err)
	}
	sess, _, err := s.SessionUser(ctx, a2.IDHash, now)
	if err != nil || !sess.LastSeenAt.Equal(ms(seen)) {
		t.Errorf("SessionUser after touch: LastSeenAt = %v, %v; want %v", sess.LastSeenAt, err, ms(seen))
	}
	if one, err := s.Session(ctx, a2.IDHash, now); err != nil || !one.LastSeenAt.Equal(ms(seen)) || one.IP != "2001:db8::1" {
		t.Errorf("Session after touch = %+v, %v; want last seen %v and the IP", one, err, ms(seen))
	}

	// Another user's session cannot be ended by naming it.
	if err := s.DeleteUserSession(ctx, ada.ID, b1.IDHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUserSession(ada, bob's session) = %v, want ErrNotFound", err)
	}
	if _, err := s.Session(ctx, b1.IDHash, now); err != nil {
		t.Errorf("bob's session after ada tried to end it: %v", err)
	}
	if err := s.DeleteUserSession(ctx, ada.ID, a1.IDHash); err != nil {
		t.Fatalf("DeleteUserSession(a1): %v", err)
	}
	if _, err := s.Session(ctx, a1.IDHash, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a1 after DeleteUserSession: %v, want ErrNotFound", err)
	}
	if err := s.DeleteUserSession(ctx, ada.ID, a1.IDHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUserSession twice = %v, want ErrNotFound", err)
	}

	// All but one; bob keeps his.
	n, err := s.DeleteUserSessionsExcept(ctx, ada.ID, a3.IDHash)
	if err != nil || n != 2 { // a2 and the expired one
		t.Errorf("DeleteUserSessionsExcept = %d, %v; want 2", n, err)
	}
	if got, err := s.SessionsByUser(ctx, ada.ID, now); err != nil || sessionIDs(got) != "a3" {
		t.Errorf("ada's sessions after ending the others = %s, %v; want a3", sessionIDs(got), err)
	}
	if got, err := s.SessionsByUser(ctx, bob.ID, now); err != nil || sessionIDs(got) != "b1" {
		t.Errorf("bob's sessions = %s, %v; want b1 untouched", sessionIDs(got), err)
	}
	if n, err := s.DeleteUserSessionsExcept(ctx, ada.ID, nil); err != nil || n != 1 {
		t.Errorf("DeleteUserSessionsExcept(nil) = %d, %v; want 1", n, err)
	}
	if got, err := s.SessionsByUser(ctx, ada.ID, now); err != nil || len(got) != 0 {
		t.Errorf("ada's sessions after ending all = %s, %v; want none", sessionIDs(got), err)
	}
}

func sessionIDs(ss []store.Session) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.Write(s.IDHash)
	}
	return b.String()
}
