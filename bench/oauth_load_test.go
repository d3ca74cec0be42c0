package bench

// Load harness for the authorization server's machine-to-machine
// endpoints: a Go load driver with keep-alive connections and 64 concurrent
// workers against `gatehouse serve` on 127.0.0.1 (the server and the driver
// share the machine's cores). Each benchmark iteration is one request; the
// benchmark reports requests per second and latency percentiles.
//
//	cd bench && go test -run '^$' -bench 'Load' -benchtime 100000x
//
// The server's own CPU profile comes from the in-process benchmarks of
// internal/oauth (BenchmarkTokenEndpoint and friends) with -cpuprofile.
//
// PostgreSQL runs use $GATEHOUSE_TEST_POSTGRES (a fresh schema per run,
// created and dropped with psql) and are skipped without it.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadConcurrency is the number of concurrent workers, each with its own
// keep-alive connection.
const loadConcurrency = 64

// loadServer is a running Gatehouse for a load run.
type loadServer struct {
	base string   // http://127.0.0.1:port
	args []string // store flags, shared by serve and the CLI
	bin  string
}

// startLoadServer starts gatehouse serve for the database named by db
// ("sqlite" or "postgres") and stops it when the benchmark ends.
func startLoadServer(b *testing.B, db string) *loadServer {
	b.Helper()
	data := filepath.Join(b.TempDir(), "data")
	args := []string{"--data", data}
	if db == "postgres" {
		args = append(args, "--db", postgresSchema(b))
	}
	addr := freeAddr(b)
	s := &loadServer{base: "http://" + addr, args: args, bin: gatehouseBinary(b)}
	cmd := exec.Command(s.bin, append([]string{"serve", "--addr", addr, "--log-level", "warn"}, args...)...)
	cmd.Env = loadEnv()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("server not ready after 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loadEnv is the environment of the server and CLI: a fixed master secret
// (so no generated-secret warning) and nothing else from GATEHOUSE_*.
func loadEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			env = append(env, kv)
		}
	}
	return append(env, "GATEHOUSE_SECRET=bench-master-secret-0123456789abcdef")
}

