// Command quickstart shows shoal working in one process, with nothing to
// install: three providers of the demo arith service (weights 1, 2 and 3)
// register in the embedded memory registry; a ClientProxy calls them in
// every load-balancing mode and prints how the calls spread; then, under
// load, one provider shuts down gracefully and another is killed, and no
// call is lost; last, a stream through the ClientProxy outlives a graceful
// shutdown of the provider serving it, while new streams go to the others.
//
//	go run ./demo/quickstart        (or: make quickstart)
//
// It takes about ten seconds and exits 1 if a call or a message was lost.
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/demo/loadgen"
	"github.com/shoalrpc/shoal/health"
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

	// Counted by the provider's stream interceptor, on the server's side.
	streams atomic.Int64 // streams its methods ran
	sent    atomic.Int64 // messages its stream methods sent
}

// countStreams is the provider's stream interceptor: it counts the streams
// the node runs and the messages they send, which the quickstart checks
// against what the client received.
func (n *node) countStreams(ctx context.Context, info *provider.StreamInfo, s provider.Stream, next provider.StreamHandler) error {
	n.streams.Add(1)
	return next(ctx, countingStream{Stream: s, sent: &n.sent})
}

// countingStream counts the messages a stream method sends.
type countingStream struct {
	provider.Stream
	sent *atomic.Int64
}

