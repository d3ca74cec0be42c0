package bench

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// gatehouseBinary builds cmd/gatehouse once per test binary run.
func gatehouseBinary(b *testing.B) string {
	b.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-bench-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gatehouse")
		// Built in the product's own module, with its own go.sum.
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/gatehouse")
		cmd.Dir = ".."
		cmd.Stderr = os.Stderr
		buildErr = cmd.Run()
	})
	if buildErr != nil {
		b.Fatalf("build gatehouse: %v", buildErr)
	}
	return binPath
}

func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) (int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	return 0, sc.Err()
}

// BenchmarkServeStartup starts `gatehouse serve` on a fresh SQLite data dir
// and measures the time until /readyz answers 200 (which includes creating
// the store, migrating it and generating the first ES256, RS256 and EdDSA
// keys), then the resident memory after a second of idling. Targets: ready
// in under 1 s, idle RSS under 40 MiB.
func BenchmarkServeStartup(b *testing.B) {
	bin := gatehouseBinary(b)
	var totalReady time.Duration
	var maxRSS int
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		addr := freeAddr(b)
		cmd := exec.Command(bin, "serve", "--addr", addr, "--data", filepath.Join(dir, "data"), "--log-level", "warn")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(start) > 30*time.Second {
				cmd.Process.Kill()
				b.Fatal("not ready after 30 s")
			}
			time.Sleep(2 * time.Millisecond)
		}
		totalReady += time.Since(start)
		time.Sleep(time.Second)
		rss, err := rssKiB(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		maxRSS = max(maxRSS, rss)
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("serve exited with %v after SIGINT", err)
		}
	}
	b.ReportMetric(float64(totalReady.Milliseconds())/float64(b.N), "ms-to-ready")
	b.ReportMetric(float64(maxRSS)/1024, "MiB-idle-RSS")
}
