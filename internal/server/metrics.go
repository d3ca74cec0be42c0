package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
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
