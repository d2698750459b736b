package peer

import (
	"context"
	"fmt"
	"net"

	"github.com/shoalrpc/shoal/bench/msg"
	"github.com/shoalrpc/shoal/bench/msg/pb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// GRPC is gRPC-go with protobuf (the generated code in msg/pb), default
// options: grpc.Server and one grpc.ClientConn (one HTTP/2 connection).
type GRPC struct{}

// Name implements Peer.
func (GRPC) Name() string { return "grpc" }

// GRPCHello is gRPC's Hello service.
type GRPCHello struct {
	pb.UnimplementedHelloServer
}

// Say answers the benchmark call.
func (GRPCHello) Say(_ context.Context, args *pb.BenchmarkMessage) (*pb.BenchmarkMessage, error) {
	reply := &pb.BenchmarkMessage{
		Field1: "OK", Field9: args.Field9, Field18: args.Field18, Field80: args.Field80,
		Field81: args.Field81, Field2: 100, Field3: args.Field3, Field280: args.Field280,
		Field6: args.Field6, Field22: args.Field22, Field4: args.Field4, Field5: args.Field5,
		Field59: args.Field59, Field7: args.Field7, Field16: args.Field16, Field130: args.Field130,
		Field12: args.Field12, Field17: args.Field17, Field13: args.Field13, Field14: args.Field14,
		Field104: args.Field104, Field100: args.Field100, Field101: args.Field101,
		Field102: args.Field102, Field103: args.Field103, Field29: args.Field29,
		Field30: args.Field30, Field60: args.Field60, Field271: args.Field271,
		Field272: args.Field272, Field150: args.Field150, Field23: args.Field23,
		Field24: args.Field24, Field25: args.Field25, Field78: args.Field78,
		Field67: args.Field67, Field68: args.Field68, Field128: args.Field128,
		Field129: args.Field129, Field131: args.Field131,
	}
	return reply, nil
}

// Serve implements Peer.
func (GRPC) Serve(ctx context.Context, ln net.Listener) error {
	srv := grpc.NewServer()
	pb.RegisterHelloServer(srv, GRPCHello{})
	return serveUntil(ctx, func() error { return srv.Serve(ln) }, srv.Stop)
}

// Dial implements Peer.
func (GRPC) Dial(_ context.Context, addr string) (Client, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("grpc: dial %s: %w", addr, err)
	}
	cc.Connect() // NewClient is lazy; the runner's first call waits for the connection
	return &grpcClient{cc: cc, c: pb.NewHelloClient(cc), args: msg.NewProto()}, nil
}

type grpcClient struct {
	cc   *grpc.ClientConn
	c    pb.HelloClient
	args *pb.BenchmarkMessage
}

func (g *grpcClient) NewCaller() func(ctx context.Context) error {
	return func(ctx context.Context) error {
		reply, err := g.c.Say(ctx, g.args)
		if err != nil {
			return err
		}
		if reply.Field1 != "OK" {
			return ErrBadReply
		}
		return nil
	}
}

func (g *grpcClient) Close() error { return g.cc.Close() }
