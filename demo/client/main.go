// Command client calls the demo's arith service by name through a
// ClientProxy at a fixed concurrency, shows a progress line on stderr every
// second, and prints a summary on stdout: calls, outcomes by kind,
// throughput, p50/p99 latency and how the calls spread over the instances.
//
//	go run ./demo/client -registry consul://127.0.0.1:8500 -lb weighted_roundrobin -fail failover -duration 20s
//
// Stop it early with Ctrl-C: it lets the calls in flight finish and prints
// the summary. Exit status: 0 when every call succeeded, 1 when some
// failed, 2 for bad flags or when the service could not be found.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/adminflag"
	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/demo/loadgen"
	"github.com/shoalrpc/shoal/demo/tlsflags"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/consul"
	"github.com/shoalrpc/shoal/naming/dns"
	"github.com/shoalrpc/shoal/naming/etcd"
	"github.com/shoalrpc/shoal/observability/admin"
	"github.com/shoalrpc/shoal/observability/prom"
)

// Exit statuses.
const (
	exitOK     = 0 // every call succeeded
	exitFailed = 1 // some calls failed
	exitUsage  = 2 // bad flags, or no service to call
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	registry    string
	service     string
	method      string // "Arith.Sleep"
	a, b        int
	sleep       int
	lb          loadbalance.Mode
	fail        consumer.FailMode
	retries     int
	concurrency int
	calls       int64
	duration    time.Duration
	timeout     time.Duration
	wait        time.Duration
	progress    time.Duration
	json        bool
	admin       string        // -admin: the admin page's address; "" none
	healthCheck time.Duration // -health-check: WithHealthCheck's interval; 0 none
	tls         *tls.Config   // nil: plain TCP
}

// methods are the arith methods by lower-case short name.
var methods = map[string]string{"add": "Arith.Add", "mul": "Arith.Mul", "div": "Arith.Div", "sleep": "Arith.Sleep"}

// parseFlags reads the command line; usage and errors go to out.
func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: client [flags]\n\nCalls the demo arith service through a ClientProxy and summarises what happened.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.registry, "registry", "consul://", "registry `URL`: consul://host:port (consul:// alone: CONSUL_HTTP_ADDR or 127.0.0.1:8500), or static://host:port,... (memory:// is per-process: no server can register in the client's)")
	fs.StringVar(&c.service, "service", "arith", "service `name` to call")
	method := fs.String("method", "Sleep", "method to call: Add, Mul, Div (with -a, -b) or Sleep (with -sleep)")
	fs.IntVar(&c.a, "a", 6, "first operand of Add, Mul, Div")
	fs.IntVar(&c.b, "b", 7, "second operand of Add, Mul, Div (-b 0 makes Div fail with a service error)")
	fs.IntVar(&c.sleep, "sleep", 5, "`milliseconds` each Sleep call sleeps")
	lb := fs.String("lb", "roundrobin", "load-balancing `mode`: "+modeNames())
	fail := fs.String("fail", "failover", "fail `mode`: failfast, failover, failretry, failbackup")
	fs.IntVar(&c.retries, "retries", 2, "retries after a call that may have run failed (failover, failretry, failbackup)")
	fs.IntVar(&c.concurrency, "concurrency", 8, "concurrent callers")
	fs.Int64Var(&c.calls, "calls", 0, "stop after this many calls (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "stop after this long (0: no limit; with -calls 0, run until Ctrl-C)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "deadline of each call, retries included")
	fs.DurationVar(&c.wait, "wait", 10*time.Second, "how long to wait for the service's first instance")
	fs.DurationVar(&c.progress, "progress", time.Second, "interval of the progress line on stderr (0: none)")
	fs.BoolVar(&c.json, "json", false, "print the summary as JSON")
	fs.StringVar(&c.admin, "admin", "", adminflag.Usage)
	fs.DurationVar(&c.healthCheck, "health-check", 0, "check each instance's health this often, and leave those NOT_SERVING or not answering out of picks (0: no checks)")
	tlsFlags := tlsflags.RegisterClient(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var ok bool
	if c.method, ok = methods[strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(*method, "Arith."), "arith."))]; !ok {
		return c, fmt.Errorf("-method %q: want Add, Mul, Div or Sleep", *method)
	}
	var err error
	if c.lb, err = loadbalance.ParseMode(*lb); err != nil {
		return c, fmt.Errorf("-lb: %w", err)
	}
	if c.fail, err = consumer.ParseFailMode(strings.ToLower(*fail)); err != nil {
		return c, fmt.Errorf("-fail: %w", err)
	}
	if c.tls, err = tlsFlags.Config(); err != nil {
		return c, err
	}
	switch {
	case c.service == "":
		return c, errors.New("-service must not be empty")
	case c.concurrency < 1:
		return c, fmt.Errorf("-concurrency %d: want 1 or more", c.concurrency)
	case c.retries < 0:
		return c, fmt.Errorf("-retries %d: want 0 or more", c.retries)
	case c.calls < 0 || c.duration < 0 || c.timeout < 0 || c.wait < 0 || c.progress < 0 || c.healthCheck < 0:
		return c, errors.New("-calls, -duration, -timeout, -wait, -progress and -health-check must not be negative")
	case c.sleep < 0 || c.sleep > int(arith.MaxSleep/time.Millisecond):
		return c, fmt.Errorf("-sleep %d: want 0 to %d milliseconds", c.sleep, arith.MaxSleep/time.Millisecond)
	}
	return c, nil
}

