package consumer_test

import (
	"context"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/provider"
)

// A ping-pong stream exchange allocates what the typed API hands out and
// nothing per message besides: on each side the message struct Recv
// returns and its bytes (4 in all). The stream's copy of each payload and
// its queue entry are reused.
func TestStreamMessageAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector are not the program's")
	}
	srv := provider.NewServer()
	if err := srv.RegisterName("PingPong", PingPong{}); err != nil {
		t.Fatal(err)
	}
	c, err := consumer.Dial("tcp@" + servetest.Start(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := consumer.OpenBidiStream[Bytes, Bytes](context.Background(), c, "PingPong.EchoBytes")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	args := &Bytes{Data: make([]byte, 1024)}
	exchange := func() {
		if err := s.Send(args); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Data) != len(args.Data) {
			t.Fatalf("answer of %d bytes, sent %d", len(r.Data), len(args.Data))
		}
	}
	exchange()
	const want = 4 // new(Bytes) and its Data, on each side
	if got := testing.AllocsPerRun(500, exchange); got > want {
		t.Fatalf("%.0f allocations per message each way, want at most %d", got, want)
	}
}
