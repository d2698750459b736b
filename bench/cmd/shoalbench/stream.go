package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/bench/harness"
	"github.com/shoalrpc/shoal/bench/peer"
)

// streamMain is the stream mode: flags, the run, the tables and the JSON.
func streamMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoalbench stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	streams := fs.String("streams", "1,100,1000", "concurrent streams on the one connection, comma-separated (1..1000)")
	msgs := fs.String("msgs", "1KB,msg", "messages: 1KB (1 KiB of bytes) and msg (the benchmark message), comma-separated")
	rounds := fs.Int("rounds", 3, "counted rounds per point, interleaved, after one warm-up round")
	dur := fs.Duration("d", 2*time.Second, "duration of one point's round")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "duration of one point's warm-up round (0: none)")
	jsonPath := fs.String("json", filepath.Join(filepath.Dir(defaultJSON()), "stream.json"), "JSON report path")
	timeout := fs.Duration("timeout", 15*time.Minute, "stop the whole run after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := harness.StreamConfig{Peers: peer.StreamPeers()}
	var err error
	if cfg.Streams, err = parseInts("-streams", *streams); err != nil {
		return err
	}
	for f := range strings.SplitSeq(*msgs, ",") {
		switch strings.TrimSpace(f) {
		case peer.Blob1K.String():
			cfg.Msgs = append(cfg.Msgs, peer.Blob1K)
		case peer.BenchMsg.String():
			cfg.Msgs = append(cfg.Msgs, peer.BenchMsg)
		default:
			return fmt.Errorf("-msgs %q: want 1KB and/or msg", *msgs)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to start the servers: %w", err)
	}
	cfg.Rounds, cfg.Duration, cfg.Warmup = *rounds, *dur, *warmup
	cfg.Exe, cfg.ServerArgs, cfg.Progress = exe, ServerArgs, stderr

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := harness.RunStream(ctx, cfg)
	if err != nil {
		return err
	}
	rep.Config.Command = strings.Join(append([]string{"shoalbench", "stream"}, args...), " ")
	if err := rep.WriteTable(stdout); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	if err := rep.WriteJSON(*jsonPath); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", *jsonPath)
	return nil
}
