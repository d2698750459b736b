// Command server runs one provider of the demo's arith service (package
// demo/arith): it listens, registers in a registry, logs its address and
// instance ID, and on SIGINT, SIGTERM, SIGHUP or SIGQUIT shuts down
// gracefully: it leaves the registry, stops accepting, tells its clients to
// go away, finishes the calls in flight and exits.
//
//	go run ./demo/server -registry consul://127.0.0.1:8500 -weight 2
//
// Exit status: 0 after a clean drain; 1 when it could not start or serve
// (a registry it cannot reach, a port in use); 2 for bad flags; 3 when the
// -shutdown-timeout deadline (or a second signal) cut the drain short and
// calls in flight lost their replies.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shoalrpc/shoal/demo/adminflag"
	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/demo/tlsflags"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/consul"
	"github.com/shoalrpc/shoal/naming/dns"
	"github.com/shoalrpc/shoal/naming/etcd"
	"github.com/shoalrpc/shoal/observability/admin"
	"github.com/shoalrpc/shoal/observability/prom"
	"github.com/shoalrpc/shoal/provider"
)

// Exit statuses.
const (
	exitOK     = 0 // drained cleanly
	exitFailed = 1 // could not start or serve
	exitUsage  = 2 // bad flags
	exitCut    = 3 // the shutdown deadline or a second signal cut the drain
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	os.Exit(run(os.Args[1:], os.Stderr, signals))
}

// config is what the flags say.
type config struct {
	listen          string
	service         string
	registry        string
	id              string
	weight          int
	tags            []string
	shutdownTimeout time.Duration
	drainGrace      time.Duration
	logFormat       string
	admin           string      // -admin: the admin page's address; "" none
	tls             *tls.Config // nil: plain TCP
}

// parseFlags reads the command line; usage and errors go to out.
func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: server [flags]\n\nServes the demo arith service (Add, Mul, Div, Sleep, Stats; streams Count, Sum, Echo) and registers it.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "`address` to listen on: host:port, tcp@host:port or unix@/path (port 0: a free port)")
	fs.StringVar(&c.service, "service", "arith", "service `name` to register under")
	fs.StringVar(&c.registry, "registry", "consul://", "registry `URL`: consul://host:port[?ttl=2s] (consul:// alone: CONSUL_HTTP_ADDR or 127.0.0.1:8500), or memory:// (this process only; clients then use static://host:port)")
	fs.StringVar(&c.id, "id", "", "instance `ID` (default: service-host-port, stable across restarts at one address)")
	fs.IntVar(&c.weight, "weight", 1, "instance `weight` for the weighted load-balancing modes (>= 1)")
	tags := fs.String("tags", "", "comma-separated instance `tags`")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may wait for calls in flight before it cuts them")
	fs.DurationVar(&c.drainGrace, "drain-grace", time.Second, "how long a shutdown waits, once every call is answered, for clients to close their connections")
	fs.StringVar(&c.logFormat, "log", "text", "log `format` on stderr: text or json")
	fs.StringVar(&c.admin, "admin", "", adminflag.Usage)
	tlsFlags := tlsflags.RegisterServer(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var err error
	if c.tls, err = tlsFlags.Config(); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.service == "":
		return c, errors.New("-service must not be empty")
	case c.weight < 1:
		return c, fmt.Errorf("-weight %d: want 1 or more", c.weight)
	case c.shutdownTimeout <= 0:
		return c, fmt.Errorf("-shutdown-timeout %v: want a positive duration", c.shutdownTimeout)
	case c.drainGrace < 0:
		return c, fmt.Errorf("-drain-grace %v: want 0 or more", c.drainGrace)
	case c.logFormat != "text" && c.logFormat != "json":
		return c, fmt.Errorf("-log %q: want text or json", c.logFormat)
	}
	for t := range strings.SplitSeq(*tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.tags = append(c.tags, t)
		}
	}
	return c, nil
}

