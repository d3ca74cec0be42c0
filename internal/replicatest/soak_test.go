package replicatest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// Environment variables of the soak.
const (
	// envSoak is the soak's duration (e.g. "10m"); unset: the short CI form.
	envSoak = "GATEHOUSE_SOAK"
	// envSoakRate is the total request rate (requests/s) the scheduler aims at.
	envSoakRate = "GATEHOUSE_SOAK_RATE"
	// envSoakWorkers is the size of the worker pool (default from the rate).
	envSoakWorkers = "GATEHOUSE_SOAK_WORKERS"
	// envSoakDB is "sqlite" (default) or "postgres" (a fresh schema in
	// $GATEHOUSE_TEST_POSTGRES).
	envSoakDB = "GATEHOUSE_SOAK_DB"
)

// Defaults of the CI form: short and modest, so it stays stable on a
// loaded 2-core machine.
const (
	soakCIDuration = 15 * time.Second
	soakCIRate     = 1000
)

// Resource-growth bounds, checked between two quiescent moments: the end
// of the warm-up and the end of the soak. At both the load has stopped,
// every in-flight request has finished and the load's connections are
// closed, so what the server still holds is its fixed background work
// (listener, housekeeping, change feed, database pool) plus whatever leaked.
//
//   - Goroutines: at most +maxGoroutineGrowth. Noise is a handful (a
//     database connection opened or closed by the pool, a timer-started
//     goroutine); a leak of one goroutine per request, per connection or
//     even per 10,000 requests passes 20 within a minute at the long form's
//     rate.
//   - RSS: at most 1.5× the baseline plus 16 MiB. The baseline is taken
//     after the warm-up, when the heap has already grown to its steady size
//     under the same load; what follows can add fragmentation and runtime
//     spans, not half again. A leak of 100 bytes per request at 10,000/s
//     adds over 500 MiB in ten minutes.
//   - Heap: at most 1.5× plus 32 MiB on the heap goal
//     (go_memstats_next_gc_bytes), which the runtime sets after each
//     collection from the heap it found live. The heap in use is logged,
//     not checked: `gatehouse serve` runs with GOGC=400, so at any moment
//     it lies anywhere between the live heap and 5× it, and two readings
//     differ by more than any fair bound without anything leaking. As the
//     goal is 5× the live heap, the slack is twice the RSS's: about 6 MiB
//     of live objects. That is room for the one bounded thing that is
//     still filling after a short warm-up, /introspect's verified-token
//     cache (10,000 tokens, about 4 MiB: every grant makes a new token, so
//     at 1,500 requests/s the heap goal climbs from 21 to 42 MiB over the
//     first 40 s and then stays there, on both stores), while a leak of
//     even 10 bytes per request breaks it within the long form, where
//     that cache is full seconds into the warm-up.
//
// The CI form (about 13,000 requests) only catches gross leaks; the long
// form is the real test.
const (
	maxGoroutineGrowth = 20
	maxGrowthFactor    = 1.5
	maxGrowthSlack     = 16 << 20
	maxHeapGoalSlack   = 32 << 20
)

// lateAfter is how long after its scheduled time a request may start
// before it counts as late.
const lateAfter = 50 * time.Millisecond

// soakKind is a kind of request of the soak's traffic.
type soakKind int

const (
	kindGrant      soakKind = iota // client-credentials grant
	kindRefresh                    // refresh-token rotation
	kindIntrospect                 // /introspect of a JWT access token
	kindKey                        // /apikeys/verify of an API key
	kindJWKS                       // JWKS or discovery document
	numKinds
)

var kindNames = [numKinds]string{"grant", "refresh", "introspect", "apikey", "jwks"}

// soakMix is the order in which kinds are sent, over and over: 30% grants,
// 10% refreshes, 30% introspection, 25% key checks, 5% JWKS/discovery,
// interleaved so every second sees the mix.
var soakMix = [20]soakKind{
	kindGrant, kindIntrospect, kindKey, kindGrant, kindIntrospect,
	kindRefresh, kindKey, kindGrant, kindIntrospect, kindKey,
	kindGrant, kindIntrospect, kindKey, kindJWKS, kindGrant,
	kindIntrospect, kindRefresh, kindKey, kindGrant, kindIntrospect,
}

// soakConfig is what the environment asks of the soak.
type soakConfig struct {
	duration time.Duration
	rate     float64
	workers  int
	db       string
}

