package peer

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// TestStreamPeersAnswer serves every stream peer in this process and, for
// each message, runs two rounds of 20 streams on one connection: every
// exchange is answered (the server's answer is checked), EndRound ends
// every stream cleanly (each reads the server's end, io.EOF), and the next
// round opens new streams on the same connection.
func TestStreamPeersAnswer(t *testing.T) {
	for _, p := range StreamPeers() {
		for _, m := range []StreamMsg{Blob1K, BenchMsg} {
			t.Run(p.Name()+"/"+m.String(), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				srvCtx, stop := context.WithCancel(ctx)
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				served := make(chan error, 1)
				go func() { served <- p.Serve(srvCtx, ln) }()
				c, err := p.DialStream(ctx, ln.Addr().String(), m)
				if err != nil {
					t.Fatal(err)
				}
				end, ok := c.(RoundEnder)
				if !ok {
					t.Fatalf("%s's client is not a RoundEnder", p.Name())
				}
				for round := range 2 {
					callers := make([]func(context.Context) error, 20)
					for i := range callers {
						callers[i] = c.NewCaller()
					}
					var wg sync.WaitGroup
					errs := make(chan error, len(callers))
					for _, call := range callers {
						wg.Go(func() {
							for range 10 {
								if err := call(ctx); err != nil {
									errs <- err
									return
								}
							}
						})
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						t.Errorf("round %d: exchange: %v", round, err)
					}
					if err := end.EndRound(); err != nil {
						t.Errorf("round %d: EndRound: %v", round, err)
					}
				}
				if err := c.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
				stop()
				select {
				case err := <-served:
					if err != nil {
						t.Errorf("serve: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Error("server did not stop within 5 s")
				}
			})
		}
	}
}

func TestStreamByName(t *testing.T) {
	for _, p := range StreamPeers() {
		if q, ok := StreamByName(p.Name()); !ok || q.Name() != p.Name() {
			t.Errorf("StreamByName(%q) = %v, %v", p.Name(), q, ok)
		}
	}
	if _, ok := StreamByName("shoal"); ok {
		t.Error("StreamByName(shoal): a unary peer is not a stream peer")
	}
}
