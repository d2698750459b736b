package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/bench/peer"
	"github.com/shoalrpc/shoal/consumer"
)

// ScalePeer is the name the scale server is started under
// (ServerArgs(ScalePeer)), and the peer its rounds are reported as.
const ScalePeer = "scale"

// Curves of the scale benchmark.
const (
	CurveSize      = "size"      // X: payload bytes each way (Blob.Echo), one connection, ScaleConfig.SizeCallers callers
	CurveSizeS2    = "size-s2"   // CurveSize with consumer.WithCompression, at ScaleConfig.CompressSizes
	CurveCallers   = "callers"   // X: caller goroutines on one connection (Hello.Say, the plain struct)
	CurvePool      = "pool"      // X: caller goroutines on a Pool of ScaleConfig.Conns connections
	CurveInstances = "instances" // X: instances behind a ClientProxy, ScaleConfig.ProxyCallers callers
)

// ScaleConfig is what a scale run does: shoal alone, default options, its
// server one process (the runner starts it with ServerArgs(ScalePeer) and
// -listeners), along three axes.
type ScaleConfig struct {
	Sizes []int // payload sizes, bytes
	// CompressSizes are the payload sizes measured again with
	// consumer.WithCompression (s2).
	CompressSizes []int
	Callers       []int // caller goroutines, on one connection and on a Pool
	Conns         int   // connections of the Pool curve (consumer.WithConnsPerAddr)
	Instances     []int // instances behind the ClientProxy curve
	// SizeCallers and ProxyCallers are the callers of the size and
	// instances curves.
	SizeCallers, ProxyCallers int
	// Rounds per point, interleaved: every point once, then again.
	Rounds int
	// Duration of one point's round; Warmup of its warm-up round.
	Duration, Warmup time.Duration
	// Exe is started with ServerArgs(ScalePeer) plus "-listeners N".
	Exe        string
	ServerArgs func(peer string) []string
	Progress   io.Writer
}

func (c *ScaleConfig) check() error {
	switch {
	case c.Rounds < 1:
		return fmt.Errorf("rounds %d: at least 1", c.Rounds)
	case c.Duration <= 0 || c.Warmup < 0:
		return fmt.Errorf("duration %v, warm-up %v: want positive, not negative", c.Duration, c.Warmup)
	case c.Exe == "" || c.ServerArgs == nil:
		return errors.New("no server command")
	case c.Conns < 1 || c.SizeCallers < 1 || c.ProxyCallers < 1:
		return errors.New("conns and callers must be at least 1")
	case len(c.Sizes)+len(c.CompressSizes)+len(c.Callers)+len(c.Instances) == 0:
		return errors.New("no points")
	}
	for _, n := range append(slices.Clone(c.Sizes), c.CompressSizes...) {
		if n < 1 || n > 4<<20 {
			return fmt.Errorf("size %d: want 1..4 MiB", n)
		}
	}
	for _, n := range c.Callers {
		if n < 1 || n > 100000 {
			return fmt.Errorf("callers %d: want 1..100000", n)
		}
	}
	for _, n := range c.Instances {
		if n < 1 || n > 1000 {
			return fmt.Errorf("instances %d: want 1..1000", n)
		}
	}
	return nil
}

// ScaleReport is the outcome of a scale run; it is what the JSON holds.
type ScaleReport struct {
	Machine Machine            `json:"machine"`
	Config  ScaleConfigSummary `json:"config"`
	// Points holds one summary per curve and X: the medians of its rounds.
	Points []ScalePoint `json:"points"`
	// Rounds holds every counted round; Round.Peer is "curve=X".
	Rounds []Round `json:"rounds"`
}

// ScaleConfigSummary records how a scale run was made.
type ScaleConfigSummary struct {
	Command       string  `json:"command,omitempty"`
	Sizes         []int   `json:"sizes"`
	CompressSizes []int   `json:"compress_sizes,omitempty"`
	Callers       []int   `json:"callers"`
	Conns         int     `json:"conns"`
	Instances     []int   `json:"instances"`
	SizeCallers   int     `json:"size_callers"`
	ProxyCallers  int     `json:"proxy_callers"`
	Rounds        int     `json:"rounds"`
	DurationSec   float64 `json:"duration_sec"`
	WarmupSec     float64 `json:"warmup_sec"`
}

