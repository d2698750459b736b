// Command quickstart shows shoal working in one process, with nothing to
// install: three providers of the demo arith service (weights 1, 2 and 3)
// register in the embedded memory registry; a ClientProxy calls them in
// every load-balancing mode and prints how the calls spread; then, under
// load, one provider shuts down gracefully and another is killed, and no
// call is lost.
//
//	go run ./demo/quickstart        (or: make quickstart)
//
// It takes about ten seconds and exits 1 if a call was lost.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/demo/loadgen"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// service is the name the providers register under.
const service = "arith"

// options set the pace; the defaults make a run of about ten seconds.
type options struct {
	perMode  time.Duration // how long each load-balancing mode runs
	perStage time.Duration // load before the shutdown, between it and the kill, and after
}

func main() {
	o := options{}
	flag.DurationVar(&o.perMode, "per-mode", 600*time.Millisecond, "how long each load-balancing mode runs")
	flag.DurationVar(&o.perStage, "per-stage", time.Second, "how long the load runs before the graceful shutdown, between it and the kill, and after")
	flag.Parse()
	if o.perMode <= 0 || o.perStage <= 0 {
		fmt.Fprintln(os.Stderr, "quickstart: -per-mode and -per-stage must be positive")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// node is one provider.
type node struct {
	id       string
	weight   int
	addr     string
	srv      *provider.Server
	svc      *arith.Arith
	done     chan struct{} // closed when Serve has returned
	serveErr error         // what Serve returned, once done is closed
}

// stats returns the provider's own counters.
func (n *node) stats() arith.Stats {
	var s arith.Stats
	_ = n.svc.Stats(context.Background(), struct{}{}, &s)
	return s
}

func run(ctx context.Context, w io.Writer, o options) error {
	reg := naming.NewMemory() // the embedded registry; naming.Open("consul://…", consul.Backend()) in production
	defer reg.Close()

	fmt.Fprintf(w, "shoal quickstart: one process, the embedded memory registry, three providers of %q, one ClientProxy.\n\n", service)
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.srv.Close()
			<-n.done
		}
	}()
	for i, weight := range []int{1, 2, 3} {
		n, err := startNode(reg, "arith-"+strconv.Itoa(i+1), weight)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		fmt.Fprintf(w, "  provider %s  %s  weight %d\n", n.id, n.addr, n.weight)
	}

	if err := firstCalls(ctx, w, reg); err != nil {
		return err
	}
	if _, err := spread(w, reg, nodes, o.perMode); err != nil {
		return err
	}
	return survive(ctx, w, reg, nodes, o.perStage)
}

// startNode starts a provider on a free loopback port, registered in reg.
func startNode(reg naming.Registry, id string, weight int) (*node, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	n := &node{id: id, weight: weight, addr: "tcp@" + ln.Addr().String(), svc: arith.New(id), done: make(chan struct{})}
	n.srv = provider.NewServer(
		provider.WithRegistry(reg, naming.Instance{ID: id, Service: service, Addr: n.addr, Weight: weight}),
		provider.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))),
	)
	if err := n.srv.Register(n.svc); err != nil {
		ln.Close()
		return nil, fmt.Errorf("register %s: %w", id, err)
	}
	go func() {
		n.serveErr = n.srv.Serve(ln)
		close(n.done)
	}()
	return n, nil
}

