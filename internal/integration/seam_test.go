package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// trace records, in order, what interceptors saw.
type trace struct {
	mu    sync.Mutex
	lines []string
}

func (tr *trace) add(format string, args ...any) {
	tr.mu.Lock()
	tr.lines = append(tr.lines, fmt.Sprintf(format, args...))
	tr.mu.Unlock()
}

func (tr *trace) take() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	l := tr.lines
	tr.lines = nil
	return l
}

// tracing is a pass-through server interceptor that records what it saw.
func tracing(tr *trace, name string) provider.Interceptor {
	return func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		p, _ := provider.PeerOf(ctx)
		tr.add("%s>%s.%s md=%s peer=%t", name, info.Service, info.Name, provider.Metadata(ctx)["k"], p.Addr != nil)
		reply, err := next(ctx, args)
		tr.add("%s<%v", name, err)
		return reply, err
	}
}

func TestServerInterceptorsWrapInOrderAndSeeTheRequest(t *testing.T) {
	var tr trace
	s := serve(t, provider.WithInterceptors(tracing(&tr, "a"), tracing(&tr, "b")))
	c := dial(t, s.addr)
	ctx := consumer.WithMetadata(context.Background(), map[string]string{"k": "v"})
	var out int
	if err := c.Call(ctx, "Arith.Add", Args{A: 2, B: 3}, &out); err != nil || out != 5 {
		t.Fatalf("Add through two interceptors: %d, %v", out, err)
	}
	want := []string{"a>Arith.Add md=v peer=true", "b>Arith.Add md=v peer=true", "b<<nil>", "a<<nil>"}
	if got := tr.take(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("interceptors saw %q, want %q", got, want)
	}
	// The method's own error passes out through the chain as its error.
	if err := c.Call(ctx, "Arith.Div", Args{A: 1}, &out); !isServiceError(err) {
		t.Fatalf("Div by zero through the chain: %v, want the method's own error", err)
	}
}

func isServiceError(err error) bool {
	var se *consumer.ServiceError
	return errors.As(err, &se)
}

func TestServerInterceptorRefusalIsNotExecuted(t *testing.T) {
	refuse := func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		if *(args.(*int)) > 100 {
			return nil, errors.New("too long a nap")
		}
		if *(args.(*int)) < 0 {
			return nil, provider.Refuse(protocol.StatusOverloaded, errors.New("rate limited"))
		}
		return next(ctx, args)
	}
	s := serve(t, provider.WithInterceptors(refuse))
	c := dial(t, s.addr)
	var out int
	err := c.Call(context.Background(), "Arith.Sleep", 1000, &out)
	if !errors.Is(err, consumer.ErrRefused) || !strings.Contains(err.Error(), "too long a nap") {
		t.Fatalf("refused call: %v, want ErrRefused with the interceptor's words", err)
	}
	err = c.Call(context.Background(), "Arith.Sleep", -1, &out)
	if !errors.Is(err, consumer.ErrOverloaded) || !strings.Contains(err.Error(), "rate limited") {
		t.Fatalf("call refused as overloaded: %v", err)
	}
	if err := c.Call(context.Background(), "Arith.Sleep", 1, &out); err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	if n := s.arith.executed.Load(); n != 1 {
		t.Fatalf("Sleep ran %d times, want 1: refused calls must not run", n)
	}
}

func TestServerInterceptorRefusalMovesAProxyCallElsewhere(t *testing.T) {
	// One of two instances refuses everything; a Failfast proxy still
	// succeeds every call, because a refusal is "not executed".
	reg := naming.NewMemory()
	defer reg.Close()
	refusing := serve(t, provider.WithInterceptors(func(context.Context, *provider.RequestInfo, any, provider.Handler) (any, error) {
		return nil, errors.New("not here")
	}), provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "refusing"}))
	willing := serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "willing"}))
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failfast), consumer.WithWaitForInstances(10*time.Second))
	waitListed(t, p, 2)
	var out int
	for i := range 10 {
		if err := p.Call(context.Background(), "Arith.Sleep", 0, &out); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n, m := willing.arith.executed.Load(), refusing.arith.executed.Load(); n != 10 || m != 0 {
		t.Fatalf("executions: willing %d, refusing %d; want 10 and 0", n, m)
	}
}

