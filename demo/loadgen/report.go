package loadgen

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the machine-readable form of Stats, as the demo client prints
// it with -json.
type Summary struct {
	Calls      int64             `json:"calls"`                 // calls completed
	OK         int64             `json:"ok"`                    // calls that succeeded
	Failed     int64             `json:"failed"`                // calls that returned an error
	Outcomes   map[string]int64  `json:"outcomes"`              // every kind, by name, zeros included
	LastErrors map[string]string `json:"last_errors,omitempty"` // by kind name
	Seconds    float64           `json:"seconds"`               // how long the run took
	PerSecond  float64           `json:"per_second"`            // calls completed per second
	P50Ms      float64           `json:"p50_ms"`                // median latency of successful calls
	P99Ms      float64           `json:"p99_ms"`                // 99th percentile latency of successful calls
	Instances  map[string]int64  `json:"instances"`             // successful calls by instance ID
}

// Summary returns s in machine-readable form.
func (s Stats) Summary() Summary {
	sum := Summary{
		Calls:      s.Calls,
		OK:         s.Kinds[OK],
		Failed:     s.Failed(),
		Outcomes:   make(map[string]int64, numKinds),
		LastErrors: make(map[string]string, len(s.LastErrors)),
		Seconds:    s.Elapsed.Seconds(),
		PerSecond:  s.Rate(),
		P50Ms:      ms(s.Latency(0.5)),
		P99Ms:      ms(s.Latency(0.99)),
		Instances:  make(map[string]int64, len(s.Instances)),
	}
	for _, k := range Kinds() {
		sum.Outcomes[k.String()] = s.Kinds[k]
	}
	for k, msg := range s.LastErrors {
		sum.LastErrors[k.String()] = msg
	}
	for id, n := range s.Instances {
		sum.Instances[id] = n
	}
	return sum
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Progress returns a one-line account of a run in progress: calls so far,
// errors, the rate since the previous snapshot prev (the overall rate when
// prev is the zero Stats) and the calls in flight.
func (s Stats) Progress(prev Stats) string {
	d := s.Sub(prev)
	return fmt.Sprintf("%6.1fs  calls %d  ok %d  errors %d  %.0f calls/s  in flight %d",
		s.Elapsed.Seconds(), s.Calls, s.Kinds[OK], s.Failed(), d.Rate(), s.InFlight)
}

// WriteText writes the human-readable summary: calls and throughput,
// latency quantiles, calls by outcome (with the last error of each failing
// kind) and the per-instance distribution.
func (s Stats) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "calls       %d in %s (%.0f calls/s)\n", s.Calls, s.Elapsed.Round(time.Millisecond), s.Rate())
	fmt.Fprintf(&b, "latency     p50 %s  p99 %s  (successful calls)\n", round(s.Latency(0.5)), round(s.Latency(0.99)))
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "outcome\tcalls\tshare")
	for _, k := range Kinds() {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", k, s.Kinds[k], share(s.Kinds[k], s.Calls))
	}
	tw.Flush()
	for _, k := range Kinds() {
		if msg, ok := s.LastErrors[k]; ok {
			fmt.Fprintf(&b, "  last %s: %s\n", k, msg)
		}
	}
	b.WriteString("\n")
	writeInstances(&b, s.Instances, s.Kinds[OK])
	_, err := io.WriteString(w, b.String())
	return err
}

// writeInstances writes the per-instance distribution table, sorted by ID.
func writeInstances(b *strings.Builder, instances map[string]int64, ok int64) {
	if len(instances) == 0 {
		b.WriteString("per instance: unknown (only Arith.Sleep's reply names the instance that served a call)\n")
		return
	}
	ids := slices.Sorted(maps.Keys(instances))
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "instance\tcalls\tshare")
	for _, id := range ids {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", id, instances[id], share(instances[id], ok), bar(instances[id], ok))
	}
	tw.Flush()
}

// share formats n/total as a percentage ("" when total is 0).
func share(n, total int64) string {
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}

// bar draws n/total as up to 30 characters.
func bar(n, total int64) string {
	if total == 0 {
		return ""
	}
	return strings.Repeat("#", int(math.Round(30*float64(n)/float64(total))))
}

// round shortens a latency for display.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
