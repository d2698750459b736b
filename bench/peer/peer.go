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

// Server is what a server process serves: a peer or a stream peer.
type Server interface {
	// Name is the peer's name on the command line and in reports.
	Name() string
	// Serve serves the peer's services (a Peer's Hello.Say) on ln until
	// ctx ends, then stops the server and returns. It closes ln.
	Serve(ctx context.Context, ln net.Listener) error
}

// Peer is one RPC stack under test.
type Peer interface {
	Server
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

// Payload is the Go type a struct peer (shoal, rpcx) carries, and so the
// way its msgpack codec encodes it.
type Payload int

const (
	// PlainStruct is msg.Plain, a struct without tags or methods: the
	// default path, encoded by reflection as a map keyed by field name.
	PlainStruct Payload = iota
	// Generated is msg.BenchmarkMessage through its generated MarshalMsg
	// and UnmarshalMsg (an array of the 40 values): the tuned path.
	Generated
	// AsArray is msg.Reflected: the as_array struct without methods,
	// encoded by reflection as an array.
	AsArray
)

// suffix is the peer-name suffix of a payload.
func (p Payload) suffix() string {
	switch p {
	case Generated:
		return "-gen"
	case AsArray:
		return "-array"
	}
	return ""
}

// Default returns the peers a run compares unless told otherwise, in the
// order rounds run them: the default path (shoal, net/rpc, rpcx on the
// plain struct; gRPC; the raw ceiling), then the tuned path (shoal and rpcx
// on the message's generated msgpack code).
func Default() []Peer {
	return []Peer{Shoal{}, NetRPC{}, RPCX{}, GRPC{}, Raw{}, Shoal{Payload: Generated}, RPCX{Payload: Generated}}
}

// All returns every peer: Default, then shoal and rpcx with the as_array
// struct encoded by reflection.
func All() []Peer {
	return append(Default(), Shoal{Payload: AsArray}, RPCX{Payload: AsArray})
}

// Tuned reports whether the peer called name is on the tuned path (the
// message's generated code or as_array rather than the plain struct); the
// report gives those peers a table of their own.
func Tuned(name string) bool {
	return strings.HasSuffix(name, Generated.suffix()) || strings.HasSuffix(name, AsArray.suffix())
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

// structClient is the Client of the peers whose payload is a Go struct
// (shoal, rpcx, net/rpc): M is msg.Plain, msg.BenchmarkMessage or
// msg.Reflected, after the peer's Payload.
type structClient[M msg.Plain | msg.BenchmarkMessage | msg.Reflected] struct {
	args  *M
	call  func(ctx context.Context, args, reply any) error // the peer's Hello.Say
	close func() error
}

// newStructClient returns the structClient of payload that makes its calls
// with call and closes with close.
func newStructClient(payload Payload, call func(ctx context.Context, args, reply any) error, close func() error) Client {
	switch payload {
	case Generated:
		return &structClient[msg.BenchmarkMessage]{args: msg.New(), call: call, close: close}
	case AsArray:
		return &structClient[msg.Reflected]{args: (*msg.Reflected)(msg.New()), call: call, close: close}
	}
	return &structClient[msg.Plain]{args: msg.NewPlain(), call: call, close: close}
}

// NewCaller implements Client: each call zeroes the caller's own reply,
// makes the call and checks the reply's Field1.
func (s *structClient[M]) NewCaller() func(ctx context.Context) error {
	reply := new(M)
	var zero M
	return func(ctx context.Context) error {
		*reply = zero
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

// field1 is the Field1 of a reply of any struct payload.
func field1(reply any) string {
	switch r := reply.(type) {
	case *msg.Plain:
		return r.Field1
	case *msg.BenchmarkMessage:
		return r.Field1
	case *msg.Reflected:
		return r.Field1
	}
	return ""
}
