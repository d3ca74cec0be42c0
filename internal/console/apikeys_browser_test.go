package console_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-dev/gatehouse/internal/console"
)

// TestBrowserAPIKeysAuditDashboard: an operator opens the dashboard, finds
// a user's API key by username, revokes it (after the confirm dialog), and
// reads the revocation in the audit log.
func TestBrowserAPIKeysAuditDashboard(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	ann := ts.createUser(t, "ann", userPassword, false)
	k, key := ts.newKey(t, "ann's laptop", ann.ID)
	ts.newKey(t, "billing", "svc-billing")
	ctx := newChromium(t)

	signInBrowser(t, ctx, ts.base, "/console", "op", opPassword, "#chart-requests")
	counts := value(t, ctx, "read counts", chromedp.Text(chromedp.CSS("#counts")))
	if !strings.Contains(counts, "Active API keys") || !strings.Contains(counts, "2") {
		t.Errorf("dashboard counts = %q", counts)
	}
	if n := value(t, ctx, "count charts", chromedp.Evaluate[int](`document.querySelectorAll("figure.chart svg").length`)); n != 4 {
		t.Errorf("%d charts, want 4", n)
	}
	if os.Getenv("GATEHOUSE_SCREENSHOTS") != "" {
		// For the README: give the sampler (every 5 s) some traffic to
		// draw, then reload.
		for end := time.Now().Add(3*console.SampleInterval + time.Second); time.Now().Before(end); {
			if resp, err := http.Get(ts.base + "/.well-known/openid-configuration"); err == nil {
				resp.Body.Close()
			}
			ts.keyWorks(t, key)
			time.Sleep(2 * time.Millisecond)
		}
		step(t, ctx, "reload the dashboard", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#chart-requests")))
	}
	readmeShot(t, ctx, "console-dashboard.png")

	step(t, ctx, "search keys by username",
		chromedp.Click(chromedp.CSS(`nav a[href="/console/apikeys"]`)),
		chromedp.WaitVisible(chromedp.CSS("#q")),
		chromedp.SendKeys(chromedp.CSS("#q"), "ann"),
		chromedp.Submit(chromedp.CSS("#q")),
	)
	// The unfiltered list shows the key too: wait for the search's page.
	if !eventually(func() bool {
		return strings.Contains(value(t, ctx, "location", chromedp.Location()), "q=ann")
	}) {
		t.Fatal("the search did not load")
	}
	step(t, ctx, "search results", chromedp.WaitVisible(chromedp.CSS("#revoke-"+k.ID)))
	if n := value(t, ctx, "count rows", chromedp.Evaluate[int](`document.querySelectorAll("#apikeys tbody tr").length`)); n != 1 {
		t.Errorf("search for ann: %d keys, want 1", n)
	}
	readmeShot(t, ctx, "console-apikeys.png")
	dialogs := acceptDialogs(t, ctx)
	step(t, ctx, "revoke",
		chromedp.Click(chromedp.CSS("#revoke-"+k.ID)),
		chromedp.WaitNotPresent(chromedp.CSS("#revoke-"+k.ID)),
	)
	select {
	case <-dialogs:
	case <-time.After(5 * time.Second):
		t.Error("no confirm dialog before revoking")
	}
	if !eventually(func() bool { return !ts.keyWorks(t, key) }) {
		t.Error("the revoked key still works after 5 s")
	}

	step(t, ctx, "audit log",
		chromedp.Click(chromedp.CSS(`nav a[href="/console/audit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#event")),
		chromedp.SendKeys(chromedp.CSS("#event"), "apikey.revoke"),
		chromedp.Click(chromedp.CSS("#filter")),
	)
	// The unfiltered page has an #audit table too: wait for the filtered
	// page to be the one loaded before reading it.
	if !eventually(func() bool {
		loc := value(t, ctx, "location", chromedp.Location())
		return strings.Contains(loc, "event=apikey.revoke")
	}) {
		t.Fatal("the filter did not load the filtered audit log")
	}
	step(t, ctx, "filtered audit log", chromedp.WaitVisible(chromedp.CSS("#audit")))
	rows := value(t, ctx, "read audit", chromedp.Text(chromedp.CSS("#audit tbody")))
	if !strings.Contains(rows, k.ID) || !strings.Contains(rows, "user:") || strings.Count(rows, "apikey.revoke") != 1 {
		t.Errorf("audit log filtered by apikey.revoke = %q, want the operator's revocation of %s", rows, k.ID)
	}
	readmeShot(t, ctx, "console-audit.png")
}