// clientTracing is a pass-through client interceptor that records what it
// saw, with the attempt when there is one.
func clientTracing(tr *trace, name string) consumer.Interceptor {
	return func(ctx context.Context, method string, args, reply any, next consumer.Invoker) error {
		if a, ok := consumer.AttemptOf(ctx); ok {
			tr.add("%s>%s#%d retry=%t", name, method, a.Attempt, a.Retry)
		} else {
			tr.add("%s>%s", name, method)
		}
		err := next(ctx, method, args, reply)
		tr.add("%s<%t", name, err == nil)
		return err
	}
}

func TestClientInterceptorsWrapEachCall(t *testing.T) {
	var tr trace
	s := serve(t)
	c := dial(t, s.addr, consumer.WithInterceptors(clientTracing(&tr, "x"), clientTracing(&tr, "y")))
	var out int
	if err := c.Call(context.Background(), "Arith.Add", Args{A: 1, B: 1}, &out); err != nil || out != 2 {
		t.Fatalf("Add: %d, %v", out, err)
	}
	want := "x>Arith.Add|y>Arith.Add|y<true|x<true"
	if got := strings.Join(tr.take(), "|"); got != want {
		t.Fatalf("client interceptors saw %q, want %q", got, want)
	}
	// Short-circuit: an interceptor that answers itself sends nothing.
	cached := consumer.WithInterceptors(func(ctx context.Context, method string, args, reply any, next consumer.Invoker) error {
		*(reply.(*int)) = 42
		return nil
	})
	c2 := dial(t, s.addr, cached)
	if err := c2.Call(context.Background(), "Arith.Sleep", 0, &out); err != nil || out != 42 {
		t.Fatalf("cached answer: %d, %v", out, err)
	}
	if n := s.arith.executed.Load(); n != 0 {
		t.Fatalf("Sleep ran %d times behind a short-circuiting interceptor", n)
	}
}

// counting is a stats handler that counts what it is told.
type counting struct {
	stats.Base
	mu       sync.Mutex
	begins   map[stats.Kind]int
	ends     map[stats.Kind][]stats.RPCEnd
	attempts []stats.RPCInfo
	conns    map[bool]int
	proxy    []stats.ProxyEventKind
	ended    chan stats.Kind // told each RPCEnd, for tests that wait for one
}

func newCounting() *counting {
	return &counting{begins: map[stats.Kind]int{}, ends: map[stats.Kind][]stats.RPCEnd{}, conns: map[bool]int{}, ended: make(chan stats.Kind, 1<<16)}
}

// waitEnded waits until every begun RPC of kind has ended: a server reports
// a request's end after its reply is written, so after the client has it.
func (h *counting) waitEnded(t *testing.T, kind stats.Kind) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		h.mu.Lock()
		done := h.begins[kind] == len(h.ends[kind])
		h.mu.Unlock()
		if done {
			return
		}
		select {
		case <-h.ended:
		case <-timeout:
			t.Fatalf("%s: not every one that began ended within 10 s", kind)
		}
	}
}

type beganKey struct{}

func (h *counting) RPCBegin(ctx context.Context, info *stats.RPCInfo) context.Context {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.begins[info.Kind]++
	return context.WithValue(ctx, beganKey{}, info.Kind)
}

func (h *counting) RPCEnd(ctx context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if k, _ := ctx.Value(beganKey{}).(stats.Kind); k != info.Kind {
		panic("RPCEnd did not get RPCBegin's context")
	}
	h.ends[info.Kind] = append(h.ends[info.Kind], *end)
	if info.Kind == stats.Attempt {
		h.attempts = append(h.attempts, *info)
	}
	select {
	case h.ended <- info.Kind:
	default:
	}
}

func (h *counting) HandleConn(ev *stats.ConnEvent) {
	h.mu.Lock()
	h.conns[ev.Begin]++
	h.mu.Unlock()
}

func (h *counting) HandleProxy(ev *stats.ProxyEvent) {
	h.mu.Lock()
	h.proxy = append(h.proxy, ev.Kind)
	h.mu.Unlock()
}

