// Package peer holds the RPC stacks the benchmark compares. Each one serves
// the same Hello.Say call (copy args to the reply, Field1 = "OK",
// Field2 = 100) and dials one client connection that all callers share.
package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/shoalrpc/shoal/bench/msg"
)

// ErrBadReply is returned by a call whose reply is not the expected answer
// (Field1 is not "OK", or the echoed frame is not the one sent).
var ErrBadReply = errors.New("bad reply")

// Peer is one RPC stack under test.
type Peer interface {
	// Name is the peer's name on the command line and in reports.
	Name() string
	// Serve serves Hello.Say on ln until ctx ends, then stops the server
	// and returns. It closes ln.
	Serve(ctx context.Context, ln net.Listener) error
	// Dial opens the one client connection to addr (host:port) that all
	// callers share.
	Dial(ctx context.Context, addr string) (Client, error)
}

// Client is one client connection; safe for concurrent use.
type Client interface {
	// NewCaller returns a function that makes one Say call with the
	// benchmark request and checks the reply. Each caller goroutine gets its
	// own, so a caller may keep its reply value between calls; it is not
	// safe for concurrent use.
	NewCaller() func(ctx context.Context) error
	// Close closes the connection.
	Close() error
}

// Default returns the peers a run compares unless told otherwise, in the
// order rounds run them.
func Default() []Peer {
	return []Peer{Shoal{}, NetRPC{}, RPCX{}, GRPC{}, Raw{}}
}

// All returns every peer: Default, then shoal and rpcx with the msgpack
// payload encoded by reflection instead of generated code.
func All() []Peer {
	return append(Default(), Shoal{Reflect: true}, RPCX{Reflect: true})
}

// Names returns the names of peers, in order.
func Names(peers []Peer) []string {
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.Name()
	}
	return names
}

// ByName returns the peer called name.
func ByName(name string) (Peer, error) {
	for _, p := range All() {
		if p.Name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("unknown peer %q (known: %s)", name, strings.Join(Names(All()), ", "))
}

// serveUntil runs serve in a goroutine and returns when it fails or ctx
// ends; then it calls stop and waits for serve to return.
func serveUntil(ctx context.Context, serve func() error, stop func()) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		stop()
		if ctx.Err() != nil {
			return nil
		}
		return err
	case <-ctx.Done():
		stop()
		<-errc
		return nil
	}
}

// serveConns accepts connections on ln and runs handle on each, until ctx
// ends; then it closes the listener and every connection it accepted.
func serveConns(ctx context.Context, name string, ln net.Listener, handle func(net.Conn)) error {
	var mu sync.Mutex
	var conns []net.Conn
	serve := func() error {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return fmt.Errorf("%s: accept: %w", name, err)
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			go handle(nc)
		}
	}
	stop := func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range conns {
			nc.Close()
		}
	}
	return serveUntil(ctx, serve, stop)
}

// structClient is the Client of the peers whose payload is the Go struct
// (shoal, rpcx, net/rpc): M is msg.BenchmarkMessage, or msg.Reflected for
// the peers that encode it by reflection.
type structClient[M msg.BenchmarkMessage | msg.Reflected] struct {
	args  *M
	call  func(ctx context.Context, args, reply any) error // the peer's Hello.Say
	close func() error
}

// newStructClient returns the structClient that makes its calls with call
// and closes with close; reflected picks msg.Reflected.
func newStructClient(reflected bool, call func(ctx context.Context, args, reply any) error, close func() error) Client {
	if reflected {
		return &structClient[msg.Reflected]{args: (*msg.Reflected)(msg.New()), call: call, close: close}
	}
	return &structClient[msg.BenchmarkMessage]{args: msg.New(), call: call, close: close}
}

// NewCaller implements Client: each call zeroes the caller's own reply,
// makes the call and checks the reply's Field1.
func (s *structClient[M]) NewCaller() func(ctx context.Context) error {
	reply := new(M)
	return func(ctx context.Context) error {
		*reply = M{}
		if err := s.call(ctx, s.args, reply); err != nil {
			return err
		}
		if field1(reply) != "OK" {
			return ErrBadReply
		}
		return nil
	}
}

// Close implements Client.
func (s *structClient[M]) Close() error { return s.close() }

// field1 is the Field1 of a reply of either msgpack message type.
func field1(reply any) string {
	switch r := reply.(type) {
	case *msg.BenchmarkMessage:
		return r.Field1
	case *msg.Reflected:
		return r.Field1
	}
	return ""
}