// ScalePoint is one point of a curve: the median over its rounds of each
// metric, and for the size curve the bytes carried and the CPU per byte.
type ScalePoint struct {
	Curve  string `json:"curve"`
	X      int    `json:"x"`
	Rounds int    `json:"rounds"`
	Calls  uint64 `json:"calls"`
	Errors uint64 `json:"errors"`
	Metrics
	// MBPerSec is the payload carried each way, 10^6 bytes per second
	// (size curve only).
	MBPerSec float64 `json:"mb_per_sec,omitempty"`
	// CPUnsPerByte is client + server CPU per payload byte (size curve
	// only), ns.
	CPUnsPerByte float64 `json:"cpu_ns_per_byte,omitempty"`
}

// point is one point to measure and the client it calls with.
type point struct {
	curve  string
	x      int
	conc   int
	client peer.Client
}

func (p point) label() string { return fmt.Sprintf("%s=%d", p.curve, p.x) }

// RunScale runs the scale benchmark. The server it starts is stopped when
// it returns, whatever happened.
func RunScale(ctx context.Context, cfg ScaleConfig) (*ScaleReport, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep := &ScaleReport{Machine: machineInfo(ctx), Config: ScaleConfigSummary{
		Sizes: cfg.Sizes, CompressSizes: cfg.CompressSizes, Callers: cfg.Callers, Conns: cfg.Conns, Instances: cfg.Instances,
		SizeCallers: cfg.SizeCallers, ProxyCallers: cfg.ProxyCallers, Rounds: cfg.Rounds,
		DurationSec: cfg.Duration.Seconds(), WarmupSec: cfg.Warmup.Seconds(),
	}}
	listeners := 1
	for _, n := range cfg.Instances {
		listeners = max(listeners, n)
	}
	args := append(cfg.ServerArgs(ScalePeer), "-listeners", fmt.Sprint(listeners))
	srv, err := startServer(ctx, cfg.Exe, args, ScalePeer)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	addrs := strings.Split(srv.addr, ",")
	if len(addrs) != listeners {
		return nil, fmt.Errorf("scale server: %d addresses, want %d", len(addrs), listeners)
	}

	points, err := dialPoints(ctx, cfg, addrs)
	defer func() {
		for _, p := range points {
			p.client.Close()
		}
	}()
	if err != nil {
		return nil, errors.Join(err, srv.alive())
	}

	maxConc := 1
	for _, p := range points {
		maxConc = max(maxConc, p.conc)
	}
	hists := make([]*Histogram, maxConc)
	for i := range hists {
		hists[i] = new(Histogram)
	}
	busy0, steal0, errBusy0 := machineCPU()
	own0, errOwn0 := selfCPU()
	srv0, errSrv0 := procCPU(srv.pid)
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
				peer: p.label(), round: round, concurrency: p.conc, duration: d,
				serverPID: srv.pid, client: p.client, hists: hists,
			})
			if err == nil {
				err = srv.alive()
			}
			if err != nil {
				return nil, fmt.Errorf("scale, round %d, %s: %w", round, p.label(), err)
			}
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "round %d/%d  %-16s c=%-5d %8.0f calls/s  p99 %7.2f ms  client+server %6.1f µs/call\n",
					round, cfg.Rounds, p.label(), p.conc, r.CallsPerSec, r.P99ms, r.ClientCPUusPerCall+r.ServerCPUusPerCall)
			}
			if round > 0 {
				rep.Rounds = append(rep.Rounds, r)
			}
		}
	}
	busy1, steal1, errBusy1 := machineCPU()
	own1, errOwn1 := selfCPU()
	srv1, errSrv1 := procCPU(srv.pid)
	if err := errors.Join(errBusy0, errBusy1, errOwn0, errOwn1, errSrv0, errSrv1); err == nil {
		total := time.Since(wall0).Seconds() * float64(rep.Machine.Cores)
		rep.Machine.OtherBusy = max(0, (busy1-busy0-(own1-own0)-(srv1-srv0)).Seconds()/total)
		rep.Machine.Steal = (steal1 - steal0).Seconds() / total
	}
	rep.Machine.LoadAfter = loadAvg()
	rep.summarise(points)
	return rep, nil
}

