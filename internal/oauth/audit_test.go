package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// TestSecurityAuditEvents triggers each security and admin-API action and
// checks the one audit event it writes: who, what, target, outcome, source
// address and details, and that no secret is in it.
func TestSecurityAuditEvents(t *testing.T) {
	e := newFlowEnv(t, nil, func(c *Config) { c.AdminToken = testAdminToken })
	ctx := context.Background()
	var clientID string
	tests := []struct {
		name    string
		act     func(t *testing.T) (target string)
		event   string
		actor   string
		outcome string
		details map[string]any // expected members of Details
		secrets []string       // must not appear anywhere in the event
	}{
		{
			name: "login failure, known user",
			act: func(t *testing.T) string {
				b := e.browser(t)
				if pg := b.login(b.get(LoginPath), "ada", "wrong password 123"); pg.status != http.StatusUnauthorized {
					t.Fatalf("wrong password: %d, want 401", pg.status)
				}
				return e.user.ID
			},
			event: EventLoginFailure, outcome: "failure", details: map[string]any{"username": "ada"},
			secrets: []string{"wrong password 123"},
		},
		{
			name: "login failure, unknown user",
			act: func(t *testing.T) string {
				b := e.browser(t)
				if pg := b.login(b.get(LoginPath), "mallory", "guess-guess-guess"); pg.status != http.StatusUnauthorized {
					t.Fatalf("unknown user: %d, want 401", pg.status)
				}
				return ""
			},
			event: EventLoginFailure, outcome: "failure", details: map[string]any{"username": "mallory"},
			secrets: []string{"guess-guess-guess"},
		},
		{
			name: "login success",
			act: func(t *testing.T) string {
				e.signIn(t, "ada", testPassword)
				return e.user.ID
			},
			event: EventLoginSuccess, actor: "user:" + e.user.ID, outcome: "success", secrets: []string{testPassword},
		},
		{
			name: "refresh token reuse",
			act: func(t *testing.T) string {
				b := e.browser(t)
				q := e.authorizeQuery()
				code := e.runToCode(t, b, q).Get("code")
				st, tr := e.exchange(t, code, testVerifier, q.Get("redirect_uri"))
				if st != 200 {
					t.Fatalf("exchange: %d %v", st, tr)
				}
				rt := tr["refresh_token"].(string)
				if st, m := e.refresh(t, rt, ""); st != 200 {
					t.Fatalf("refresh: %d %v", st, m)
				}
				e.clock.Advance(time.Minute) // past the retry grace
				if st, m := e.refresh(t, rt, ""); st == 200 || m["error"] != errInvalidGrant {
					t.Fatalf("reuse: %d %v, want invalid_grant", st, m)
				}
				_, fam, err := e.st.RefreshToken(ctx, e.hasher.Hash(domainRefreshToken, rt))
				if err != nil || fam.RevokedAt.IsZero() {
					t.Fatalf("family after reuse: %+v, %v; want revoked", fam, err)
				}
				return fam.ID
			},
			event: EventRefreshReuse, actor: "client:" + e.client.ID, outcome: "family_revoked",
			details: map[string]any{"client_id": e.client.ID, "user_id": e.user.ID},
		},
		{
			name: "admin API client create",
			act: func(t *testing.T) string {
				st, _, c := e.jsonRequest(t, "POST", AdminClientsPath, testAdminToken,
					`{"client_name":"Audited","grant_types":["client_credentials"],"scope":"read"}`)
				if st != http.StatusCreated {
					t.Fatalf("create: %d %v", st, c)
				}
				clientID = c["client_id"].(string)
				return clientID
			},
			event: "client.create", actor: "admin", outcome: "success", details: map[string]any{"name": "Audited"},
		},
		{
			name: "admin API client update",
			act: func(t *testing.T) string {
				if st, _, c := e.jsonRequest(t, "PUT", AdminClientsPath+"/"+clientID, testAdminToken,
					`{"client_name":"Audited 2","grant_types":["client_credentials"],"scope":"read"}`); st != 200 {
					t.Fatalf("update: %d %v", st, c)
				}
				return clientID
			},
			event: "client.update", actor: "admin", outcome: "success",
		},
		{
			name: "admin API client rotate secret",
			act: func(t *testing.T) string {
				if st, _, c := e.jsonRequest(t, "POST", AdminClientsPath+"/"+clientID+"/rotate-secret", testAdminToken, ""); st != 200 {
					t.Fatalf("rotate: %d %v", st, c)
				}
				return clientID
			},
			event: "client.rotate_secret", actor: "admin", outcome: "success",
			secrets: []string{testAdminToken},
		},
		{
			name: "admin API client delete",
			act: func(t *testing.T) string {
				if st, _, c := e.jsonRequest(t, "DELETE", AdminClientsPath+"/"+clientID, testAdminToken, ""); st != http.StatusNoContent {
					t.Fatalf("delete: %d %v", st, c)
				}
				return clientID
			},
			event: "client.delete", actor: "admin", outcome: "success",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := lastAuditID(t, e.st)
			target := tc.act(t)
			e.p.flushAudit(ctx) // as RunAudit does every second
			evs, err := e.st.AuditEvents(ctx, store.AuditFilter{After: before, Event: tc.event})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Fatalf("%d %q events, want 1: %+v", len(evs), tc.event, evs)
			}
			ev := evs[0]
			if ev.Actor != tc.actor || ev.Target != target || ev.Outcome != tc.outcome || ev.SourceIP != "127.0.0.1" {
				t.Errorf("event = actor %q target %q outcome %q ip %q; want %q %q %q 127.0.0.1",
					ev.Actor, ev.Target, ev.Outcome, ev.SourceIP, tc.actor, target, tc.outcome)
			}
			var details map[string]any
			if len(ev.Details) > 0 {
				if err := json.Unmarshal(ev.Details, &details); err != nil {
					t.Fatalf("details %s: %v", ev.Details, err)
				}
			}
			for k, v := range tc.details {
				if details[k] != v {
					t.Errorf("details[%q] = %v, want %v (details %s)", k, details[k], v, ev.Details)
				}
			}
			all, _ := json.Marshal(ev)
			for _, s := range tc.secrets {
				if strings.Contains(string(all), s) {
					t.Errorf("event %s contains a secret", all)
				}
			}
		})
	}
}

