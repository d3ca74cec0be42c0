package console_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse-dev/gatehouse/internal/browsertest"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// needChromium skips without Chromium, except in CI, where it fails.
// newChromium starts a headless Chromium for the test and returns its
// first tab.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	return browsertest.New(t, 1280, 900)
}

// step runs actions with a deadline; on failure it saves a screenshot of
// the page and stops the test.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		screenshotOnFailure(t, ctx, what)
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs a valued action with a deadline, as step does.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		screenshotOnFailure(t, ctx, what)
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshotOnFailure saves a full-page PNG of the tab into the test's
// artifact directory (kept with go test -artifacts) and logs the path.
func screenshotOnFailure(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	name := filepath.Join(t.ArtifactDir(), strings.NewReplacer(" ", "-", "/", "-").Replace(what)+".png")
	if err := os.WriteFile(name, png, 0o644); err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	t.Logf("screenshot of the page: %s (keep it with go test -artifacts)", name)
}

// readmeShot saves a PNG of the page as name when GATEHOUSE_SCREENSHOTS
// names a directory: the README's screenshots.
func readmeShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("GATEHOUSE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", filepath.Join(dir, name))
}

// acceptDialogs accepts every confirm dialog of the tab and sends its
// message on the returned channel.
func acceptDialogs(t *testing.T, ctx context.Context) <-chan string {
	msgs := make(chan string, 10)
	events := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			select {
			case msgs <- ev.Message:
			default:
			}
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				return
			}
		}
	}()
	return msgs
}

// signInBrowser signs in on the login page, starting from path.
func signInBrowser(t *testing.T, ctx context.Context, base, path, username, pw, waitFor string) {
	t.Helper()
	step(t, ctx, "sign in as "+username,
		chromedp.Navigate(base+path),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), username),
		chromedp.SendKeys(chromedp.CSS("#password"), pw),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS(waitFor)),
	)
}

