package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gatehouse-dev/gatehouse/internal/browsertest"
)

// screenshots saves PNGs of browser pages: always into
// $GATEHOUSE_SCREENSHOTS when it is set (for the README), and, when the
// test fails, the current page of every browser into an artefact
// directory whose path is logged.
type screenshots struct {
	t       *testing.T
	dir     string // $GATEHOUSE_SCREENSHOTS, or ""
	failDir string // where failure screenshots go, made on first use
}

func newScreenshots(t *testing.T) *screenshots {
	return &screenshots{t: t, dir: os.Getenv("GATEHOUSE_SCREENSHOTS")}
}

// watch saves the browser's page as failed-NAME.png if the test fails.
// Call it right after creating (and registering the cancellation of) the
// browser's context: cleanups run last-registered first, so the
// screenshot is taken while the browser is still open.
func (s *screenshots) watch(name string, ctx context.Context) {
	s.t.Cleanup(func() {
		if !s.t.Failed() {
			return
		}
		if s.failDir == "" {
			s.failDir = s.dir
			if s.failDir == "" {
				dir, err := os.MkdirTemp("", "gatehouse-"+s.t.Name()+"-")
				if err != nil {
					s.t.Logf("no screenshots: %v", err)
					return
				}
				s.failDir = dir
			}
			s.t.Logf("screenshots of the failed test's browsers are in %s", s.failDir)
		}
		s.save(ctx, filepath.Join(s.failDir, "failed-"+name+".png"))
	})
}

// page saves the browser's page as name.png in $GATEHOUSE_SCREENSHOTS, if
// set.
func (s *screenshots) page(ctx context.Context, name string) {
	if s.dir == "" {
		return
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		s.t.Errorf("screenshots: %v", err)
		return
	}
	s.save(ctx, filepath.Join(s.dir, name+".png"))
}

func (s *screenshots) save(ctx context.Context, path string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(path, png, 0o644)
	}
	if err != nil {
		s.t.Logf("screenshot %s: %v", path, err)
	}
}

// signInAt opens path in the browser, which must show the login page,
// signs in, and waits for the account navigation.
func signInAt(ctx context.Context, base, path, username, pw string) error {
	return chromedp.Do(ctx,
		chromedp.Navigate(base+path),
		chromedp.WaitVisible(chromedp.CSS("#sign-in")),
		chromedp.SendKeys(chromedp.CSS("#username"), username),
		chromedp.SendKeys(chromedp.CSS("#password"), pw),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("nav.account-nav")),
	)
}

// signedOut reports whether the browser, opening /account, is asked to
// sign in; it waits up to 10 s for either page.
func signedOut(t *testing.T, ctx context.Context, base string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/account"), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
		t.Fatalf("open /account: %v", err)
	}
	body, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(body, `id="sign-in"`) && !strings.Contains(body, "account-nav")
}

