package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/health"
)

func TestList(t *testing.T) {
	p := startProvider(t, "a1", nil)
	host := strings.TrimPrefix(p.addr, "tcp@")
	shoal(t, "", "list", host).expect(t, exitOK, want("Arith\n", "  Arith.Add    unary\n", "  Arith.Sleep  unary\n", "Echo\n  Echo.Meta  unary\n"), nil)
	shoal(t, "", "list", p.addr, "Arith").expect(t, exitOK, want("Arith.Div"), nil)
	r := shoal(t, "", "list", p.addr, "Arth")
	r.expect(t, exitUnknown, nil, want(`serves no service "Arth"; did you mean Arith?`))
}

func TestDescribe(t *testing.T) {
	p := startProvider(t, "a1", nil)
	shoal(t, "", "describe", p.addr, "Arith.Add").expect(t, exitOK,
		want("Arith.Add (unary)", "args: arith.Args", `"A": {`, "reply: int", `shoal call `+p.addr+` Arith.Add '{"A":0,"B":0}'`), nil)
	shoal(t, "", "describe", p.addr, "Arith.Ad").expect(t, exitUnknown, nil,
		want("shoal: unknown method: "+p.addr+" does not serve Arith.Ad; did you mean Arith.Add"))
	shoal(t, "", "describe", p.addr, "Arith").expect(t, exitUsage, nil, want(`method "Arith": want Service.Method`))
}

