package consumer_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// healthChanges prints the proxy's health decisions.
type healthChanges struct {
	stats.Base
	seen chan string
}

func (h healthChanges) HandleProxy(ev *stats.ProxyEvent) {
	if ev.Kind == stats.InstanceUnhealthy || ev.Kind == stats.InstanceHealthy {
		h.seen <- ev.Kind.String() + ": " + ev.Detail
	}
}

// With WithHealthCheck, a ClientProxy asks each instance for its health
// every interval: one that says NOT_SERVING, or does not answer, is left out
// of picks until it answers SERVING again.
func ExampleWithHealthCheck() {
	reg := naming.NewMemory()
	srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "arith"}))
	if err := srv.Register(Arith{}); err != nil {
		log.Fatal(err)
	}
	ln, err := provider.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	changes := healthChanges{seen: make(chan string, 4)}
	proxy, err := consumer.NewClientProxy("arith", reg,
		consumer.WithHealthCheck(100*time.Millisecond, 0),
		consumer.WithStatsHandler(changes),
		consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer proxy.Close()

	srv.Health().SetStatus("arith", health.NotServing)
	fmt.Println(<-changes.seen)
	srv.Health().SetStatus("arith", health.Serving)
	fmt.Println(<-changes.seen)
	// Output:
	// instance unhealthy: NOT_SERVING
	// instance healthy: SERVING
}
