package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/bench/peer"
)

// StreamConfig is what a stream run does: each stream peer's server in its
// own process; for each message and each number of streams, one client
// connection per peer whose streams (one per caller goroutine) ping-pong
// one message at a time.
type StreamConfig struct {
	Peers   []peer.StreamPeer
	Msgs    []peer.StreamMsg
	Streams []int // concurrent streams on the one connection
	// Rounds per point, interleaved: every point once, then again.
	Rounds int
	// Duration of one point's round; Warmup of its warm-up round.
	Duration, Warmup time.Duration
	// Exe is started with ServerArgs(peer name) once per peer.
	Exe        string
	ServerArgs func(peer string) []string
	Progress   io.Writer
}

func (c *StreamConfig) check() error {
	switch {
	case len(c.Peers) == 0 || len(c.Msgs) == 0 || len(c.Streams) == 0:
		return errors.New("no peers, messages or stream counts")
	case c.Rounds < 1:
		return fmt.Errorf("rounds %d: at least 1", c.Rounds)
	case c.Duration <= 0 || c.Warmup < 0:
		return fmt.Errorf("duration %v, warm-up %v: want positive, not negative", c.Duration, c.Warmup)
	case c.Exe == "" || c.ServerArgs == nil:
		return errors.New("no server command")
	}
	for _, n := range c.Streams {
		if n < 1 || n > 1000 { // shoal's default cap is 1024 streams per connection
			return fmt.Errorf("streams %d: want 1..1000", n)
		}
	}
	return nil
}

// StreamReport is the outcome of a stream run; it is what the JSON holds.
// A "call" of its metrics is one message sent and its answer received on
// one stream: calls/s is messages/s each way.
type StreamReport struct {
	Machine Machine             `json:"machine"`
	Config  StreamConfigSummary `json:"config"`
	Points  []StreamPoint       `json:"points"`
	// Rounds holds every counted round; Round.Peer is "peer msg=M".
	Rounds []Round `json:"rounds"`
}

// StreamConfigSummary records how a stream run was made.
type StreamConfigSummary struct {
	Command     string   `json:"command,omitempty"`
	Peers       []string `json:"peers"`
	Msgs        []string `json:"msgs"`
	Streams     []int    `json:"streams"`
	Rounds      int      `json:"rounds"`
	DurationSec float64  `json:"duration_sec"`
	WarmupSec   float64  `json:"warmup_sec"`
}

// StreamPoint is one peer, message and number of streams: the median over
// its rounds of each metric, and its messages/s divided by gRPC's at the
// same point (0 for gRPC itself or when undefined).
type StreamPoint struct {
	Peer    string `json:"peer"`
	Msg     string `json:"msg"`
	Streams int    `json:"streams"`
	Rounds  int    `json:"rounds"`
	Calls   uint64 `json:"messages"`
	Errors  uint64 `json:"errors"`
	Metrics
	VsGRPC float64 `json:"vs_grpc,omitempty"`
}

// streamPoint is one point to measure and its client.
type streamPoint struct {
	peer    string
	msg     peer.StreamMsg
	streams int
	pid     int
	client  peer.Client
}

func (p streamPoint) label() string { return fmt.Sprintf("%s msg=%s", p.peer, p.msg) }

