package harness

import (
	"strings"
	"testing"
)

func TestSummariseMediansAndTargets(t *testing.T) {
	r := &Report{Config: ConfigSummary{Peers: []string{"shoal", NetRPC, "rpcx", "grpc", Ceiling, "shoal-gen"}, Tuned: []string{"shoal-gen"}, Concurrency: []int{100}}}
	add := func(p string, cps ...float64) {
		for i, v := range cps {
			r.Rounds = append(r.Rounds, Round{Peer: p, Concurrency: 100, Round: i + 1, Calls: 10,
				Metrics: Metrics{CallsPerSec: v, P99ms: 1000 / v, AllocsPerCall: 5, BytesPerCall: 100, ClientCPUusPerCall: 1, ServerCPUusPerCall: 1}})
		}
	}
	add("shoal", 120, 130, 500) // median 130: the outlier does not count
	add(NetRPC, 100, 90, 110)
	add("rpcx", 40, 40, 40)
	add("grpc", 60, 60, 60)
	add(Ceiling, 400, 400, 400)
	add("shoal-gen", 190, 210, 250)
	r.Rounds[0].OtherBusy = 0.5 // one round disturbed by other work
	r.summarise()

	s := r.find("shoal", 100)
	if s == nil || s.CallsPerSec != 130 || s.Calls != 30 {
		t.Fatalf("shoal summary %+v", s)
	}
	if got := s.VsNetRPC.CallsPerSec; got != 1.3 {
		t.Errorf("shoal ×net/rpc %v, want 1.3", got)
	}
	if got := s.VsCeiling.CallsPerSec; got != 130.0/400 {
		t.Errorf("shoal ×ceiling %v", got)
	}
	met := map[string]bool{}
	for _, g := range r.Targets {
		met[g.Goal] = g.Met
	}
	want := map[string]bool{
		"calls/s ≥ 1.5× net/rpc": false, "calls/s ≥ 3× rpcx": true, "calls/s ≥ 3× gRPC": false,
		"calls/s ≥ 0.3× ceiling": true, "p99 ≤ net/rpc's": true, "client allocs/call ≤ 10": true,
		"shoal-gen: calls/s ≥ 0.5× ceiling": true, "shoal-gen: client allocs/call ≤ 10": true,
	}
	if len(r.Targets) != len(want) {
		t.Errorf("%d targets, want %d: %+v", len(r.Targets), len(want), r.Targets)
	}
	for goal, w := range want {
		if got, ok := met[goal]; !ok || got != w {
			t.Errorf("%s: met %v (present %v), want %v", goal, got, ok, w)
		}
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "in 1 of 18 counted rounds other processes used more than 10% of the machine's CPU (at most 50%)") {
		t.Errorf("no note of the disturbed round:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "2.17× NOT MET") || !strings.Contains(b.String(), "0.53× met") {
		t.Errorf("target table:\n%s", b.String())
	}
	// The tuned peer has a table of its own, after the default path's.
	out := b.String()
	tuned := strings.Index(out, "Tuned path")
	if tuned < 0 || strings.Index(out, "| shoal-gen") < tuned || strings.Index(out, "| shoal ") > tuned {
		t.Errorf("tables not split into default and tuned path:\n%s", out)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1 000", 1234567: "1 234 567", 52310.4: "52 310"} {
		if got := group(in); got != want {
			t.Errorf("group(%v) = %q, want %q", in, got, want)
		}
	}
	if times(0) != "-" || times(1.234) != "1.23×" || fixed(-1, 1) != "n/a" {
		t.Error("ratio or unknown-value formatting")
	}
}
