// Package adminflag serves the admin page (observability/admin) for the demo
// binaries' -admin flag.
package adminflag

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Usage is the -admin flag's help text.
const Usage = "serve the admin page (/debug/shoal, /metrics, /healthz, /debug/pprof/) on this `address`, e.g. 127.0.0.1:9100 (port 0: a free port; default: none)"

// Serve listens on addr and serves page there, in the background, until
// stop is called; url is the page's address ("http://127.0.0.1:9100/debug/shoal").
func Serve(addr string, page http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("admin page: %w", err)
	}
	srv := &http.Server{Handler: page, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln) // returns http.ErrServerClosed once stopped; the program goes on without the page if it fails
	}()
	return "http://" + ln.Addr().String() + "/debug/shoal", func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}, nil
}