// RunStream runs the stream benchmark. The servers it starts are stopped
// when it returns, whatever happened.
func RunStream(ctx context.Context, cfg StreamConfig) (*StreamReport, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep := &StreamReport{Machine: machineInfo(ctx), Config: StreamConfigSummary{
		Streams: cfg.Streams, Rounds: cfg.Rounds, DurationSec: cfg.Duration.Seconds(), WarmupSec: cfg.Warmup.Seconds(),
	}}
	for _, p := range cfg.Peers {
		rep.Config.Peers = append(rep.Config.Peers, p.Name())
	}
	for _, m := range cfg.Msgs {
		rep.Config.Msgs = append(rep.Config.Msgs, m.String())
	}
	servers := make(map[string]*server, len(cfg.Peers))
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, p := range cfg.Peers {
		s, err := startServer(ctx, cfg.Exe, cfg.ServerArgs(p.Name()), p.Name())
		if err != nil {
			return nil, err
		}
		servers[p.Name()] = s
	}

	// One connection per point, dialled before the rounds; the points
	// interleave the peers at each message and number of streams.
	var points []streamPoint
	defer func() {
		for _, p := range points {
			p.client.Close()
		}
	}()
	dctx, dcancel := context.WithTimeout(ctx, 60*time.Second)
	defer dcancel()
	maxConc := 1
	for _, m := range cfg.Msgs {
		for _, n := range cfg.Streams {
			for _, p := range cfg.Peers {
				s := servers[p.Name()]
				c, err := p.DialStream(dctx, s.addr, m)
				if err != nil {
					return nil, errors.Join(err, s.alive())
				}
				points = append(points, streamPoint{peer: p.Name(), msg: m, streams: n, pid: s.pid, client: c})
				maxConc = max(maxConc, n)
			}
		}
	}
	hists := make([]*Histogram, maxConc)
	for i := range hists {
		hists[i] = new(Histogram)
	}
	busy0, steal0, errBusy0 := machineCPU()
	own0, errOwn0 := selfCPU()
	srv0 := make(map[string]time.Duration, len(servers))
	var errSrv error
	for name, s := range servers {
		c, err := procCPU(s.pid)
		srv0[name], errSrv = c, errors.Join(errSrv, err)
	}
	wall0 := time.Now()
	for round := 0; round <= cfg.Rounds; round++ {
		d := cfg.Duration
		if round == 0 {
			if d = cfg.Warmup; d == 0 {
				continue
			}
		}
		for _, p := range points {
			r, err := runRound(ctx, roundSpec{
				peer: p.label(), round: round, concurrency: p.streams, duration: d,
				serverPID: p.pid, client: p.client, hists: hists,
			})
			if err == nil {
				err = servers[p.peer].alive()
			}
			if err != nil {
				return nil, fmt.Errorf("stream, round %d, %s streams=%d: %w", round, p.label(), p.streams, err)
			}
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "round %d/%d  %-22s streams=%-5d %9.0f msgs/s  p99 %7.2f ms  client+server %6.1f µs/msg",
					round, cfg.Rounds, p.label(), p.streams, r.CallsPerSec, r.P99ms, r.ClientCPUusPerCall+r.ServerCPUusPerCall)
				if r.OtherBusy > disturbedShare {
					fmt.Fprintf(cfg.Progress, "  (others took %.0f%% of the CPU)", 100*r.OtherBusy)
				}
				if r.Errors > 0 {
					fmt.Fprintf(cfg.Progress, "  %d errors: %s", r.Errors, r.FirstError)
				}
				fmt.Fprintln(cfg.Progress)
			}
			if round > 0 {
				rep.Rounds = append(rep.Rounds, r)
			}
		}
	}
	busy1, steal1, errBusy1 := machineCPU()
	own1, errOwn1 := selfCPU()
	var srvCPU time.Duration
	for name, s := range servers {
		c, err := procCPU(s.pid)
		srvCPU, errSrv = srvCPU+c-srv0[name], errors.Join(errSrv, err)
	}
	if err := errors.Join(errBusy0, errBusy1, errOwn0, errOwn1, errSrv); err == nil {
		total := time.Since(wall0).Seconds() * float64(rep.Machine.Cores)
		rep.Machine.OtherBusy = max(0, (busy1-busy0-(own1-own0)-srvCPU).Seconds()/total)
		rep.Machine.Steal = (steal1 - steal0).Seconds() / total
	}
	rep.Machine.LoadAfter = loadAvg()
	rep.summarise(points)
	return rep, nil
}