func soakConfigFromEnv(t *testing.T) soakConfig {
	t.Helper()
	cfg := soakConfig{duration: soakCIDuration, rate: soakCIRate, db: "sqlite"}
	if s := os.Getenv(envSoak); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 10*time.Second {
			t.Fatalf("%s=%q: want a duration of at least 10s, like 10m", envSoak, s)
		}
		cfg.duration = d
	}
	if s := os.Getenv(envSoakRate); s != "" {
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r < 20 || r > 1e6 {
			t.Fatalf("%s=%q: want requests per second, 20 to 1000000", envSoakRate, s)
		}
		cfg.rate = r
	}
	// Enough workers for the rate at a few milliseconds per request, with
	// room for pauses; each keeps a refresh chain, obtained at set-up.
	cfg.workers = min(max(int(cfg.rate/50), 32), 256)
	if s := os.Getenv(envSoakWorkers); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 2000 {
			t.Fatalf("%s=%q: want a number of workers, 1 to 2000", envSoakWorkers, s)
		}
		cfg.workers = n
	}
	switch s := os.Getenv(envSoakDB); s {
	case "", "sqlite":
	case "postgres":
		cfg.db = s
	default:
		t.Fatalf("%s=%q: want sqlite or postgres", envSoakDB, s)
	}
	return cfg
}

// TestSoak sends mixed traffic at a fixed rate to one `gatehouse serve`
// process and fails on any request that does not get its expected 200, or
// on growth of the server's goroutines or memory between the end of the
// warm-up and the end (see maxGoroutineGrowth). GATEHOUSE_SOAK sets the
// duration (default 15 s), GATEHOUSE_SOAK_RATE the rate (default 1,000/s),
// GATEHOUSE_SOAK_DB=postgres the store. See RELIABILITY.md.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gatehouse process and loads it")
	}
	cfg := soakConfigFromEnv(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < cfg.duration+time.Minute {
		t.Fatalf("the soak takes %v and set-up; the test deadline is in %v: pass -timeout %v",
			cfg.duration, time.Until(dl).Round(time.Second), (cfg.duration + 5*time.Minute).Round(time.Minute))
	}
	db := storetest.SQLiteURL(t)
	if cfg.db == "postgres" {
		db = storetest.PostgresURL(t)
	}
	c := newCluster(t, db)
	p := c.serve("gatehouse")
	s := newSoak(t, c, p.Base, cfg)

	warmup := max(cfg.duration/10, 5*time.Second)
	t.Logf("soak: %v on %s at %.0f requests/s, %d workers, warm-up %v", cfg.duration, cfg.db, cfg.rate, cfg.workers, warmup)
	s.warmUp(t, warmup)
	start := s.quiesce(t)
	s.logSample(t, "start", start)
	s.run(t, cfg.duration-warmup, min(30*time.Second, max((cfg.duration-warmup)/4, time.Second)))
	end := s.quiesce(t)
	// A connection's goroutine may take a moment to notice the close on a
	// loaded machine: give the count a generous while to come down.
	for deadline := time.Now().Add(10 * time.Second); end.goroutines > start.goroutines+maxGoroutineGrowth && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		end = s.mustResources(t)
	}
	s.logSample(t, "end", end)
	s.stop()
	t.Log("soak summary:\n" + s.summary(start, end))

	errs := s.errs.total()
	if errs > 0 {
		t.Errorf("%d requests failed; the first:\n%s", errs, strings.Join(s.errs.first, "\n"))
	}
	if s.completed() == 0 {
		t.Errorf("no request completed")
	}
	if end.goroutines > start.goroutines+maxGoroutineGrowth {
		t.Errorf("server goroutines grew from %.0f to %.0f (allowed +%d)", start.goroutines, end.goroutines, maxGoroutineGrowth)
	}
	if limit := start.rss*maxGrowthFactor + maxGrowthSlack; end.rss > limit {
		t.Errorf("server RSS grew from %s to %s (allowed %s)", mib(start.rss), mib(end.rss), mib(limit))
	}
	if limit := start.heapGoal*maxGrowthFactor + maxHeapGoalSlack; end.heapGoal > limit {
		t.Errorf("server heap goal grew from %s to %s (allowed %s)", mib(start.heapGoal), mib(end.heapGoal), mib(limit))
	}
}

