package console

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSamplerRates(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: requestsMetric, Help: "h"}, []string{"route", "code"})
	reg.MustRegister(reqs, prometheus.NewCounter(prometheus.CounterOpts{Name: "other_total", Help: "h"}))
	s := &sampler{g: reg}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.sample(t0); err != nil || len(s.points()) != 0 {
		t.Fatalf("first sample: %v, %d points; want none (a rate needs two)", err, len(s.points()))
	}
	reqs.WithLabelValues(tokenRoute, "200").Add(20)
	reqs.WithLabelValues(tokenRoute, "400").Add(5)
	reqs.WithLabelValues(verifyRoute, "200").Add(10)
	reqs.WithLabelValues("GET /authorize", "500").Add(5)
	if err := s.sample(t0.Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	pts := s.points()
	want := point{At: t0.Add(5 * time.Second), Requests: 8, Errors: 1, Tokens: 4, Keys: 2}
	if len(pts) != 1 || pts[0] != want {
		t.Fatalf("points = %+v, want [%+v]", pts, want)
	}
	// The ring keeps the last sampleCount points, oldest first.
	for i := 2; i <= sampleCount+10; i++ {
		reqs.WithLabelValues("GET /x", "200").Add(float64(i))
		if err := s.sample(t0.Add(time.Duration(i) * 5 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	pts = s.points()
	if len(pts) != sampleCount || !pts[0].At.Equal(t0.Add(11*5*time.Second)) || pts[len(pts)-1].Requests != float64(sampleCount+10)/5 {
		t.Errorf("ring: %d points from %v to %+v", len(pts), pts[0].At, pts[len(pts)-1])
	}
	// A counter that went down (a restart) gives 0, not a negative rate.
	s2 := &sampler{g: reg, last: totals{at: t0, requests: 1e12}}
	if err := s2.sample(t0.Add(time.Second)); err != nil || s2.points()[0].Requests != 0 {
		t.Errorf("after a reset: %+v, %v", s2.points(), err)
	}
}

func TestSparkline(t *testing.T) {
	ch := sparkline("r", "Requests", []float64{0, 5, 10})
	if ch.Empty || ch.Now != "10" || ch.Peak != "10" || len(strings.Fields(ch.Points)) != 3 {
		t.Fatalf("sparkline = %+v", ch)
	}
	if ch.Points != "0.0,59.0 150.0,30.0 300.0,1.0" {
		t.Errorf("points %q: want the zero at the bottom left, the peak at the top right, the samples spread over the width", ch.Points)
	}
	if e := sparkline("r", "Requests", nil); !e.Empty || e.Points != "" || e.Now != "—" {
		t.Errorf("empty sparkline = %+v", e)
	}
	if z := sparkline("r", "Requests", []float64{0, 0}); strings.Contains(z.Points, "NaN") || strings.Contains(z.Points, "Inf") {
		t.Errorf("all-zero sparkline = %q", z.Points)
	}
}

func TestRunStops(t *testing.T) {
	c := &Console{sampler: &sampler{g: prometheus.NewRegistry()}, log: slog.New(slog.DiscardHandler), now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
