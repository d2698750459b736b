// Command shoalbench is the peer benchmark of shoal: it compares shoal with
// net/rpc, rpcx and gRPC-go, and with a raw-TCP ceiling, on the workload of
// rpcx-benchmark (one unary call carrying a 581-byte message), each peer's
// server in its own process and one client connection per peer.
//
// Usage:
//
//	shoalbench [-c 100,1000] [-rounds 3] [-d 3s] [-warmup 1s] [-peers shoal,net/rpc,rpcx,grpc,raw,shoal-gen,rpcx-gen] [-json results/latest.json]
//	shoalbench scale [-d 1s] [-rounds 3] [-sizes 64,...,1048576] [-callers 1,...,10000] [-instances 3,30,300] [-json results/scale.json]
//	shoalbench stream [-streams 1,100,1000] [-msgs 1KB,msg] [-d 2s] [-rounds 3] [-json results/stream.json]
//	shoalbench server -peer NAME [-addr 127.0.0.1:0] [-listeners 1] [-exit-on-eof]
//
// The first form runs the benchmark: it starts itself in server mode once
// per peer, prints progress on stderr and the tables on stdout, and writes
// the JSON report and a PNG chart next to it. The second runs shoal alone
// along three axes (payload size, callers, instances behind a ClientProxy)
// and writes its tables, JSON and chart likewise. The third compares
// shoal's bidirectional streams with gRPC-go's (messages/s, ping-pong on
// each stream, 1 to 1,000 streams on one connection) and writes its tables
// and JSON likewise. The last serves one peer,
// prints "listening on ADDR", and serves until killed (or, with
// -exit-on-eof, until its standard input closes); the peer "scale" is the
// scale server, on -listeners ports at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/shoalrpc/shoal/bench/harness"
	"github.com/shoalrpc/shoal/bench/peer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "server":
		err = serverMain(ctx, os.Args[2:], os.Stdin, os.Stdout)
	case len(os.Args) > 1 && os.Args[1] == "scale":
		err = scaleMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "stream":
		err = streamMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		err = runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "\nshoalbench: interrupted; servers stopped")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoalbench:", err)
		os.Exit(1)
	}
}

// serverMain is the server mode.
func serverMain(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("shoalbench server", flag.ContinueOnError)
	name := fs.String("peer", "", "the peer to serve: "+peerList()+", or a stream peer: "+peer.StreamNames())
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	eof := fs.Bool("exit-on-eof", false, "exit when standard input closes (the runner's pipe)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of this server to `file` when it stops")
	listeners := fs.Int("listeners", 1, "ports to listen on (peer "+harness.ScalePeer+" only): 1..1000, on -addr's host")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	if *name == harness.ScalePeer {
		host, _, _ := net.SplitHostPort(*addr) // checked by checkLoopback
		return harness.ServeScaleMain(ctx, host, *listeners, stdin, stdout, *eof)
	}
	if *listeners != 1 {
		return fmt.Errorf("-listeners: only the %s server listens on more than one port", harness.ScalePeer)
	}
	var p peer.Server
	p, err := peerByName(*name)
	if sp, ok := peer.StreamByName(*name); ok {
		p, err = sp, nil
	}
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		stop, err := startCPUProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	return harness.ServeMain(ctx, p, *addr, stdin, stdout, *eof)
}