func mib(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

// soak is the load driver: a pacer that schedules requests at a fixed rate
// onto a bounded pool of workers (open loop: a request that finds the pool
// and its queue full is dropped and counted, the pacer never slows down).
type soak struct {
	base     string
	tr       *http.Transport
	hc       *http.Client
	metricsC *http.Client
	m2m      oauthClient
	flow     oauthClient
	keys     []string
	token    atomic.Pointer[string] // a recent access token, for /introspect
	rate     float64
	began    time.Time

	jobs    chan soakJob
	pending sync.WaitGroup // scheduled requests not yet finished
	workers sync.WaitGroup
	stats   []*workerStats
	errs    soakErrors

	seq     uint64
	dropped int           // requests dropped because the pool and its queue were full
	loadFor time.Duration // time spent sending load
	series  []string      // resource samples, for the summary
}

// soakJob is one scheduled request.
type soakJob struct {
	seq uint64
	due time.Time
}

// workerStats is what one worker saw; read only after the workers ended.
type workerStats struct {
	n    [numKinds]int
	lat  [numKinds]latencyHist
	late int
}

func newSoak(t *testing.T, c *cluster, base string, cfg soakConfig) *soak {
	t.Helper()
	tr := &http.Transport{
		MaxIdleConnsPerHost: cfg.workers,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	s := &soak{
		base:     base,
		tr:       tr,
		hc:       &http.Client{Transport: tr, Timeout: client.Timeout, CheckRedirect: client.CheckRedirect},
		metricsC: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
		rate:     cfg.rate,
		jobs:     make(chan soakJob, cfg.workers),
	}
	t.Cleanup(s.stop)

	createFlowUser(c)
	s.flow = createClient(t, base, codeFlowClientBody)
	s.m2m = createClient(t, base, ccClientBody)
	for i := range 16 {
		var k apiKey
		a := adminJSON("POST", base+"/admin/apikeys", fmt.Sprintf(`{"name":"soak-%d","owner":"soak","scopes":["read"]}`, i))
		if a.status != http.StatusCreated || !a.json(&k) || k.Key == "" {
			t.Fatalf("create API key: %v", a)
		}
		s.keys = append(s.keys, k.Key)
	}
	tok, a := clientCredentials(base, s.m2m)
	if tok == "" {
		t.Fatalf("client-credentials grant: %v", a)
	}
	s.token.Store(&tok)

	// One refresh chain per worker, from the code flow of one browser (it
	// logs in and consents once).
	b := newBrowser(t, base, 1)
	chains := make([]string, cfg.workers)
	for i := range chains {
		code, verifier, _ := b.authorize(s.flow)
		tk, a := exchangeCode(base, s.flow, code, verifier)
		if a.status != http.StatusOK || tk.RefreshToken == "" {
			t.Fatalf("code exchange: %v", a)
		}
		chains[i] = tk.RefreshToken
	}
	s.began = time.Now()
	for _, rt := range chains {
		st := &workerStats{}
		s.stats = append(s.stats, st)
		s.workers.Go(func() { s.work(st, rt) })
	}
	return s
}

// minWarmUpGCs is how many garbage collections the warm-up must see.
// The set-up logs a user in (argon2id: 19 MiB) and the collection then
// sets a heap goal five times that; until the load has been collected a
// couple of times, the heap goal and RSS would be a baseline that hides a
// leak instead of the steady state.
const minWarmUpGCs = 2

// warmUp sends load for d, and then on, a second at a time (at most a
// minute), until the server has collected garbage minWarmUpGCs times.
func (s *soak) warmUp(t *testing.T, d time.Duration) {
	t.Helper()
	before := s.mustResources(t).gcs
	s.run(t, d, 0)
	for extra := 0; s.mustResources(t).gcs < before+minWarmUpGCs; extra++ {
		if extra == 60 {
			t.Fatalf("the server did not collect garbage %d times in a warm-up of %v", minWarmUpGCs, d+time.Minute)
		}
		s.run(t, time.Second, 0)
		if extra == 0 {
			t.Logf("soak: warm-up extended until the server has collected garbage %d times", minWarmUpGCs)
		}
	}
}

// stop ends the workers; it may be called more than once.
func (s *soak) stop() {
	if s.jobs != nil {
		close(s.jobs)
		s.workers.Wait()
		s.jobs = nil
		s.tr.CloseIdleConnections()
	}
}

// run sends load for d and waits until every request it scheduled has
// finished. With every > 0 it samples the server's resources that often.
func (s *soak) run(t *testing.T, d, every time.Duration) {
	done := make(chan struct{})
	var sampler sync.WaitGroup
	if every > 0 {
		sampler.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					r, err := s.resources()
					if err != nil {
						s.errs.add(-1, "GET /metrics: "+err.Error())
						continue
					}
					t.Log("soak resources: " + s.addSample("", r))
				}
			}
		})
	}
	start := time.Now()
	s.pace(d)
	s.pending.Wait()
	s.loadFor += time.Since(start)
	close(done)
	sampler.Wait()
}

