// Package harness runs the peer benchmark: it starts each peer's server as a
// separate process, dials one client connection per peer, runs rounds that
// interleave the peers at each concurrency, and summarises the medians.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/shoalrpc/shoal/bench/peer"
)

// Config is what a run does.
type Config struct {
	// Peers run in this order in every round. The summary's ratios need
	// "net/rpc" and "raw" among them; without one, its ratios are absent.
	Peers []peer.Peer
	// Concurrency lists the numbers of caller goroutines, one block of
	// rounds each.
	Concurrency []int
	// Rounds counted per concurrency, after one warm-up round.
	Rounds int
	// Duration of one peer's round; Warmup of its warm-up round.
	Duration, Warmup time.Duration
	// Exe is the program that serves a peer when started with
	// ServerArgs(peer name); it prints "listening on ADDR".
	Exe        string
	ServerArgs func(peer string) []string
	// Progress receives progress lines (nil: none). Live rewrites one
	// line with carriage returns; otherwise one line per round is written.
	Progress io.Writer
	Live     bool
}

func (c *Config) check() error {
	switch {
	case len(c.Peers) == 0:
		return errors.New("no peers")
	case len(c.Concurrency) == 0:
		return errors.New("no concurrency")
	case c.Rounds < 1:
		return fmt.Errorf("rounds %d: at least 1", c.Rounds)
	case c.Duration <= 0:
		return fmt.Errorf("duration %v: must be positive", c.Duration)
	case c.Warmup < 0:
		return fmt.Errorf("warm-up %v: must not be negative", c.Warmup)
	case c.Exe == "" || c.ServerArgs == nil:
		return errors.New("no server command")
	}
	for _, n := range c.Concurrency {
		if n < 1 || n > 100000 {
			return fmt.Errorf("concurrency %d: want 1..100000", n)
		}
	}
	return nil
}

// contender is one peer during a run: its server process and its client.
type contender struct {
	peer   peer.Peer
	server *server
	client peer.Client
}

// Run runs the benchmark. Every server it started is stopped when it
// returns, whatever happened; ending ctx stops the run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // kills any server still running (exec.CommandContext)

	rep := &Report{Machine: machineInfo(ctx), Config: cfg.summary()}
	cs, err := startAll(ctx, cfg)
	defer stopAll(cs)
	if err != nil {
		return nil, err
	}

	busy0, steal0, errBusy0 := machineCPU()
	own0, errOwn0 := ownCPU(cs)
	wall0 := time.Now()
	for _, conc := range cfg.Concurrency {
		rounds, err := runBlock(ctx, cfg, cs, conc)
		rep.Rounds = append(rep.Rounds, rounds...)
		if err != nil {
			return nil, err
		}
	}
	busy1, steal1, errBusy1 := machineCPU()
	own1, errOwn1 := ownCPU(cs)
	if err := errors.Join(errBusy0, errBusy1, errOwn0, errOwn1); err == nil {
		total := time.Since(wall0).Seconds() * float64(rep.Machine.Cores)
		other := (busy1 - busy0 - (own1 - own0)).Seconds() / total
		rep.Machine.OtherBusy = max(other, 0)
		rep.Machine.Steal = (steal1 - steal0).Seconds() / total
	}
	rep.Machine.LoadAfter = loadAvg()
	rep.summarise()
	return rep, nil
}

// startAll starts every peer's server and dials its client, then makes one
// call on each to check it answers. It returns what it started even on
// error, for stopAll.
func startAll(ctx context.Context, cfg Config) ([]*contender, error) {
	var cs []*contender
	for _, p := range cfg.Peers {
		s, err := startServer(ctx, cfg.Exe, cfg.ServerArgs(p.Name()), p.Name())
		if err != nil {
			return cs, err
		}
		c := &contender{peer: p, server: s}
		cs = append(cs, c)
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		c.client, err = p.Dial(dctx, s.addr)
		if err == nil {
			if err = c.client.NewCaller()(dctx); err != nil {
				err = fmt.Errorf("%s: first call: %w", p.Name(), err)
			}
		}
		dcancel()
		if err != nil {
			return cs, errors.Join(err, s.alive())
		}
	}
	return cs, nil
}

// stopAll closes the clients and kills the servers.
func stopAll(cs []*contender) {
	for _, c := range cs {
		if c.client != nil {
			c.client.Close()
		}
		c.server.stop()
	}
}

// ownCPU is the CPU time the runner and its servers have used.
func ownCPU(cs []*contender) (time.Duration, error) {
	total, err := selfCPU()
	if err != nil {
		return 0, err
	}
	for _, c := range cs {
		t, err := procCPU(c.server.pid)
		if err != nil {
			return 0, err
		}
		total += t
	}
	return total, nil
}

// runBlock runs the warm-up round and cfg.Rounds rounds at one
// concurrency, each round running every peer in turn.
func runBlock(ctx context.Context, cfg Config, cs []*contender, conc int) ([]Round, error) {
	hists := make([]*Histogram, conc)
	for i := range hists {
		hists[i] = new(Histogram)
	}
	var out []Round
	for round := 0; round <= cfg.Rounds; round++ {
		d := cfg.Duration
		if round == 0 {
			d = cfg.Warmup
			if d == 0 {
				continue
			}
		}
		for _, c := range cs {
			label := fmt.Sprintf("round %d/%d", round, cfg.Rounds)
			if round == 0 {
				label = "warm-up"
			}
			r, err := runRound(ctx, roundSpec{
				peer: c.peer.Name(), round: round, concurrency: conc, duration: d,
				serverPID: c.server.pid, client: c.client, hists: hists,
				progress: cfg.progress(label, c.peer.Name(), conc),
			})
			if err == nil {
				err = c.server.alive()
			}
			if err != nil {
				return out, fmt.Errorf("%s, %s, c=%d: %w", label, c.peer.Name(), conc, err)
			}
			cfg.roundDone(label, r)
			if round > 0 {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// progress returns the live progress callback of one round.
func (cfg Config) progress(label, name string, conc int) func(uint64, time.Duration) {
	if cfg.Progress == nil || !cfg.Live {
		return nil
	}
	return func(calls uint64, elapsed time.Duration) {
		fmt.Fprintf(cfg.Progress, "\r\033[K%s  %-8s c=%-5d %8.0f calls/s  %4.1fs",
			label, name, conc, float64(calls)/elapsed.Seconds(), elapsed.Seconds())
	}
}

// roundDone writes the line that ends a round.
func (cfg Config) roundDone(label string, r Round) {
	if cfg.Progress == nil {
		return
	}
	if cfg.Live {
		fmt.Fprint(cfg.Progress, "\r\033[K")
	}
	fmt.Fprintf(cfg.Progress, "%s  %-8s c=%-5d %8.0f calls/s  p99 %6.2f ms",
		label, r.Peer, r.Concurrency, r.CallsPerSec, r.P99ms)
	if r.OtherBusy > disturbedShare {
		fmt.Fprintf(cfg.Progress, "  (other processes took %.0f%% of the CPU)", 100*r.OtherBusy)
	}
	if r.Errors > 0 {
		fmt.Fprintf(cfg.Progress, "  %d ERRORS, first: %s", r.Errors, r.FirstError)
	}
	fmt.Fprintln(cfg.Progress)
}
