package keyauth

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// reportPercentiles times each call of fn separately and reports the
// median and 99th percentile next to the mean.
func reportPercentiles(b *testing.B, fn func(i int)) {
	b.Helper()
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		fn(i)
		d = append(d, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(d)
	if len(d) > 0 {
		b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
	}
}

// BenchmarkVerifyMalformed is the checksum rejection of a mistyped key,
// through the whole Verify path (log line and audit queue included).
func BenchmarkVerifyMalformed(b *testing.B) {
	f := newFixture(b, storetest.OpenSQLite(b))
	f.svc.log = discardLogger()
	_, key := f.create(b, Params{Name: "bench"})
	typo := key[:len(key)-1] + "x"
	ctx := context.Background()
	b.ReportAllocs()
	reportPercentiles(b, func(int) {
		if _, r, _ := f.svc.Verify(ctx, typo, ipInside); r == "" {
			b.Fatal("typo accepted")
		}
	})
}

// BenchmarkVerifyWarm verifies a valid key whose record is cached.
func BenchmarkVerifyWarm(b *testing.B) {
	f := newFixture(b, storetest.OpenSQLite(b))
	_, key := f.create(b, Params{Name: "bench", Scopes: []string{"read", "write"}, AllowedIPs: []string{"10.0.0.0/8"}})
	ctx := context.Background()
	if _, r, err := f.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
		b.Fatal(r, err)
	}
	b.ReportAllocs()
	reportPercentiles(b, func(int) {
		if _, r, err := f.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
			b.Fatal(r, err)
		}
	})
}

// BenchmarkVerifyWarmParallel is the warm path under concurrency.
func BenchmarkVerifyWarmParallel(b *testing.B) {
	f := newFixture(b, storetest.OpenSQLite(b))
	_, key := f.create(b, Params{Name: "bench"})
	ctx := context.Background()
	f.svc.Verify(ctx, key, ipInside)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, r, err := f.svc.Verify(ctx, key, ipInside); r != "" || err != nil {
				b.Fatal(r, err)
			}
		}
	})
}

// BenchmarkVerifyColdSQLite verifies a valid key whose record is not
// cached: one indexed read from SQLite per call.
func BenchmarkVerifyColdSQLite(b *testing.B) {
	f := newFixture(b, storetest.OpenSQLite(b))
	_, key := f.create(b, Params{Name: "bench"})
	k, _ := f.svc.format.Parse(key)
	ctx := context.Background()
	b.ReportAllocs()
	reportPercentiles(b, func(int) {
		f.svc.cache.forget(k.ID)
		if _, r, err := f.svc.Verify(ctx, key, netip.Addr{}); r != "" || err != nil {
			b.Fatal(r, err)
		}
	})
}

// BenchmarkVerifyColdPostgres is the cold path on PostgreSQL.
func BenchmarkVerifyColdPostgres(b *testing.B) {
	f := newFixture(b, storetest.OpenPostgres(b))
	_, key := f.create(b, Params{Name: "bench"})
	k, _ := f.svc.format.Parse(key)
	ctx := context.Background()
	b.ReportAllocs()
	reportPercentiles(b, func(int) {
		f.svc.cache.forget(k.ID)
		if _, r, err := f.svc.Verify(ctx, key, netip.Addr{}); r != "" || err != nil {
			b.Fatal(r, err)
		}
	})
}