// pace schedules requests at s.rate for d. It wakes every millisecond
// and hands out every request due by then, each with its due time, so a
// late wake-up shows as late requests, not as a lower rate.
func (s *soak) pace(d time.Duration) {
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for sent := int64(0); ; {
		elapsed := min(time.Since(start), d)
		for due := int64(elapsed.Seconds() * s.rate); sent < due; sent++ {
			j := soakJob{seq: s.seq, due: start.Add(time.Duration(float64(sent) / s.rate * float64(time.Second)))}
			s.seq++
			s.pending.Add(1)
			select {
			case s.jobs <- j:
			default:
				s.pending.Done()
				s.dropped++
			}
		}
		if elapsed >= d {
			return
		}
		<-tick.C
	}
}

// work runs the requests it is given; rt is the worker's refresh chain.
func (s *soak) work(st *workerStats, rt string) {
	for j := range s.jobs {
		begin := time.Now()
		if begin.Sub(j.due) > lateAfter {
			st.late++
		}
		kind := soakMix[j.seq%uint64(len(soakMix))]
		var err string
		switch kind {
		case kindGrant:
			err = s.grant()
		case kindRefresh:
			var next string
			next, err = s.refresh(rt)
			if err == "" {
				rt = next
			}
		case kindIntrospect:
			err = s.introspect()
		case kindKey:
			err = s.verifyKey(s.keys[j.seq%uint64(len(s.keys))])
		case kindJWKS:
			path := "/.well-known/jwks.json"
			if j.seq/uint64(len(soakMix))%2 == 1 {
				path = "/.well-known/openid-configuration"
			}
			err = s.getJSON(path)
		}
		st.lat[kind].add(time.Since(begin))
		st.n[kind]++
		if err != "" {
			s.errs.add(kind, err)
		}
		s.pending.Done()
	}
}

// send sends a request on the soak's connections; auth sets its
// credentials.
func (s *soak) send(method, path string, form url.Values, auth func(*http.Request)) answer {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.base+path, body)
	if err != nil {
		return answer{err: err}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if auth != nil {
		auth(req)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// basic authenticates as c with client_secret_basic.
func basic(c oauthClient) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret)) }
}

// failure describes an unexpected answer without showing anything a 200
// carries (tokens).
func failure(what string, a answer, why string) string {
	switch {
	case a.err != nil:
		return what + ": " + a.err.Error()
	case a.status != http.StatusOK:
		return what + ": " + a.String() // an error document: no secrets
	default:
		return fmt.Sprintf("%s: 200 but %s", what, why)
	}
}

func (s *soak) grant() string {
	a := s.send("POST", "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, basic(s.m2m))
	var tk tokens
	if a.err != nil || a.status != http.StatusOK || !a.json(&tk) || tk.AccessToken == "" {
		return failure("client-credentials grant", a, "no access token")
	}
	s.token.Store(&tk.AccessToken)
	return ""
}

func (s *soak) refresh(rt string) (string, string) {
	a := s.send("POST", "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, basic(s.flow))
	var tk tokens
	if a.err != nil || a.status != http.StatusOK || !a.json(&tk) || tk.RefreshToken == "" || tk.AccessToken == "" {
		return "", failure("refresh", a, "no new refresh or access token")
	}
	return tk.RefreshToken, ""
}

func (s *soak) introspect() string {
	a := s.send("POST", "/introspect", url.Values{"token": {*s.token.Load()}}, basic(s.m2m))
	var v struct{ Active bool }
	if a.err != nil || a.status != http.StatusOK || !a.json(&v) || !v.Active {
		return failure("introspect", a, "not active")
	}
	return ""
}

func (s *soak) verifyKey(key string) string {
	a := s.send("POST", "/apikeys/verify", nil, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+adminToken)
		r.Header.Set("X-API-Key", key)
	})
	var v struct{ Active bool }
	if a.err != nil || a.status != http.StatusOK || !a.json(&v) || !v.Active {
		return failure("verify API key", a, "not active")
	}
	return ""
}

