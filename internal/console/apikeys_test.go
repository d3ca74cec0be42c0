package console_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// newKey creates an API key through the same service as the admin API.
func (ts *testServer) newKey(t *testing.T, name, owner string) (store.APIKey, string) {
	t.Helper()
	rec, key, err := ts.srv.APIKeys().Create(t.Context(), keyauth.Params{Name: name, Owner: owner, Scopes: []string{"read"}},
		keyauth.Actor{Name: "test"})
	if err != nil {
		t.Fatalf("create key %s: %v", name, err)
	}
	return rec, key.Plaintext()
}

// keyWorks reports whether the key is accepted now.
func (ts *testServer) keyWorks(t *testing.T, key string) bool {
	t.Helper()
	_, reason, err := ts.srv.APIKeys().Verify(t.Context(), key, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	return reason == ""
}

var keyRowRE = regexp.MustCompile(`<tr id="key-([0-9A-Za-z]{12})">`)

func keyRows(body string) []string {
	var ids []string
	for _, m := range keyRowRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestConsoleAPIKeys(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ts := startServer(t, be.db(t))
			ts.createUser(t, "op", opPassword, true)
			ada := ts.createUser(t, "ada", userPassword, false)
			k1, key1 := ts.newKey(t, `<script>alert("laptop")</script>`, ada.ID)
			k2, key2 := ts.newKey(t, "build", ada.ID)
			k3, _ := ts.newKey(t, "service", "svc-billing")
			op := ts.signIn(t, "op", opPassword)
			user := ts.signIn(t, "ada", userPassword)

			if status, _, body := user.get("/console/apikeys"); status != http.StatusForbidden || strings.Contains(body, k1.ID) {
				t.Errorf("non-operator: status %d, want 403 without keys", status)
			}
			status, h, body := op.get("/console/apikeys")
			if status != http.StatusOK || len(keyRows(body)) != 3 {
				t.Fatalf("list: status %d, %d keys, want 3", status, len(keyRows(body)))
			}
			if strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert") {
				t.Error("a key's name is not escaped")
			}
			if !strings.Contains(body, `>ada</a>`) || !strings.Contains(body, "<code>svc-billing</code>") {
				t.Error("owners are not shown (username for users, the raw owner otherwise)")
			}
			if strings.Contains(body, key1) || h.Get("Cache-Control") != "no-store" {
				t.Error("the page shows a whole key, or may be cached")
			}

			for _, tc := range []struct {
				q    string
				want []string
			}{
				{"ada", []string{k1.ID, k2.ID}},            // username
				{ada.ID, []string{k1.ID, k2.ID}},           // owner ID
				{"svc-billing", []string{k3.ID}},           // owner that is no user
				{k2.ID, []string{k2.ID}},                   // key ID
				{k3.ID[:5], []string{k3.ID}},               // start of a key ID
				{keyauth.Masked(k1)[:20], []string{k1.ID}}, // start of the masked key
				{"nobody-at-all", nil},                     // nothing
				{`"><script>x</script>`, nil},              // escaped
				{strings.Repeat("x", 5000), nil},           // bounded
			} {
				status, _, body := op.get("/console/apikeys?" + url.Values{"q": {tc.q}}.Encode())
				got := keyRows(body)
				if status != http.StatusOK || fmt.Sprint(sortedIDs(got)) != fmt.Sprint(sortedIDs(tc.want)) {
					t.Errorf("search %.20q: status %d, keys %v, want %v", tc.q, status, got, tc.want)
				}
				if strings.Contains(body, "<script>x") {
					t.Errorf("search %.20q is echoed unescaped", tc.q)
				}
			}
			// A whole key in the search box becomes a search for its ID.
			status, h, _ = op.get("/console/apikeys?" + url.Values{"q": {key2}}.Encode())
			if status != http.StatusSeeOther || h.Get("Location") != "/console/apikeys?q="+k2.ID {
				t.Errorf("search by whole key: %d to %q, want 303 to ?q=%s", status, h.Get("Location"), k2.ID)
			}

			// Forged, foreign and unknown revocations change nothing.
			if status, _, _ := op.post("/console/apikeys/"+k1.ID+"/revoke", url.Values{"csrf_token": {"forged"}}); status != http.StatusForbidden {
				t.Errorf("forged CSRF token: %d, want 403", status)
			}
			if status, _, _ := user.post("/console/apikeys/"+k1.ID+"/revoke", nil); status != http.StatusForbidden {
				t.Errorf("non-operator revoke: %d, want 403", status)
			}
			for _, id := range []string{"AAAAAAAAAAAA", "../../x", "nope"} {
				if status, _, _ := op.post("/console/apikeys/"+url.PathEscape(id)+"/revoke", nil); status != http.StatusNotFound {
					t.Errorf("revoke %q: %d, want 404", id, status)
				}
			}
			if !ts.keyWorks(t, key1) {
				t.Fatal("a refused revocation revoked the key")
			}

			// Revoke.
			status, h, _ = op.post("/console/apikeys/"+k1.ID+"/revoke", nil)
			if status != http.StatusSeeOther || h.Get("Location") != "/console/apikeys?done=key-revoked" {
				t.Fatalf("revoke: %d to %q", status, h.Get("Location"))
			}
			if !eventually(func() bool { return !ts.keyWorks(t, key1) }) {
				t.Error("the revoked key still works after 5 s")
			}
			_, _, body = op.get("/console/apikeys?done=key-revoked")
			if !strings.Contains(body, "The API key was revoked") || strings.Contains(body, `id="revoke-`+k1.ID+`"`) {
				t.Error("after revoking: no notice, or the key can still be revoked")
			}
			evs, err := ts.st.AuditEvents(t.Context(), store.AuditFilter{Target: k1.ID, Event: "apikey.revoke"})
			if err != nil || len(evs) != 1 || !strings.HasPrefix(evs[0].Actor, "user:") {
				t.Errorf("audit of the revocation = %+v, %v; want one event by the operator", evs, err)
			}

			// Rotate: the new key is shown once and works, the old one too (grace).
			status, h, body = op.post("/console/apikeys/"+k2.ID+"/rotate", nil)
			if status != http.StatusOK || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("rotate: %d", status)
			}
			newKey := inputValue(t, body, "new-key")
			if newKey == key2 || !ts.keyWorks(t, newKey) || !ts.keyWorks(t, key2) {
				t.Error("after rotating, the new key and (during its grace) the old one must work")
			}
			if status, _, _ := op.post("/console/apikeys/"+k2.ID+"/rotate", nil); status != http.StatusConflict {
				t.Errorf("rotating twice: %d, want 409", status)
			}
		})
	}
}

