package prom_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/observability/prom"
	"github.com/shoalrpc/shoal/provider"
)

// Ticker is a stream service that counts how its own runs ended, apart
// from any metric.
type Ticker struct {
	started            chan struct{}
	clean, failed, cut atomic.Int64
}

// Count sends 1..n; a negative n fails after one message.
func (tk *Ticker) Count(_ context.Context, n int, s *provider.ServerStream[int]) error {
	tk.started <- struct{}{}
	if n < 0 {
		one := 1
		if err := s.Send(&one); err != nil {
			tk.cut.Add(1)
			return err
		}
		tk.failed.Add(1)
		return errors.New("counting backwards")
	}
	for i := 1; i <= n; i++ {
		if err := s.Send(&i); err != nil {
			tk.cut.Add(1)
			return err
		}
	}
	tk.clean.Add(1)
	return nil
}

// TestStreamCounts: a stream counts once in handled_total, on each side,
// with its final code: ok for a clean end, service_error for the method's
// error, and for a stream the caller closed early canceled (client) and
// aborted (server), under the method's own labels.
func TestStreamCounts(t *testing.T) {
	m, err := prom.New()
	if err != nil {
		t.Fatal(err)
	}
	done := newEnded()
	tk := &Ticker{started: make(chan struct{}, 10)}
	srv := provider.NewServer(provider.WithStatsHandler(m.ServerHandler()), provider.WithStatsHandler(done))
	if err := srv.Register(tk); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := "tcp@" + ln.Addr().String()
	c, err := consumer.Dial(addr, consumer.WithStatsHandler(m.ClientHandler()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	seen := map[string]int{}                  // the caller's view: outcome → streams
	for _, n := range []int{1 << 30, 3, -1} { // the abandoned one first: its code alone must keep the method's labels
		s, err := consumer.OpenServerStream[int](context.Background(), c, "Ticker.Count", n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1<<30 { // abandoned after one message
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			seen["closed"]++
			continue
		}
		for {
			_, err = s.Recv()
			if err != nil {
				break
			}
		}
		var se *consumer.ServiceError
		switch {
		case errors.Is(err, io.EOF):
			seen["ok"]++
		case errors.As(err, &se):
			seen["service_error"]++
		default:
			t.Fatalf("stream Count(%d): %v", n, err)
		}
	}
	done.wait(t, 3)
	hs := httptest.NewServer(m.Handler())
	defer hs.Close()
	got := scrape(t, hs.URL)
	check(t, got, map[string]float64{
		series("shoal_server_handled_total", "service", "Ticker", "method", "Count", "code", "ok"):            float64(tk.clean.Load()),
		series("shoal_server_handled_total", "service", "Ticker", "method", "Count", "code", "service_error"): float64(tk.failed.Load()),
		series("shoal_server_handled_total", "service", "Ticker", "method", "Count", "code", "aborted"):       float64(tk.cut.Load()),
		series("shoal_server_handling_seconds_count", "service", "Ticker", "method", "Count"):                 3,
		series("shoal_server_in_flight"): 0,
		series("shoal_client_handled_total", "service", "Ticker", "method", "Count", "code", "ok"):            float64(seen["ok"]),
		series("shoal_client_handled_total", "service", "Ticker", "method", "Count", "code", "service_error"): float64(seen["service_error"]),
		series("shoal_client_handled_total", "service", "Ticker", "method", "Count", "code", "canceled"):      float64(seen["closed"]),
		series("shoal_client_attempts_total", "service", "Ticker", "method", "Count", "code", "ok"):           float64(seen["ok"]),
	})
	if tk.clean.Load() != 1 || tk.failed.Load() != 1 || tk.cut.Load() != 1 {
		t.Errorf("the service ended %d streams cleanly, %d failed, %d cut; want 1 each", tk.clean.Load(), tk.failed.Load(), tk.cut.Load())
	}
}
