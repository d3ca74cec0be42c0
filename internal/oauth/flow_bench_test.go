package oauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/gatehouse-dev/gatehouse/internal/password"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// cheapHash is an argon2id hash of testPassword with the smallest
// parameters (8 KiB, 1 pass): the benchmark measures the server's own
// work, not the deliberately slow password hash (about 25 ms per login
// with the real parameters, see BenchmarkPasswordHash in
// internal/password).
const cheapHash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$"

// BenchmarkAuthorizationCodeFlow measures one complete authorization code
// flow in-process, calling the handlers directly: GET /authorize (login
// page), POST /login, GET /authorize (consent page, prompt=consent), POST
// /consent (code), POST /token (access, refresh and ID token). Password
// hashing is made negligible (cheapHash). Besides wall time per flow it
// reports:
//
//   - cpu-ns/op: this process's CPU time per flow (user and system), the
//     test harness (requests, cookie jar, page parsing) and the garbage
//     collector included;
//   - server-ns/op: wall time spent inside the handlers, the harness
//     excluded, waits for durable commits included;
//   - pwcheck-ns/op: what the one password check with cheapHash costs, to
//     subtract from the figures above for "excluding password hashing";
//   - authorize-ns/op, login-ns/op, consent-page-ns/op, consent-ns/op,
//     token-ns/op: server-ns/op split by step, to see where the wall
//     time goes (the three durable commits are in login, consent and
//     token).
func BenchmarkAuthorizationCodeFlow(b *testing.B) {
	for _, db := range []struct {
		name string
		open func(testing.TB) *store.Store
	}{{"sqlite", storetest.OpenSQLite}, {"postgres", storetest.OpenPostgres}} {
		// "oauth": the OAuth 2.1 flow without the openid scope, so no ID
		// token. With openid, RS256 is the default ID-token algorithm; a
		// 2048-bit RSA signature is the largest single cost, so ES256 is
		// measured too.
		b.Run(db.name+"/oauth", func(b *testing.B) { benchCodeFlow(b, db.open, "") })
		for _, alg := range []string{"RS256", "ES256"} {
			b.Run(db.name+"/id_token="+alg, func(b *testing.B) { benchCodeFlow(b, db.open, alg) })
		}
	}
}

// benchCodeFlow runs the flow with ID tokens signed with idAlg, or without
// the openid scope (no ID token) when idAlg is empty.
func benchCodeFlow(b *testing.B, open func(testing.TB) *store.Store, idAlg string) {
	e := newFlowEnv(b, open, nil)
	e.client.IDTokenAlg = idAlg
	if _, err := e.st.UpdateClient(b.Context(), e.client); err != nil {
		b.Fatal(err)
	}
	u := e.user
	u.PasswordHash = cheapHash + argonKeyFor(b, testPassword)
	if err := e.st.UpdateUser(b.Context(), u); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	e.p.Register(mux)
	q := e.authorizeQuery()
	q.Set("prompt", "consent")
	if idAlg == "" {
		q.Set("scope", "profile email notes:read")
		q.Del("nonce")
	}
	authorize := AuthorizePath + "?" + q.Encode()

	pwStart := time.Now()
	for range 100 {
		if err := password.Check(u.PasswordHash, testPassword); err != nil {
			b.Fatal(err)
		}
	}
	pwCheck := time.Since(pwStart) / 100

	steps := []string{"authorize", "login", "consent-page", "consent", "token"}
	stepTime := make([]time.Duration, len(steps))
	b.ReportAllocs()
	var server time.Duration
	cpu0 := processCPU()
	for b.Loop() {
		jar := map[string]string{}
		step := 0
		call := func(method, target string, form url.Values) *httptest.ResponseRecorder {
			var req *http.Request
			if form != nil {
				req = httptest.NewRequest(method, e.issuer+target, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				req = httptest.NewRequest(method, e.issuer+target, nil)
			}
			req.RemoteAddr = "127.0.0.1:1234"
			for k, v := range jar {
				req.AddCookie(&http.Cookie{Name: k, Value: v})
			}
			rec := httptest.NewRecorder()
			start := time.Now()
			mux.ServeHTTP(rec, req)
			d := time.Since(start)
			server += d
			stepTime[step] += d
			step++
			for _, c := range rec.Result().Cookies() {
				jar[c.Name] = c.Value
			}
			return rec
		}
		rec := call("GET", authorize, nil)
		form := page{body: rec.Body.String()}.hidden()
		form.Set("username", "ada")
		form.Set("password", testPassword)
		if rec = call("POST", LoginPath, form); rec.Code != http.StatusSeeOther {
			b.Fatalf("login: %d %s", rec.Code, rec.Body)
		}
		rec = call("GET", rec.Header().Get("Location"), nil)
		form = page{body: rec.Body.String()}.hidden()
		form.Set("decision", "allow")
		rec = call("POST", ConsentPath, form)
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || loc.Query().Get("code") == "" {
			b.Fatalf("consent: %d %q", rec.Code, rec.Header().Get("Location"))
		}
		rec = call("POST", TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
			"code_verifier": {testVerifier}, "redirect_uri": {q.Get("redirect_uri")}, "client_id": {e.client.ID}})
		var tr map[string]any
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &tr) != nil || tr["access_token"] == nil ||
			(tr["id_token"] == nil) != (idAlg == "") {
			b.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
	}
	// Wall time per flow includes waiting for the database to make each
	// commit durable (fsync); CPU time is the server's own work (the
	// process's, so on PostgreSQL the database server's is not counted).
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(server.Nanoseconds())/float64(b.N), "server-ns/op")
	b.ReportMetric(float64(pwCheck.Nanoseconds()), "pwcheck-ns/op")
	for i, name := range steps {
		b.ReportMetric(float64(stepTime[i].Nanoseconds())/float64(b.N), name+"-ns/op")
	}
}

// processCPU is the CPU time (user and system) used by this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// argonKeyFor completes cheapHash for pw.
func argonKeyFor(tb testing.TB, pw string) string {
	tb.Helper()
	salt, err := base64.RawStdEncoding.DecodeString("c2FsdHNhbHRzYWx0")
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte(pw), salt, 1, 8, 1, 32))
}