// newProxy returns a proxy on reg that waits until all three providers are listed.
func newProxy(reg naming.Registry, opts ...consumer.ProxyOption) (*consumer.ClientProxy, error) {
	p, err := consumer.NewClientProxy(service, reg, append(opts, consumer.WithWaitForInstances(5*time.Second))...)
	if err != nil {
		return nil, fmt.Errorf("client proxy: %w", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.Instances()) < 3 { // Serve registers asynchronously
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("only %d of 3 providers registered after 5s", len(p.Instances()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, nil
}

// firstCalls makes one call that works and one that fails remotely.
func firstCalls(ctx context.Context, w io.Writer, reg naming.Registry) error {
	p, err := newProxy(reg)
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintln(w, "\nA call, and an error returned by the remote method:")
	var sum int
	if err := p.Call(ctx, "Arith.Add", arith.Args{A: 40, B: 2}, &sum); err != nil {
		return fmt.Errorf("Arith.Add: %w", err)
	}
	fmt.Fprintf(w, "  Arith.Add(40, 2) = %d\n", sum)
	var q int
	err = p.Call(ctx, "Arith.Div", arith.Args{A: 1, B: 0}, &q)
	var se *consumer.ServiceError
	if !errors.As(err, &se) {
		return fmt.Errorf("Arith.Div(1, 0): want a *consumer.ServiceError, got %v", err)
	}
	fmt.Fprintf(w, "  Arith.Div(1, 0) failed with %q: a *consumer.ServiceError, returned at once, never retried\n", se.Message)
	return nil
}

// spread runs every load-balancing mode for d, prints how the calls spread
// over the providers, and returns the counts of each mode.
func spread(w io.Writer, reg naming.Registry, nodes []*node, d time.Duration) (map[loadbalance.Mode]loadgen.Stats, error) {
	const callers, keys = 8, 32
	fmt.Fprintf(w, "\n1. Load balancing: %d callers call Arith.Sleep(1 ms) for %s in each mode; the reply names the provider.\n\n", callers, d)
	fmt.Fprintf(w, "  %-20s", "mode")
	for _, n := range nodes {
		fmt.Fprintf(w, "  %14s", fmt.Sprintf("%s (w%d)", n.id, n.weight))
	}
	fmt.Fprintf(w, "  %8s\n", "calls/s")
	var notes []string
	all := make(map[loadbalance.Mode]loadgen.Stats)
	for _, mode := range loadbalance.Modes() {
		p, err := newProxy(reg, consumer.WithLoadBalance(mode))
		if err != nil {
			return nil, err
		}
		// consistent_hash routes by key: each call carries one of 32 user
		// keys, and a key should always land on the same provider.
		var mu sync.Mutex
		keyHome := map[string]map[string]bool{}
		call := func(ctx context.Context) (string, error) {
			key := ""
			if mode == loadbalance.ConsistentHash {
				key = "user-" + strconv.Itoa(rand.IntN(keys))
				ctx = loadbalance.WithHashKey(ctx, key)
			}
			var id string
			err := p.Call(ctx, "Arith.Sleep", 1, &id)
			if err == nil && key != "" {
				mu.Lock()
				if keyHome[key] == nil {
					keyHome[key] = map[string]bool{}
				}
				keyHome[key][id] = true
				mu.Unlock()
			}
			return id, err
		}
		r, err := loadgen.Start(loadgen.Config{Concurrency: callers, Duration: d, Timeout: 5 * time.Second}, call)
		if err != nil {
			p.Close()
			return nil, err
		}
		s := r.Wait()
		p.Close()
		all[mode] = s
		if s.Failed() > 0 {
			return all, fmt.Errorf("mode %s: %d of %d calls failed: %v", mode, s.Failed(), s.Calls, s.LastErrors)
		}
		fmt.Fprintf(w, "  %-20s", mode)
		for _, n := range nodes {
			c := s.Instances[n.id]
			fmt.Fprintf(w, "  %7d %5.1f%%", c, 100*float64(c)/float64(max(s.Calls, 1)))
		}
		fmt.Fprintf(w, "  %8.0f\n", s.Rate())
		if mode == loadbalance.ConsistentHash {
			moved := 0
			for _, homes := range keyHome {
				if len(homes) > 1 {
					moved++
				}
			}
			if moved > 0 {
				return all, fmt.Errorf("consistent_hash: %d of %d keys were served by more than one provider", moved, len(keyHome))
			}
			notes = append(notes, fmt.Sprintf("consistent_hash: each call carried one of %d user keys, and each key always went to the same provider.", len(keyHome)))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  random and roundrobin ignore the weights; weighted_roundrobin and weighted_random follow 1:2:3,")
	fmt.Fprintln(w, "  consistent_hash roughly so (its ring has virtual nodes per unit of weight); least_connections")
	fmt.Fprintln(w, "  and p2c_ewma follow load and latency, equal here, so they spread evenly.")
	for _, n := range notes {
		fmt.Fprintln(w, "  "+n)
	}
	return all, nil
}

// survive runs load with Failover, shuts arith-2 down gracefully and kills
// arith-3 mid-traffic, and checks that no call was lost.
func survive(ctx context.Context, w io.Writer, reg naming.Registry, nodes []*node, stage time.Duration) error {
	const callers, sleepMs = 16, 20
	fmt.Fprintf(w, "\n2. Graceful shutdown and a crash under load: %d callers call Arith.Sleep(%d ms), roundrobin, Failover, 2 retries.\n\n", callers, sleepMs)
	p, err := newProxy(reg, consumer.WithFailMode(consumer.Failover), consumer.WithRetries(2))
	if err != nil {
		return err
	}
	defer p.Close()
	before := make(map[string]arith.Stats, len(nodes))
	for _, n := range nodes {
		before[n.id] = n.stats()
	}
	r, err := loadgen.Start(loadgen.Config{Concurrency: callers, Timeout: 10 * time.Second}, func(ctx context.Context) (string, error) {
		var id string
		err := p.Call(ctx, "Arith.Sleep", sleepMs, &id)
		return id, err
	})
	if err != nil {
		return err
	}
	defer r.Stop()
	start := time.Now()
	at := func() string { return fmt.Sprintf("  %4.1fs", time.Since(start).Seconds()) }
	time.Sleep(stage) // let the load run: this is what the demo shows, not a synchronisation
	fmt.Fprintf(w, "%s  %d calls answered so far, spread over %d providers\n", at(), r.Snapshot().Kinds[loadgen.OK], len(p.Instances()))

	// Graceful: leave the registry, refuse new calls, drain, close.
	graceful, killed, survivor := nodes[1], nodes[2], nodes[0]
	inFlight := graceful.srv.InFlight()
	t0 := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = graceful.srv.Shutdown(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", graceful.id, err)
	}
	took := time.Since(t0).Round(100 * time.Microsecond)
	<-graceful.done
	left, _ := reg.Fetch(ctx, service)
	fmt.Fprintf(w, "%s  %s: Shutdown with %d calls in flight: left the registry, drained, closed in %s (Serve returned %q); %d providers listed\n",
		at(), graceful.id, inFlight, took, graceful.serveErr, len(left))

	time.Sleep(stage)
	// A crash: Close cuts every connection at once; the calls running on
	// the provider lose their replies.
	running := killed.stats().Running
	killed.srv.Close()
	fmt.Fprintf(w, "%s  %s: killed (Close) with %d calls running: their connections broke mid-call\n", at(), killed.id, running)

	time.Sleep(stage)
	s := r.Stop()
	fmt.Fprintf(w, "%s  load stopped\n\n", at())

	// What each provider did, and what the client got back from it.
	fmt.Fprintf(w, "  %-10s %14s %16s\n", "provider", "calls it ran", "replies received")
	lost := map[string]int64{}
	for _, n := range nodes {
		ran := n.stats().Calls - before[n.id].Calls
		got := s.Instances[n.id]
		lost[n.id] = ran - got
		fmt.Fprintf(w, "  %-10s %14d %16d\n", n.id, ran, got)
	}
	fmt.Fprintln(w)
	if s.Failed() > 0 {
		return fmt.Errorf("%d of %d calls failed: %v", s.Failed(), s.Calls, s.LastErrors)
	}
	if lost[graceful.id] != 0 {
		return fmt.Errorf("%s ran %d calls whose replies never arrived despite the graceful shutdown", graceful.id, lost[graceful.id])
	}
	fmt.Fprintf(w, "No call lost: %d calls, %d answered, 0 failed.\n", s.Calls, s.Kinds[loadgen.OK])
	fmt.Fprintf(w, "  %s answered every call it ran: the calls in flight finished before it closed, and new calls went to the others.\n", graceful.id)
	fmt.Fprintf(w, "  %s ran %d calls whose replies died with it; Failover sent each again to %s (Sleep is idempotent), and every one was answered.\n",
		killed.id, lost[killed.id], survivor.id)
	return nil
}
