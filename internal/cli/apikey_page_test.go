package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gatehouse-dev/gatehouse/internal/browsertest"
)

const pageAdminToken = "page-test-admin-token-0123456789abcdef"

// verifyActive asks the running server whether key is active.
func verifyActive(t *testing.T, base, key string) bool {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/apikeys/verify", nil)
	req.Header.Set("Authorization", "Bearer "+pageAdminToken)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Active bool   `json:"active"`
		Sub    string `json:"sub"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("verify: status %d, %v", resp.StatusCode, err)
	}
	return out.Active
}

// TestAPIKeysPageBrowser drives the self-service API keys page in headless
// Chromium: sign in, create a key (shown once, with a working copy button),
// use it, rotate it, revoke the old one.
func TestAPIKeysPageBrowser(t *testing.T) {
	browsertest.Need(t)
	storeArgs := []string{"--data", t.TempDir()}
	addr := freeAddr(t)
	stop := startServe(t, append([]string{"serve", "--addr", addr, "--log-level", "warn", "--admin-token", pageAdminToken}, storeArgs...))
	t.Cleanup(stop)
	createUser(t, storeArgs, "ada", "correct horse battery staple")
	base := "http://" + addr

	allocCtx := browsertest.Allocator(t, 1280, 900)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	err := chromedp.Do(browser,
		chromedp.Navigate(base+"/account/apikeys"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), "ada"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery staple"),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#create-key")),
		chromedp.SendKeys(chromedp.CSS("#name"), "laptop"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")),
	)
	if err != nil {
		t.Fatalf("sign in and create a key: %v", err)
	}
	key, err := chromedp.Run(browser, chromedp.Value(chromedp.CSS("#new-key")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "gk_live_") || !verifyActive(t, base, key) {
		t.Fatalf("the key shown (%q) is not an active key", key)
	}
	ctx, cancel := context.WithTimeout(browser, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#copy-key"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("copy-status").textContent !== ""`)); err != nil {
		t.Errorf("the copy button did nothing (is copy.js blocked by the page's CSP?): %v", err)
	}
	id := key[len("gk_live_") : len("gk_live_")+12]

	// Reloading the page never shows the key again.
	if err := chromedp.Do(browser, chromedp.Navigate(base+"/account/apikeys"), chromedp.WaitVisible(chromedp.CSS("#rotate-"+id))); err != nil {
		t.Fatal(err)
	}
	page, err := chromedp.Run(browser, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page, key) || !strings.Contains(page, key[len(key)-4:]) {
		t.Error("the list shows the key, or not its last four characters")
	}

	if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS("#rotate-"+id)), chromedp.WaitVisible(chromedp.CSS("#new-key"))); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	newKey, err := chromedp.Run(browser, chromedp.Value(chromedp.CSS("#new-key")))
	if err != nil {
		t.Fatal(err)
	}
	if newKey == key || !verifyActive(t, base, newKey) || !verifyActive(t, base, key) {
		t.Fatal("after rotation, the new key and (in its grace period) the old key must both work")
	}

	if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS("#revoke-"+id)), chromedp.WaitNotPresent(chromedp.CSS("#revoke-"+id))); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	status, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#key-"+id+" .status")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(status, "revoked") {
		t.Errorf("status after revoke = %q, want revoked", status)
	}
	deadline := time.Now().Add(time.Second)
	for verifyActive(t, base, key) {
		if time.Now().After(deadline) {
			t.Fatal("the revoked key still works after 1 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