func modeNames() string {
	var names []string
	for _, m := range loadbalance.Modes() {
		names = append(names, m.String())
	}
	return strings.Join(names, ", ")
}

// describe renders the call being made, e.g. "Arith.Sleep(5)".
func (c *config) describe() string {
	if c.method == "Arith.Sleep" {
		return fmt.Sprintf("%s(%d)", c.method, c.sleep)
	}
	return fmt.Sprintf("%s(%d, %d)", c.method, c.a, c.b)
}

// newCall returns the call the load generator repeats. Sleep's reply names
// the instance that served it; the arithmetic replies do not.
func (c *config) newCall(p *consumer.ClientProxy) loadgen.Call {
	if c.method == "Arith.Sleep" {
		return func(ctx context.Context) (string, error) {
			var instance string
			err := p.Call(ctx, c.method, c.sleep, &instance)
			return instance, err
		}
	}
	args := arith.Args{A: c.a, B: c.b}
	return func(ctx context.Context) (string, error) {
		var result int
		return "", p.Call(ctx, c.method, args, &result)
	}
}

// run is the whole client; it returns the exit status. ctx ending (Ctrl-C)
// stops the run early.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "client:", err)
		return exitUsage
	}
	reg, err := naming.Open(cfg.registry, consul.Backend(), etcd.Backend(), dns.Backend())
	if err != nil {
		fmt.Fprintln(stderr, "client:", err)
		return exitUsage
	}
	defer reg.Close()
	opts := []consumer.ProxyOption{
		consumer.WithLoadBalance(cfg.lb),
		consumer.WithFailMode(cfg.fail),
		consumer.WithRetries(cfg.retries),
		consumer.WithIdempotent(cfg.method), // every arith method is safe to repeat
		consumer.WithWaitForInstances(cfg.wait),
	}
	if cfg.tls != nil {
		opts = append(opts, consumer.WithTLS(cfg.tls))
	}
	if cfg.healthCheck > 0 {
		opts = append(opts, consumer.WithHealthCheck(cfg.healthCheck, 0))
	}
	var page *admin.Page
	if cfg.admin != "" {
		metrics, err := prom.New()
		if err != nil {
			fmt.Fprintln(stderr, "client:", err)
			return exitUsage
		}
		page = admin.New(admin.WithMetrics(metrics.Handler()))
		opts = append(opts, consumer.WithStatsHandler(page.StatsHandler()), consumer.WithStatsHandler(metrics.ClientHandler()))
	}
	if strings.HasPrefix(cfg.registry, "memory:") {
		fmt.Fprintln(stderr, "client: "+memoryHint)
	}
	p, err := consumer.NewClientProxy(cfg.service, reg, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "client: %v\n", err)
		if hint := registryHint(cfg.registry, err); hint != "" {
			fmt.Fprintln(stderr, "client: hint: "+hint)
		}
		return exitUsage
	}
	defer p.Close()
	if page != nil {
		page.AddProxy(p)
		url, stop, err := adminflag.Serve(cfg.admin, page)
		if err != nil {
			fmt.Fprintln(stderr, "client:", err)
			return exitUsage
		}
		defer stop()
		fmt.Fprintln(stderr, "admin page:", url)
	}

	fmt.Fprintf(stderr, "calling %s on %q (instances: %d, registry %s): %s, %s with %d retries, %d callers, %s\n",
		cfg.describe(), cfg.service, len(p.Instances()), cfg.registry, cfg.lb, cfg.fail, cfg.retries, cfg.concurrency, limits(&cfg))
	r, err := loadgen.Start(loadgen.Config{
		Concurrency: cfg.concurrency,
		Calls:       cfg.calls,
		Duration:    cfg.duration,
		Timeout:     cfg.timeout,
		// With no instance left a call fails at once; do not spin.
		PauseAfterError: 20 * time.Millisecond,
	}, cfg.newCall(p))
	if err != nil {
		fmt.Fprintln(stderr, "client:", err)
		return exitUsage
	}
	stats := follow(ctx, r, p, cfg.progress, stderr)

	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(stats.Summary())
	} else {
		fmt.Fprintf(stdout, "%s on %q: %s, %s, %d callers\n", cfg.describe(), cfg.service, cfg.lb, cfg.fail, cfg.concurrency)
		err = stats.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "client: writing the summary:", err)
	}
	if stats.Failed() > 0 {
		return exitFailed
	}
	return exitOK
}

