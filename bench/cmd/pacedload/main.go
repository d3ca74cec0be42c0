// Command pacedload is an open-loop HTTP load generator: it sends requests
// at a fixed rate over a fixed number of keep-alive connections and
// measures each request's latency from the moment it was *scheduled*, not
// the moment a connection became free to send it. A closed-loop tool such
// as wrk answers "how much can the server do" (every connection sends its
// next request as soon as the last answer arrives, so at saturation the
// latency is just in-flight requests / throughput); pacedload answers "how
// fast are the answers at this rate", and a server that falls behind shows
// it as latency instead of silently being offered less (the "coordinated
// omission" that wrk2 corrects the same way).
//
//	pacedload -url http://127.0.0.1:8080/token -rate 10000 -conns 64 -d 10s \
//	  -method POST -body 'grant_type=client_credentials' \
//	  -H 'Content-Type: application/x-www-form-urlencoded' -H 'Authorization: Basic ...'
//
// It prints one line: offered and achieved rate, the count of non-2xx
// answers and errors, and the latency percentiles.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// headers collects the repeated -H flags.
type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	target := flag.String("url", "", "request `URL`")
	rate := flag.Float64("rate", 1000, "requests per second offered")
	conns := flag.Int("conns", 64, "keep-alive connections (and concurrent senders)")
	dur := flag.Duration("d", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up at the same rate")
	method := flag.String("method", "GET", "HTTP method")
	body := flag.String("body", "", "request body")
	label := flag.String("label", "", "label printed at the start of the line")
	var hdrs headers
	flag.Var(&hdrs, "H", "request header `Name: value` (repeatable)")
	flag.Parse()
	if *target == "" || *rate <= 0 || *conns <= 0 || *dur < time.Duration(float64(time.Second) / *rate) {
		flag.Usage()
		os.Exit(2)
	}
	h := http.Header{}
	for _, kv := range hdrs {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "pacedload: bad header %q\n", kv)
			os.Exit(2)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *conns,
		MaxConnsPerHost:     *conns,
		DisableCompression:  true,
	}, Timeout: 30 * time.Second}
	send := func() (int, error) {
		req, err := http.NewRequest(*method, *target, strings.NewReader(*body))
		if err != nil {
			return 0, err
		}
		req.Header = h.Clone()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, err
	}

	interval := time.Duration(float64(time.Second) / *rate)
	total := int64((*warmup + *dur) / interval)
	skip := int64(*warmup / interval) // the warm-up's requests are not recorded
	lat := make([]time.Duration, total)
	var next, bad, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	for range *conns {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				at := start.Add(time.Duration(i) * interval)
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				code, err := send()
				lat[i] = time.Since(at)
				if i < skip {
					continue
				}
				switch {
				case err != nil:
					errs.Add(1)
				case code < 200 || code > 299:
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	measuredFrom := start.Add(time.Duration(skip) * interval)
	elapsed := time.Since(measuredFrom)
	m := slices.Clone(lat[skip:])
	slices.Sort(m)
	pct := func(p float64) string {
		return fmt.Sprintf("%.2fms", float64(m[int(p*float64(len(m)-1))])/1e6)
	}
	fmt.Printf("%s offered %.0f/s achieved %.0f/s over %d conns: p50 %s p90 %s p99 %s p99.9 %s max %s  non-2xx %d errors %d\n",
		*label, *rate, float64(len(m))/elapsed.Seconds(), *conns,
		pct(0.50), pct(0.90), pct(0.99), pct(0.999), pct(1), bad.Load(), errs.Load())
}
