package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/guard"
	"github.com/gatehouse-dev/gatehouse/token"
)

// Headers the gateway reads or writes.
const (
	// HeaderRequestID carries the request id to the upstream and back.
	HeaderRequestID = "X-Request-ID"
	// ReservedHeaderPrefix starts headers only the gateway may set; a
	// request from outside that carries one (such as
	// X-Gatehouse-Internal-Token) is refused with 400.
	ReservedHeaderPrefix = "X-Gatehouse-"
)

// maxRequestID is the longest incoming X-Request-ID kept.
const maxRequestID = 128

// Options are the gateway's dependencies; all are optional.
type Options struct {
	// Logger receives refusals, upstream errors and reloads; never a
	// credential. The default discards them.
	Logger *slog.Logger
	// Getenv reads the environment (the client secret); default os.Getenv.
	Getenv func(string) string
	// Client talks to Gatehouse (discovery, JWKS, API key verification,
	// introspection, token exchange). The default has a 5 s timeout.
	Client *http.Client
	// Transport forwards requests upstream. The default is a tuned
	// http.Transport.
	Transport http.RoundTripper
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Gateway is the phantom-token reverse proxy: it verifies the credential
// each request carries with a guard.Guard, swaps it for an internal JWT
// minted by Gatehouse, and forwards the request to the route's upstream.
// Its routing table is replaced atomically by Reload. It is safe for
// concurrent use.
type Gateway struct {
	cfg       *Config // the settings fixed at start; routes come from table
	secret    string
	guard     *guard.Guard
	minter    *Minter
	metrics   *metrics
	transport http.RoundTripper
	log       *slog.Logger
	now       func() time.Time

	table atomic.Pointer[table]

	reloadMu sync.Mutex
	lastSum  [sha256.Size]byte // of the file last loaded or rejected
}

// table is one routing table, immutable once built.
type table struct {
	routes []*route // most specific first
}

// route is one compiled Route.
type route struct {
	cfg     Route
	handler http.Handler // guard, rate limit, mint, proxy
	limiter *limiter     // nil without a rate
}

// New returns a Gateway for cfg. It does not contact Gatehouse: keys are
// fetched on the first request that needs them.
func New(cfg *Config, opts Options) (*Gateway, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	secret, err := cfg.ClientSecret(getenv)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, secret: secret, log: opts.Logger, now: opts.Now, transport: opts.Transport}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.transport == nil {
		g.transport = defaultTransport()
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	keys, err := guard.NewDiscoveryKeySet(cfg.Issuer, nil)
	if err != nil {
		return nil, err
	}
	apiKeys, err := guard.NewHTTPKeyVerifier(guard.HTTPKeyVerifierConfig{
		URL: issuer + guard.DefaultVerifyPath, ClientID: cfg.ClientID, ClientSecret: secret, Client: client,
	})
	if err != nil {
		return nil, err
	}
	intro, err := guard.NewHTTPIntrospector(guard.HTTPIntrospectorConfig{
		URL: issuer + guard.DefaultIntrospectPath, Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: secret,
		Keys: keys, Client: client, Now: opts.Now,
	})
	if err != nil {
		return nil, err
	}
	g.guard, err = guard.New(guard.Config{
		Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: keys,
		APIKeys: apiKeys, Introspector: intro,
		Logger: slog.New(routeHandler{g.log.Handler()}), Now: opts.Now,
	})
	if err != nil {
		return nil, err
	}
	g.metrics = newMetrics(g.guard, func() float64 { return float64(len(g.table.Load().routes)) })
	g.minter, err = NewMinter(MinterConfig{
		TokenURL: issuer + "/token", ClientID: cfg.ClientID, ClientSecret: secret, Client: client, Now: opts.Now,
		Observe: func(o string) { g.metrics.exchanges.WithLabelValues(o).Inc() },
		Hit:     g.metrics.hits.Inc,
	})
	if err != nil {
		return nil, err
	}
	t, err := g.compile(cfg)
	if err != nil {
		return nil, err
	}
	g.table.Store(t)
	return g, nil
}

// Guard returns the gateway's guard, for tests and the revocation feed.
func (g *Gateway) Guard() *guard.Guard { return g.guard }

// Minter returns the gateway's internal-token minter.
func (g *Gateway) Minter() *Minter { return g.minter }

// FollowRevocations follows Gatehouse's revocation feed until ctx is done,
// authenticated as the gateway client (see guard.Guard.Follow).
func (g *Gateway) FollowRevocations(ctx context.Context) error {
	return g.guard.Follow(ctx, guard.FeedConfig{
		URL:      strings.TrimSuffix(g.cfg.Issuer, "/") + "/feed/revocations",
		ClientID: g.cfg.ClientID, ClientSecret: g.secret,
	})
}

func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // upstreams are addressed directly
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Reload replaces the routes with cfg's. Settings other than routes cannot
// change without a restart; a cfg that changes them is rejected and the
// current routes stay.
func (g *Gateway) Reload(cfg *Config) error {
	old := g.cfg
	if cfg.Listen != old.Listen || cfg.AdminListen != old.AdminListen || cfg.Issuer != old.Issuer ||
		cfg.Audience != old.Audience || cfg.ClientID != old.ClientID || cfg.ClientSecretFile != old.ClientSecretFile {
		return fmt.Errorf("%w: only routes can change on reload; restart to change listen, admin_listen, issuer, audience, client_id or client_secret_file", ErrConfig)
	}
	t, err := g.compile(cfg)
	if err != nil {
		return err
	}
	g.table.Store(t)
	return nil
}

// ReloadFile reads the configuration at path and applies it with Reload,
// unless its contents are those last loaded (or rejected) and force is
// false. A bad file is logged and rejected; the current routes stay.
func (g *Gateway) ReloadFile(path string, force bool) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	data, err := os.ReadFile(path)
	if err != nil {
		g.log.Error("gateway: reload: reading the config failed; keeping the current routes", "err", err)
		return err
	}
	sum := sha256.Sum256(data)
	if sum == g.lastSum && !force {
		return nil
	}
	g.lastSum = sum
	cfg, err := ParseConfig(data)
	if err == nil {
		err = g.Reload(cfg)
	}
	if err != nil {
		g.log.Error("gateway: reload rejected; keeping the current routes", "file", path, "err", err)
		return err
	}
	g.log.Info("gateway: configuration reloaded", "file", path, "routes", len(cfg.Routes))
	return nil
}