// memoryHint is what a memory:// registry means for a client.
const memoryHint = "memory:// is a registry inside this process only: no server registers in it, so the client finds no instance. " +
	"Use static://host:port (the address the server logs) or consul:// instead."

// registryHint says what to do when the service could not be found through
// registry, or "".
func registryHint(registry string, err error) string {
	switch {
	case strings.HasPrefix(registry, "memory:"):
		return memoryHint
	case strings.HasPrefix(registry, "consul:") && !errors.Is(err, loadbalance.ErrNoInstances):
		return "is a Consul agent running? scripts/consul.sh start runs one (set SHOAL_CONSUL to a consul binary, or put consul on PATH, to skip its build) and prints its CONSUL_HTTP_ADDR"
	case strings.HasPrefix(registry, "consul:"):
		return "no server has registered the service: start one with the same -registry and -service"
	}
	return ""
}

// limits describes when the run stops.
func limits(c *config) string {
	switch {
	case c.calls > 0 && c.duration > 0:
		return fmt.Sprintf("%d calls or %s, whichever comes first", c.calls, c.duration)
	case c.calls > 0:
		return fmt.Sprintf("%d calls", c.calls)
	case c.duration > 0:
		return "for " + c.duration.String()
	}
	return "until Ctrl-C"
}

// follow prints a progress line every interval until the run ends, or stops
// it when ctx ends, and returns the final counts. On a terminal the line
// rewrites itself.
func follow(ctx context.Context, r *loadgen.Runner, p *consumer.ClientProxy, interval time.Duration, stderr io.Writer) loadgen.Stats {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	term := isTerminal(stderr)
	var prev loadgen.Stats
	printed := false
	for {
		select {
		case <-r.Done():
			if printed && term {
				fmt.Fprintln(stderr)
			}
			return r.Wait()
		case <-ctx.Done():
			if printed && term {
				fmt.Fprintln(stderr)
			}
			fmt.Fprintln(stderr, "interrupted: waiting for the calls in flight")
			return r.Stop()
		case <-tick:
			s := r.Snapshot()
			line := fmt.Sprintf("%s  instances %d", s.Progress(prev), len(p.Instances()))
			if term {
				fmt.Fprintf(stderr, "\r%s\x1b[K", line)
			} else {
				fmt.Fprintln(stderr, line)
			}
			prev, printed = s, true
		}
	}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
