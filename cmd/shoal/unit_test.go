package main

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// field returns the number after label in a report.
func field(t *testing.T, report, label string) int64 {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(label) + `\s+(\d+)`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no %q in the report:\n%s", label, report)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in, addr, registry, service string
	}{
		{"127.0.0.1:9001", "tcp@127.0.0.1:9001", "", ""},
		{"unix@/tmp/s.sock", "unix@/tmp/s.sock", "", ""},
		{"http@127.0.0.1:9001", "http@127.0.0.1:9001", "", ""},
		{"consul://127.0.0.1:8500/arith", "", "consul://127.0.0.1:8500", "arith"},
		{"consul://127.0.0.1:8500/arith?ttl=2s", "", "consul://127.0.0.1:8500?ttl=2s", "arith"},
		{"consul:///arith", "", "consul://", "arith"},
		{"etcd://127.0.0.1:2379/shoal/arith", "", "etcd://127.0.0.1:2379/shoal", "arith"},
		{"static://tcp@a:1,tcp@b:2/arith", "", "static://tcp@a:1,tcp@b:2", "arith"},
		{"static://tcp@a:1", "", "static://tcp@a:1", "static"},
	} {
		got, err := parseTarget(tc.in)
		if err != nil || got.addr != tc.addr || got.registry != tc.registry || got.service != tc.service {
			t.Errorf("parseTarget(%q) = %+v, %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{"", "nowhere", "tcp@", "memory:///arith", "consul://127.0.0.1:8500", "consul://127.0.0.1:8500/"} {
		if _, err := parseTarget(bad); err == nil {
			t.Errorf("parseTarget(%q) accepted", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	schema := `{"$defs":{"Item":{"type":"object","properties":{"Qty":{"type":"integer"},"Tags":{"type":["array","null"],"items":{"type":"string"}}}}},
		"type":"object","properties":{"Name":{"type":"string"},"Items":{"type":"array","items":{"$ref":"#/$defs/Item"}},
		"Attrs":{"type":"object","additionalProperties":{"type":"number"}},"When":{"type":"string","format":"date-time"},
		"Next":{"anyOf":[{"$ref":"#/$defs/Item"},{"type":"null"}]}}}`
	for _, tc := range []struct{ body, err string }{
		{`{"Name":"a","Items":[{"Qty":1,"Tags":["x"]}],"Attrs":{"k":1.5},"When":"2026-01-01T00:00:00Z"}`, ""},
		{`{"name":"a"}`, ""},      // encoding/json matches case-insensitively
		{`{"Name":null}`, ""},     // null leaves the zero value
		{`null`, ""},              // the zero args
		{`{"Attrs":{"k":2}}`, ""}, // an integer is a number
		{`{"Name":1}`, `field Name: want string, got integer 1`},
		{`{"Items":[{"Qty":1},{"Qty":"2"}]}`, `field Items[1].Qty: want integer, got string "2"`},
		{`{"Items":[{"Qty":1.5}]}`, `field Items[0].Qty: want integer, got number 1.5`},
		{`{"Items":[{"Qtty":1}]}`, `field Items[0]: unknown field "Qtty"`},
		{`{"Attrs":{"k":"x"}}`, `field Attrs["k"]: want number, got string`},
		{`{"Nme":"a"}`, `did you mean Name?`},
		{`[1]`, `want object, got array`},
		{`{"Next":{"Qty":2}}`, ""},
		{`{"Next":{"Qty":"2"}}`, `field Next.Qty: want integer, got string "2"`},
	} {
		err := validate(schema, json.RawMessage(tc.body))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want %q", tc.body, err, tc.err)
		}
	}
	if err := validate("not a schema", json.RawMessage(`{"x":1}`)); err != nil {
		t.Errorf("an unreadable schema checked: %v", err)
	}
}

func TestSuggestion(t *testing.T) {
	names := []string{"Arith.Add", "Arith.Div", "Arith.Mul", "Arith.Sleep"}
	for in, wantS := range map[string]string{
		"Arith.add":   "; did you mean Arith.Add?",
		"Arith.Sleap": "; did you mean Arith.Sleep?",
		"Arith.Dvi":   "; did you mean Arith.Div?",
		"Other.Thing": "",
	} {
		if got := suggestion(in, names); got != wantS {
			t.Errorf("suggestion(%q) = %q, want %q", in, got, wantS)
		}
	}
}

func TestHistogram(t *testing.T) {
	var a, b histogram
	for i := 1; i <= 500; i++ {
		a.record(time.Duration(i) * time.Millisecond)
		b.record(time.Duration(500+i) * time.Millisecond)
	}
	a.merge(&b)
	if a.total != 1000 || a.min != time.Millisecond || a.max != time.Second {
		t.Fatalf("merged: total %d min %v max %v", a.total, a.min, a.max)
	}
	for q, exact := range map[float64]time.Duration{0.5: 500 * time.Millisecond, 0.9: 900 * time.Millisecond, 0.99: 990 * time.Millisecond} {
		if got := a.quantile(q); got < exact*96/100 || got > exact*104/100 {
			t.Errorf("quantile(%v) = %v, want %v within 4%%", q, got, exact)
		}
	}
	if got := a.mean(); got != 500500*time.Microsecond {
		t.Errorf("mean %v", got)
	}
	bounds, counts := a.bars(10)
	var n int64
	prev := a.min
	for i, c := range counts {
		n += c
		// Calls were spread evenly over 1..1000 ms: a bar holds about as
		// many as the milliseconds it spans.
		span := float64(bounds[i]-prev) / float64(time.Millisecond)
		if i == 0 {
			span++ // the fastest call itself
		}
		if math.Abs(float64(c)-span) > span*0.1+2 {
			t.Errorf("bar %d (%v to %v): %d calls, want about %.0f", i, prev, bounds[i], c, span)
		}
		prev = bounds[i]
	}
	if n != 1000 || bounds[9] != time.Second {
		t.Errorf("bars hold %d calls, end at %v", n, bounds[9])
	}
}
