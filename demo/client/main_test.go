package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/demo/loadgen"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/provider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-method", "arith.div", "-lb", "P2C_EWMA", "-fail", "Failretry", "-calls", "10"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.method != "Arith.Div" || c.lb != loadbalance.P2CEWMA || c.fail != consumer.Failretry || c.calls != 10 || c.duration != 10*time.Second {
		t.Errorf("parsed %+v", c)
	}
	for _, args := range [][]string{
		{"-method", "Pow"},
		{"-lb", "fastest"},
		{"-fail", "failsoft"},
		{"-concurrency", "0"},
		{"-retries", "-1"},
		{"-sleep", "-5"},
		{"-duration", "-1s"},
		{"-service", ""},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// serveArith runs n arith providers on loopback and returns a static://
// registry URL listing them, and their IDs.
func serveArith(t *testing.T, n int) (string, []string) {
	t.Helper()
	var addrs, ids []string
	for i := range n {
		id := "arith-" + string(rune('1'+i))
		srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)))
		if err := srv.Register(arith.New(id)); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-served })
		addrs = append(addrs, "tcp@"+ln.Addr().String())
		ids = append(ids, id)
	}
	return "static://" + strings.Join(addrs, ","), ids
}

func TestRunSleepJSON(t *testing.T) {
	url, ids := serveArith(t, 2)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-registry", url, "-calls", "60", "-sleep", "1", "-concurrency", "3", "-json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var sum loadgen.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout.String())
	}
	if sum.Calls != 60 || sum.OK != 60 || sum.Failed != 0 {
		t.Errorf("summary %+v, want 60 ok calls", sum)
	}
	for _, id := range ids {
		if sum.Instances[id] != 30 { // round robin over two instances
			t.Errorf("instances %v, want 30 calls on each", sum.Instances)
		}
	}
	if !strings.Contains(stderr.String(), "calling Arith.Sleep(1)") {
		t.Errorf("stderr lacks the header line:\n%s", stderr.String())
	}
}

func TestRunDivideByZeroCountsServiceErrors(t *testing.T) {
	url, _ := serveArith(t, 1)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-registry", url, "-method", "Div", "-b", "0", "-calls", "5", "-concurrency", "1"}, &stdout, &stderr)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d (some calls failed)", code, exitFailed)
	}
	out := stdout.String()
	for _, want := range []string{"Arith.Div(6, 0)", "service error      5", "last service error: divide by zero", "per instance: unknown"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestRunUntilInterrupted(t *testing.T) {
	url, _ := serveArith(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond) // stands for Ctrl-C
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"-registry", url, "-duration", "0", "-progress", "50ms", "-json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("an interrupted run took %v", took)
	}
	if !strings.Contains(stderr.String(), "interrupted") || !strings.Contains(stderr.String(), "calls/s") {
		t.Errorf("stderr lacks the progress or the interruption:\n%s", stderr.String())
	}
	var sum loadgen.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil || sum.Calls == 0 || sum.Failed != 0 {
		t.Errorf("summary %+v (%v), want some calls, none failed", sum, err)
	}
}

func TestRunWithoutInstances(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-registry", "memory://", "-wait", "50ms"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "no instances") {
		t.Errorf("exit %d, stderr %q; want %d and a no-instances error", code, stderr.String(), exitUsage)
	}
}

// A client on memory:// can never find a server: it says why, and what to
// use instead, before and after waiting.
func TestRunMemoryRegistrySaysWhatToUse(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-registry", "memory://", "-wait", "10ms"}, &stdout, &stderr)
	if code != exitUsage || strings.Count(stderr.String(), "memory:// is a registry inside this process only") != 2 ||
		!strings.Contains(stderr.String(), "Use static://host:port") {
		t.Errorf("exit %d, stderr %q; want the memory:// hint before and after the no-instances error", code, stderr.String())
	}
}

// A client pointed at a Consul address where no agent runs says how to
// start one.
func TestRunConsulWithoutAgentSaysHowToStartOne(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-registry", "consul://127.0.0.1:1?timeout=500ms", "-wait", "10ms"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "hint: is a Consul agent running? scripts/consul.sh start runs one") ||
		!strings.Contains(stderr.String(), "SHOAL_CONSUL") {
		t.Errorf("exit %d, stderr %q; want the scripts/consul.sh hint", code, stderr.String())
	}
}