func (s countingStream) SendMsg(m any) error {
	err := s.Stream.SendMsg(m)
	if err == nil {
		s.sent.Add(1)
	}
	return err
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
	if err := survive(ctx, w, reg, nodes, o.perStage); err != nil {
		return err
	}

	// arith-2 and arith-3 come back, on new ports, for the stream's part.
	for _, old := range nodes[1:3] {
		n, err := startNode(reg, old.id, old.weight)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	return streamThrough(ctx, w, reg, []*node{nodes[0], nodes[3], nodes[4]}, o.perStage)
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
		provider.WithStreamInterceptors(n.countStreams),
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

// streamThrough opens a server stream, Arith.Count, through a ClientProxy,
// shuts down the provider serving it while it runs, opens new streams
// meanwhile, and checks that the stream delivered every message in order
// and that no new stream went to the provider shutting down.
func streamThrough(ctx context.Context, w io.Writer, reg naming.Registry, nodes []*node, stage time.Duration) error {
	const count, newStreams, newCount = 20, 6, 5
	every := max(int(stage/time.Millisecond)/count, 1)
	fmt.Fprintf(w, "\n3. A stream through a graceful shutdown: arith-2 and arith-3 start again, on new ports; a ClientProxy opens\n")
	fmt.Fprintf(w, "   the server stream Arith.Count(N=%d, every %d ms), and the provider serving it shuts down while it runs.\n\n", count, every)
	p, err := newProxy(reg)
	if err != nil {
		return err
	}
	defer p.Close()
	before := make(map[*node]int64, len(nodes))
	for _, n := range nodes {
		before[n] = n.streams.Load()
	}
	start := time.Now()
	at := func() string { return fmt.Sprintf("  %4.1fs", time.Since(start).Seconds()) }

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	long, err := consumer.OpenServerStream[int](sctx, p, "Arith.Count", arith.CountArgs{N: count, EveryMs: every})
	if err != nil {
		return fmt.Errorf("open Arith.Count: %w", err)
	}
	defer long.Close()
	var got []int
	first, err := long.Recv()
	if err != nil {
		return fmt.Errorf("Arith.Count: the first message: %w", err)
	}
	got = append(got, *first)
	// The provider serving it is the one whose interceptor counted a stream.
	var g *node
	for _, n := range nodes {
		if n.streams.Load() != before[n] {
			g = n
		}
	}
	if g == nil {
		return errors.New("Arith.Count: no provider counted the stream")
	}
	fmt.Fprintf(w, "%s  stream open on %s; message %d received\n", at(), g.id, *first)

	// Shutdown with a context long enough for the stream to finish.
	var shutErr error
	shut := make(chan struct{}) // closed when Shutdown has returned shutErr
	t0 := time.Now()
	go func() {
		defer close(shut)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		shutErr = g.srv.Shutdown(sctx)
	}()
	for deadline := time.Now().Add(5 * time.Second); g.srv.Health().Status("") == health.Serving; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // Shutdown turns health to NOT_SERVING first thing
			return fmt.Errorf("%s: Shutdown did not begin within 5s", g.id)
		}
	}
	fmt.Fprintf(w, "%s  %s: Shutdown began with %d request in flight (the stream): new requests are refused \"shutting down\", not executed\n",
		at(), g.id, g.srv.InFlight())

	// New streams while it drains: each must deliver 1..newCount, from another provider.
	opened, meanwhile, received := 0, 0, len(got)
	for range newStreams {
		select {
		case <-shut:
		default:
			meanwhile++ // opened while g drained
		}
		s, err := consumer.OpenServerStream[int](ctx, p, "Arith.Count", arith.CountArgs{N: newCount})
		if err != nil {
			return fmt.Errorf("a new stream during the shutdown: %w", err)
		}
		opened++
		msgs, err := drain(s)
		s.Close()
		if err != nil {
			return fmt.Errorf("a new stream during the shutdown: %w", err)
		}
		if err := inOrder(msgs, newCount); err != nil {
			return fmt.Errorf("a new stream during the shutdown: %w", err)
		}
		received += len(msgs)
	}
	var elsewhere []string
	for _, n := range nodes {
		if n != g {
			elsewhere = append(elsewhere, fmt.Sprintf("%s %d", n.id, n.streams.Load()-before[n]))
		}
	}
	fmt.Fprintf(w, "%s  %d new Arith.Count(%d) streams, %d of them opened while %s drained; each got 1..%d; served by %s, %s %d\n",
		at(), opened, newCount, meanwhile, g.id, newCount, strings.Join(elsewhere, ", "), g.id, g.streams.Load()-before[g]-1)

	rest, err := drain(long)
	got = append(got, rest...)
	received += len(rest)
	if err != nil {
		return fmt.Errorf("Arith.Count through the shutdown of %s, after %d messages: %w", g.id, len(got), err)
	}
	if err := inOrder(got, count); err != nil {
		return fmt.Errorf("Arith.Count through the shutdown of %s: %w", g.id, err)
	}
	fmt.Fprintf(w, "%s  the stream ended cleanly (io.EOF) after messages 1..%d, in order\n", at(), len(got))
	<-shut
	if shutErr != nil {
		return fmt.Errorf("shutdown %s: %w", g.id, shutErr)
	}
	took := time.Since(t0).Round(time.Millisecond)
	<-g.done
	fmt.Fprintf(w, "%s  %s: Shutdown returned nil after %s, once the stream had ended (Serve returned %q)\n\n", at(), g.id, took, g.serveErr)

	fmt.Fprintf(w, "  %-10s %8s %14s\n", "provider", "streams", "messages sent")
	var sent int64
	for _, n := range nodes {
		fmt.Fprintf(w, "  %-10s %8d %14d\n", n.id, n.streams.Load()-before[n], n.sent.Load())
		sent += n.sent.Load()
	}
	fmt.Fprintln(w)
	if sent != int64(received) {
		return fmt.Errorf("the providers sent %d messages, the client received %d", sent, received)
	}
	fmt.Fprintf(w, "No message lost: the providers sent %d, the client received %d.\n", sent, received)
	fmt.Fprintf(w, "  The stream on %s outlived its Shutdown: %d of %d messages, in order; the new streams went to the others.\n",
		g.id, len(got), count)
	return nil
}

// drain receives a stream's messages until it ends; a clean end is no error.
func drain(s *consumer.RecvStream[int]) ([]int, error) {
	var msgs []int
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, *m)
	}
}

// inOrder checks that msgs are 1..n.
func inOrder(msgs []int, n int) error {
	if len(msgs) != n {
		return fmt.Errorf("%d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m != i+1 {
			return fmt.Errorf("message %d is %d, want %d", i+1, m, i+1)
		}
	}
	return nil
}
