package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-dev/gatehouse/internal/password"
)

// TestBrowserUsers: an operator opens the users list, creates a user with
// the form (a mismatched password is refused first, nothing stored), finds
// the new user by searching, and the new user can sign in.
func TestBrowserUsers(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	ts.createUser(t, "ann", userPassword, false)
	ctx := newChromium(t)

	signInBrowser(t, ctx, ts.base, "/console/users", "op", opPassword, "#users")
	step(t, ctx, "open the new-user form",
		chromedp.Click(chromedp.CSS("#new-user")),
		chromedp.WaitVisible(chromedp.CSS("#user-form")),
		chromedp.SendKeys(chromedp.CSS("#username"), "bea"),
		chromedp.SendKeys(chromedp.CSS("#email"), "bea@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "a long password for bea"),
		chromedp.SendKeys(chromedp.CSS("#password2"), "not the same password"),
		chromedp.Click(chromedp.CSS("#create-user")),
		chromedp.WaitVisible(chromedp.CSS("#password2-error")),
	)
	if _, err := ts.st.UserByUsername(t.Context(), "bea"); err == nil {
		t.Fatal("a refused form stored the user")
	}
	// The form comes back with the username and email kept and the
	// passwords empty.
	if got := value(t, ctx, "read username", chromedp.Value(chromedp.CSS("#username"))); got != "bea" {
		t.Errorf("refused form: username %q, want bea kept", got)
	}
	step(t, ctx, "create the user",
		chromedp.SendKeys(chromedp.CSS("#password"), "a long password for bea"),
		chromedp.SendKeys(chromedp.CSS("#password2"), "a long password for bea"),
		chromedp.Click(chromedp.CSS("#create-user")),
		chromedp.WaitVisible(chromedp.CSS("#user-username")),
	)
	if got := value(t, ctx, "read the new user's page", chromedp.Text(chromedp.CSS("#user-username"))); !strings.Contains(got, "bea") {
		t.Errorf("after creating: user page shows %q, want bea", got)
	}
	u, err := ts.st.UserByUsername(t.Context(), "bea")
	if err != nil || u.Email != "bea@example.com" || u.Admin || password.Check(u.PasswordHash, "a long password for bea") != nil {
		t.Fatalf("stored user %+v, %v: want bea, her email, not an operator, her password", u, err)
	}

	step(t, ctx, "search users",
		chromedp.Navigate(ts.base+"/console/users"),
		chromedp.WaitVisible(chromedp.CSS("#q")),
		chromedp.SendKeys(chromedp.CSS("#q"), "be"),
		chromedp.Submit(chromedp.CSS("#q")),
	)
	if !eventually(func() bool {
		return strings.Contains(value(t, ctx, "location", chromedp.Location()), "q=be")
	}) {
		t.Fatal("the search did not load")
	}
	step(t, ctx, "search results", chromedp.WaitVisible(chromedp.CSS("#users")))
	rows := value(t, ctx, "read users", chromedp.Text(chromedp.CSS("#users tbody")))
	if !strings.Contains(rows, "bea") || strings.Contains(rows, "ann") || strings.Contains(rows, "op") {
		t.Errorf("search for be = %q, want only bea", rows)
	}

	// The new user signs in with the password the operator set.
	beaCtx := newChromium(t)
	signInBrowser(t, beaCtx, ts.base, "/account", "bea", "a long password for bea", "nav.account-nav")
}
