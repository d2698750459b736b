package arith_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/arith"
)

func TestCountSumEcho(t *testing.T) {
	c := serve(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	count, err := consumer.OpenServerStream[int](ctx, c, "Arith.Count", arith.CountArgs{N: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for want := 1; ; want++ {
		n, err := count.Recv()
		if err == io.EOF {
			if want != 1001 {
				t.Fatalf("Count ended after %d messages, want 1000", want-1)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if *n != want {
			t.Fatalf("message %d is %d: out of order", want, *n)
		}
	}

	sum, err := consumer.OpenClientStream[int, int](ctx, c, "Arith.Sum")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		if err := sum.Send(&i); err != nil {
			t.Fatal(err)
		}
	}
	total, err := sum.CloseAndRecv()
	if err != nil || total == nil || *total != 5050 {
		t.Fatalf("Sum of 1..100: %v, %v", total, err)
	}

	echo, err := consumer.OpenBidiStream[string, string](ctx, c, "Arith.Echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two", "three"} {
		if err := echo.Send(&m); err != nil {
			t.Fatal(err)
		}
		got, err := echo.Recv()
		if err != nil || *got != m {
			t.Fatalf("Echo of %q: %v, %v", m, got, err)
		}
	}
	if err := echo.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := echo.Recv(); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want io.EOF", err)
	}
}

func TestCountErrorArrivesAsServiceError(t *testing.T) {
	c := serve(t, "a")
	s, err := consumer.OpenServerStream[int](context.Background(), c, "Arith.Count", arith.CountArgs{N: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	var se *consumer.ServiceError
	if !errors.As(err, &se) || se.Method != "Arith.Count" {
		t.Fatalf("got %v (%T), want a *consumer.ServiceError from Arith.Count", err, err)
	}
}
