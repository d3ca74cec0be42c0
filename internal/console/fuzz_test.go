package console

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// FuzzClientForm: any posted client form is read without panicking, its
// lists hold trimmed non-empty lines, and a refused value is reported at
// a field of the form.
func FuzzClientForm(f *testing.F) {
	f.Add("name=App&grant_types=client_credentials&scopes=read+write&access_ttl=5m&redirect_uris=https%3A%2F%2Fa.example%2Fcb%0D%0A%0A")
	f.Add("name=%3Cb%3E&access_ttl=-1h&refresh_ttl=soon&jwks=%7B%7D&public=on&id=x%2Fy")
	f.Add("audiences=%0A+%0A&exchange_audiences=a%0Db")
	f.Add("rate_limit=100%2Fm&token_format=opaque&gateway=on")
	f.Add("rate_limit=-1%2F0s")
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/console/clients", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if err := r.ParseForm(); err != nil {
			return
		}
		form := readClientForm(r, true)
		var c store.Client
		errs := form.apply(&c)
		for field := range errs {
			if field != "access_ttl" && field != "refresh_ttl" && field != "rate_limit" {
				t.Errorf("error at unknown field %q", field)
			}
		}
		for _, l := range [][]string{c.RedirectURIs, c.Audiences, c.ExchangeAudiences} {
			for _, s := range l {
				if s == "" || s != strings.TrimSpace(s) || strings.ContainsAny(s, "\r\n") {
					t.Errorf("list entry %q is not a trimmed line", s)
				}
			}
		}
	})
}

// FuzzReadCursor: search prefixes and cursors from the URL are bounded,
// valid UTF-8, and survive the next-page link unchanged.
func FuzzReadCursor(f *testing.F) {
	f.Add("q=ab&after=c1")
	f.Add("q=%ff%fe&after=" + strings.Repeat("x", 300))
	f.Add("q=+a+b+&after=%00")
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest("GET", "/console/clients", nil)
		r.URL.RawQuery = query
		cur := ReadCursor(r)
		for _, s := range []string{cur.Q, cur.After} {
			if len(s) > maxQueryLen || !utf8.ValidString(s) {
				t.Fatalf("cursor value %q: too long or not UTF-8", s)
			}
		}
		if cur.After == "" {
			return // no next link without a cursor
		}
		cur.Next = cur.After
		next, err := url.Parse(cur.NextURL("/console/clients"))
		if err != nil {
			t.Fatalf("next link: %v", err)
		}
		if got := next.Query(); got.Get("after") != cur.After || got.Get("q") != cur.Q {
			t.Errorf("next link %q does not carry q=%q after=%q", next, cur.Q, cur.After)
		}
	})
}