// TestAccountPagesBrowser drives the account pages in headless Chromium:
// a user signs in, manages an API key (create, use, rotate, revoke),
// changes their password (which signs out their other browser), and signs
// out another browser from the sessions page.
func TestAccountPagesBrowser(t *testing.T) {
	browsertest.Need(t)
	storeArgs := []string{"--data", t.TempDir()}
	addr := freeAddr(t)
	stop := startServe(t, append([]string{"serve", "--addr", addr, "--log-level", "warn", "--admin-token", pageAdminToken}, storeArgs...))
	t.Cleanup(stop)
	const oldPW, newPW = "correct horse battery staple", "a different, longer passphrase"
	createUser(t, storeArgs, "ada", oldPW)
	base := "http://" + addr
	shots := newScreenshots(t)

	allocCtx := browsertest.Allocator(t, 1100, 800)
	first, cancelFirst := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelFirst)
	shots.watch("first", first)

	// Sign in on the account page.
	if err := signInAt(first, base, "/account", "ada", oldPW); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	who, err := chromedp.Run(first, chromedp.Text(chromedp.CSS("#signed-in-as")))
	if err != nil || who != "ada" {
		t.Fatalf("account page names %q (%v), want ada", who, err)
	}
	shots.page(first, "account")

	// API keys: create, use, rotate, revoke.
	err = chromedp.Do(first,
		chromedp.Click(chromedp.CSS(`nav.account-nav a[href="/account/apikeys"]`)),
		chromedp.WaitVisible(chromedp.CSS("#create-key")),
		chromedp.SendKeys(chromedp.CSS("#name"), "build server"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")),
	)
	if err != nil {
		t.Fatalf("create a key: %v", err)
	}
	key, err := chromedp.Run(first, chromedp.Value(chromedp.CSS("#new-key")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "gk_live_") || !verifyActive(t, base, key) {
		t.Fatalf("the key shown (%q) is not an active key", key)
	}
	id := key[len("gk_live_") : len("gk_live_")+12]
	// Reload first, so that the #new-key waited for is the rotated one.
	if err := chromedp.Do(first, chromedp.Navigate(base+"/account/apikeys"), chromedp.WaitVisible(chromedp.CSS("#rotate-"+id)),
		chromedp.Click(chromedp.CSS("#rotate-"+id)), chromedp.WaitVisible(chromedp.CSS("#new-key"))); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	newKey, err := chromedp.Run(first, chromedp.Value(chromedp.CSS("#new-key")))
	if err != nil {
		t.Fatal(err)
	}
	if newKey == key || !verifyActive(t, base, newKey) {
		t.Fatal("the rotated key does not work")
	}
	if err := chromedp.Do(first, chromedp.Click(chromedp.CSS("#revoke-"+id)), chromedp.WaitNotPresent(chromedp.CSS("#revoke-"+id))); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	start := time.Now()
	for verifyActive(t, base, key) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the revoked key still works after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("revoked key refused after %v", time.Since(start).Round(time.Millisecond))
	if !verifyActive(t, base, newKey) {
		t.Error("revoking the old key also stopped its replacement")
	}
	shots.page(first, "account-apikeys")

	// A second browser (its own cookies) signs in.
	second, cancelSecond := chromedp.NewContext(first, chromedp.WithNewBrowserContext())
	t.Cleanup(cancelSecond)
	shots.watch("second", second)
	if err := signInAt(second, base, "/account", "ada", oldPW); err != nil {
		t.Fatalf("sign in from the second browser: %v", err)
	}

	// Changing the password signs the second browser out, not this one.
	err = chromedp.Do(first,
		chromedp.Click(chromedp.CSS(`nav.account-nav a[href="/account/password"]`)),
		chromedp.WaitVisible(chromedp.CSS("#change-password")),
		chromedp.SendKeys(chromedp.CSS("#current-password"), oldPW),
		chromedp.SendKeys(chromedp.CSS("#new-password"), newPW),
		chromedp.SendKeys(chromedp.CSS("#confirm-password"), newPW),
		chromedp.Click(chromedp.CSS("#change-password")),
		chromedp.WaitVisible(chromedp.CSS("#notice")),
	)
	if err != nil {
		t.Fatalf("change password: %v", err)
	}
	notice, err := chromedp.Run(first, chromedp.Text(chromedp.CSS("#notice")))
	if err != nil || !strings.Contains(notice, "Your other session was signed out.") {
		t.Errorf("password page says %q (%v), want it to say the other session was signed out", notice, err)
	}
	if !signedOut(t, second, base) {
		t.Error("the second browser is still signed in after the password change")
	}
	if signedOut(t, first, base) {
		t.Fatal("the browser that changed the password was signed out")
	}

	// The second browser signs in with the new password; the first signs
	// it out from the sessions page.
	if err := signInAt(second, base, "/account", "ada", newPW); err != nil {
		t.Fatalf("sign in with the new password: %v", err)
	}
	err = chromedp.Do(first,
		chromedp.Navigate(base+"/account/sessions"),
		chromedp.WaitVisible(chromedp.CSS("#end-others")),
	)
	if err != nil {
		t.Fatalf("sessions page: %v", err)
	}
	listed, err := chromedp.Run(first, chromedp.OuterHTML(chromedp.CSS("tbody")))
	if err != nil || strings.Count(listed, "<tr") != 2 || !strings.Contains(listed, "(this session)") ||
		!strings.Contains(listed, "Headless Chrome") {
		t.Errorf("sessions listed: %s (%v); want two Headless Chrome sessions, this one marked", listed, err)
	}
	shots.page(first, "account-sessions")
	if err := chromedp.Do(first, chromedp.Click(chromedp.CSS("#end-others")), chromedp.WaitVisible(chromedp.CSS("#notice"))); err != nil {
		t.Fatalf("sign out other sessions: %v", err)
	}
	if !signedOut(t, second, base) {
		t.Error("the second browser is still signed in after sign out other sessions")
	}
	if signedOut(t, first, base) {
		t.Error("sign out other sessions signed out this browser too")
	}

	if err := chromedp.Do(first, chromedp.Navigate(base+"/account/consents"), chromedp.WaitVisible(chromedp.CSS("nav.account-nav"))); err != nil {
		t.Fatalf("connected apps page: %v", err)
	}
	shots.page(first, "account-consents")
}
