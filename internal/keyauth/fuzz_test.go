package keyauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// FuzzVerifyEndpoint sends arbitrary keys, bodies and query strings to
// POST /apikeys/verify: the answer is always 200, 400 or 401 (never a 500),
// always JSON, and never repeats the presented key.
func FuzzVerifyEndpoint(f *testing.F) {
	st := storetest.OpenSQLite(f)
	fx := newFixture(f, st)
	fx.svc.log = discardLogger()
	_, key := fx.create(f, Params{Name: "fuzz", AllowedIPs: []string{"10.0.0.0/8"}, RateLimit: 1000000, RateWindow: 1})
	mux := http.NewServeMux()
	fx.svc.Register(mux, Routes{Verify: BearerToken(serviceToken, "service"), Admin: BearerToken(adminToken, "admin")})

	f.Add(key, "", "", serviceToken)
	f.Add("", `{"key":"`+key+`","remote_ip":"10.1.1.1"}`, "", serviceToken)
	f.Add(key, "", "api_key="+key, serviceToken)
	f.Add(otherSecret(key), `{"key":1}`, "q=%zz", "")
	f.Add("gk_live_\x00", `{"remote_ip":"::ffff:10.0.0.1"}`, "key=", serviceToken)
	f.Fuzz(func(t *testing.T, header, body, query, auth string) {
		req := httptest.NewRequest("POST", "/", strings.NewReader(body))
		req.URL.Path = VerifyPath
		req.URL.RawQuery = query
		if !validHeader(header) || !validHeader(auth) {
			return
		}
		req.Header.Set(HeaderAPIKey, header)
		req.Header.Set("Authorization", "Bearer "+auth)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 401:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		out := rec.Body.String()
		for _, k := range []string{header, key} {
			if len(k) >= 20 && strings.Contains(out, k) {
				t.Fatalf("the answer repeats a presented key: %s", out)
			}
		}
	})
}

func validHeader(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzParseRate checks that ParseRate never panics and that what it
// accepts is a usable limit.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100/m", "10/s", "1/1ns", "0", "", "5/-1h", "9999999999999999999/s", "1/9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, w, err := ParseRate(s)
		if err != nil {
			return
		}
		if n < 0 || (n > 0 && w <= 0) || (n == 0 && w != 0) {
			t.Fatalf("ParseRate(%q) = %d, %v: not a usable limit", s, n, w)
		}
	})
}
