package cli

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// serveGCPercent is the garbage collector's target for `gatehouse serve`
// when GOGC is not set: the heap may grow to 5× the live heap between
// collections instead of 2×.
//
// Why: a token request allocates about 9 KB (two thirds of it inside
// crypto/ecdsa's signer) on a live heap of a few MiB, so at 10,000+
// requests/s the default GOGC=100 collects dozens of times a second. Each
// cycle takes a quarter of the CPU while it runs, slows allocation with
// assists, and shrinks connection goroutines' stacks that the next request
// grows again; on two cores shared with the load generator that showed as
// throughput and, above all, as p99 latency. The price is memory: a few
// tens of MiB more under load, nothing at idle (the live heap is what
// stays).
const serveGCPercent = 400

// cgroupMemoryMax is the cgroup v2 memory limit of this process.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// tuneGC sets the garbage collector for a long-running server, unless the
// operator chose: GOGC in the environment keeps its value; otherwise the
// target is serveGCPercent. As a guard, when the process runs under a
// cgroup memory limit and GOMEMLIMIT is not set, the Go memory limit is
// set to 3/4 of the cgroup's, so the higher target never takes the heap
// into the container's OOM killer: near the limit the collector works as
// hard as it must. The runtime reads GOGC and GOMEMLIMIT from the process
// environment, so tuneGC does too.
func tuneGC() {
	cgroupMax, _ := os.ReadFile(cgroupMemoryMax)
	percent, limit := gcSettings(os.LookupEnv, string(cgroupMax))
	if percent > 0 {
		debug.SetGCPercent(percent)
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
}

// releaseStartupMemory returns the memory freed after start-up to the
// operating system at once. Start-up allocates far more than the server
// keeps (the argon2id hash of the dummy password alone takes 19 MiB), and
// the runtime would otherwise hand it back only gradually: without this,
// an idle server's RSS stayed above 40 MiB for minutes.
func releaseStartupMemory() {
	debug.FreeOSMemory()
}

// gcSettings returns the GC percent and memory limit (bytes) tuneGC sets,
// 0 for "leave as is", given the environment and the contents of the
// cgroup's memory.max ("max", a number of bytes, or empty).
func gcSettings(lookup func(string) (string, bool), cgroupMax string) (percent int, limit int64) {
	if _, ok := lookup("GOGC"); !ok {
		percent = serveGCPercent
	}
	if _, ok := lookup("GOMEMLIMIT"); !ok {
		if n, err := strconv.ParseInt(strings.TrimSpace(cgroupMax), 10, 64); err == nil && n > 0 {
			limit = n / 4 * 3
		}
	}
	return percent, limit
}
