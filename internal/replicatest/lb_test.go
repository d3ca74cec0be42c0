package replicatest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Headers of the test load balancer.
const (
	// headerPin, on a request, sends it to the replica with that index.
	headerPin = "X-Test-Replica"
	// headerServedBy, on an answer, names the replica that served it.
	headerServedBy = "X-Test-Served-By"
)

// balancer is a round-robin reverse proxy in front of replicas. A request
// with headerPin goes to the replica it names.
type balancer struct {
	*httptest.Server
	mu      sync.RWMutex
	targets []*url.URL
	next    atomic.Uint64
}

func newBalancer(t *testing.T) *balancer {
	b := &balancer{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			i := r.In.Context().Value(pinKey{}).(int)
			b.mu.RLock()
			target := b.targets[i]
			b.mu.RUnlock()
			r.SetURL(target)
			r.Out.Host = r.In.Host // the replicas see the public host, as behind a real LB
			r.Out.Header.Del(headerPin)
		},
	}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.RLock()
		n := len(b.targets)
		b.mu.RUnlock()
		if n == 0 {
			http.Error(w, "no replicas", http.StatusBadGateway)
			return
		}
		i := int(b.next.Add(1)-1) % n
		if s := r.Header.Get(headerPin); s != "" {
			var err error
			if i, err = strconv.Atoi(s); err != nil || i < 0 || i >= n {
				http.Error(w, "bad replica pin", http.StatusBadRequest)
				return
			}
		}
		w.Header().Set(headerServedBy, strconv.Itoa(i))
		rp.ServeHTTP(w, r.WithContext(contextWithPin(r, i)))
	}))
	t.Cleanup(b.Close)
	return b
}

// add puts a replica behind the balancer and returns its index.
func (b *balancer) add(base string) int {
	u, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.targets = append(b.targets, u)
	return len(b.targets) - 1
}

// browser is a cookie-keeping user agent that follows redirects on the
// issuer by hand, sending each request (and each hop) to the next replica
// in turn, and records which replica served what.
type browser struct {
	t        *testing.T
	hc       *http.Client
	issuer   string
	replicas int
	step     int
	served   []string // "METHOD path -> replica" per request
}

func newBrowser(t *testing.T, issuer string, replicas int) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, issuer: issuer, replicas: replicas, hc: &http.Client{
		Jar: jar, Timeout: client.Timeout, CheckRedirect: client.CheckRedirect,
	}}
}

// page is a response as the browser saw it, after redirects on the issuer.
type page struct {
	status   int
	body     string
	location string // a redirect off the issuer (to the client)
	replicas []int  // the replicas that served the requests, hops included
}

// visit sends req and follows redirects on the issuer, each to the next
// replica.
func (b *browser) visit(req *http.Request) page {
	b.t.Helper()
	var pg page
	for hop := 0; hop < 10; hop++ {
		i := b.step % b.replicas
		b.step++
		req.Header.Set(headerPin, strconv.Itoa(i))
		resp, err := b.hc.Do(req)
		if err != nil {
			b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		served, _ := strconv.Atoi(resp.Header.Get(headerServedBy))
		pg.replicas = append(pg.replicas, served)
		b.served = append(b.served, req.Method+" "+req.URL.Path+" -> "+strconv.Itoa(served))
		pg.status, pg.body = resp.StatusCode, string(body)
		loc := resp.Header.Get("Location")
		if pg.status < 300 || pg.status > 399 || loc == "" {
			return pg
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			b.t.Fatalf("bad Location %q", loc)
		}
		if !strings.HasPrefix(next.String(), b.issuer+"/") {
			pg.location = next.String()
			return pg
		}
		req, _ = http.NewRequest("GET", next.String(), nil)
	}
	b.t.Fatalf("too many redirects")
	return pg
}

func (b *browser) get(path string) page {
	req, _ := http.NewRequest("GET", b.issuer+path, nil)
	return b.visit(req)
}

func (b *browser) post(path string, form url.Values) page {
	req, _ := http.NewRequest("POST", b.issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.visit(req)
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// hidden returns the hidden form fields of a page (the CSRF token and the
// authorization request).
func (pg page) hidden() url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(pg.body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// pkce returns a new code verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// codeFlowClientBody is a confidential client for the code flow with
// refresh tokens (loopback redirect: any port).
const codeFlowClientBody = `{"client_name":"Notes","grant_types":["authorization_code","refresh_token"],` +
	`"scope":"openid profile notes:read","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}`

const (
	flowUser     = "ada"
	flowPassword = "correct horse battery staple"
	flowRedirect = "http://127.0.0.1:8765/cb"
)

// createFlowUser creates the user of the code flow with the offline CLI.
func createFlowUser(c *cluster) {
	c.run(flowPassword+"\n", "user", "create", "--username", flowUser, "--email", "ada@example.com", "--password-stdin")
}

// authorize runs the browser part of the code flow (authorize, login,
// consent) and returns the code, the PKCE verifier and the replicas that
// served each step.
func (b *browser) authorize(c oauthClient) (code, verifier string, steps [][]int) {
	b.t.Helper()
	verifier, challenge := pkce()
	q := url.Values{
		"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {flowRedirect},
		"scope": {"openid profile notes:read"}, "state": {"st-1"}, "nonce": {"n-1"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	pg := b.get("/authorize?" + q.Encode())
	steps = append(steps, pg.replicas)
	if strings.Contains(pg.body, `name="password"`) {
		form := pg.hidden()
		form.Set("username", flowUser)
		form.Set("password", flowPassword)
		pg = b.post("/login", form)
		steps = append(steps, pg.replicas)
	}
	if strings.Contains(pg.body, `value="allow"`) {
		form := pg.hidden()
		form.Set("decision", "allow")
		pg = b.post("/consent", form)
		steps = append(steps, pg.replicas)
	}
	loc, err := url.Parse(pg.location)
	if err != nil || !strings.HasPrefix(pg.location, flowRedirect+"?") || loc.Query().Get("code") == "" {
		b.t.Fatalf("authorization ended with %d to %q, want a redirect to the client with a code; body %.500s", pg.status, pg.location, pg.body)
	}
	if got := loc.Query().Get("state"); got != "st-1" {
		b.t.Fatalf("state = %q, want st-1", got)
	}
	return loc.Query().Get("code"), verifier, steps
}

// tokens is a token endpoint answer.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Error        string `json:"error"`
}

// tokenRequest posts a grant to base/token as c, pinned to nothing.
func tokenRequest(base string, c oauthClient, form url.Values) (tokens, answer) {
	a := postForm(base+"/token", form, c.ID, c.Secret)
	var tk tokens
	a.json(&tk)
	return tk, a
}

// exchangeCode redeems a code at base.
func exchangeCode(base string, c oauthClient, code, verifier string) (tokens, answer) {
	return tokenRequest(base, c, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {flowRedirect}})
}

// refresh uses a refresh token at base.
func refresh(base string, c oauthClient, rt string) (tokens, answer) {
	return tokenRequest(base, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// pinKey carries the chosen replica from the balancer's handler to Rewrite.
type pinKey struct{}

func contextWithPin(r *http.Request, i int) context.Context {
	return context.WithValue(r.Context(), pinKey{}, i)
}