func (s *soak) getJSON(path string) string {
	a := s.send("GET", path, nil, nil)
	if a.err != nil || a.status != http.StatusOK || !json.Valid(a.body) {
		return failure("GET "+path, a, "not JSON")
	}
	return ""
}

// soakErrors counts failed requests and keeps the first few descriptions.
type soakErrors struct {
	mu    sync.Mutex
	n     [numKinds + 1]int // the last: metrics scrapes
	first []string
}

// add records a failure of a request of kind k (-1: a metrics scrape).
func (e *soakErrors) add(k soakKind, what string) {
	if k < 0 {
		k = numKinds
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n[k]++
	if len(e.first) < 10 {
		e.first = append(e.first, "  "+what)
	}
}

func (e *soakErrors) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, v := range e.n {
		n += v
	}
	return n
}

// resources is what the server's /metrics says about its resources.
type resources struct {
	goroutines float64 // go_goroutines
	rss        float64 // process_resident_memory_bytes
	heapInuse  float64 // go_memstats_heap_inuse_bytes
	heapGoal   float64 // go_memstats_next_gc_bytes
	gcs        float64 // go_gc_duration_seconds_count: collections so far
}

// resources reads the server's /metrics.
func (s *soak) resources() (resources, error) {
	resp, err := s.metricsC.Get(s.base + "/metrics")
	if err != nil {
		return resources{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resources{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	return parseResources(resp.Body)
}

// parseResources picks the resource gauges out of a Prometheus text
// exposition.
func parseResources(r io.Reader) (resources, error) {
	var res resources
	want := map[string]*float64{
		"go_goroutines":                 &res.goroutines,
		"process_resident_memory_bytes": &res.rss,
		"go_memstats_heap_inuse_bytes":  &res.heapInuse,
		"go_memstats_next_gc_bytes":     &res.heapGoal,
		"go_gc_duration_seconds_count":  &res.gcs,
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return res, fmt.Errorf("metric %s: %w", name, err)
			}
			*p = v
			delete(want, name)
		}
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	for name := range want {
		return res, fmt.Errorf("metric %s is not exposed", name)
	}
	return res, nil
}

func (s *soak) mustResources(t *testing.T) resources {
	t.Helper()
	r, err := s.resources()
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return r
}

// quiesce waits until the load's requests are over, closes its
// connections and reads the server's resources once its goroutine count
// holds still (at most 5 s).
func (s *soak) quiesce(t *testing.T) resources {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	s.tr.CloseIdleConnections()
	r := s.mustResources(t)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		next := s.mustResources(t)
		if next.goroutines == r.goroutines {
			return next
		}
		r = next
	}
	return r
}

// addSample records a resource reading and returns it as a line.
func (s *soak) addSample(label string, r resources) string {
	line := fmt.Sprintf("t=%-6v goroutines=%-4.0f rss=%-10s heap_inuse=%-10s heap_goal=%s %s",
		time.Since(s.began).Round(time.Second), r.goroutines, mib(r.rss), mib(r.heapInuse), mib(r.heapGoal), label)
	s.series = append(s.series, line) // only the sampler appends while load runs
	return line
}

func (s *soak) logSample(t *testing.T, label string, r resources) {
	t.Log("soak resources: " + s.addSample("("+label+", idle)", r))
}

// completed is the number of requests that finished; call after stop.
func (s *soak) completed() int {
	n := 0
	for _, st := range s.stats {
		for _, v := range st.n {
			n += v
		}
	}
	return n
}

// summary is the soak's report; call after stop.
func (s *soak) summary(start, end resources) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "kind\trequests\tshare\tp50\tp99\tmax≤\terrors\t")
	total, late := s.completed(), 0
	for _, st := range s.stats {
		late += st.late
	}
	for k := range numKinds {
		var h latencyHist
		n := 0
		for _, st := range s.stats {
			h.merge(&st.lat[k])
			n += st.n[k]
		}
		fmt.Fprintf(w, "%s\t%d\t%.1f%%\t%v\t%v\t%v\t%d\t\n", kindNames[k], n, 100*float64(n)/float64(max(total, 1)),
			h.quantile(0.5), h.quantile(0.99), h.quantile(1), s.errs.n[k])
	}
	w.Flush()
	fmt.Fprintf(&b, "load time %v (pauses for the idle readings excluded); target %.0f/s, achieved %.0f/s; %d requests, %d errors (+%d failed /metrics reads)\n",
		s.loadFor.Round(time.Millisecond), s.rate, float64(total)/s.loadFor.Seconds(), total, s.errs.total()-s.errs.n[numKinds], s.errs.n[numKinds])
	fmt.Fprintf(&b, "late: %d started more than %v after their scheduled time, %d dropped (pool of %d workers and its queue full)\n",
		late, lateAfter, s.dropped, len(s.stats))
	fmt.Fprintf(&b, "server at start / end (idle): goroutines %.0f / %.0f, RSS %s / %s, heap in use %s / %s, heap goal %s / %s\n",
		start.goroutines, end.goroutines, mib(start.rss), mib(end.rss), mib(start.heapInuse), mib(end.heapInuse), mib(start.heapGoal), mib(end.heapGoal))
	b.WriteString("resource samples:\n  " + strings.Join(s.series, "\n  "))
	return b.String()
}

