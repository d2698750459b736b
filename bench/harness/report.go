package harness

import (
	"slices"
	"sort"

	"github.com/shoalrpc/shoal/bench/peer"
)

// Names of the reference peers the ratios divide by.
const (
	NetRPC  = "net/rpc"
	Ceiling = "raw"
)

// Report is the outcome of a run; it is what the JSON file holds.
type Report struct {
	Machine Machine       `json:"machine"`
	Config  ConfigSummary `json:"config"`
	// Results holds one summary per concurrency and peer, in run order.
	Results []Summary `json:"results"`
	// Targets are the project's goals for shoal, checked on Results.
	Targets []Target `json:"targets,omitempty"`
	// Rounds holds every counted round (the warm-up is not kept).
	Rounds []Round `json:"rounds"`
}

// ConfigSummary records how the run was made.
type ConfigSummary struct {
	Command string   `json:"command,omitempty"`
	Peers   []string `json:"peers"`
	// Tuned names the peers on the tuned path (generated code, as_array),
	// which the report tables apart from the default path.
	Tuned       []string `json:"tuned,omitempty"`
	Concurrency []int    `json:"concurrency"`
	Rounds      int      `json:"rounds"`
	DurationSec float64  `json:"duration_sec"`
	WarmupSec   float64  `json:"warmup_sec"`
}

func (c Config) summary() ConfigSummary {
	s := ConfigSummary{
		Concurrency: c.Concurrency, Rounds: c.Rounds,
		DurationSec: c.Duration.Seconds(), WarmupSec: c.Warmup.Seconds(),
	}
	for _, p := range c.Peers {
		s.Peers = append(s.Peers, p.Name())
		if peer.Tuned(p.Name()) {
			s.Tuned = append(s.Tuned, p.Name())
		}
	}
	return s
}

// Summary is one peer at one concurrency: the median over its rounds of
// each metric, taken separately, and each median divided by net/rpc's and
// by the raw ceiling's at the same concurrency (0 where that is undefined).
type Summary struct {
	Peer        string `json:"peer"`
	Concurrency int    `json:"concurrency"`
	Rounds      int    `json:"rounds"`
	Calls       uint64 `json:"calls"`
	Errors      uint64 `json:"errors"`
	Metrics
	VsNetRPC  *Metrics `json:"vs_netrpc,omitempty"`
	VsCeiling *Metrics `json:"vs_ceiling,omitempty"`
}

// Target is one of the project's performance goals for shoal at one
// concurrency.
type Target struct {
	Concurrency int     `json:"concurrency"`
	Goal        string  `json:"goal"`
	Value       float64 `json:"value"`
	Met         bool    `json:"met"`
}

// summarise fills Results and Targets from Rounds.
func (r *Report) summarise() {
	r.Results = nil
	for _, conc := range r.Config.Concurrency {
		for _, name := range r.Config.Peers {
			var rs []Round
			for _, x := range r.Rounds {
				if x.Peer == name && x.Concurrency == conc {
					rs = append(rs, x)
				}
			}
			if len(rs) > 0 {
				r.Results = append(r.Results, summarise(name, conc, rs))
			}
		}
	}
	for i := range r.Results {
		s := &r.Results[i]
		if ref := r.find(NetRPC, s.Concurrency); ref != nil {
			v := ratios(s.Metrics, ref.Metrics)
			s.VsNetRPC = &v
		}
		if ref := r.find(Ceiling, s.Concurrency); ref != nil {
			v := ratios(s.Metrics, ref.Metrics)
			s.VsCeiling = &v
		}
	}
	r.Targets = r.targets()
}