// TestLoginAuditBounded checks that a flood of failed sign-ins queues at
// most maxQueuedLogins events and writes them in one flush.
func TestLoginAuditBounded(t *testing.T) {
	e := newFlowEnv(t, nil, nil)
	for range maxQueuedLogins + 10 {
		e.p.loginAudit.add(store.AuditEvent{Event: EventLoginFailure, Outcome: "failure"})
	}
	evs, dropped := e.p.loginAudit.take()
	if len(evs) != maxQueuedLogins || dropped != 10 {
		t.Errorf("queue kept %d and dropped %d, want %d and 10", len(evs), dropped, maxQueuedLogins)
	}
	for range 3 {
		e.p.loginAudit.add(store.AuditEvent{Event: EventLoginFailure, Outcome: "failure"})
	}
	before := lastAuditID(t, e.st)
	e.p.flushAudit(context.Background())
	got, err := e.st.AuditEvents(context.Background(), store.AuditFilter{After: before})
	if err != nil || len(got) != 3 {
		t.Errorf("after flush: %d events, %v; want 3", len(got), err)
	}
	if evs, _ := e.p.loginAudit.take(); len(evs) != 0 {
		t.Errorf("queue after flush holds %d events, want 0", len(evs))
	}
}

func lastAuditID(t *testing.T, st *store.Store) int64 {
	t.Helper()
	var last int64
	for {
		evs, err := st.AuditEvents(context.Background(), store.AuditFilter{After: last})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return last
		}
		last = evs[len(evs)-1].ID
	}
}
