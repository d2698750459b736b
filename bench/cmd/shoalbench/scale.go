package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/bench/harness"
)

// scaleMain is the scale mode: flags, the run, the tables and the files.
func scaleMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoalbench scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", "64,256,1024,4096,16384,65536,262144,1048576", "payload sizes in bytes (Blob.Echo), comma-separated")
	compress := fs.String("compress-sizes", "262144,1048576", "payload sizes measured again with consumer.WithCompression (s2); empty: none")
	callers := fs.String("callers", "1,10,100,1000,10000", "caller goroutines (Hello.Say), on one connection and on a pool; empty: none")
	conns := fs.Int("conns", 4, "connections of the pool curve (consumer.WithConnsPerAddr)")
	instances := fs.String("instances", "3,30,300", "instances behind the ClientProxy curve, all served by one server process on as many ports; empty: none")
	sizeCallers := fs.Int("size-callers", 8, "callers of the payload-size curve (8 × 1 MiB fits the client's 16 MiB write queue at the default body limit; more callers would wait for room in it)")
	proxyCallers := fs.Int("proxy-callers", 100, "callers of the ClientProxy curve")
	rounds := fs.Int("rounds", 3, "counted rounds per point, interleaved, after one warm-up round")
	dur := fs.Duration("d", time.Second, "duration of one point's round")
	warmup := fs.Duration("warmup", 300*time.Millisecond, "duration of one point's warm-up round (0: none)")
	jsonPath := fs.String("json", filepath.Join(filepath.Dir(defaultJSON()), "scale.json"), "JSON report path; the PNG chart is written next to it")
	chart := fs.Bool("chart", true, "write the PNG chart next to the JSON report")
	timeout := fs.Duration("timeout", 15*time.Minute, "stop the whole run after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var cfg harness.ScaleConfig
	var err error
	if cfg.Sizes, err = parseInts("-sizes", *sizes); err != nil {
		return err
	}
	if cfg.CompressSizes, err = parseInts("-compress-sizes", *compress); err != nil {
		return err
	}
	if cfg.Callers, err = parseInts("-callers", *callers); err != nil {
		return err
	}
	if cfg.Instances, err = parseInts("-instances", *instances); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to start the server: %w", err)
	}
	cfg.Conns, cfg.SizeCallers, cfg.ProxyCallers = *conns, *sizeCallers, *proxyCallers
	cfg.Rounds, cfg.Duration, cfg.Warmup = *rounds, *dur, *warmup
	cfg.Exe, cfg.ServerArgs, cfg.Progress = exe, ServerArgs, stderr

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := harness.RunScale(ctx, cfg)
	if err != nil {
		return err
	}
	rep.Config.Command = strings.Join(append([]string{"shoalbench", "scale"}, args...), " ")
	if err := rep.WriteTable(stdout); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	png, err := rep.WriteFiles(*jsonPath, *chart)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s", *jsonPath)
	if png != "" {
		fmt.Fprintf(stderr, " and %s", png)
	}
	fmt.Fprintln(stderr)
	return nil
}

// parseInts parses a comma-separated list of positive numbers; an empty
// string is an empty list.
func parseInts(flagName, s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want comma-separated positive numbers", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}
