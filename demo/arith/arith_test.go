package arith_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/provider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs arith.New(id) on a loopback provider and returns a client.
func serve(t *testing.T, id string) *consumer.Client {
	t.Helper()
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)))
	if err := srv.Register(arith.New(id)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c, err := consumer.Dial("tcp@" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		<-served
	})
	return c
}

func call(t *testing.T, c *consumer.Client, method string, args, reply any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Call(ctx, method, args, reply)
}

func TestArithmetic(t *testing.T) {
	c := serve(t, "a1")
	for _, tc := range []struct {
		method string
		args   arith.Args
		want   int
	}{
		{"Arith.Add", arith.Args{A: 40, B: 2}, 42},
		{"Arith.Add", arith.Args{A: -5, B: 3}, -2},
		{"Arith.Mul", arith.Args{A: 6, B: 7}, 42},
		{"Arith.Div", arith.Args{A: 85, B: 2}, 42},
		{"Arith.Div", arith.Args{A: -7, B: 2}, -3},
	} {
		var got int
		if err := call(t, c, tc.method, tc.args, &got); err != nil || got != tc.want {
			t.Errorf("%s(%d, %d) = %d, %v; want %d", tc.method, tc.args.A, tc.args.B, got, err, tc.want)
		}
	}
}

func TestDivideByZeroReachesTheCallerIntact(t *testing.T) {
	c := serve(t, "a1")
	var q int
	err := call(t, c, "Arith.Div", arith.Args{A: 1, B: 0}, &q)
	var se *consumer.ServiceError
	if !errors.As(err, &se) {
		t.Fatalf("Div(1, 0) = %v, want a *consumer.ServiceError", err)
	}
	if se.Message != arith.ErrDivideByZero.Error() {
		t.Errorf("message %q, want %q", se.Message, arith.ErrDivideByZero.Error())
	}
}

func TestSleepRepliesWithTheInstanceID(t *testing.T) {
	c := serve(t, "arith-7")
	start := time.Now()
	var id string
	if err := call(t, c, "Arith.Sleep", 30, &id); err != nil {
		t.Fatal(err)
	}
	if id != "arith-7" {
		t.Errorf("Sleep replied %q, want the instance ID arith-7", id)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Errorf("Sleep(30) returned after %v", took)
	}
	if err := call(t, c, "Arith.Sleep", 0, &id); err != nil || id != "arith-7" {
		t.Errorf("Sleep(0) = %q, %v", id, err)
	}
}

func TestSleepRejectsOutOfRangeDurations(t *testing.T) {
	c := serve(t, "a1")
	for _, ms := range []int{-1, int(arith.MaxSleep/time.Millisecond) + 1} {
		var id string
		err := call(t, c, "Arith.Sleep", ms, &id)
		var se *consumer.ServiceError
		if !errors.As(err, &se) {
			t.Errorf("Sleep(%d) = %v, want a service error", ms, err)
		}
	}
}

func TestSleepEndsWithTheCallersDeadline(t *testing.T) {
	c := serve(t, "a1")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	var id string
	err := c.Call(ctx, "Arith.Sleep", 10_000, &id)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep(10000) with a 50ms deadline = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	// The handler ended with the deadline too: nothing is left running.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st arith.Stats
		if err := call(t, c, "Arith.Stats", struct{}{}, &st); err != nil {
			t.Fatal(err)
		}
		if st.Running == 0 && len(st.Sleeping) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handler still runs: %+v", st)
		}
		time.Sleep(5 * time.Millisecond) // the server's handler ends on its own clock
	}
}

func TestStatsCountsCallsAndRunningSleeps(t *testing.T) {
	c := serve(t, "a1")
	var n int
	for range 3 {
		if err := call(t, c, "Arith.Add", arith.Args{A: 1, B: 1}, &n); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 2)
	for range 2 {
		go func() {
			var id string
			done <- call(t, c, "Arith.Sleep", 300, &id)
		}()
	}
	var st arith.Stats
	deadline := time.Now().Add(5 * time.Second)
	for st.Sleeping[300] != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("Stats never showed the two Sleep(300) calls: %+v", st)
		}
		st = arith.Stats{}
		if err := call(t, c, "Arith.Stats", struct{}{}, &st); err != nil {
			t.Fatal(err)
		}
	}
	if st.ID != "a1" || st.Calls != 3 || st.Running != 2 {
		t.Errorf("Stats = %+v, want ID a1, 3 calls, 2 running", st)
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	st = arith.Stats{} // decoding merges into a non-nil map
	if err := call(t, c, "Arith.Stats", struct{}{}, &st); err != nil {
		t.Fatal(err)
	}
	if st.Calls != 5 || st.Running != 0 || len(st.Sleeping) != 0 {
		t.Errorf("after the sleeps, Stats = %+v, want 5 calls, none running", st)
	}
}