func TestStatsShowAFailoverRetryAsOneCallOfTwoAttempts(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	// Connections to the first instance break as soon as a call is written
	// on them: maybe executed, so Failover retries on the other.
	breaking := serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "a-breaking"}))
	srvStats := newCounting()
	good := serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "b-good"}), provider.WithStatsHandler(srvStats))
	cliStats := newCounting()
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failover), consumer.WithStatsHandler(cliStats),
		consumer.WithLoadBalance(0 /* random */), consumer.WithWaitForInstances(10*time.Second),
		consumer.WithDialer(cutFirstInstance(breaking.addr)))
	waitListed(t, p, 2)
	var out int
	// Random picks: call until one call landed first on the breaking instance.
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("200 calls and none tried the breaking instance first")
		}
		before := len(cliStats.snapshotAttempts())
		if err := p.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &out); err != nil || out != 3 {
			t.Fatalf("call %d: %d, %v", i, out, err)
		}
		if len(cliStats.snapshotAttempts())-before == 2 {
			break
		}
	}
	cliStats.mu.Lock()
	defer cliStats.mu.Unlock()
	calls, attempts := cliStats.ends[stats.Call], cliStats.ends[stats.Attempt]
	last := attempts[len(attempts)-2:]
	if last[0].Class != stats.MaybeExecuted || last[1].Class != stats.OK {
		t.Fatalf("the retried call's attempts ended %v then %v, want maybe executed then ok", last[0].Class, last[1].Class)
	}
	a := cliStats.attempts[len(cliStats.attempts)-2:]
	if a[0].Attempt != 1 || a[0].Retry || a[1].Attempt != 2 || !a[1].Retry || a[0].Addr != breaking.addr || a[1].Addr != good.addr {
		t.Fatalf("attempt infos %+v, want #1 on the breaking instance then retry #2 on the good one", a)
	}
	if calls[len(calls)-1].Class != stats.OK || cliStats.begins[stats.Call] != len(calls) || cliStats.begins[stats.Attempt] != len(attempts) {
		t.Fatalf("calls %d (begun %d), attempts %d (begun %d)", len(calls), cliStats.begins[stats.Call], len(attempts), cliStats.begins[stats.Attempt])
	}
	if end := last[1]; end.BytesOut <= protocol.HeaderSize || end.BytesIn <= protocol.HeaderSize || end.Status != "ok" {
		t.Fatalf("attempt end %+v: want wire sizes and status", end)
	}
	if cliStats.conns[true] < 1 {
		t.Fatal("no client connection was reported opened")
	}
	srvStats.waitEnded(t, stats.Request)
	srvStats.mu.Lock()
	defer srvStats.mu.Unlock()
	if n := srvStats.begins[stats.Request]; n != len(srvStats.ends[stats.Request]) || n == 0 || srvStats.conns[true] == 0 {
		t.Fatalf("server: %d requests begun, %d ended, %d connections", n, len(srvStats.ends[stats.Request]), srvStats.conns[true])
	}
}

func (h *counting) snapshotAttempts() []stats.RPCInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]stats.RPCInfo(nil), h.attempts...)
}

// cutFirstInstance is a dialer whose connections to addr ("tcp@host:port")
// close themselves once a frame has been written on them.
func cutFirstInstance(addr string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil || "tcp@"+address != addr {
			return nc, err
		}
		return cutAfterWrite{nc}, nil
	}
}

type cutAfterWrite struct{ net.Conn }

func (c cutAfterWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.Conn.Close()
	return n, err
}

func TestProxyInterceptorsWrapTheCallAndEachAttempt(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	breaking := serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "a-breaking"}))
	serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "b-good"}))
	var calls, attempts trace
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failover), consumer.WithLoadBalance(0 /* random */),
		consumer.WithWaitForInstances(10*time.Second), consumer.WithDialer(cutFirstInstance(breaking.addr)),
		consumer.WithInterceptors(clientTracing(&calls, "call")),
		consumer.WithAttemptInterceptors(clientTracing(&attempts, "attempt")))
	waitListed(t, p, 2)
	var out int
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("200 calls and none tried the breaking instance first")
		}
		if err := p.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &out); err != nil || out != 3 {
			t.Fatalf("call %d: %d, %v", i, out, err)
		}
		c, a := calls.take(), attempts.take()
		if strings.Join(c, "|") != "call>Arith.Add|call<true" {
			t.Fatalf("call interceptor saw %q, want one call", c)
		}
		if len(a) == 4 {
			if want := "attempt>Arith.Add#1 retry=false|attempt<false|attempt>Arith.Add#2 retry=true|attempt<true"; strings.Join(a, "|") != want {
				t.Fatalf("attempt interceptor saw %q, want %q", a, want)
			}
			break
		}
		if strings.Join(a, "|") != "attempt>Arith.Add#1 retry=false|attempt<true" {
			t.Fatalf("attempt interceptor saw %q, want one attempt", a)
		}
	}
}

