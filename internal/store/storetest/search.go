package storetest

import (
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// testSearch covers the console's prefix searches with keyset paging:
// SearchClients by ID or name, SearchUsers by username.
func testSearch(t *testing.T, open func(t *testing.T) *store.Store) {
	ctx := testCtx(t)
	s := fresh(t, open)
	for _, c := range []struct{ id, name string }{
		{"app-1", "Billing"}, {"app-2", "billing lower"}, {"app-3", "Reports"}, {"bill", "Other"},
		{"zz", "Bills <b>"}, {"ünï", "Ünicode"}, {"app_x", "x"},
	} {
		if _, err := s.CreateClient(ctx, store.Client{ID: c.id, Name: c.name}); err != nil {
			t.Fatalf("CreateClient(%s): %v", c.id, err)
		}
	}
	for _, u := range []string{"ada", "adam", "adalbert", "Ada", "bob", "ad", "adé", "adz", "ae"} {
		mustCreateUser(t, s, newUser("id-"+u, u))
	}

	clientIDs := func(cs []store.Client) string {
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		return strings.Join(ids, " ")
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          string
	}{
		{"", "", 0, "app-1 app-2 app-3 app_x bill zz ünï"},
		{"app-", "", 0, "app-1 app-2 app-3"},
		{"app-", "", 2, "app-1 app-2"},
		{"app-", "app-2", 2, "app-3"},
		{"Bill", "", 0, "app-1 zz"},   // by name, case-sensitive
		{"bill", "", 0, "app-2 bill"}, // by name or ID
		{"Ün", "", 0, "ünï"},          // characters, not bytes
		{"app%", "", 0, ""},           // no wildcards
		{"nothing", "", 0, ""},
	} {
		got, err := s.SearchClients(ctx, tc.prefix, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("SearchClients(%q, %q): %v", tc.prefix, tc.after, err)
		}
		if ids := clientIDs(got); ids != tc.want {
			t.Errorf("SearchClients(%q, after %q, %d) = %q, want %q", tc.prefix, tc.after, tc.limit, ids, tc.want)
		}
	}

	usernames := func(us []store.User) string {
		var names []string
		for _, u := range us {
			names = append(names, u.Username)
		}
		return strings.Join(names, " ")
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          string
	}{
		{"", "", 0, "Ada ad ada adalbert adam adz adé ae bob"},
		{"ada", "", 0, "ada adalbert adam"},
		{"ada", "", 2, "ada adalbert"},
		{"ada", "adalbert", 2, "adam"},
		{"ada", "adam", 2, ""},
		{"ad", "", 0, "ad ada adalbert adam adz adé"},
		{"ad", "a", 0, "ad ada adalbert adam adz adé"}, // a cursor before the range
		{"adé", "", 0, "adé"},
		{"A", "", 0, "Ada"},
		{"a_", "", 0, ""}, // no wildcards
		{"zzz", "", 0, ""},
	} {
		got, err := s.SearchUsers(ctx, tc.prefix, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("SearchUsers(%q, %q): %v", tc.prefix, tc.after, err)
		}
		if names := usernames(got); names != tc.want {
			t.Errorf("SearchUsers(%q, after %q, %d) = %q, want %q", tc.prefix, tc.after, tc.limit, names, tc.want)
		}
	}
}
