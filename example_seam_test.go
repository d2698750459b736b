package shoal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// startArith serves Arith with opts on a loopback port and returns its
// address and a function that stops it.
func startArith(opts ...provider.Option) (addr string, stop func()) {
	srv := provider.NewServer(opts...)
	if err := srv.Register(Arith{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	return "tcp@" + ln.Addr().String(), func() { srv.Shutdown(context.Background()) }
}

// Interceptors wrap every call: here a server interceptor logs each request
// with its outcome and duration, and a client interceptor adds a request ID
// to the call's metadata.
func Example_loggingInterceptor() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "time" || a.Key == "took" { // vary from run to run
				return slog.Attr{}
			}
			return a
		},
	}))
	logRequests := func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		start := time.Now()
		reply, err := next(ctx, args)
		logger.Info("request", "method", info.Method, "id", provider.Metadata(ctx)["request-id"], "err", err, "took", time.Since(start))
		return reply, err
	}
	addr, stop := startArith(provider.WithInterceptors(logRequests))
	defer stop()

	var next int
	addRequestID := func(ctx context.Context, method string, args, reply any, invoke consumer.Invoker) error {
		next++
		ctx = consumer.WithMetadata(ctx, map[string]string{"request-id": fmt.Sprint(next)})
		return invoke(ctx, method, args, reply)
	}
	c, err := consumer.Dial(addr, consumer.WithInterceptors(addRequestID))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	var sum, q int
	c.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &sum)
	c.Call(context.Background(), "Arith.Div", Args{A: 1, B: 0}, &q)
	// Output:
	// level=INFO msg=request method=Arith.Add id=1 err=<nil>
	// level=INFO msg=request method=Arith.Div id=2 err="divide by zero"
}

// An interceptor that refuses a request without calling next answers it "not
// executed": the caller may safely try elsewhere. Refuse picks the status;
// this one checks a token sent with consumer.WithCredentials.
func Example_authInterceptor() {
	checkToken := func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		if provider.Metadata(ctx)["token"] != "s3cret" {
			return nil, provider.Refuse(protocol.StatusUnauthenticated, errors.New("bad token"))
		}
		return next(ctx, args)
	}
	addr, stop := startArith(provider.WithInterceptors(checkToken))
	defer stop()

	for _, token := range []string{"guess", "s3cret"} {
		c, err := consumer.Dial(addr, consumer.WithCredentials(map[string]string{"token": token}))
		if err != nil {
			panic(err)
		}
		var sum int
		err = c.Call(context.Background(), "Arith.Add", Args{A: 40, B: 2}, &sum)
		fmt.Println(sum, errors.Is(err, consumer.ErrUnauthenticated), err)
		c.Close()
	}
	// Output:
	// 0 true shoal: unauthenticated: Arith.Add: bad token
	// 42 false <nil>
}

// callCounter is a stats handler that counts calls by outcome class.
type callCounter struct {
	stats.Base // the events it does not need
	mu         sync.Mutex
	byClass    map[stats.Class]int
}

func (h *callCounter) RPCEnd(_ context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	if info.Kind == stats.Call {
		h.mu.Lock()
		h.byClass[end.Class]++
		h.mu.Unlock()
	}
}

// A stats handler observes calls, attempts, requests and connections without
// changing them: the hook metrics and tracing are built on.
func Example_statsHandler() {
	addr, stop := startArith()
	defer stop()
	counter := &callCounter{byClass: map[stats.Class]int{}}
	c, err := consumer.Dial(addr, consumer.WithStatsHandler(counter))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	var out int
	c.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &out)
	c.Call(context.Background(), "Arith.Div", Args{A: 1, B: 0}, &out)
	c.Call(context.Background(), "Arith.Mul", Args{A: 1, B: 0}, &out)
	fmt.Println(counter.byClass[stats.OK], "ok,", counter.byClass[stats.Final], "final")
	// Output:
	// 1 ok, 2 final
}
