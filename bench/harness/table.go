package harness

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteTable writes the report for people: the machine, the summary table,
// each metric as a ratio to net/rpc and to the ceiling, and shoal's
// targets. The tables are Markdown, aligned so they read well as text too.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString(r.Machine.String())
	b.WriteString("\n\n")
	if len(r.Config.Tuned) > 0 {
		b.WriteString("Default path: a plain struct (no tags, no methods), default options:\n\n")
	}
	b.WriteString(r.mainTable(false))
	if len(r.Config.Tuned) > 0 {
		b.WriteString("\nTuned path: the message's generated msgpack code (-gen) or as_array (-array); ratios to the same run's net/rpc and ceiling:\n\n")
		b.WriteString(r.mainTable(true))
	}
	b.WriteString("\nEach metric as a ratio to net/rpc's / to the raw ceiling's (same concurrency):\n\n")
	b.WriteString(r.ratioTable())
	if len(r.Targets) > 0 {
		b.WriteString("\nshoal's targets:\n\n")
		b.WriteString(r.targetTable())
	}
	if n, worst := r.disturbed(); n > 0 {
		fmt.Fprintf(&b, "\nNOTE: in %d of %d counted rounds other processes used more than %.0f%% of the machine's CPU (at most %.0f%%): those numbers are lower than a quiet machine gives; see other_busy per round in the JSON.\n",
			n, len(r.Rounds), 100*disturbedShare, 100*worst)
	}
	for _, s := range r.Results {
		if s.Errors > 0 {
			fmt.Fprintf(&b, "\nWARNING: %s at c=%d: %d failed calls (not counted); see the rounds in the JSON.\n", s.Peer, s.Concurrency, s.Errors)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String is the one-line description of the machine and the run's
// conditions.
func (m Machine) String() string {
	s := fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s, %s", m.CPU, m.Cores, m.GOMAXPROCS, m.OS, m.Go)
	if m.Commit != "" {
		s += ", commit " + m.Commit
		if m.Dirty {
			s += " with uncommitted changes"
		}
	}
	s += ", " + m.Date
	if m.LoadBefore != "" {
		s += fmt.Sprintf("; load average %s before, %s after", m.LoadBefore, m.LoadAfter)
	}
	if m.OtherBusy >= 0 {
		s += fmt.Sprintf("; other processes used %.0f%% of the machine's CPU during the run", 100*m.OtherBusy)
	}
	if m.Steal >= 0.01 {
		s += fmt.Sprintf(", the hypervisor stole %.0f%%", 100*m.Steal)
	}
	return s
}

// mainTable is the summary table of the default path's peers, or of the
// tuned path's.
func (r *Report) mainTable(tuned bool) string {
	t := table{
		head:  []string{"c", "peer", "calls/s", "×net/rpc", "×ceiling", "p50 ms", "p99 ms", "p99.9 ms", "allocs/call", "B/call", "client µs/call", "server µs/call"},
		right: []bool{true, false, true, true, true, true, true, true, true, true, true, true},
	}
	for _, s := range r.Results {
		if slices.Contains(r.Config.Tuned, s.Peer) != tuned {
			continue
		}
		var vsN, vsC float64
		if s.VsNetRPC != nil {
			vsN = s.VsNetRPC.CallsPerSec
		}
		if s.VsCeiling != nil {
			vsC = s.VsCeiling.CallsPerSec
		}
		t.rows = append(t.rows, []string{
			strconv.Itoa(s.Concurrency), s.Peer, group(s.CallsPerSec), times(vsN), times(vsC),
			fixed(s.P50ms, 2), fixed(s.P99ms, 2), fixed(s.P999ms, 2),
			fixed(s.AllocsPerCall, 1), group(s.BytesPerCall),
			fixed(s.ClientCPUusPerCall, 1), fixed(s.ServerCPUusPerCall, 1),
		})
	}
	return t.String()
}

func (r *Report) ratioTable() string {
	t := table{
		head:  []string{"c", "peer", "calls/s", "p50", "p99", "p99.9", "allocs/call", "B/call", "client CPU", "server CPU"},
		right: []bool{true, false, true, true, true, true, true, true, true, true},
	}
	for _, s := range r.Results {
		n, c := s.VsNetRPC, s.VsCeiling
		pair := func(f func(*Metrics) float64) string {
			get := func(m *Metrics) string {
				if m == nil {
					return "-"
				}
				return plain(f(m))
			}
			return get(n) + " / " + get(c)
		}
		t.rows = append(t.rows, []string{
			strconv.Itoa(s.Concurrency), s.Peer,
			pair(func(m *Metrics) float64 { return m.CallsPerSec }),
			pair(func(m *Metrics) float64 { return m.P50ms }),
			pair(func(m *Metrics) float64 { return m.P99ms }),
			pair(func(m *Metrics) float64 { return m.P999ms }),
			pair(func(m *Metrics) float64 { return m.AllocsPerCall }),
			pair(func(m *Metrics) float64 { return m.BytesPerCall }),
			pair(func(m *Metrics) float64 { return m.ClientCPUusPerCall }),
			pair(func(m *Metrics) float64 { return m.ServerCPUusPerCall }),
		})
	}
	return t.String()
}

func (r *Report) targetTable() string {
	t := table{head: []string{"goal"}, right: []bool{false}}
	for _, c := range r.Config.Concurrency {
		t.head = append(t.head, "c="+strconv.Itoa(c))
		t.right = append(t.right, true)
	}
	var goals []string
	for _, g := range r.Targets {
		if !slices.Contains(goals, g.Goal) {
			goals = append(goals, g.Goal)
		}
	}
	for _, goal := range goals {
		row := []string{goal}
		for _, c := range r.Config.Concurrency {
			cell := "-"
			for _, g := range r.Targets {
				if g.Goal == goal && g.Concurrency == c {
					v := times(g.Value)
					if strings.Contains(goal, "client allocs") {
						v = fixed(g.Value, 1)
					}
					if g.Met {
						cell = v + " met"
					} else {
						cell = v + " NOT MET"
					}
				}
			}
			row = append(row, cell)
		}
		t.rows = append(t.rows, row)
	}
	return t.String()
}

// table renders an aligned Markdown table.
type table struct {
	head  []string
	right []bool // right-align column i
	rows  [][]string
}

func (t table) String() string {
	width := make([]int, len(t.head))
	for i, h := range t.head {
		width[i] = utf8.RuneCountInString(h)
	}
	for _, row := range t.rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if t.right[i] {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		b.WriteString("\n")
	}
	line(t.head)
	b.WriteString("|")
	for i, w := range width {
		if t.right[i] {
			b.WriteString(strings.Repeat("-", w+1) + ":|")
		} else {
			b.WriteString(strings.Repeat("-", w+2) + "|")
		}
	}
	b.WriteString("\n")
	for _, row := range t.rows {
		line(row)
	}
	return b.String()
}

// fixed formats v with prec decimals; "n/a" for a negative (unknown) value.
func fixed(v float64, prec int) string {
	if v < 0 {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// times formats a ratio as "1.23×"; "-" when it is undefined (0).
func times(v float64) string {
	if v <= 0 {
		return "-"
	}
	return plain(v) + "×"
}

// plain formats a ratio with two decimals, or fewer when it is large.
func plain(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// group formats v rounded to an integer with thin groups of three digits:
// 1234567 → "1 234 567".
func group(v float64) string {
	if v < 0 {
		return "n/a"
	}
	s := strconv.FormatFloat(v, 'f', 0, 64)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// disturbedShare is the share of the machine's CPU taken by other processes
// above which a round counts as disturbed.
const disturbedShare = 0.10

// disturbed counts the rounds in which other processes took more than
// disturbedShare of the CPU, and gives the largest share seen.
func (r *Report) disturbed() (n int, worst float64) {
	for _, x := range r.Rounds {
		if x.OtherBusy > disturbedShare {
			n++
		}
		worst = max(worst, x.OtherBusy)
	}
	return n, worst
}