// Latency histogram: logarithmic buckets 5% wide from 1 µs to about 26 s,
// so quantiles are exact to 5% in constant memory.
const (
	latBuckets = 350
	latGrowth  = 1.05
)

type latencyHist struct{ counts [latBuckets]uint32 }

func latBucket(d time.Duration) int {
	if d <= time.Microsecond {
		return 0
	}
	i := int(math.Log(float64(d)/float64(time.Microsecond)) / math.Log(latGrowth))
	return min(i, latBuckets-1)
}

// latUpper is the upper bound of bucket i.
func latUpper(i int) time.Duration {
	return time.Duration(float64(time.Microsecond) * math.Pow(latGrowth, float64(i+1)))
}

func (h *latencyHist) add(d time.Duration) { h.counts[latBucket(d)]++ }

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// quantile returns the upper bound of the bucket holding quantile q
// (0 when empty), rounded for reading.
func (h *latencyHist) quantile(q float64) time.Duration {
	var n uint64
	for _, c := range h.counts {
		n += uint64(c)
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= max(rank, 1) {
			d := latUpper(i)
			switch {
			case d >= 10*time.Millisecond:
				return d.Round(time.Millisecond)
			case d >= 10*time.Microsecond:
				return d.Round(time.Microsecond)
			}
			return d
		}
	}
	return latUpper(latBuckets - 1)
}
func TestParseResources(t *testing.T) {
	const full = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 18
go_gc_duration_seconds{quantile="0.5"} 0.0001
go_gc_duration_seconds_sum 0.01
go_gc_duration_seconds_count 7
go_memstats_heap_inuse_bytes 2.1e+07
go_memstats_next_gc_bytes 2.24e+07
process_resident_memory_bytes 6.3578112e+07
go_goroutines_other 99
`
	tests := []struct {
		name    string
		text    string
		want    resources
		wantErr string
	}{
		{"all", full, resources{goroutines: 18, rss: 6.3578112e+07, heapInuse: 2.1e+07, heapGoal: 2.24e+07, gcs: 7}, ""},
		{"missing", strings.ReplaceAll(full, "process_resident_memory_bytes", "x"), resources{}, "process_resident_memory_bytes is not exposed"},
		{"bad value", strings.ReplaceAll(full, "go_goroutines 18", "go_goroutines many"), resources{}, "metric go_goroutines"},
		{"empty", "", resources{}, "is not exposed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseResources(strings.NewReader(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestLatencyHist(t *testing.T) {
	var h, other latencyHist
	if got := h.quantile(0.5); got != 0 {
		t.Fatalf("empty quantile = %v, want 0", got)
	}
	for i := 1; i <= 98; i++ {
		h.add(time.Millisecond)
	}
	other.add(100 * time.Millisecond)
	other.add(3 * time.Second)
	h.merge(&other)
	within := func(got, want time.Duration) bool {
		return got >= want && float64(got) <= float64(want)*latGrowth*1.01
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, time.Millisecond},
		{0.5, time.Millisecond},
		{0.98, time.Millisecond},
		{0.99, 100 * time.Millisecond},
		{1, 3 * time.Second},
	}
	for _, tt := range tests {
		if got := h.quantile(tt.q); !within(got, tt.want) {
			t.Errorf("quantile(%v) = %v, want %v to 5%% above", tt.q, got, tt.want)
		}
	}
	if got := latBucket(time.Hour); got != latBuckets-1 {
		t.Errorf("bucket of an hour = %d, want the last, %d", got, latBuckets-1)
	}
}