// TestBrowserClients: an operator signs in, creates a client, copies its
// secret from the page, and the client gets a token with it; then edits
// the client's redirect URIs.
func TestBrowserClients(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	ctx := newChromium(t)

	signInBrowser(t, ctx, ts.base, "/console", "op", opPassword, "nav")
	step(t, ctx, "create a client",
		chromedp.Click(chromedp.CSS(`nav a[href="/console/clients"]`)),
		chromedp.WaitVisible(chromedp.CSS("#new-client")),
		chromedp.Click(chromedp.CSS("#new-client")),
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#id"), "reports"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Reports <service>"),
		chromedp.SendKeys(chromedp.CSS("#scopes"), "read"),
		chromedp.Click(chromedp.CSS("#save-client")),
		chromedp.WaitVisible(chromedp.CSS("#client-secret")),
	)
	secret := value(t, ctx, "read the secret", chromedp.Value(chromedp.CSS("#client-secret")))
	step(t, ctx, "copy the secret", chromedp.Click(chromedp.CSS("#copy-secret")))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("copy-status").textContent !== ""`)); err != nil {
		t.Errorf("the copy button did nothing (is copy.js blocked by the CSP?): %v", err)
	}
	readmeShot(t, ctx, "console-client-secret.png")
	if err := tokenWith(t, ts, "reports", secret); err != nil {
		t.Fatalf("clientcredentials with the secret from the page: %v", err)
	}

	// Edit: add the code flow with two redirect URIs.
	step(t, ctx, "edit the client",
		chromedp.Navigate(ts.base+"/console/clients/reports"),
		chromedp.WaitVisible(chromedp.CSS("#redirect_uris")),
		chromedp.Click(chromedp.CSS(`input[name=grant_types][value=authorization_code]`)),
		chromedp.SetValue(chromedp.CSS("#redirect_uris"), "https://reports.example/callback\nhttp://127.0.0.1:9000/cb"),
		chromedp.Click(chromedp.CSS("#save-client")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	)
	c, err := ts.st.Client(t.Context(), "reports")
	if err != nil || strings.Join(c.RedirectURIs, " ") != "https://reports.example/callback http://127.0.0.1:9000/cb" {
		t.Fatalf("redirect URIs after the edit: %q, %v", c.RedirectURIs, err)
	}
	// A refused edit shows the error next to the field.
	step(t, ctx, "refused edit",
		chromedp.SetValue(chromedp.CSS("#redirect_uris"), "http://evil.example/cb"),
		chromedp.Click(chromedp.CSS("#save-client")),
		chromedp.WaitVisible(chromedp.CSS("#redirect_uris-error")),
	)
	if c2, _ := ts.st.Client(t.Context(), "reports"); strings.Join(c2.RedirectURIs, " ") != strings.Join(c.RedirectURIs, " ") {
		t.Error("a refused edit changed the client")
	}
	step(t, ctx, "clients list", chromedp.Navigate(ts.base+"/console/clients"), chromedp.WaitVisible(chromedp.CSS("#clients")))
	readmeShot(t, ctx, "console-clients.png")

	// Delete, confirming the dialog.
	dialogs := acceptDialogs(t, ctx)
	step(t, ctx, "delete the client",
		chromedp.Navigate(ts.base+"/console/clients/reports"),
		chromedp.WaitVisible(chromedp.CSS("#delete-client")),
		chromedp.Click(chromedp.CSS("#delete-client")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	)
	select {
	case msg := <-dialogs:
		if !strings.Contains(msg, "Delete the client Reports <service>?") {
			t.Errorf("confirm dialog said %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Error("no confirm dialog before deleting")
	}
	if _, err := ts.st.Client(t.Context(), "reports"); err == nil {
		t.Error("the client was not deleted")
	}
}

// TestBrowserSessionRevoke: an operator ends a user's session on the
// user's page, and the user's browser is signed out on its next page
// load.
func TestBrowserSessionRevoke(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	ann := ts.createUser(t, "ann", userPassword, false)
	if err := ts.st.PutConsent(t.Context(), store.Consent{UserID: ann.ID, ClientID: "some-app", Scopes: []string{"openid", "profile"}}); err != nil {
		t.Fatal(err)
	}
	// Two people, two browsers (separate processes: no shared cookies,
	// and each tab is in front in its own browser).
	opCtx := newChromium(t)
	annCtx := newChromium(t)

	signInBrowser(t, annCtx, ts.base, "/account/apikeys", "ann", userPassword, "#create-key")
	signInBrowser(t, opCtx, ts.base, "/console/users/"+ann.ID, "op", opPassword, "#sessions")
	readmeShot(t, opCtx, "console-user.png")

	dialogs := acceptDialogs(t, opCtx)
	step(t, opCtx, "sign ann out",
		chromedp.Click(chromedp.CSS("#end-all-sessions")),
		chromedp.WaitVisible(chromedp.CSS("#no-sessions")),
	)
	select {
	case <-dialogs:
	case <-time.After(5 * time.Second):
		t.Error("no confirm dialog before signing the user out")
	}
	// Ann's next page load shows the login page.
	step(t, annCtx, "ann reloads", chromedp.Navigate(ts.base+"/account/apikeys"), chromedp.WaitVisible(chromedp.CSS("#sign-in")))
	if n := value(t, annCtx, "count key forms", chromedp.Evaluate[int](`document.querySelectorAll("#create-key").length`)); n != 0 {
		t.Error("ann still sees her account page")
	}
}

// TestBrowserSigningKeys: rotate from the page, scheduled and immediate
// (after the confirm dialog).
func TestBrowserSigningKeys(t *testing.T) {
	ts := startServer(t, "")
	ts.createUser(t, "op", opPassword, true)
	ctx := newChromium(t)
	signInBrowser(t, ctx, ts.base, "/console/signing-keys", "op", opPassword, "#rotate-ES256")
	before, _ := ts.srv.Keys().Active("EdDSA")
	step(t, ctx, "rotate ES256 now",
		chromedp.Click(chromedp.CSS("#rotate-ES256")),
		chromedp.WaitVisible(chromedp.CSS("#keys-ES256 .key-next")),
	)
	readmeShot(t, ctx, "console-signing-keys.png")
	dialogs := acceptDialogs(t, ctx)
	step(t, ctx, "rotate EdDSA immediately",
		chromedp.Click(chromedp.CSS("#rotate-immediate-EdDSA")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	)
	select {
	case msg := <-dialogs:
		if !strings.Contains(msg, "compromised") {
			t.Errorf("confirm dialog said %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Error("no confirm dialog before an immediate rotation")
	}
	after, _ := ts.srv.Keys().Active("EdDSA")
	if after.ID == before.ID {
		t.Error("the immediate rotation did not replace the active EdDSA key")
	}
	if page := value(t, ctx, "page", chromedp.OuterHTML(chromedp.CSS("#keys-EdDSA"))); !strings.Contains(page, after.ID) {
		t.Error("the page does not show the new EdDSA key")
	}
}
