package console

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Sampling of the dashboard: the server's own metrics are read in-process
// every SampleInterval into a ring of the last sampleCount points (10
// minutes). The store's counts are read when the page is shown, at most
// every countsMaxAge.
const (
	SampleInterval = 5 * time.Second
	sampleCount    = 120
	countsMaxAge   = 10 * time.Second
)

// requestsMetric is the server's request counter (internal/server).
const requestsMetric = "gatehouse_http_requests_total"

// Routes whose requests the dashboard counts as token issuance and key
// verification (the mux patterns the server labels requests with).
const (
	tokenRoute  = "POST /token"
	verifyRoute = "POST /apikeys/verify"
)

// totals are the counters read at one instant.
type totals struct {
	at                                  time.Time
	requests, errors, tokens, verifieds float64
}

// point is one sample of the dashboard: rates per second over the
// interval before At.
type point struct {
	At                             time.Time
	Requests, Errors, Tokens, Keys float64
}

// sampler keeps the dashboard's ring of points. It is safe for concurrent
// use.
type sampler struct {
	g  prometheus.Gatherer
	mu sync.Mutex
	// ring holds up to sampleCount points, oldest first once full
	// (next is where the next one goes).
	ring []point
	next int
	last totals
}

// readTotals sums the request counter: all requests, 5xx answers,
// successful token responses and key verifications.
func readTotals(g prometheus.Gatherer, now time.Time) (totals, error) {
	mfs, err := g.Gather()
	if err != nil {
		return totals{}, fmt.Errorf("console: gather metrics: %w", err)
	}
	t := totals{at: now}
	for _, mf := range mfs {
		if mf.GetName() != requestsMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			var route, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			v := m.GetCounter().GetValue()
			t.requests += v
			if strings.HasPrefix(code, "5") {
				t.errors += v
			}
			if code == "200" && route == tokenRoute {
				t.tokens += v
			}
			if route == verifyRoute {
				t.verifieds += v
			}
		}
	}
	return t, nil
}

// sample reads the metrics once and appends a point (from the second
// reading on: a rate needs two).
func (s *sampler) sample(now time.Time) error {
	t, err := readTotals(s.g, now)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.last
	s.last = t
	if prev.at.IsZero() {
		return nil
	}
	secs := t.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return nil
	}
	rate := func(a, b float64) float64 { return math.Max(a-b, 0) / secs }
	p := point{At: t.at, Requests: rate(t.requests, prev.requests), Errors: rate(t.errors, prev.errors),
		Tokens: rate(t.tokens, prev.tokens), Keys: rate(t.verifieds, prev.verifieds)}
	if len(s.ring) < sampleCount {
		s.ring = append(s.ring, p)
		return nil
	}
	s.ring[s.next] = p
	s.next = (s.next + 1) % sampleCount
	return nil
}

// points returns the samples, oldest first.
func (s *sampler) points() []point {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]point, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

// Run samples the server's metrics every SampleInterval until ctx ends.
// Without Config.Metrics it returns at once.
func (c *Console) Run(ctx context.Context) {
	if c.sampler == nil {
		return
	}
	tick := time.NewTicker(SampleInterval)
	defer tick.Stop()
	for {
		if err := c.sampler.sample(c.now()); err != nil {
			c.log.Warn("console: dashboard sample", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// counts returns the store's counts, read again if older than
// countsMaxAge: a console left open on the dashboard does not count a
// large table on every reload.
func (c *Console) counts(ctx context.Context) (store.Counts, time.Time, error) {
	now := c.now()
	c.countsMu.Lock()
	defer c.countsMu.Unlock()
	if !c.countsAt.IsZero() && now.Sub(c.countsAt) < countsMaxAge && !now.Before(c.countsAt) {
		return c.countsCache, c.countsAt, nil
	}
	counts, err := c.st.Count(ctx, now)
	if err != nil {
		return store.Counts{}, time.Time{}, err
	}
	c.countsCache, c.countsAt = counts, now
	return counts, now, nil
}

// chart is one sparkline of the dashboard: an inline SVG polyline drawn
// on the server, so the page needs no script.
type chart struct {
	ID, Title, Unit string
	Now, Peak       string // the latest and the highest rate, formatted
	Points          string // the polyline's points, "x,y x,y ..."
	Empty           bool   // fewer than two samples so far
	Summary         string // the chart in words, for screen readers
}

// Size of a sparkline's viewBox.
const (
	chartWidth  = 300
	chartHeight = 60
)

// sparkline draws values (oldest first) into a chart.
func sparkline(id, title string, values []float64) chart {
	ch := chart{ID: id, Title: title, Unit: "per second", Empty: len(values) < 2}
	if len(values) == 0 {
		ch.Now, ch.Peak = "—", "—"
		ch.Summary = "No samples yet."
		return ch
	}
	peak := 0.0
	for _, v := range values {
		peak = math.Max(peak, v)
	}
	ch.Now, ch.Peak = formatRate(values[len(values)-1]), formatRate(peak)
	ch.Summary = fmt.Sprintf("%s: now %s per second, peak %s per second over the last %d samples.",
		title, ch.Now, ch.Peak, len(values))
	if ch.Empty {
		return ch
	}
	scale := 1.0
	if peak > 0 {
		scale = (chartHeight - 2) / peak
	}
	// The samples so far span the whole width, oldest at the left: a
	// server that started a minute ago still gets a readable chart.
	var b strings.Builder
	for i, v := range values {
		x := float64(i) * chartWidth / float64(len(values)-1)
		y := chartHeight - 1 - v*scale
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	ch.Points = b.String()
	return ch
}

// formatRate formats a rate for people: two significant decimals below
// 10, whole numbers above.
func formatRate(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

// dashboardData fills console_dashboard.html.
type dashboardData struct {
	Charts        []chart
	ErrorPercent  string // 5xx share of the requests in the last sample, "" without samples
	Counts        store.Counts
	CountsAt      time.Time // zero: not counted yet
	SampleSeconds int
	Sampling      bool // false when the console has no metrics to read
}

// dashboard is the console home: request and error rates, token issuance
// and key verification rates, and the store's counts.
func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, op Operator) {
	data := dashboardData{SampleSeconds: int(SampleInterval / time.Second), Sampling: c.sampler != nil}
	if c.sampler != nil {
		pts := c.sampler.points()
		series := func(f func(point) float64) []float64 {
			out := make([]float64, len(pts))
			for i, p := range pts {
				out[i] = f(p)
			}
			return out
		}
		data.Charts = []chart{
			sparkline("requests", "Requests", series(func(p point) float64 { return p.Requests })),
			sparkline("errors", "Server errors (5xx)", series(func(p point) float64 { return p.Errors })),
			sparkline("tokens", "Tokens issued", series(func(p point) float64 { return p.Tokens })),
			sparkline("verifications", "API key verifications", series(func(p point) float64 { return p.Keys })),
		}
		if n := len(pts); n > 0 && pts[n-1].Requests > 0 {
			data.ErrorPercent = strconv.FormatFloat(100*pts[n-1].Errors/pts[n-1].Requests, 'f', 1, 64)
		}
	}
	var err error
	if data.Counts, data.CountsAt, err = c.counts(r.Context()); err != nil {
		c.Fail(w, r, op, "dashboard: counts", err)
		return
	}
	c.Render(w, r, http.StatusOK, "dashboard", op, Page{Title: "Dashboard", Section: "dashboard", Data: data})
}
