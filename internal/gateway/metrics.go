package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-dev/gatehouse/guard"
)

// metrics are the gateway's Prometheus metrics.
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	upstream  *prometheus.HistogramVec
	exchanges *prometheus.CounterVec
	hits      prometheus.Counter
}

func newMetrics(g *guard.Guard, routes func() float64) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_gateway_requests_total",
			Help: "Requests answered by the gateway, by route path prefix and status code.",
		}, []string{"route", "code"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_gateway_upstream_seconds",
			Help:    "Time from forwarding a request to the upstream's response headers, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_gateway_token_exchanges_total",
			Help: "Token-exchange calls to Gatehouse for internal tokens, by outcome (ok, refused, error).",
		}, []string{"outcome"}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_gateway_internal_token_cache_hits_total",
			Help: "Internal tokens answered from the cache without an exchange call.",
		}),
	}
	m.registry.MustRegister(m.requests, m.upstream, m.exchanges, m.hits,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_gateway_revocation_feed_up",
			Help: "1 while the revocation feed from Gatehouse is connected; while 0, cache lifetimes bound how long a revoked credential is accepted.",
		}, func() float64 {
			if g.FeedStatus().Connected {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gatehouse_gateway_revocation_feed_events_total",
			Help: "Revocation feed events applied.",
		}, func() float64 { return float64(g.FeedStatus().Events) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gatehouse_gateway_revocation_feed_failures_total",
			Help: "Revocation feed connection attempts that failed and streams that ended.",
		}, func() float64 { return float64(g.FeedStatus().Failures) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_gateway_routes",
			Help: "Routes in the configuration being served.",
		}, routes),
	)
	for _, o := range []string{"ok", "refused", "error"} {
		m.exchanges.WithLabelValues(o)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