func TestCall(t *testing.T) {
	p := startProvider(t, "a1", nil)
	dir := t.TempDir()
	body := filepath.Join(dir, "body.json")
	if err := os.WriteFile(body, []byte(`{"A":6,"B":7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"ok", "", []string{"call", p.addr, "Arith.Add", `{"A":40,"B":2}`}, exitOK, want("42\n"), nil},
		{"flags after the arguments", "", []string{"call", p.addr, "Arith.Add", `{"A":1,"B":2}`, "-timeout", "5s"}, exitOK, want("3\n"), nil},
		{"body from a file", "", []string{"call", "-d", "@" + body, p.addr, "Arith.Mul"}, exitOK, want("42\n"), nil},
		{"body from stdin", `{"A":9,"B":3}`, []string{"call", p.addr, "Arith.Div", "-d", "@-"}, exitOK, want("3\n"), nil},
		{"metadata", "", []string{"call", p.addr, "Echo.Meta", "-H", "tenant=acme", "-H", "trace=1"}, exitOK, want(`"tenant": "acme"`, `"trace": "1"`), nil},
		{"service error", "", []string{"call", p.addr, "Arith.Div", `{"A":1,"B":0}`}, exitServiceError, nil, want("shoal: service error: divide by zero\n")},
		{"not JSON", "", []string{"call", p.addr, "Arith.Add", `{"A":1,`}, exitUsage, nil, want("the body is not JSON")},
		{"a field of the wrong type", "", []string{"call", p.addr, "Arith.Add", `{"A":"x"}`}, exitUsage, nil, want(`field A: want integer, got string "x"`)},
		{"an unknown field", "", []string{"call", p.addr, "Arith.Add", `{"A":1,"C":2}`}, exitUsage, nil, want(`unknown field "C"`, "the fields are A, B")},
		{"the server names the field", "", []string{"call", p.addr, "Arith.Add", `{"A":"x"}`, "-check=false"}, exitBadRequest, nil, want("shoal: bad request:", "Args.A")},
		{"unknown method", "", []string{"call", p.addr, "Arith.Sub", `{}`}, exitUnknown, nil, want("unknown method", "does not serve Arith.Sub")},
		{"unknown method, suggested", "", []string{"call", p.addr, "Arith.add", `{}`}, exitUnknown, nil, want("did you mean Arith.Add?")},
		{"unknown service", "", []string{"call", p.addr, "Arth.Add", `{}`}, exitUnknown, nil, want("unknown service", "did you mean Arith.Add?")},
		{"deadline", "", []string{"call", p.addr, "Arith.Sleep", "3000", "-timeout", "200ms"}, exitDeadline, nil, want("shoal: deadline exceeded")},
		{"bad target", "", []string{"call", "tcp@nowhere", "Arith.Add", `{}`}, exitUsage, nil, want(`TARGET "tcp@nowhere"`)},
		{"registry target without a service", "", []string{"call", "consul://127.0.0.1:8500", "Arith.Add", `{}`}, exitUsage, nil, want("name the service after the registry")},
		{"memory target", "", []string{"call", "memory:///arith", "Arith.Add", `{}`}, exitUsage, nil, want("memory:// is the registry of one process")},
		{"nothing listening", "", []string{"call", "127.0.0.1:1", "Arith.Add", `{}`, "-timeout", "2s"}, exitUnavailable, nil, want("shoal: unavailable:")},
		{"an http@ address", "", []string{"call", "http@" + strings.TrimPrefix(p.addr, "tcp@"), "Arith.Add", `{"A":20,"B":22}`}, exitOK, want("42\n"), nil},
		{"a registry target", "", []string{"call", "static://" + p.addr + "/arith", "Arith.Add", `{"A":2,"B":2}`, "-lb", "random", "-fail", "failover"}, exitOK, want("4\n"), nil},
		{"a bad -lb", "", []string{"call", "static://" + p.addr + "/arith", "Arith.Add", "-lb", "fastest"}, exitUsage, nil, want("-lb")},
		{"two bodies", "", []string{"call", p.addr, "Arith.Add", `{}`, "-d", `{}`}, exitUsage, nil, want("a body given twice")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shoal(t, tc.stdin, tc.args...).expect(t, tc.code, tc.stdout, tc.stderr)
		})
	}
}

func TestHealth(t *testing.T) {
	p := startProvider(t, "a1", nil)
	shoal(t, "", "health", p.addr).expect(t, exitOK, want("SERVING\n"), nil)
	shoal(t, "", "health", p.addr, "Nope").expect(t, exitNotServing, want("SERVICE_UNKNOWN\n"), want("service Nope at "+p.addr+" is SERVICE_UNKNOWN"))
	q := startProvider(t, "a2", nil)
	if err := q.srv.Health().SetStatus("", health.NotServing); err != nil {
		t.Fatal(err)
	}
	r := shoal(t, "", "health", "static://"+p.addr+","+q.addr+"/arith")
	r.expect(t, exitNotServing, want(p.addr+"  SERVING", q.addr+"  NOT_SERVING"), want("1 of 2 instances of arith are not SERVING"))
}

func TestLoad(t *testing.T) {
	p := startProvider(t, "a1", nil)
	r := shoal(t, "", "load", p.addr, "Arith.Add", `{"A":1,"B":2}`, "-c", "4", "-d", "2s")
	r.expect(t, exitOK, want("Summary:", "Latency histogram", "Latency distribution:", "  99% in ", "Status counts:", "  [ok]"), want("load: "+p.addr+" Arith.Add from 4 callers for 2s", "calls/s"))
	// What the report counts, the provider counted independently.
	var st arith.Stats
	if err := p.arith.Stats(context.Background(), struct{}{}, &st); err != nil {
		t.Fatal(err)
	}
	calls := field(t, r.stdout, "Calls:")
	if calls != st.Calls || calls == 0 {
		t.Errorf("the report says %d calls, the provider ran %d", calls, st.Calls)
	}
	if ok := field(t, r.stdout, "[ok]"); ok != st.Calls {
		t.Errorf("the report says %d ok, the provider ran %d", ok, st.Calls)
	}
	r = shoal(t, "", "load", p.addr, "Arith.Div", `{"A":1,"B":0}`, "-c", "2", "-n", "20", "-d", "0")
	r.expect(t, exitServiceError, want("[service error]  20 calls", "[service error] divide by zero"), want("every call failed"))
}

func TestHelp(t *testing.T) {
	shoal(t, "", "help").expect(t, exitOK, want("shoal call TARGET Service.Method", "Exit status:", "  1  service error", "  9  health"), nil)
	shoal(t, "").expect(t, exitUsage, nil, want("usage:"))
	shoal(t, "", "cal").expect(t, exitUsage, nil, want(`unknown command "cal"; did you mean call?`))
	shoal(t, "", "call", "-h").expect(t, exitOK, nil, want("usage: shoal call", "-timeout"))
	shoal(t, "", "call", "-bogus").expect(t, exitUsage, nil, want("flag provided but not defined: -bogus"))
}