func summarise(name string, conc int, rs []Round) Summary {
	s := Summary{Peer: name, Concurrency: conc, Rounds: len(rs)}
	for _, x := range rs {
		s.Calls += x.Calls
		s.Errors += x.Errors
	}
	med := func(f func(Metrics) float64) float64 {
		v := make([]float64, len(rs))
		for i, x := range rs {
			v[i] = f(x.Metrics)
		}
		return median(v)
	}
	s.CallsPerSec = med(func(m Metrics) float64 { return m.CallsPerSec })
	s.P50ms = med(func(m Metrics) float64 { return m.P50ms })
	s.P99ms = med(func(m Metrics) float64 { return m.P99ms })
	s.P999ms = med(func(m Metrics) float64 { return m.P999ms })
	s.AllocsPerCall = med(func(m Metrics) float64 { return m.AllocsPerCall })
	s.BytesPerCall = med(func(m Metrics) float64 { return m.BytesPerCall })
	s.ClientCPUusPerCall = med(func(m Metrics) float64 { return m.ClientCPUusPerCall })
	s.ServerCPUusPerCall = med(func(m Metrics) float64 { return m.ServerCPUusPerCall })
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func ratio(a, b float64) float64 {
	if b <= 0 || a < 0 {
		return 0
	}
	return a / b
}

// ratios divides each metric by ref's. A reference that shows as zero in
// the table (the raw ceiling allocates next to nothing) gives no ratio.
func ratios(m, ref Metrics) Metrics {
	nonzero := func(v, shown float64) float64 {
		if v < shown {
			return 0
		}
		return v
	}
	return Metrics{
		CallsPerSec:        ratio(m.CallsPerSec, ref.CallsPerSec),
		P50ms:              ratio(m.P50ms, ref.P50ms),
		P99ms:              ratio(m.P99ms, ref.P99ms),
		P999ms:             ratio(m.P999ms, ref.P999ms),
		AllocsPerCall:      ratio(m.AllocsPerCall, nonzero(ref.AllocsPerCall, 0.05)),
		BytesPerCall:       ratio(m.BytesPerCall, nonzero(ref.BytesPerCall, 0.5)),
		ClientCPUusPerCall: ratio(m.ClientCPUusPerCall, ref.ClientCPUusPerCall),
		ServerCPUusPerCall: ratio(m.ServerCPUusPerCall, ref.ServerCPUusPerCall),
	}
}

// find returns the summary of peer at conc, nil if there is none.
func (r *Report) find(peer string, conc int) *Summary {
	for i := range r.Results {
		if s := &r.Results[i]; s.Peer == peer && s.Concurrency == conc {
			return s
		}
	}
	return nil
}

// targets checks the goals for shoal at each concurrency. On the
// default path ("shoal", the plain struct): calls/s at least 1.5× net/rpc's,
// 3× rpcx's and gRPC's and 0.3× the raw ceiling's, p99 no higher than
// net/rpc's, at most 10 client allocations per call. On the tuned path
// ("shoal-gen", generated code), where it ran: calls/s at least 0.5× the
// ceiling's, at most 10 client allocations per call; the goals of the latter
// name it.
func (r *Report) targets() []Target {
	var out []Target
	for _, conc := range r.Config.Concurrency {
		out = append(out, r.targetsOf("shoal", conc)...)
		out = append(out, r.targetsOf("shoal-gen", conc)...)
	}
	return out
}

// goal is one calls/s goal: at least min times peer's.
type goal struct {
	peer, text string
	min        float64
}

// targetsOf checks the goals for one shoal peer at one concurrency.
func (r *Report) targetsOf(subject string, conc int) []Target {
	s := r.find(subject, conc)
	if s == nil {
		return nil
	}
	prefix := ""
	goals := []goal{
		{NetRPC, "calls/s ≥ 1.5× net/rpc", 1.5},
		{"rpcx", "calls/s ≥ 3× rpcx", 3},
		{"grpc", "calls/s ≥ 3× gRPC", 3},
		{Ceiling, "calls/s ≥ 0.3× ceiling", 0.3},
	}
	p99 := true
	if subject != "shoal" {
		prefix = subject + ": "
		goals = []goal{{Ceiling, "calls/s ≥ 0.5× ceiling", 0.5}}
		p99 = false
	}
	var out []Target
	for _, g := range goals {
		if o := r.find(g.peer, conc); o != nil {
			v := ratio(s.CallsPerSec, o.CallsPerSec)
			out = append(out, Target{Concurrency: conc, Goal: prefix + g.text, Value: v, Met: v >= g.min})
		}
	}
	if o := r.find(NetRPC, conc); o != nil && p99 {
		v := ratio(s.P99ms, o.P99ms)
		out = append(out, Target{Concurrency: conc, Goal: prefix + "p99 ≤ net/rpc's", Value: v, Met: v > 0 && v <= 1})
	}
	return append(out, Target{Concurrency: conc, Goal: prefix + "client allocs/call ≤ 10", Value: s.AllocsPerCall, Met: s.AllocsPerCall <= 10})
}