// Watch polls the configuration file at path every interval (its size,
// modification time and, when those change, its SHA-256) and reloads it
// when it changes, until ctx is done.
func (g *Gateway) Watch(ctx context.Context, path string, interval time.Duration) {
	g.reloadMu.Lock()
	if data, err := os.ReadFile(path); err == nil {
		g.lastSum = sha256.Sum256(data)
	}
	g.reloadMu.Unlock()
	var size int64
	var mtime time.Time
	if fi, err := os.Stat(path); err == nil {
		size, mtime = fi.Size(), fi.ModTime()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Size() == size && fi.ModTime().Equal(mtime) {
			continue
		}
		size, mtime = fi.Size(), fi.ModTime()
		g.ReloadFile(path, false) // logs its own errors
	}
}

// compile builds a routing table for cfg.
func (g *Gateway) compile(cfg *Config) (t *table, err error) {
	defer func() {
		// guard.Require panics on a policy it cannot apply; validation
		// should have caught it already.
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%w: %v", ErrConfig, r)
		}
	}()
	t = &table{}
	for _, rc := range cfg.Routes {
		r := &route{cfg: rc}
		if rc.rateN > 0 {
			r.limiter = newLimiter(rc.rateN, rc.rateWindow)
		}
		proxy := &httputil.ReverseProxy{
			Rewrite:   r.rewrite,
			Transport: g.transport,
			// No periodic flush: ReverseProxy flushes event streams and
			// responses of unknown length after every write anyway, and a
			// flush timer per response costs every request a timer and
			// the wake-ups it brings.
			BufferPool:     copyBuffers,
			ErrorHandler:   g.proxyError(r),
			ModifyResponse: g.observeUpstream(r),
			ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		}
		pol := guard.Policy{Kinds: rc.kinds, AllOf: rc.AllOf, AnyOf: rc.AnyOf}
		r.handler = g.guard.Require(pol)(g.forward(r, proxy))
		t.routes = append(t.routes, r)
	}
	sortRoutes(t.routes)
	return t, nil
}

// sortRoutes puts the most specific routes first: those with a host, then
// the longest prefixes.
func sortRoutes(rs []*route) {
	slices.SortStableFunc(rs, func(a, b *route) int {
		if (a.cfg.Host != "") != (b.cfg.Host != "") {
			if a.cfg.Host != "" {
				return -1
			}
			return 1
		}
		return len(b.cfg.matchPrefix) - len(a.cfg.matchPrefix)
	})
}

