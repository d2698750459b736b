package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/gateway"
	"github.com/shoalrpc/shoal/naming"
)

func runGateway(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "gateway", "-registry URL [flags]",
		"Serves HTTP/JSON: POST /Service.Method with the args as a JSON body calls the method on one of the\n"+
			"service's instances in the registry, through a ClientProxy per service, and answers with the reply's\n"+
			"JSON (errors: a JSON body {\"status\",\"message\"} and the HTTP status of the table in the README).\n"+
			"The service Arith is looked up as \"arith\" (lower case) unless -service maps it. GET /healthz answers ok.\n"+
			"SIGINT or SIGTERM shuts down gracefully: no new connections, the calls in flight finish; a second\n"+
			"signal closes at once.")
	listen := fs.String("listen", ":8080", "`address` to serve HTTP on")
	registry := fs.String("registry", "", "registry `URL`: consul://127.0.0.1:8500, etcd://127.0.0.1:2379/shoal, static://tcp@h1:9001,tcp@h2:9001, dns://…")
	var pf proxyFlags
	pf.register(fs, consumer.Failover)
	var tf tlsFlags // to the providers
	tf.register(fs)
	names := map[string]string{}
	fs.Func("service", "`Service=name`: look the service Service up in the registry as name (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("want Service=registry-name, got %q", s)
		}
		names[k] = v
		return nil
	})
	timeout := fs.Duration("timeout", gateway.DefaultTimeout, "deadline of a call whose request gives none (Shoal-Timeout header or ?timeout=)")
	healthInterval := fs.Duration("health-interval", 5*time.Second, "how often each instance's health service (ShoalHealth.Check) is asked; an instance NOT_SERVING or not answering gets no calls until it is SERVING again (0: never)")
	maxBody := fs.Int64("max-body", gateway.DefaultMaxBodySize, "largest request body, in bytes")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long a graceful shutdown waits for the calls in flight")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *registry == "" {
		fs.Usage()
		return usagef("gateway: -registry is required")
	}
	if *healthInterval < 0 {
		return usagef("-health-interval %v: want 0 or more", *healthInterval)
	}
	if err := positive("shutdown-timeout", *shutdownTimeout); err != nil {
		return err
	}
	tlsOpts, err := tf.dialOptions()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	reg, err := naming.Open(*registry, backends()...)
	if err != nil {
		return &usageError{err}
	}
	defer reg.Close()
	opts := []gateway.Option{
		gateway.WithLogger(log),
		gateway.WithTimeout(*timeout),
		gateway.WithMaxBodySize(*maxBody),
		gateway.WithProxyOptions(pf.options()...),
	}
	for _, o := range tlsOpts {
		opts = append(opts, gateway.WithProxyOptions(o))
	}
	for k, v := range names {
		opts = append(opts, gateway.WithServiceName(k, v))
	}
	if *healthInterval > 0 {
		// Each check bounded by half the interval (WithHealthCheck's default).
		opts = append(opts, gateway.WithProxyOptions(consumer.WithHealthCheck(*healthInterval, 0)))
	}
	g, err := gateway.New(reg, opts...)
	if err != nil {
		return &usageError{err}
	}
	defer g.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return &exitError{exitUnavailable, fmt.Sprintf("gateway: listen %s: %v", *listen, err)}
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("gateway: serving", "addr", ln.Addr().String(), "registry", *registry, "lb", pf.lb.String(), "fail", pf.fail.String(),
		"health_interval", healthInterval.String())

	select {
	case err := <-served:
		return fmt.Errorf("gateway: serving: %w", err)
	case sig := <-e.signals:
		log.Info("gateway: shutting down: no new connections, finishing the calls in flight", "signal", sig.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- srv.Shutdown(ctx) }()
	select {
	case err = <-result:
	case sig := <-e.signals:
		log.Warn("gateway: second signal: closing now; calls in flight lose their answers", "signal", sig.String())
		srv.Close()
		<-result
		err = errors.New("closed by a second signal")
	}
	<-served
	if err != nil {
		return &exitError{exitUnavailable, fmt.Sprintf("gateway: shutdown cut short: %v", err)}
	}
	log.Info("gateway: stopped; every call in flight was answered")
	return nil
}
