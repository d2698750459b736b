package shoal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Tally serves the three kinds of stream.
type Tally struct{}

// Count is a server stream: it sends 1..n.
func (Tally) Count(ctx context.Context, n int, s *provider.ServerStream[int]) error {
	for i := 1; i <= n; i++ {
		if err := s.Send(&i); err != nil {
			return err // the caller went away
		}
	}
	return nil // the caller's Recv returns io.EOF
}

// Sum is a client stream: it adds what the caller sends and replies once.
func (Tally) Sum(ctx context.Context, s *provider.ClientStream[int], total *int) error {
	for {
		n, err := s.Recv()
		if errors.Is(err, io.EOF) { // the caller has sent everything
			return nil
		}
		if err != nil {
			return err
		}
		*total += *n
	}
}

// Echo is a bidirectional stream: each message goes back as it arrives.
func (Tally) Echo(ctx context.Context, s *provider.BidiStream[string, string]) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(m); err != nil {
			return err
		}
	}
}

// A server stream, a client stream and a bidirectional stream through a
// ClientProxy: a stream stays on the instance it opened on.
func Example_streams() {
	reg := naming.NewMemory()
	srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "tally"}))
	if err := srv.Register(Tally{}); err != nil { // Tally.Count, Tally.Sum, Tally.Echo
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background()) // open streams finish first
	p, err := consumer.NewClientProxy("tally", reg)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background() // ending ctx resets the stream; the method's ctx ends too

	// Server stream: one argument, many replies, then io.EOF.
	count, err := consumer.OpenServerStream[int](ctx, p, "Tally.Count", 3)
	if err != nil {
		log.Fatal(err)
	}
	for {
		n, err := count.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("count", *n)
	}

	// Client stream: many arguments, one reply.
	sum, err := consumer.OpenClientStream[int, int](ctx, p, "Tally.Sum")
	if err != nil {
		log.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		if err := sum.Send(&i); err != nil {
			log.Fatal(err)
		}
	}
	total, err := sum.CloseAndRecv()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sum", *total)

	// Bidirectional: Send and Recv may run on two goroutines.
	echo, err := consumer.OpenBidiStream[string, string](ctx, p, "Tally.Echo")
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []string{"hello", "stream"} {
		if err := echo.Send(&m); err != nil {
			log.Fatal(err)
		}
		back, err := echo.Recv()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("echo", *back)
	}
	echo.CloseSend()
	if _, err := echo.Recv(); err == io.EOF {
		fmt.Println("echo done")
	}
	// Output:
	// count 1
	// count 2
	// count 3
	// sum 10
	// echo hello
	// echo stream
	// echo done
}
