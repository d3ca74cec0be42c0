package replicatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/proctest"
)

const (
	adminToken   = "replica-test-admin-token-0123456789abcdef"
	masterSecret = "replica-test-master-secret-0123456789abcdef"
)

// cluster starts gatehouse processes that share one store, one data
// directory and one master secret.
type cluster struct {
	t      *testing.T
	env    []string // settings of every process
	db     string
	data   string
	issuer string // --issuer of every serve process; empty: each its own address
}

func newCluster(t *testing.T, db string) *cluster {
	t.Helper()
	env := []string{"GATEHOUSE_SECRET=" + masterSecret, "GATEHOUSE_ADMIN_TOKEN=" + adminToken, "GATEHOUSE_LOG_FORMAT=json"}
	return &cluster{t: t, env: env, db: db, data: t.TempDir()}
}

// command returns a gatehouse command line on the cluster's store.
func (c *cluster) command(args ...string) *exec.Cmd {
	return proctest.Command(c.t, c.env, append(args, "--db", c.db, "--data", c.data)...)
}

// run runs one gatehouse command to completion with stdin as its input
// and returns its standard output.
func (c *cluster) run(stdin string, args ...string) string {
	c.t.Helper()
	cmd := c.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("gatehouse %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// serve starts `gatehouse serve` on a free loopback port with extra
// arguments and waits until it is ready. The process is stopped when the
// test ends.
func (c *cluster) serve(name string, extra ...string) *proctest.Proc {
	c.t.Helper()
	p := c.start(name, extra...)
	p.Wait(c.t)
	return p
}

// start starts `gatehouse serve` without waiting for it.
func (c *cluster) start(name string, extra ...string) *proctest.Proc {
	c.t.Helper()
	issuer := c.issuer
	if issuer == "" {
		issuer = "http://127.0.0.1"
	}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--issuer", issuer}, extra...)
	return proctest.Start(c.t, name, c.command(args...))
}

// client is the HTTP client of the tests: no redirects followed, a
// generous timeout so a hanging server fails the test instead of stalling
// it.
var client = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// answer is an HTTP response as the tests see it.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error; status is 0
}

// json decodes the body into v and reports whether it was JSON.
func (a answer) json(v any) bool { return json.Unmarshal(a.body, v) == nil }

// String summarises a for failure messages.
func (a answer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	b := a.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", a.status, b)
}

// do sends a request and reads the whole answer.
func do(req *http.Request) answer {
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// adminJSON sends an admin-authenticated JSON request.
func adminJSON(method, u, body string) answer {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(req)
}

// postForm sends a form, authenticated with HTTP Basic when id is set.
func postForm(u string, form url.Values, id, secret string) answer {
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return do(req)
}

// get sends a GET request.
func get(u string) answer {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return answer{err: err}
	}
	return do(req)
}

// oauthClient is a client created through the admin API.
type oauthClient struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// createClient creates a client through the admin API of base.
func createClient(t *testing.T, base, body string) oauthClient {
	t.Helper()
	a := adminJSON("POST", base+"/admin/clients", body)
	var c oauthClient
	if a.status != http.StatusCreated || !a.json(&c) || c.ID == "" {
		t.Fatalf("create client: %v", a)
	}
	return c
}

// ccClientBody is a confidential client_credentials client.
const ccClientBody = `{"client_name":"m2m","grant_types":["client_credentials"],"scope":"read write","token_endpoint_auth_method":"client_secret_basic"}`

// apiKey is a key created through the admin API.
type apiKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// verifyKey asks base whether key is active.
func verifyKey(base, key string) (bool, answer) {
	req, _ := http.NewRequest("POST", base+"/apikeys/verify", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("X-API-Key", key)
	a := do(req)
	var v struct{ Active bool }
	return a.status == http.StatusOK && a.json(&v) && v.Active, a
}

// introspect asks base about tok as client c and returns "active",
// "inactive" or a description of the failure.
func introspect(base string, c oauthClient, tok string) string {
	a := postForm(base+"/introspect", url.Values{"token": {tok}}, c.ID, c.Secret)
	var v struct{ Active bool }
	switch {
	case a.status != http.StatusOK || !a.json(&v):
		return a.String()
	case v.Active:
		return "active"
	default:
		return "inactive"
	}
}

// clientCredentials gets an access token for c from base.
func clientCredentials(base string, c oauthClient) (string, answer) {
	a := postForm(base+"/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, c.ID, c.Secret)
	var v struct {
		AccessToken string `json:"access_token"`
	}
	if a.status != http.StatusOK || !a.json(&v) || v.AccessToken == "" {
		return "", a
	}
	return v.AccessToken, a
}

// waitFor polls cond every 5 ms until it returns true and returns how long
// that took; it fails the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
