// Command benchproxy is the baseline for the gateway benchmark
// (bench/gateway.sh): a trivial upstream, and a plain
// httputil.ReverseProxy with no authentication in front of it, so that the
// gateway is measured against the same upstream and the same proxy code
// without credential checks.
//
//	benchproxy upstream -listen 127.0.0.1:9001
//	benchproxy proxy -listen 127.0.0.1:9002 -upstream http://127.0.0.1:9001
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchproxy upstream|proxy [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := fs.String("upstream", "", "upstream URL (proxy only)")
	pool := fs.Bool("pool", false, "recycle the 32 KiB copy buffers, as the gateway does (proxy only)")
	fs.Parse(os.Args[2:])

	var h http.Handler
	switch os.Args[1] {
	case "upstream":
		body := []byte(`{"ok":true}` + "\n")
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
	case "proxy":
		u, err := url.Parse(*upstream)
		if err != nil || u.Host == "" {
			log.Fatalf("benchproxy: bad -upstream %q", *upstream)
		}
		// The same transport settings as the gateway's, so that only the
		// gateway's own work differs.
		tr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.SetXForwarded()
			},
			Transport: tr,
			// wrk closes connections mid-request at the end of a run.
			ErrorLog: log.New(io.Discard, "", 0),
		}
		if *pool {
			rp.BufferPool = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
		}
		h = rp
	default:
		log.Fatalf("benchproxy: unknown mode %q", os.Args[1])
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String()) // the caller reads the address
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

// bufferPool is an httputil.BufferPool over a sync.Pool.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
