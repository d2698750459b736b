package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// shoalBin is the command, built once by TestMain.
var shoalBin string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shoal-cmd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shoalBin = filepath.Join(dir, "shoal")
	if out, err := exec.Command("go", "build", "-o", shoalBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/shoal: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			return 1
		}
	}
	return code
}

// Echo is a test service that answers with the call's metadata.
type Echo struct{}

// Meta replies with the metadata the call carried.
func (Echo) Meta(ctx context.Context, _ struct{}, reply *map[string]string) error {
	*reply = provider.Metadata(ctx)
	return nil
}

// live is a provider the tests run the command against.
type live struct {
	srv   *provider.Server
	arith *arith.Arith
	addr  string // "tcp@127.0.0.1:port"
}

// startProvider serves arith (as instance id) and Echo, with the built-in
// reflection and health services, on loopback, registered in reg under
// "arith" when reg is not nil.
func startProvider(t *testing.T, id string, reg naming.Registry) *live {
	t.Helper()
	l := &live{arith: arith.New(id)}
	opts := []provider.Option{provider.WithLogger(slog.New(slog.DiscardHandler)), provider.WithDrainGrace(0)}
	if reg != nil {
		opts = append(opts, provider.WithRegistry(reg, naming.Instance{ID: id, Service: "arith"}))
	}
	l.srv = provider.NewServer(opts...)
	for name, rcvr := range map[string]any{"Arith": l.arith, "Echo": Echo{}} {
		if err := l.srv.RegisterName(name, rcvr); err != nil {
			t.Fatal(err)
		}
	}
	addr := servetest.Start(t, l.srv)
	l.addr = "tcp@" + addr
	return l
}

// runResult is one run of the command.
type runResult struct {
	code           int
	stdout, stderr string
}

// shoal runs the command with args and stdin, and waits up to a minute.
func shoal(t *testing.T, stdin string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shoalBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	r := runResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	if err != nil && r.code <= 0 {
		t.Fatalf("shoal %q: %v\n%s", args, err, stderr.String())
	}
	return r
}

// expect checks an exit status and that stdout and stderr hold the given
// texts.
func (r runResult) expect(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	bad := r.code != code
	for _, s := range stdout {
		bad = bad || !strings.Contains(r.stdout, s)
	}
	for _, s := range stderr {
		bad = bad || !strings.Contains(r.stderr, s)
	}
	if bad {
		t.Errorf("exit %d, want %d; stdout (want %q):\n%s\nstderr (want %q):\n%s", r.code, code, stdout, r.stdout, stderr, r.stderr)
	}
}

func want(s ...string) []string { return s }
