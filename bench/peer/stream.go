package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shoalrpc/shoal/bench/msg"
	"github.com/shoalrpc/shoal/bench/msg/pb"
	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
)

// StreamMsg is the message a stream benchmark carries.
type StreamMsg int

const (
	// Blob1K is 1 KiB of bytes: shoal's Blob, gRPC's
	// google.protobuf.BytesValue.
	Blob1K StreamMsg = iota
	// BenchMsg is the benchmark message: msg.Plain through shoal's default
	// codec, pb.BenchmarkMessage for gRPC; the server answers it as
	// Hello.Say does (Field1 = "OK").
	BenchMsg
)

// BlobSize is the size of a Blob1K message's bytes.
const BlobSize = 1024

// String names the message in reports.
func (m StreamMsg) String() string {
	if m == BenchMsg {
		return "msg"
	}
	return "1KB"
}

// StreamPeer is an RPC stack's streams under test: its server serves two
// bidirectional streams that answer each message as it arrives (EchoBlob,
// EchoMsg), and its client opens one stream per caller.
type StreamPeer interface {
	Server
	// DialStream opens one client connection to addr whose callers each
	// open one stream carrying m and, per call, send one message and
	// receive its answer (ping-pong). The returned Client is also a
	// RoundEnder.
	DialStream(ctx context.Context, addr string, m StreamMsg) (Client, error)
}

// RoundEnder is a Client that holds state for a round's callers (their
// streams): EndRound ends it once the callers have returned.
type RoundEnder interface {
	EndRound() error
}

// StreamPeers returns the stream peers, in round order.
func StreamPeers() []StreamPeer { return []StreamPeer{ShoalStream{}, GRPCStream{}} }

// StreamByName returns the stream peer called name.
func StreamByName(name string) (StreamPeer, bool) {
	for _, p := range StreamPeers() {
		if p.Name() == name {
			return p, true
		}
	}
	return nil, false
}

// StreamNames lists the stream peers' names.
func StreamNames() string {
	var names []string
	for _, p := range StreamPeers() {
		names = append(names, p.Name())
	}
	return strings.Join(names, ", ")
}

// pingPong is one open stream of a stream client.
type pingPong interface {
	exchange() error // send one message, receive and check its answer
	end() error      // half-close and read to the end
}

// streamClient is the Client of the stream peers: NewCaller opens the
// caller's stream, before the round starts, so that a round measures
// messages on open streams, not opens.
type streamClient struct {
	open  func(ctx context.Context) (pingPong, error)
	close func() error
	ctx   context.Context // the streams' context, ended by Close
	stop  context.CancelFunc

	mu      sync.Mutex
	streams []pingPong // opened this round
}

func newStreamClient(open func(ctx context.Context) (pingPong, error), close func() error) *streamClient {
	ctx, stop := context.WithCancel(context.Background())
	return &streamClient{open: open, close: close, ctx: ctx, stop: stop}
}

// NewCaller implements Client: it opens the caller's stream; a failed open
// is the error of every call.
func (c *streamClient) NewCaller() func(ctx context.Context) error {
	s, err := c.open(c.ctx)
	if err != nil {
		err = fmt.Errorf("open a stream: %w", err)
		return func(context.Context) error { return err }
	}
	c.mu.Lock()
	c.streams = append(c.streams, s)
	c.mu.Unlock()
	return func(context.Context) error { return s.exchange() }
}