func TestAPanicIsLoggedWithMethodPeerAndStack(t *testing.T) {
	var buf syncBuffer
	s := serve(t, provider.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	c := dial(t, s.addr)
	var out int
	if err := c.Call(context.Background(), "Arith.Panic", 1, &out); !errors.Is(err, consumer.ErrInternal) {
		t.Fatalf("panicking method: %v, want ErrInternal", err)
	}
	// The log line is written before the reply is sent.
	line := buf.String()
	for _, want := range []string{"method panicked", "method=Arith.Panic", "remote=127.0.0.1:", "err=\"panic: boom\"", "stack=", "(*Arith).Panic"} {
		if !strings.Contains(line, want) {
			t.Fatalf("log %q lacks %q", line, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// firstBalancer always picks the first instance (by ID), and records the
// feedback it is given.
type firstBalancer struct {
	mu        sync.Mutex
	instances []*naming.Instance
	picks     int
	feedback  []error
}

func (b *firstBalancer) Update(list []*naming.Instance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.instances = append([]*naming.Instance(nil), list...)
	slices.SortFunc(b.instances, func(x, y *naming.Instance) int { return strings.Compare(x.ID, y.ID) })
}

func (b *firstBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.instances) == 0 {
		return nil, func(error) {}, loadbalance.ErrNoInstances
	}
	b.picks++
	return b.instances[0], func(err error) {
		b.mu.Lock()
		b.feedback = append(b.feedback, err)
		b.mu.Unlock()
	}, nil
}

func TestProxyTakesABalancerWrittenOutsideShoal(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	first := serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "a"}))
	second := serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "b"}))
	b := &firstBalancer{}
	p := newProxy(t, reg, consumer.WithBalancer(func() loadbalance.Balancer { return b }), consumer.WithWaitForInstances(10*time.Second))
	waitListed(t, p, 2)
	var out int
	for i := range 20 {
		if err := p.Call(context.Background(), "Arith.Sleep", 0, &out); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n, m := first.arith.executed.Load(), second.arith.executed.Load(); n != 20 || m != 0 {
		t.Fatalf("executions: first %d, second %d; want 20 and 0", n, m)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.picks != 20 || len(b.feedback) != 20 || slices.ContainsFunc(b.feedback, func(err error) bool { return err != nil }) {
		t.Fatalf("%d picks, feedback %v: want 20 picks each answered with nil", b.picks, b.feedback)
	}
	if _, err := consumer.NewClientProxy("arith", reg, consumer.WithBalancer(func() loadbalance.Balancer { return nil })); err == nil || !strings.Contains(err.Error(), "nil Balancer") {
		t.Fatalf("a nil balancer: %v", err)
	}
}

// proxyEvents is a stats handler that hands proxy events to the test.
type proxyEvents struct {
	stats.Base
	ch chan stats.ProxyEvent
}

func (h *proxyEvents) HandleProxy(ev *stats.ProxyEvent) {
	select {
	case h.ch <- *ev:
	default: // the test stopped listening
	}
}

// next waits for the next event of kind, skipping others.
func (h *proxyEvents) next(t *testing.T, kind stats.ProxyEventKind) stats.ProxyEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-h.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 10 s", kind)
		}
	}
}

func TestStatsSeeTheProxyEjectAndReadmitAnInstance(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	dead := serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "a-dead"}))
	serve(t, provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "b-live"}))
	h := &proxyEvents{ch: make(chan stats.ProxyEvent, 1024)}
	p := newProxy(t, reg, consumer.WithStatsHandler(h), consumer.WithWaitForInstances(10*time.Second),
		consumer.WithOutlierEjection(1, 100*time.Millisecond, 100*time.Millisecond),
		consumer.WithDialer(func(ctx context.Context, network, address string) (net.Conn, error) {
			if "tcp@"+address == dead.addr {
				return nil, errors.New("refused by the test")
			}
			return (&net.Dialer{}).DialContext(ctx, network, address)
		}))
	waitListed(t, p, 2)
	if ev := h.next(t, stats.InstancesChanged); ev.Service != "arith" || ev.Instances == 0 {
		t.Fatalf("instances changed: %+v", ev)
	}
	var out int
	for i := range 4 { // round robin reaches the dead instance within two calls
		if err := p.Call(context.Background(), "Arith.Add", Args{A: i, B: 1}, &out); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if ev := h.next(t, stats.InstanceEjected); ev.Instance != "a-dead" || ev.Addr != dead.addr {
		t.Fatalf("ejected: %+v, want a-dead", ev)
	}
	if ev := h.next(t, stats.InstanceReadmitted); ev.Instance != "a-dead" {
		t.Fatalf("readmitted: %+v, want a-dead", ev)
	}
}
