package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/cputime"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/internal/testmsg"
	"github.com/shoalrpc/shoal/provider"
)

// Bytes is 1 KiB of bytes, the bench module's Blob1K message.
type Bytes struct{ Data []byte }

// PingPong echoes stream messages as the bench module's stream peer does.
type PingPong struct{}

// EchoBytes sends each message back.
func (PingPong) EchoBytes(_ context.Context, s *provider.BidiStream[Bytes, Bytes]) error {
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

// EchoMsg answers each benchmark message with Field1 = "OK".
func (PingPong) EchoMsg(_ context.Context, s *provider.BidiStream[testmsg.BenchmarkMessage, testmsg.BenchmarkMessage]) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		m.Field1 = "OK"
		if err := s.Send(m); err != nil {
			return err
		}
	}
}

// BenchmarkStreamPingPong is the bench module's stream workload in one
// process: n streams on one connection, each sending a message and waiting
// for its answer; an op is one message each way. cpu-µs/op and allocs/op
// are client and server together; the figures to watch are how they grow
// from 100 to 1,000 streams.
func BenchmarkStreamPingPong(b *testing.B) {
	for _, kind := range []string{"1KB", "msg"} {
		for _, n := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("msg=%s/streams=%d", kind, n), func(b *testing.B) {
				srv := provider.NewServer()
				if err := srv.RegisterName("PingPong", PingPong{}); err != nil {
					b.Fatal(err)
				}
				c, err := consumer.Dial("tcp@" + servetest.Start(b, srv))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				var exchanges []func() error
				for range n {
					if kind == "1KB" {
						exchanges = append(exchanges, openPingPong(b, c, "PingPong.EchoBytes", &Bytes{Data: make([]byte, 1024)},
							func(r *Bytes) bool { return len(r.Data) == 1024 }))
					} else {
						exchanges = append(exchanges, openPingPong(b, c, "PingPong.EchoMsg", testmsg.NewBenchmarkMessage(),
							func(r *testmsg.BenchmarkMessage) bool { return r.Field1 == "OK" }))
					}
				}
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cputime.Process()
				for _, exchange := range exchanges {
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							if err := exchange(); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N)/1000, "cpu-µs/op")
			})
		}
	}
}

// openPingPong opens a bidi stream of method and returns one exchange on
// it: send args, receive the answer and check it. The stream ends when b
// does.
func openPingPong[M any](b *testing.B, c *consumer.Client, method string, args *M, ok func(*M) bool) func() error {
	s, err := consumer.OpenBidiStream[M, M](context.Background(), c, method)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		s.CloseSend()
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	})
	return func() error {
		if err := s.Send(args); err != nil {
			return err
		}
		r, err := s.Recv()
		if err != nil {
			return err
		}
		if !ok(r) {
			return fmt.Errorf("%s: bad answer", method)
		}
		return nil
	}
}