// match returns the route for host and p, or nil.
func (t *table) match(host, p string) *route {
	for _, r := range t.routes {
		if r.cfg.Host != "" && !strings.EqualFold(r.cfg.Host, host) {
			continue
		}
		pre := r.cfg.matchPrefix
		if pre == "" || p == pre || strings.HasPrefix(p, pre) && p[len(pre)] == '/' {
			return r
		}
	}
	return nil
}

// reqState is what one request carries from the gateway's checks to the
// proxy's Rewrite.
type reqState struct {
	route     *route
	requestID string
	internal  string // the internal JWT
	sent      time.Time
}

type stateKey struct{}

func stateFrom(r *http.Request) *reqState {
	s, _ := r.Context().Value(stateKey{}).(*reqState)
	return s
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{requestID: requestID(r.Header.Get(HeaderRequestID))}
	w.Header().Set(HeaderRequestID, st.requestID)
	rec := &statusRecorder{ResponseWriter: w}
	routeName := "none"
	defer func() {
		code := rec.code
		if code == 0 {
			code = http.StatusOK
			if r.Header.Get("Upgrade") != "" {
				code = http.StatusSwitchingProtocols
			}
		}
		g.metrics.requests.WithLabelValues(routeName, strconv.Itoa(code)).Inc()
	}()
	for name := range r.Header {
		if len(name) >= len(ReservedHeaderPrefix) && strings.EqualFold(name[:len(ReservedHeaderPrefix)], ReservedHeaderPrefix) {
			g.refuse(rec, r, "", http.StatusBadRequest, "invalid_request", "reserved header "+ReservedHeaderPrefix+"* sent from outside")
			return
		}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	rt := g.table.Load().match(host, r.URL.Path)
	if rt == nil {
		g.refuse(rec, r, "", http.StatusNotFound, "not_found", "no route")
		return
	}
	routeName = rt.cfg.Path
	if !cleanPath(r.URL.Path) {
		g.refuse(rec, r, rt.cfg.Path, http.StatusBadRequest, "invalid_request", "path is not clean (dot segments or empty segments)")
		return
	}
	st.route = rt
	rt.handler.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// forward returns the handler behind the guard: rate limit, internal
// token, proxy.
func (g *Gateway) forward(r *route, proxy http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p, _ := guard.PrincipalFrom(req.Context())
		st := stateFrom(req)
		if r.limiter != nil {
			if ok, wait := r.limiter.allow(limitKey(p, req), g.now()); !ok {
				secs := int64((wait + time.Second - 1) / time.Second)
				w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
				g.refuse(w, req, r.cfg.Path, http.StatusTooManyRequests, "rate_limited", "over the route's rate limit", slog.String("kind", string(p.Kind)))
				return
			}
		}
		cred := rawCredential(req)
		tok, err := g.minter.Mint(req.Context(), cred, p.Kind, peerAddr(req), r.cfg.Audience, r.cfg.Scope)
		switch {
		case errors.Is(err, ErrRefused):
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`)
			g.refuse(w, req, r.cfg.Path, http.StatusUnauthorized, "invalid_token", "token exchange refused the credential", slog.String("kind", string(p.Kind)))
			return
		case err != nil:
			w.Header().Set("Retry-After", "1")
			g.refuse(w, req, r.cfg.Path, http.StatusServiceUnavailable, "temporarily_unavailable", err.Error(), slog.String("kind", string(p.Kind)))
			return
		}
		st.internal = tok
		proxy.ServeHTTP(w, req)
	})
}

// rewrite builds the upstream request: the route's upstream URL, the
// internal token as the only credential, X-Forwarded-*, X-Request-ID.
// ReverseProxy has already removed hop-by-hop and Forwarded headers.
func (r *route) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In)
	if r.cfg.StripPrefix && r.cfg.matchPrefix != "" {
		out := pr.Out.URL
		out.Path = strings.TrimPrefix(out.Path, r.cfg.matchPrefix)
		if out.RawPath != "" {
			out.RawPath = strings.TrimPrefix(out.RawPath, r.cfg.matchPrefix)
		}
		if !strings.HasPrefix(out.Path, "/") {
			out.Path = "/" + out.Path
			if out.RawPath != "" {
				out.RawPath = "/" + out.RawPath
			}
		}
	}
	pr.SetURL(r.cfg.upstream)
	pr.SetXForwarded()
	h := pr.Out.Header
	h.Del("Authorization")
	h.Del(guard.HeaderAPIKey)
	h.Set("Authorization", "Bearer "+st.internal)
	h.Set(HeaderRequestID, st.requestID)
	st.sent = time.Now()
}

func (g *Gateway) observeUpstream(r *route) func(*http.Response) error {
	return func(resp *http.Response) error {
		if st := stateFrom(resp.Request); st != nil && !st.sent.IsZero() {
			g.metrics.upstream.WithLabelValues(r.cfg.Path).Observe(time.Since(st.sent).Seconds())
		}
		return nil
	}
}

// proxyError answers 502 when the upstream cannot be reached or fails.
func (g *Gateway) proxyError(r *route) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, req *http.Request, err error) {
		if errors.Is(err, context.Canceled) && req.Context().Err() != nil {
			// The client went away; nobody to answer.
			w.WriteHeader(499)
			return
		}
		g.refuse(w, req, r.cfg.Path, http.StatusBadGateway, "bad_gateway", "upstream: "+err.Error())
	}
}

// refuse answers a request the gateway itself refuses, with a small JSON
// body, and logs why (never the credential).
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, route string, status int, code, reason string, attrs ...slog.Attr) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	attrs = append(attrs, slog.Int("status", status), slog.String("route", route), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr), slog.String("reason", reason))
	if st := stateFrom(r); st != nil {
		attrs = append(attrs, slog.String("request_id", st.requestID))
	}
	g.log.LogAttrs(r.Context(), level, "gateway: request refused", attrs...)
}

// requestID returns in if it is a well-formed request id, else a new one.
func requestID(in string) string {
	if in != "" && len(in) <= maxRequestID && !strings.ContainsFunc(in, func(c rune) bool {
		return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("-_.:+=/", c))
	}) {
		return in
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cleanPath reports whether p has no dot segments and no empty segments
// (except a trailing slash), so that a prefix match means what it says.
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	c := path.Clean(p)
	return c == p || c+"/" == p
}

// rawCredential returns the credential as presented: the X-API-Key header
// or the Authorization bearer value. The guard has checked that there is
// exactly one.
func rawCredential(r *http.Request) string {
	if k := r.Header.Get(guard.HeaderAPIKey); k != "" {
		return k
	}
	_, v, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.TrimLeft(v, " ")
}

// limitKey identifies a credential for rate limiting: its API key id or
// token id, or else a hash of it.
func limitKey(p token.Principal, r *http.Request) string {
	switch {
	case p.Kind == token.KindAPIKey && p.KeyID != "":
		return "k:" + p.KeyID
	case p.TokenID != "":
		return "t:" + p.TokenID
	}
	sum := sha256.Sum256([]byte(rawCredential(r)))
	return "h:" + hex.EncodeToString(sum[:])
}

// peerAddr returns the TCP peer's address: the gateway is the edge, so the
// peer is the client.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// statusRecorder records the status code; Unwrap lets
// http.ResponseController (used by ReverseProxy) reach Flush and Hijack.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 && code >= 200 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// routeHandler adds the route of the request being refused to the guard's
// log lines.
type routeHandler struct{ slog.Handler }

func (h routeHandler) Handle(ctx context.Context, rec slog.Record) error {
	if st, ok := ctx.Value(stateKey{}).(*reqState); ok && st.route != nil {
		rec.AddAttrs(slog.String("route", st.route.cfg.Path), slog.String("request_id", st.requestID))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h routeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return routeHandler{h.Handler.WithAttrs(a)}
}

func (h routeHandler) WithGroup(name string) slog.Handler {
	return routeHandler{h.Handler.WithGroup(name)}
}

// AdminHandler serves /healthz (JSON: status, routes, feed up or down;
// always 200 while the gateway serves, since cached answers still apply
// when the feed is down) and /metrics (Prometheus).
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.metrics.handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fs := g.guard.FeedStatus()
		feed := "down"
		if fs.Connected {
			feed = "up"
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]any{"status": "ok", "routes": len(g.table.Load().routes), "feed": feed})
	})
	return mux
}

// MaxHeaderBytes bounds a request's header; larger ones are answered 431.
const MaxHeaderBytes = 16 << 10

// NewServer returns an http.Server for g with the gateway's limits: a 16
// KiB header (431 beyond), a 10 s header timeout, and no read or write
// timeout, since bodies and responses (uploads, event streams, WebSockets)
// may last.
func NewServer(g *Gateway) *http.Server {
	return &http.Server{
		Handler:           g,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// copyBuffers recycles the 32 KiB buffers ReverseProxy copies response
// bodies through; without a pool it allocates one per request, most of
// what a proxied request allocates.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// bufferPool is an httputil.BufferPool over a sync.Pool.
type bufferPool struct{ pool sync.Pool }

// Get returns a buffer from the pool.
func (p *bufferPool) Get() []byte { return *p.pool.Get().(*[]byte) }

// Put returns b to the pool.
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
