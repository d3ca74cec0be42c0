package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// verifyAdminToken is the admin token of the benchmark server; the
// verification endpoint accepts it as the calling service's credential.
const verifyAdminToken = "bench-admin-token-0123456789abcdef"

// startVerifyServer starts `gatehouse serve` on a fresh SQLite store holding
// one API key (created offline with `gatehouse apikey create`) and returns
// the server's base URL and the key.
func startVerifyServer(b *testing.B) (base, key string) {
	b.Helper()
	bin := gatehouseBinary(b)
	data := filepath.Join(b.TempDir(), "data")
	out, err := exec.Command(bin, "apikey", "create", "--name", "bench", "--data", data, "--log-level", "warn", "--json").Output()
	if err != nil {
		b.Fatalf("apikey create: %v", err)
	}
	var created struct{ Key string }
	if err := json.Unmarshal(out, &created); err != nil || created.Key == "" {
		b.Fatalf("apikey create printed %q: %v", out, err)
	}
	addr := freeAddr(b)
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data", data, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "GATEHOUSE_ADMIN_TOKEN="+verifyAdminToken)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	base = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base, created.Key
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("server not ready after 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkVerifyEndpoint drives POST /apikeys/verify of a real `gatehouse
// serve` process on 127.0.0.1 with 64 concurrent keep-alive connections,
// each request carrying the key in X-API-Key, and reports verifications per
// second and latency percentiles. The load driver shares the machine's
// cores with the server. Target: at least 20,000 verifications/s.
func BenchmarkVerifyEndpoint(b *testing.B) {
	base, key := startVerifyServer(b)
	const workers = 64
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers,
		MaxConnsPerHost: workers, IdleConnTimeout: time.Minute}}
	verify := func() error {
		req, _ := http.NewRequest("POST", base+"/apikeys/verify", nil)
		req.Header.Set("Authorization", "Bearer "+verifyAdminToken)
		req.Header.Set("X-API-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"active":true`) {
			return fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return nil
	}
	for range workers { // open the connections and warm the server
		if err := verify(); err != nil {
			b.Fatal(err)
		}
	}

	var next atomic.Int64
	lat := make([][]time.Duration, workers)
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t := time.Now()
				if err := verify(); err != nil {
					failed.Store(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "verifications/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}
