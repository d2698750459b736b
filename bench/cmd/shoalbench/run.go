package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/bench/harness"
	"github.com/shoalrpc/shoal/bench/peer"
)

// runMain is the runner mode: flags, the run, the tables and the files.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoalbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conc := fs.String("c", "100,1000", "concurrency: caller goroutines per peer, comma-separated, one block of rounds each")
	rounds := fs.Int("rounds", 3, "counted rounds per concurrency, after one warm-up round")
	dur := fs.Duration("d", 3*time.Second, "duration of one peer's round")
	warmup := fs.Duration("warmup", time.Second, "duration of one peer's warm-up round (0: none)")
	peers := fs.String("peers", strings.Join(peer.Names(peer.Default()), ","), "peers, in the order each round runs them (known: "+peerList()+")")
	jsonPath := fs.String("json", defaultJSON(), "JSON report path; the PNG chart is written next to it")
	chart := fs.Bool("chart", true, "write the PNG chart next to the JSON report")
	timeout := fs.Duration("timeout", 30*time.Minute, "stop the whole run after this long")
	profDir := fs.String("cpuprofile", "", "write CPU profiles to `dir`: client.pprof for this process (every peer's client) and server-PEER.pprof for each server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cs, err := parseConcurrency(*conc)
	if err != nil {
		return err
	}
	ps, err := parsePeers(*peers)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to start the servers: %w", err)
	}

	serverArgs := ServerArgs
	if *profDir != "" {
		if err := os.MkdirAll(*profDir, 0o755); err != nil {
			return fmt.Errorf("profile directory: %w", err)
		}
		stop, err := startCPUProfile(filepath.Join(*profDir, "client.pprof"))
		if err != nil {
			return err
		}
		defer stop()
		serverArgs = func(peer string) []string {
			file := filepath.Join(*profDir, "server-"+strings.ReplaceAll(peer, "/", "_")+".pprof")
			return append(ServerArgs(peer), "-cpuprofile", file)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg := harness.Config{
		Peers: ps, Concurrency: cs, Rounds: *rounds, Duration: *dur, Warmup: *warmup,
		Exe: exe, ServerArgs: serverArgs, Progress: stderr, Live: isTerminal(stderr),
	}
	rep, err := harness.Run(ctx, cfg)
	if err != nil {
		return err
	}
	rep.Config.Command = strings.Join(append([]string{"shoalbench"}, args...), " ")
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

// ServerArgs is the command line that makes this program serve peer for
// the runner.
func ServerArgs(peer string) []string {
	return []string{"server", "-peer", peer, "-addr", "127.0.0.1:0", "-exit-on-eof"}
}

// startCPUProfile starts profiling this process into file; stop ends the
// profile and closes the file.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", file, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// defaultJSON is results/latest.json in the bench module: bench/results
// when run from the repository's root, results from inside bench/.
func defaultJSON() string {
	if _, err := os.Stat(filepath.Join("bench", "go.mod")); err == nil {
		return filepath.Join("bench", "results", "latest.json")
	}
	return filepath.Join("results", "latest.json")
}

func parseConcurrency(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("-c %q: want comma-separated numbers of callers, 1..100000", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func parsePeers(s string) ([]peer.Peer, error) {
	var out []peer.Peer
	seen := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		p, err := peerByName(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-peers: %w", err)
		}
		if seen[p.Name()] {
			return nil, fmt.Errorf("-peers: %s twice", p.Name())
		}
		seen[p.Name()] = true
		out = append(out, p)
	}
	return out, nil
}

func peerByName(name string) (peer.Peer, error) { return peer.ByName(name) }

func peerList() string { return strings.Join(peer.Names(peer.All()), ", ") }

// checkLoopback refuses any listen address but a loopback one: the
// benchmark never serves beyond this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses (127.0.0.0/8, ::1, localhost)", addr)
	}
	return nil
}

// isTerminal reports whether w is a terminal, where progress can rewrite
// one line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
