package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/health"
)

// nextLine waits for the watch's next line and checks it is want.
func nextLine(t *testing.T, p *proc, from int, want string) int {
	t.Helper()
	line, next := p.stdout.waitFor(t, from, "SERVING", p.exited) // every status line holds it
	if line != want || next != from+1 {
		t.Fatalf("line %d of the watch is %q (line %d), want %q", from+1, line, next, want)
	}
	return next
}

// TestHealthWatchCommand: `shoal health -watch` prints the status, then
// each change, until interrupted (exit 0); when the provider shuts down it
// prints NOT_SERVING and exits "not serving".
func TestHealthWatchCommand(t *testing.T) {
	p := startProvider(t, "a1", nil)
	w := startShoal(t, "health", "-watch", p.addr, "Arith")
	next := nextLine(t, w, 0, "SERVING")
	if err := p.srv.Health().SetStatus("Arith", health.NotServing); err != nil {
		t.Fatal(err)
	}
	next = nextLine(t, w, next, "NOT_SERVING")
	if err := p.srv.Health().SetStatus("Arith", health.Serving); err != nil {
		t.Fatal(err)
	}
	nextLine(t, w, next, "SERVING")
	if code := w.stop(t, syscall.SIGINT); code != exitOK {
		t.Errorf("health -watch exited %d after SIGINT, want 0", code)
	}

	whole := startShoal(t, "health", "-watch", p.addr)
	next = nextLine(t, whole, 0, "SERVING")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	nextLine(t, whole, next, "NOT_SERVING")
	if code := whole.wait(t); code != exitNotServing {
		t.Errorf("health -watch exited %d when the provider shut down, want %d", code, exitNotServing)
	}
	whole.stderr.waitFor(t, 0, "the provider ended the watch", whole.exited)

	shoal(t, "", "health", "-watch", "static://"+p.addr+"/arith").expect(t, exitUsage, nil, want("a registry TARGET has many"))
}