func sortedIDs(ids []string) []string {
	out := append([]string(nil), ids...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestConsoleAPIKeysPaging(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	const n = 50 + 7 // PageSize + 7
	for i := range n {
		ts.newKey(t, fmt.Sprintf("key %d", i), "owner-a")
	}
	ts.newKey(t, "other", "owner-b")
	op := ts.signIn(t, "op", opPassword)
	for _, tc := range []struct {
		q     string
		total int
	}{{"", n + 1}, {"owner-a", n}} {
		path := "/console/apikeys"
		if tc.q != "" {
			path += "?q=" + tc.q
		}
		var all []string
		for pages := 0; path != "" && pages < 5; pages++ {
			status, _, body := op.get(path)
			if status != http.StatusOK {
				t.Fatalf("%s: %d", path, status)
			}
			rows := keyRows(body)
			if len(rows) > 50 {
				t.Fatalf("%s: %d rows, want at most 50", path, len(rows))
			}
			if pages > 0 && !strings.Contains(body, ">First page</a>") {
				t.Errorf("%s: no link to the first page", path)
			}
			all = append(all, rows...)
			path = ""
			if m := nextRE.FindStringSubmatch(body); m != nil {
				path = strings.ReplaceAll(m[1], "&amp;", "&")
				if tc.q != "" && !strings.Contains(path, "q="+tc.q) {
					t.Errorf("next page %q loses the search", path)
				}
			}
		}
		if len(all) != tc.total || fmt.Sprint(sortedIDs(all)) != fmt.Sprint(all) {
			t.Errorf("search %q: %d keys over the pages, want %d in ID order without repeats", tc.q, len(all), tc.total)
		}
		seen := map[string]bool{}
		for _, id := range all {
			if seen[id] {
				t.Errorf("key %s on two pages", id)
			}
			seen[id] = true
		}
	}
}

func TestConsoleAudit(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ts := startServer(t, be.db(t))
			ts.createUser(t, "op", opPassword, true)
			base := time.Date(2030, 3, 4, 12, 0, 0, 0, time.UTC)
			var evs []store.AuditEvent
			for i := range 60 {
				actor, event := "admin", "apikey.create"
				if i%3 == 0 {
					actor, event = "cli", "client.delete"
				}
				evs = append(evs, store.AuditEvent{At: base.Add(time.Duration(i) * time.Minute), Actor: actor, Event: event,
					Target: fmt.Sprintf("t%02d", i), Outcome: "success", Details: []byte(`{"name":"<b>bold</b>"}`)})
			}
			if err := ts.st.AppendAudit(t.Context(), evs...); err != nil {
				t.Fatal(err)
			}
			op := ts.signIn(t, "op", opPassword)
			targets := func(body string) []string {
				var out []string
				for _, m := range regexp.MustCompile(`<code>(t\d\d)</code>`).FindAllStringSubmatch(body, -1) {
					out = append(out, m[1])
				}
				return out
			}

			// Newest first, paged by 50; the operator's own sign-in is not an
			// audit event, the fixture's are.
			status, _, body := op.get("/console/audit?event=apikey.create")
			got := targets(body)
			if status != http.StatusOK || len(got) != 40 || got[0] != "t59" || got[39] != "t01" {
				t.Fatalf("event filter: %d, %d events from %v, want 40 newest first", status, len(got), got[:min(len(got), 1)])
			}
			if strings.Contains(body, "<b>bold</b>") || !strings.Contains(body, "&lt;b&gt;bold&lt;/b&gt;") {
				t.Error("details are not escaped")
			}
			_, _, body = op.get("/console/audit?actor=cli")
			if got := targets(body); len(got) != 20 || got[0] != "t57" {
				t.Errorf("actor filter: %v, want the 20 cli events newest first", got)
			}
			_, _, body = op.get("/console/audit?" + url.Values{"from": {"2030-03-04T12:10"}, "to": {"2030-03-04T12:20"}}.Encode())
			if got := targets(body); len(got) != 10 || got[0] != "t19" || got[9] != "t10" {
				t.Errorf("time range: %v, want t19..t10", got)
			}
			_, _, body = op.get("/console/audit?from=yesterday&actor=cli")
			if !strings.Contains(body, "The unreadable one was ignored") || len(targets(body)) != 20 {
				t.Error("an unreadable time is neither reported nor ignored")
			}

			// Paging: 60 events, 50 and 10, no repeats, filters kept.
			_, _, body = op.get("/console/audit")
			first := targets(body)
			m := nextRE.FindStringSubmatch(body)
			if len(first) != 50 || m == nil {
				t.Fatalf("first page: %d events, next link %v", len(first), m)
			}
			_, _, body = op.get(strings.ReplaceAll(m[1], "&amp;", "&"))
			second := targets(body)
			if len(second) != 10 || second[0] != "t09" || nextRE.MatchString(body) || !strings.Contains(body, "Newest events") {
				t.Errorf("second page: %v, want t09..t00 and no next link", second)
			}
			_, _, body = op.get("/console/audit?from=2030-03-04T11:00&before=999999999")
			if m := nextRE.FindStringSubmatch(body); m == nil || !strings.Contains(m[1], "from=2030-03-04T11%3A00") {
				t.Error("the next link of a filtered page loses the filter")
			}
			for _, bad := range []string{"before=-1", "before=abc", "actor=" + url.QueryEscape(`"><script>`)} {
				if status, _, body := op.get("/console/audit?" + bad); status != http.StatusOK || strings.Contains(body, "<script>") {
					t.Errorf("%s: %d", bad, status)
				}
			}
		})
	}
}

func TestConsoleDashboard(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	ada := ts.createUser(t, "ada", userPassword, false)
	ts.newKey(t, "a", ada.ID)
	k, _ := ts.newKey(t, "b", ada.ID)
	if _, err := ts.srv.APIKeys().Revoke(t.Context(), k.ID, keyauth.Actor{Name: "test"}); err != nil {
		t.Fatal(err)
	}
	op := ts.signIn(t, "op", opPassword)
	status, h, body := op.get("/console")
	if status != http.StatusOK || strings.Contains(h.Get("Content-Security-Policy"), "unsafe-inline") {
		t.Fatalf("dashboard: %d", status)
	}
	for _, want := range []string{`<dt>Users</dt><dd><a href="/console/users">2</a>`,
		`<dt>Active API keys</dt><dd><a href="/console/apikeys">1</a>`, `id="chart-requests"`, `id="chart-errors"`,
		`id="chart-tokens"`, `id="chart-verifications"`, `role="img"`} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if strings.Contains(body, "style=") || strings.Contains(body, "<script>") {
		t.Error("the dashboard has inline style or script (the CSP forbids them)")
	}
}