// EndRound implements RoundEnder: it ends every stream of the round, at
// once, and waits for their ends, so that the next round starts with none.
func (c *streamClient) EndRound() error {
	c.mu.Lock()
	streams := c.streams
	c.streams = nil
	c.mu.Unlock()
	errs := make([]error, len(streams))
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() { errs[i] = s.end() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close implements Client: it resets the streams still open and closes
// the connection.
func (c *streamClient) Close() error {
	c.stop()
	return c.close()
}

// blobOf returns BlobSize bytes of text.
func blobOf() []byte {
	b := make([]byte, 0, BlobSize+64)
	for i := 0; len(b) < BlobSize; i++ {
		b = fmt.Appendf(b, "%d %s", i, msg.Text)
	}
	return b[:BlobSize]
}

// ShoalStream is shoal's bidirectional streams: provider.Server and one
// consumer.Client (one multiplexed connection), default options.
type ShoalStream struct{}

// Name implements Server.
func (ShoalStream) Name() string { return "shoal-stream" }

// ShoalStreams is the shoal stream server's service, "Stream".
type ShoalStreams struct{}

// EchoMsg answers each benchmark message as Hello.Say does.
func (ShoalStreams) EchoMsg(_ context.Context, s *provider.BidiStream[msg.Plain, msg.Plain]) error {
	reply := new(msg.Plain)
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		*reply = msg.Plain{}
		msg.AnswerPlain(m, reply)
		if err := s.Send(reply); err != nil {
			return err
		}
	}
}

// EchoBlob sends each message back.
func (ShoalStreams) EchoBlob(_ context.Context, s *provider.BidiStream[Blob, Blob]) error {
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

// Serve implements Server.
func (ShoalStream) Serve(ctx context.Context, ln net.Listener) error {
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err := srv.RegisterName("Stream", ShoalStreams{}); err != nil {
		ln.Close()
		return fmt.Errorf("shoal-stream: register: %w", err)
	}
	return serveUntil(ctx, func() error { return srv.Serve(ln) }, func() { srv.Close() })
}

// DialStream implements StreamPeer.
func (ShoalStream) DialStream(ctx context.Context, addr string, m StreamMsg) (Client, error) {
	c, err := consumer.DialContext(ctx, "tcp@"+addr)
	if err != nil {
		return nil, fmt.Errorf("shoal-stream: dial %s: %w", addr, err)
	}
	var open func(ctx context.Context) (pingPong, error)
	switch m {
	case BenchMsg:
		args := msg.NewPlain()
		open = func(ctx context.Context) (pingPong, error) {
			s, err := consumer.OpenBidiStream[msg.Plain, msg.Plain](ctx, c, "Stream.EchoMsg")
			if err != nil {
				return nil, err
			}
			return shoalPingPong[msg.Plain]{s: s, args: args, check: func(r *msg.Plain) bool { return r.Field1 == "OK" }}, nil
		}
	default:
		args := &Blob{Data: blobOf()}
		open = func(ctx context.Context) (pingPong, error) {
			s, err := consumer.OpenBidiStream[Blob, Blob](ctx, c, "Stream.EchoBlob")
			if err != nil {
				return nil, err
			}
			return shoalPingPong[Blob]{s: s, args: args, check: func(r *Blob) bool { return len(r.Data) == BlobSize }}, nil
		}
	}
	return newStreamClient(open, c.Close), nil
}

// shoalPingPong is one shoal stream of a caller.
type shoalPingPong[M any] struct {
	s     *consumer.BidiStream[M, M]
	args  *M
	check func(*M) bool
}

func (p shoalPingPong[M]) exchange() error {
	if err := p.s.Send(p.args); err != nil {
		return err
	}
	r, err := p.s.Recv()
	if err != nil {
		return err
	}
	if !p.check(r) {
		return ErrBadReply
	}
	return nil
}

func (p shoalPingPong[M]) end() error {
	if err := p.s.CloseSend(); err != nil {
		return err
	}
	for {
		if _, err := p.s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// GRPCStream is gRPC-go's bidirectional streams with protobuf, default
// options: grpc.Server and one grpc.ClientConn (one HTTP/2 connection).
// The service is declared by hand (grpcStreamDesc) rather than generated:
// it is what protoc-gen-go-grpc would write for two bidi methods.
type GRPCStream struct{}

// Name implements Server.
func (GRPCStream) Name() string { return "grpc-stream" }

// grpcStreamDesc is the service bench.Stream: EchoBlob
// (google.protobuf.BytesValue) and EchoMsg (BenchmarkMessage), both
// bidirectional.
var grpcStreamDesc = grpc.ServiceDesc{
	ServiceName: "bench.Stream",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "EchoBlob", Handler: grpcEchoBlob, ServerStreams: true, ClientStreams: true},
		{StreamName: "EchoMsg", Handler: grpcEchoMsg, ServerStreams: true, ClientStreams: true},
	},
	Metadata: "bench/stream",
}

func grpcEchoBlob(_ any, s grpc.ServerStream) error {
	for {
		m := new(wrapperspb.BytesValue)
		if err := s.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := s.SendMsg(m); err != nil {
			return err
		}
	}
}

func grpcEchoMsg(_ any, s grpc.ServerStream) error {
	for {
		m := new(pb.BenchmarkMessage)
		if err := s.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		reply, _ := GRPCHello{}.Say(s.Context(), m)
		if err := s.SendMsg(reply); err != nil {
			return err
		}
	}
}

// Serve implements Server.
func (GRPCStream) Serve(ctx context.Context, ln net.Listener) error {
	srv := grpc.NewServer()
	srv.RegisterService(&grpcStreamDesc, struct{}{})
	return serveUntil(ctx, func() error { return srv.Serve(ln) }, srv.Stop)
}

// DialStream implements StreamPeer.
func (GRPCStream) DialStream(_ context.Context, addr string, m StreamMsg) (Client, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("grpc-stream: dial %s: %w", addr, err)
	}
	cc.Connect()
	var open func(ctx context.Context) (pingPong, error)
	switch m {
	case BenchMsg:
		args := msg.NewProto()
		open = func(ctx context.Context) (pingPong, error) {
			s, err := cc.NewStream(ctx, &grpcStreamDesc.Streams[1], "/bench.Stream/EchoMsg")
			if err != nil {
				return nil, err
			}
			return grpcPingPong[pb.BenchmarkMessage]{s: s, args: args, check: func(r *pb.BenchmarkMessage) bool { return r.Field1 == "OK" }}, nil
		}
	default:
		args := wrapperspb.Bytes(blobOf())
		open = func(ctx context.Context) (pingPong, error) {
			s, err := cc.NewStream(ctx, &grpcStreamDesc.Streams[0], "/bench.Stream/EchoBlob")
			if err != nil {
				return nil, err
			}
			return grpcPingPong[wrapperspb.BytesValue]{s: s, args: args, check: func(r *wrapperspb.BytesValue) bool { return len(r.Value) == BlobSize }}, nil
		}
	}
	return newStreamClient(open, cc.Close), nil
}

// grpcPingPong is one gRPC stream of a caller; like shoal's Recv, each
// answer is a new message.
type grpcPingPong[M any] struct {
	s     grpc.ClientStream
	args  any
	check func(*M) bool
}

func (p grpcPingPong[M]) exchange() error {
	if err := p.s.SendMsg(p.args); err != nil {
		return err
	}
	r := new(M)
	if err := p.s.RecvMsg(r); err != nil {
		return err
	}
	if !p.check(r) {
		return ErrBadReply
	}
	return nil
}

func (p grpcPingPong[M]) end() error {
	if err := p.s.CloseSend(); err != nil {
		return err
	}
	for {
		if err := p.s.RecvMsg(new(M)); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
