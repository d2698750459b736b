package admin_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/observability/admin"
	"github.com/shoalrpc/shoal/provider"
)

// A provider and a consumer in one process, both shown on one admin page.
// In a program, serve the page on an address of its own:
// http.ListenAndServe("127.0.0.1:9100", page).
func Example() {
	page := admin.New() // admin.WithMetrics(promHandler) serves /metrics too
	reg := naming.NewMemory()

	srv := provider.NewServer(provider.WithStatsHandler(page.StatsHandler()),
		provider.WithRegistry(reg, naming.Instance{Service: "arith"}))
	if err := srv.Register(Arith{}); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	page.SetServer(srv)

	proxy, err := consumer.NewClientProxy("arith", reg, consumer.WithStatsHandler(page.StatsHandler()))
	if err != nil {
		log.Fatal(err)
	}
	defer proxy.Close()
	page.AddProxy(proxy)

	var sum int
	if err := proxy.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &sum); err != nil {
		log.Fatal(err)
	}

	web := httptest.NewServer(page)
	defer web.Close()
	for _, path := range []string{"/healthz", "/debug/shoal", "/metrics"} {
		resp, err := http.Get(web.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch path {
		case "/debug/shoal":
			fmt.Println(path, resp.Status, "shows Arith.Add called once:",
				strings.Contains(string(body), `<td>Arith.Add</td><td class="n">1</td>`))
		default:
			fmt.Println(path, resp.Status, strings.TrimSpace(string(body)))
		}
	}
	// Output:
	// /healthz 200 OK SERVING
	// /debug/shoal 200 OK shows Arith.Add called once: true
	// /metrics 404 Not Found no metrics handler on this admin page: give one with admin.WithMetrics (the Prometheus package's handler, say)
}
