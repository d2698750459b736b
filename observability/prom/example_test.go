package prom_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/observability/prom"
	"github.com/shoalrpc/shoal/provider"
)

// Arith is the examples' service.
type Arith struct{}

// Add adds.
func (Arith) Add(args [2]int, sum *int) error { *sum = args[0] + args[1]; return nil }

// Div divides.
func (Arith) Div(args [2]int, q *int) error {
	if args[1] == 0 {
		return errors.New("divide by zero")
	}
	*q = args[0] / args[1]
	return nil
}

// One Metrics value serves a server, its clients and /metrics. Its
// handlers go where stats handlers go; Handler is what to mount at
// /metrics (here on a test server; in a program, http.Handle("/metrics",
// metrics.Handler())).
func Example() {
	metrics, err := prom.New()
	if err != nil {
		panic(err)
	}
	srv := provider.NewServer(provider.WithStatsHandler(metrics.ServerHandler()))
	if err := srv.Register(Arith{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	if err := srv.Start(ln); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())
	web := httptest.NewServer(metrics.Handler())
	defer web.Close()

	c, err := consumer.Dial("tcp@"+ln.Addr().String(), consumer.WithStatsHandler(metrics.ClientHandler()))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	var n int
	c.Call(context.Background(), "Arith.Add", [2]int{1, 2}, &n)
	c.Call(context.Background(), "Arith.Add", [2]int{3, 4}, &n)
	c.Call(context.Background(), "Arith.Div", [2]int{1, 0}, &n)
	c.Call(context.Background(), "Arith.Pow", [2]int{2, 8}, &n) // unknown: "other"

	resp, err := http.Get(web.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "shoal_client_handled_total") {
			fmt.Println(lines.Text())
		}
	}
	// Output:
	// shoal_client_handled_total{code="ok",method="Add",service="Arith"} 2
	// shoal_client_handled_total{code="service_error",method="Div",service="Arith"} 1
	// shoal_client_handled_total{code="unknown_method",method="other",service="other"} 1
}