// newLogger returns the structured logger the server writes to stderr.
func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// run is the whole server: it returns the exit status. The first value on
// signals starts a graceful shutdown, a second one closes at once.
func run(args []string, stderr io.Writer, signals <-chan os.Signal) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "server:", err)
		return exitUsage
	}
	log := newLogger(cfg.logFormat, stderr)

	reg, err := naming.Open(cfg.registry, consul.Backend(), etcd.Backend(), dns.Backend())
	if err != nil {
		log.Error("cannot open the registry", "err", err)
		return exitUsage
	}
	defer reg.Close()

	ln, err := provider.Listen(cfg.listen)
	if err != nil {
		log.Error("cannot listen", "listen", cfg.listen, "err", err)
		return exitFailed
	}
	addr := ln.Addr().Network() + "@" + ln.Addr().String()
	id := cfg.id
	if id == "" {
		id = naming.DefaultID(cfg.service, addr)
	}
	svc := arith.New(id)
	opts := []provider.Option{
		provider.WithRegistry(reg, naming.Instance{ID: id, Service: cfg.service, Addr: addr, Weight: cfg.weight, Tags: cfg.tags}),
		provider.WithDrainGrace(cfg.drainGrace),
		provider.WithLogger(log),
	}
	if cfg.tls != nil {
		opts = append(opts, provider.WithTLS(cfg.tls))
	}
	var page *admin.Page
	if cfg.admin != "" {
		metrics, err := prom.New()
		if err != nil {
			ln.Close()
			log.Error("cannot make the metrics", "err", err)
			return exitFailed
		}
		page = admin.New(admin.WithMetrics(metrics.Handler()))
		opts = append(opts, provider.WithStatsHandler(page.StatsHandler()), provider.WithStatsHandler(metrics.ServerHandler()))
	}
	srv := provider.NewServer(opts...)
	if err := srv.Register(svc); err != nil {
		ln.Close()
		log.Error("cannot register the arith service", "err", err)
		return exitFailed
	}
	if page != nil {
		page.SetServer(srv)
		url, stop, err := adminflag.Serve(cfg.admin, page)
		if err != nil {
			ln.Close()
			log.Error("cannot serve the admin page", "admin", cfg.admin, "err", err)
			return exitFailed
		}
		defer stop() // after the drain: /healthz answers 503 while it lasts
		log.Info("admin page", "url", url)
	}

	// The listener is open: connections queue until the accept loop runs.
	log.Info("serving", "service", cfg.service, "id", id, "addr", addr,
		"weight", cfg.weight, "tags", strings.Join(cfg.tags, ","), "registry", cfg.registry, "tls", cfg.tls != nil, "pid", os.Getpid())
	// Start returns once the listener accepts and the instance is in the
	// registry: a client that looks the service up from now on finds it.
	if err := srv.Start(ln); err != nil {
		srv.Close()
		log.Error("serving failed", "err", err, "hint", registryHint(cfg.registry))
		return exitFailed
	}
	log.Info("registered", "service", cfg.service, "id", id, "registry", cfg.registry)
	if strings.HasPrefix(cfg.registry, "memory:") {
		log.Info("memory:// is this process's own registry; clients reach this server by address", "client_registry", "static://"+addr)
	}

	sig := <-signals
	return shutdown(log, srv, svc, signals, sig, cfg.shutdownTimeout)
}

// registryHint says what to do when the registry could not be reached.
func registryHint(registry string) string {
	if strings.HasPrefix(registry, "consul:") {
		return "is a Consul agent running? scripts/consul.sh start runs one (set SHOAL_CONSUL to a consul binary, or put consul on PATH, to skip its build) and prints its CONSUL_HTTP_ADDR"
	}
	return ""
}

// shutdown runs the graceful shutdown the signal sig asked for, logging
// progress every second, and returns the exit status. Another signal closes
// the server at once.
func shutdown(log *slog.Logger, srv *provider.Server, svc *arith.Arith, signals <-chan os.Signal, sig os.Signal, timeout time.Duration) int {
	start := time.Now()
	log.Info("shutting down: leaving the registry, refusing new calls, draining the calls in flight",
		"signal", sig.String(), "in_flight", srv.InFlight(), "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- srv.Shutdown(ctx) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	forced := false
	var err error
wait:
	for {
		select {
		case err = <-result:
			break wait
		case <-tick.C:
			log.Info("draining", "in_flight", srv.InFlight(), "elapsed", time.Since(start).Round(time.Millisecond))
		case sig := <-signals:
			if !forced {
				forced = true
				log.Warn("second signal: closing now; calls in flight lose their replies", "signal", sig.String(), "in_flight", srv.InFlight())
				srv.Close()
			}
		}
	}
	if serveErr := srv.Err(); serveErr != nil {
		log.Warn("serving had stopped with an unexpected error", "err", serveErr)
	}
	took := time.Since(start).Round(time.Millisecond)
	var stats arith.Stats
	_ = svc.Stats(context.Background(), struct{}{}, &stats)
	if err != nil || forced {
		log.Error("shutdown cut short: calls in flight lost their replies", "err", err, "took", took, "served", stats.Calls)
		return exitCut
	}
	log.Info("drained: every accepted call was answered; exiting", "took", took, "served", stats.Calls)
	return exitOK
}