// summarise fills Points from Rounds, in the order of points.
func (r *StreamReport) summarise(points []streamPoint) {
	r.Points = nil
	for _, p := range points {
		var rs []Round
		for _, x := range r.Rounds {
			if x.Peer == p.label() && x.Concurrency == p.streams {
				rs = append(rs, x)
			}
		}
		if len(rs) == 0 {
			continue
		}
		s := summarise(p.label(), p.streams, rs)
		r.Points = append(r.Points, StreamPoint{Peer: p.peer, Msg: p.msg.String(), Streams: p.streams,
			Rounds: s.Rounds, Calls: s.Calls, Errors: s.Errors, Metrics: s.Metrics})
	}
	for i := range r.Points {
		p := &r.Points[i]
		if g := r.find(peer.GRPCStream{}.Name(), p.Msg, p.Streams); g != nil && p.Peer != g.Peer {
			p.VsGRPC = ratio(p.CallsPerSec, g.CallsPerSec)
		}
	}
}

func (r *StreamReport) find(peerName, m string, streams int) *StreamPoint {
	for i := range r.Points {
		if p := &r.Points[i]; p.Peer == peerName && p.Msg == m && p.Streams == streams {
			return p
		}
	}
	return nil
}

// streamTarget is issue #16's goal: shoal's streaming messages/s at least
// 1.5× gRPC-go's at 1,000 streams.
const streamTarget, streamTargetStreams = 1.5, 1000

// WriteTable writes the stream report for people: the machine, one
// Markdown table per message, and the target.
func (r *StreamReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString(r.Machine.String())
	b.WriteString("\n")
	for _, m := range r.Config.Msgs {
		title := "1 KiB of bytes (shoal: Blob, a struct of one []byte; gRPC: google.protobuf.BytesValue)"
		if m == peer.BenchMsg.String() {
			title = "the benchmark message (shoal: msg.Plain through the default codec; gRPC: protobuf), answered as Hello.Say"
		}
		t := table{
			head:  []string{"streams", "peer", "msgs/s", "×grpc", "p50 ms", "p99 ms", "allocs/msg", "B/msg", "client µs/msg", "server µs/msg"},
			right: []bool{true, false, true, true, true, true, true, true, true, true},
		}
		for _, p := range r.Points {
			if p.Msg != m {
				continue
			}
			t.rows = append(t.rows, []string{group(float64(p.Streams)), p.Peer, group(p.CallsPerSec), times(p.VsGRPC),
				fixed(p.P50ms, 2), fixed(p.P99ms, 2), fixed(p.AllocsPerCall, 1), group(p.BytesPerCall),
				fixed(p.ClientCPUusPerCall, 1), fixed(p.ServerCPUusPerCall, 1)})
		}
		fmt.Fprintf(&b, "\nBidirectional streams, ping-pong (each stream sends a message and waits for its answer), %s:\n\n%s", title, t.String())
	}
	for _, m := range r.Config.Msgs {
		if p := r.find(peer.ShoalStream{}.Name(), m, streamTargetStreams); p != nil && p.VsGRPC > 0 {
			verdict := "met"
			if p.VsGRPC < streamTarget {
				verdict = "NOT MET"
			}
			fmt.Fprintf(&b, "\nTarget (issue #16), msg=%s: shoal msgs/s ≥ %.1f× gRPC's at %d streams: %s %s\n", m, streamTarget, streamTargetStreams, times(p.VsGRPC), verdict)
		}
	}
	n, worst := 0, 0.0
	for _, x := range r.Rounds {
		if x.OtherBusy > disturbedShare {
			n++
		}
		worst = max(worst, x.OtherBusy)
	}
	if n > 0 {
		fmt.Fprintf(&b, "\nNOTE: in %d of %d counted rounds other processes used more than %.0f%% of the machine's CPU (at most %.0f%%): those numbers are lower than a quiet machine gives; see other_busy per round in the JSON.\n",
			n, len(r.Rounds), 100*disturbedShare, 100*worst)
	}
	for _, p := range r.Points {
		if p.Errors > 0 {
			fmt.Fprintf(&b, "\nWARNING: %s msg=%s streams=%d: %d failed messages (not counted); see the rounds in the JSON.\n", p.Peer, p.Msg, p.Streams, p.Errors)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as JSON to path, creating its directory.
func (r *StreamReport) WriteJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return nil
}