// postgresSchema creates a fresh schema in the database named by
// $GATEHOUSE_TEST_POSTGRES with psql, drops it when the benchmark ends, and
// returns a URL that selects it. Without the variable the benchmark is
// skipped.
func postgresSchema(b *testing.B) string {
	base := os.Getenv("GATEHOUSE_TEST_POSTGRES")
	if base == "" {
		b.Skip("GATEHOUSE_TEST_POSTGRES is not set")
	}
	rnd := make([]byte, 8)
	rand.Read(rnd)
	schema := "bench_" + hex.EncodeToString(rnd)
	psql := func(stmt string) error {
		out, err := exec.Command("psql", base, "-qAtc", stmt).CombinedOutput()
		if err != nil {
			return fmt.Errorf("psql: %v: %s", err, out)
		}
		return nil
	}
	if err := psql("CREATE SCHEMA " + schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { psql("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal("GATEHOUSE_TEST_POSTGRES is not a URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// createClient registers a confidential client with the CLI, as an
// operator would, and returns its ID and secret.
func (s *loadServer) createClient(b *testing.B, extra ...string) (id, secret string) {
	b.Helper()
	args := append([]string{"client", "create", "--name", "load", "--grant-type", "client_credentials",
		"--scope", "read write", "--json", "--log-level", "warn"}, append(extra, s.args...)...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = loadEnv()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("gatehouse client create: %v", err)
	}
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal(out, &c); err != nil {
		b.Fatal(err)
	}
	return c.ID, c.Secret
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// getToken runs one client-credentials grant.
func (s *loadServer) getToken(b *testing.B, id, secret string) string {
	b.Helper()
	req, _ := http.NewRequest("POST", s.base+"/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth(id, secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		b.Fatalf("token: status %d, %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

// request describes one request of a load run.
type request struct {
	method, path string
	header       http.Header
	body         []byte
	// check inspects a response; it returns an error for a wrong answer.
	check func(status int, body []byte) error
}

// wire renders r as an HTTP/1.1 request for host, once, so the driver
// spends no time building requests.
func (r request) wire(host string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.method, r.path, host)
	for k, vs := range r.header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if r.body != nil || r.method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
	}
	b.WriteString("\r\n")
	b.Write(r.body)
	return b.Bytes()
}

// readResponse reads one HTTP/1.1 response (Content-Length or chunked
// body) from br into body, which it returns resliced.
func readResponse(br *bufio.Reader, body []byte) (status int, _ []byte, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, nil, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
	body = body[:0]
	switch {
	case chunked:
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return 0, nil, err
			}
			size, err := strconv.ParseInt(string(bytes.TrimRight(line, "\r\n")), 16, 32)
			if err != nil {
				return 0, nil, fmt.Errorf("bad chunk size %q", line)
			}
			if size == 0 {
				_, err = br.Discard(2)
				return status, body, err
			}
			body, err = appendN(br, body, int(size))
			if err != nil {
				return 0, nil, err
			}
			if _, err := br.Discard(2); err != nil {
				return 0, nil, err
			}
		}
	case length >= 0:
		body, err = appendN(br, body, length)
		return status, body, err
	}
	return 0, nil, errors.New("response without a length")
}

func appendN(br *bufio.Reader, b []byte, n int) ([]byte, error) {
	start := len(b)
	b = slices.Grow(b, n)[:start+n]
	_, err := io.ReadFull(br, b[start:])
	return b, err
}

// runLoad sends b.N requests (the i-th is next(i mod 1000)) from loadConcurrency
// workers and reports requests per second and the 50th and 99th latency
// percentiles. Like wrk, the driver is lean so that it leaves the CPU to the
// server: each worker keeps one HTTP/1.1 keep-alive connection, writes
// pre-rendered requests and parses only the status, the length and the
// body. Any error or wrong answer fails the benchmark.
func runLoad(b *testing.B, base string, next func(i int) request) {
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	// Render the requests up front: next(i) repeats with a period that
	// divides 1000 (one request, or a pool of 100 tokens).
	n := min(b.N, 1000)
	reqs := make([]request, n)
	wire := make([][]byte, n)
	for i := range n {
		reqs[i] = next(i)
		wire[i] = reqs[i].wire(u.Host)
	}
	conns := make([]net.Conn, loadConcurrency)
	for w := range conns {
		if conns[w], err = net.Dial("tcp", u.Host); err != nil {
			b.Fatal(err)
		}
		defer conns[w].Close()
	}

	var counter atomic.Int64
	var failed atomic.Value
	lat := make([][]time.Duration, loadConcurrency)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range loadConcurrency {
		wg.Go(func() {
			conn := conns[w]
			br := bufio.NewReaderSize(conn, 16<<10)
			body := make([]byte, 0, 4096)
			lat[w] = make([]time.Duration, 0, b.N/loadConcurrency+1)
			for {
				i := int(counter.Add(1)) - 1
				if i >= b.N || failed.Load() != nil {
					return
				}
				k := i % len(reqs)
				t0 := time.Now()
				if _, err := conn.Write(wire[k]); err != nil {
					failed.Store(err)
					return
				}
				status, got, err := readResponse(br, body)
				if err != nil {
					failed.Store(err)
					return
				}
				body = got
				lat[w] = append(lat[w], time.Since(t0))
				if check := reqs[k].check; check != nil {
					if err := check(status, got); err != nil {
						failed.Store(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatalf("load run failed: %v", err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // per-request time is meaningless with 64 workers
}

func wantStatus(want int, mustContain string) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != want || !bytes.Contains(body, []byte(mustContain)) {
			return fmt.Errorf("status %d, body %.200s; want %d containing %q", status, body, want, mustContain)
		}
		return nil
	}
}

func backendsFor(b *testing.B, fn func(b *testing.B, db string)) {
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) { fn(b, db) })
	}
}

// BenchmarkLoad runs the load harness against the client-credentials
// grant, JWT introspection, discovery and the JWKS. Targets at concurrency
// 64: client credentials >= 10,000/s with p99 < 10 ms on SQLite, >= 5,000/s
// on PostgreSQL; JWT introspection >= 15,000/s; discovery and JWKS >=
// 30,000/s.
func BenchmarkLoad(b *testing.B) {
	b.Run("ClientCredentials", func(b *testing.B) {
		backendsFor(b, func(b *testing.B, db string) {
			s := startLoadServer(b, db)
			id, secret := s.createClient(b)
			rq := request{method: "POST", path: "/token", body: []byte("grant_type=client_credentials&scope=read"),
				header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {basicAuth(id, secret)}},
				check:  wantStatus(200, `"access_token"`)}
			runLoad(b, s.base, func(int) request { return rq })
		})
	})
	b.Run("IntrospectJWT", func(b *testing.B) {
		backendsFor(b, func(b *testing.B, db string) {
			s := startLoadServer(b, db)
			id, secret := s.createClient(b, "--audience", "https://api.example")
			// A gateway introspects the tokens of its current callers: a
			// pool of 100 live tokens, each seen many times.
			toks := make([][]byte, 100)
			for i := range toks {
				toks[i] = []byte("token=" + s.getToken(b, id, secret))
			}
			hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {basicAuth(id, secret)}}
			check := wantStatus(200, `"active":true`)
			runLoad(b, s.base, func(i int) request {
				return request{method: "POST", path: "/introspect", body: toks[i%len(toks)], header: hdr, check: check}
			})
		})
	})
	for _, ep := range []struct{ name, path, want string }{
		{"Discovery", "/.well-known/openid-configuration", `"issuer"`},
		{"JWKS", "/.well-known/jwks.json", `"keys"`},
	} {
		b.Run(ep.name, func(b *testing.B) {
			s := startLoadServer(b, "sqlite")
			rq := request{method: "GET", path: ep.path, check: wantStatus(200, ep.want)}
			runLoad(b, s.base, func(int) request { return rq })
		})
	}
}