// dialPoints dials the client of every point, in curve order. It returns
// what it dialled even on error, for closing.
func dialPoints(ctx context.Context, cfg ScaleConfig, addrs []string) ([]point, error) {
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var out []point
	add := func(curve string, x, conc int, c peer.Client, err error) error {
		if err != nil {
			return fmt.Errorf("%s=%d: %w", curve, x, err)
		}
		out = append(out, point{curve: curve, x: x, conc: conc, client: c})
		return nil
	}
	for _, size := range cfg.Sizes {
		c, err := peer.DialBlob(dctx, addrs[0], size)
		if err := add(CurveSize, size, cfg.SizeCallers, c, err); err != nil {
			return out, err
		}
	}
	for _, size := range cfg.CompressSizes {
		c, err := peer.DialBlob(dctx, addrs[0], size, consumer.WithCompression())
		if err := add(CurveSizeS2, size, cfg.SizeCallers, c, err); err != nil {
			return out, err
		}
	}
	if len(cfg.Callers) > 0 {
		one, err := peer.Shoal{}.Dial(dctx, addrs[0])
		if err != nil {
			return out, fmt.Errorf("callers: %w", err)
		}
		// The callers points share the one connection; only the first
		// closes it.
		for i, n := range cfg.Callers {
			c := one
			if i > 0 {
				c = noClose{one}
			}
			out = append(out, point{curve: CurveCallers, x: n, conc: n, client: c})
		}
		pool, err := peer.DialPool(dctx, addrs[0], cfg.Conns)
		if err != nil {
			return out, fmt.Errorf("pool: %w", err)
		}
		for i, n := range cfg.Callers {
			c := pool
			if i > 0 {
				c = noClose{pool}
			}
			out = append(out, point{curve: CurvePool, x: n, conc: n, client: c})
		}
	}
	for _, n := range cfg.Instances {
		c, err := peer.DialProxy(dctx, addrs[:n])
		if err := add(CurveInstances, n, cfg.ProxyCallers, c, err); err != nil {
			return out, err
		}
	}
	return out, nil
}

// noClose is a Client shared by several points, closed by another.
type noClose struct{ peer.Client }

func (noClose) Close() error { return nil }

// summarise fills Points from Rounds, in the order of points.
func (r *ScaleReport) summarise(points []point) {
	r.Points = nil
	for _, p := range points {
		var rs []Round
		for _, x := range r.Rounds {
			if x.Peer == p.label() {
				rs = append(rs, x)
			}
		}
		if len(rs) == 0 {
			continue
		}
		s := summarise(p.label(), p.conc, rs)
		sp := ScalePoint{Curve: p.curve, X: p.x, Rounds: s.Rounds, Calls: s.Calls, Errors: s.Errors, Metrics: s.Metrics}
		if p.curve == CurveSize || p.curve == CurveSizeS2 {
			sp.MBPerSec = sp.CallsPerSec * float64(p.x) / 1e6
			if sp.ClientCPUusPerCall >= 0 && sp.ServerCPUusPerCall >= 0 {
				sp.CPUnsPerByte = 1000 * (sp.ClientCPUusPerCall + sp.ServerCPUusPerCall) / float64(p.x)
			}
		}
		r.Points = append(r.Points, sp)
	}
}

// ServeScaleMain is the scale server's mode: it listens on n loopback
// ports, prints "listening on ADDR1,ADDR2,..." and serves shoal's Hello and
// Blob services on all of them (peer.ServeScale) until ctx ends or, with
// exitOnEOF, stdin closes.
func ServeScaleMain(ctx context.Context, host string, n int, stdin io.Reader, stdout io.Writer, exitOnEOF bool) error {
	if n < 1 || n > 1000 {
		return fmt.Errorf("scale server: %d listeners, want 1..1000", n)
	}
	if exitOnEOF {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			cancel()
		}()
	}
	var lns []net.Listener
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("scale server: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	if _, err := fmt.Fprintf(stdout, "%s%s\n", readyPrefix, strings.Join(addrs, ",")); err != nil {
		for _, l := range lns {
			l.Close()
		}
		return fmt.Errorf("scale server: print the addresses: %w", err)
	}
	return peer.ServeScale(ctx, lns)
}
