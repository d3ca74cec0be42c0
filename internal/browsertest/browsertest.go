// Package browsertest starts headless Chromium (Debian's chromium package)
// for the browser tests of the login, consent, account and console pages,
// with the flags this closed, root-run test machine needs.
package browsertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is where Debian's chromium package installs the browser.
const Path = "/usr/bin/chromium"

// Need fails the test in CI (CI=true) and skips it elsewhere when Chromium
// is not installed.
func Need(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("Chromium at %s is required in CI (apt-get install chromium)", Path)
	}
	t.Skipf("Chromium is not at %s (apt-get install chromium); skipping", Path)
}

// Allocator returns a chromedp allocator context for a new headless
// Chromium with its own profile: no sandbox (tests run as root), no GPU,
// and no background connections (the test network is closed). Contexts
// made from it with chromedp.NewContext share the browser; it is stopped
// when the test ends.
func Allocator(t testing.TB, width, height int) context.Context {
	t.Helper()
	Need(t)
	ctx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(Path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true))
	t.Cleanup(cancel)
	return ctx
}

// New starts a browser from Allocator and returns its first tab. The
// first run of a chromedp context must not have a timeout (it would bound
// the browser's life), so a watchdog fails the test if the start hangs.
func New(t testing.TB, width, height int) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(Allocator(t, width, height))
	t.Cleanup(cancel)
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start Chromium: %v", err)
		}
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("Chromium did not start within 60 s")
	}
	return ctx
}
