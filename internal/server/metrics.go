package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// metrics are the server's Prometheus collectors. Each Server has its own
// registry, so tests can run several servers in one process.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	// series caches the children of requests and latency by route and
	// status: looking them up by label values costs a few allocations,
	// which add up at tens of thousands of requests per second. Routes
	// are the mux's patterns and statuses a few codes, so it stays small.
	mu     sync.RWMutex
	series map[seriesKey]series

	storeLatency     [len(storeOps)]prometheus.Observer
	deleted          *prometheus.CounterVec // housekeeping, by table
	housekeepingRuns *prometheus.CounterVec
	feedLag          prometheus.Histogram
	appliedSeq       prometheus.Gauge
	appliedAt        prometheus.Gauge
}

type seriesKey struct {
	route  string
	status int
}

type series struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		series:   make(map[seriesKey]series),
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "code"}),
	}
	m.registry.MustRegister(m.requests, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerOperations()
	return m
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	key := seriesKey{route, status}
	m.mu.RLock()
	s, ok := m.series[key]
	m.mu.RUnlock()
	if !ok {
		code := strconv.Itoa(status)
		s = series{m.requests.WithLabelValues(route, code), m.latency.WithLabelValues(route, code)}
		m.mu.Lock()
		m.series[key] = s
		m.mu.Unlock()
	}
	s.requests.Inc()
	s.latency.Observe(d.Seconds())
}

// registerRateLimits adds the rate limiters' metrics: decisions by backend
// ("local": per process, with or without Redis; "redis": shared) and
// result, and with Redis whether limits have fallen back to per process
// and how many decisions did.
func (m *metrics) registerRateLimits(local *ratelimit.Local, shared *ratelimit.Redis) {
	decisions := func(backend, result string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "gatehouse_ratelimit_decisions_total",
			Help:        "Rate-limit decisions (API keys, clients) by backend and result.",
			ConstLabels: prometheus.Labels{"backend": backend, "result": result},
		}, f)
	}
	m.registry.MustRegister(
		decisions("local", "allowed", func() float64 { a, _ := local.Decisions(); return float64(a) }),
		decisions("local", "limited", func() float64 { _, l := local.Decisions(); return float64(l) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_ratelimit_fallback",
			Help: "1 while Redis is unreachable and rate limits are enforced per process, else 0.",
		}, func() float64 {
			if shared != nil && shared.Down() {
				return 1
			}
			return 0
		}),
	)
	if shared == nil {
		return
	}
	m.registry.MustRegister(
		decisions("redis", "allowed", func() float64 { a, _ := shared.Decisions(); return float64(a) }),
		decisions("redis", "limited", func() float64 { _, l := shared.Decisions(); return float64(l) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_fallbacks_total",
			Help: "Rate-limit and login-throttle decisions made per process because Redis failed or was down.",
		}, func() float64 { return float64(shared.Fallbacks()) }),
	)
}

// storeOps are the operation classes of the store latency histogram, in
// the order of storeLatency's children.
var storeOps = [...]string{store.OpRead, store.OpWrite, store.OpTx}

// registerOperations adds the operating signals that are not per request:
// store latency by operation class, rows deleted by housekeeping, and the
// change feed's lag. They are created before the store is opened, which
// reports to observeStore.
func (m *metrics) registerOperations() {
	storeLatency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gatehouse_store_operation_duration_seconds",
		Help:    "Store latency by operation class: read (a query), write (a statement), tx (a transaction with its commit).",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
	for i, op := range storeOps {
		m.storeLatency[i] = storeLatency.WithLabelValues(op)
	}
	m.deleted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_housekeeping_deleted_rows_total",
		Help: "Rows deleted by housekeeping (expired or past retention), by table.",
	}, []string{"table"})
	for _, t := range store.HousekeepingTables {
		m.deleted.WithLabelValues(t) // every table shows, at 0
	}
	m.housekeepingRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_housekeeping_runs_total",
		Help: "Housekeeping runs by result (ok, error).",
	}, []string{"result"})
	m.feedLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gatehouse_change_feed_lag_seconds",
		Help:    "Time from a change's commit (by the writer's clock) to when this process had applied it.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	m.appliedSeq = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gatehouse_change_feed_applied_seq",
		Help: "Sequence number of the newest change this process has applied.",
	})
	m.appliedAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gatehouse_change_feed_applied_change_timestamp_seconds",
		Help: "Commit time (Unix seconds) of the newest change this process has applied; time() minus it is the feed's age when idle writers are not the cause.",
	})
	m.registry.MustRegister(storeLatency, m.deleted, m.housekeepingRuns, m.feedLag, m.appliedSeq, m.appliedAt)
}

// observeStore is the store's Options.Observe hook. It allocates nothing.
func (m *metrics) observeStore(op string, d time.Duration) {
	for i, o := range storeOps {
		if o == op {
			m.storeLatency[i].Observe(d.Seconds())
			return
		}
	}
}

// housekept records one housekeeping run.
func (m *metrics) housekept(err error) {
	if err != nil {
		m.housekeepingRuns.WithLabelValues("error").Inc()
		return
	}
	m.housekeepingRuns.WithLabelValues("ok").Inc()
}

// applied records a batch of changes this process has applied at now.
func (m *metrics) applied(changes []store.Change, now time.Time) {
	if len(changes) == 0 {
		return
	}
	for _, c := range changes {
		m.feedLag.Observe(max(now.Sub(c.At), 0).Seconds())
	}
	last := changes[len(changes)-1]
	m.appliedSeq.Set(float64(last.Seq))
	m.appliedAt.Set(float64(last.At.UnixMilli()) / 1000)
}

// registerCaches adds hit and miss counters of the in-memory caches: each
// stats function returns the hits and misses so far.
func (m *metrics) registerCaches(caches map[string]func() (hits, misses uint64)) {
	for name, stats := range caches {
		m.registry.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "gatehouse_cache_requests_total",
				Help:        "Lookups in the in-memory caches (client: OAuth clients; apikey: API-key records) by result.",
				ConstLabels: prometheus.Labels{"cache": name, "result": "hit"},
			}, func() float64 { h, _ := stats(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "gatehouse_cache_requests_total",
				Help:        "Lookups in the in-memory caches (client: OAuth clients; apikey: API-key records) by result.",
				ConstLabels: prometheus.Labels{"cache": name, "result": "miss"},
			}, func() float64 { _, ms := stats(); return float64(ms) }),
		)
	}
}
