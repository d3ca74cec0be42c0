package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

// gatewayShutdownGrace is how long in-flight requests get after SIGTERM.
const gatewayShutdownGrace = 30 * time.Second

// runGateway is `gatehouse gateway --config FILE`: the phantom-token
// reverse proxy (package gateway). Its --config is the gateway's own TOML
// file, not serve's, so flags are not read from the environment.
func runGateway(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("gateway", e)
	cfgPath := fs.String("config", "", "gateway configuration `file` (TOML; required)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: gateway takes --config FILE and no arguments", ErrUsage)
	}
	log, err := newLogger(e.stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := gateway.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	gw, err := gateway.New(cfg, gateway.Options{Logger: log, Getenv: e.getenv})
	if err != nil {
		return err
	}
	// A proxy allocates per request and keeps a small heap: the same
	// collector settings as serve (see tuneGC).
	tuneGC()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var admin net.Listener
	if cfg.AdminListen != "" {
		if admin, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			ln.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	return serveGateway(ctx, gw, *cfgPath, ln, admin, log.Info)
}

// serveGateway runs gw on ln (and its admin handler on admin, if not nil)
// until ctx is done or SIGINT/SIGTERM, following the revocation feed,
// watching the config file, and reloading it on SIGHUP.
func serveGateway(ctx context.Context, gw *gateway.Gateway, cfgPath string, ln, admin net.Listener, info func(string, ...any)) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go gw.FollowRevocations(ctx)
	go gw.Watch(ctx, cfgPath, time.Second)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				gw.ReloadFile(cfgPath, true) // logs its own errors
			}
		}
	}()

	srv := gateway.NewServer(gw)
	servers := []*http.Server{srv}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if admin != nil {
		as := &http.Server{Handler: gw.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, as)
		go func() { errc <- as.Serve(admin) }()
		info("gateway admin ready", "addr", admin.Addr().String())
	}
	info("gateway ready", "addr", ln.Addr().String())
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gatewayShutdownGrace)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
