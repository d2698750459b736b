package e2e

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
)

// TestServerDrainsOnEverySignal: SIGINT, SIGTERM, SIGHUP and SIGQUIT each
// start a graceful shutdown that answers the call in flight and exits 0.
func TestServerDrainsOnEverySignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			s := startServer(t, "server", "-registry", "memory://")
			c := dialServer(t, s)
			long := longCalls(c, 1, 300)
			eventually(t, 30*time.Second, "the server runs Sleep(300)", func() bool { return sleeping(t, c, 300) == 1 })
			s.signal(sig)
			if code := s.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit status %d after %v, want 0", code, sig)
			}
			if r := <-long; r.err != nil || r.instance != s.id {
				t.Errorf("the call in flight returned (%q, %v), want (%q, nil)", r.instance, r.err, s.id)
			}
			line, err := s.waitLog(0, 10*time.Second, "shutting down")
			if err != nil {
				t.Fatalf("no shutdown log line: %v", err)
			}
			if got := line.str("signal"); got != sig.String() {
				t.Errorf("logged signal %q, want %q", got, sig.String())
			}
		})
	}
}

// TestServerShutdownDeadlineExitsNonZero: when -shutdown-timeout passes with
// a call still running, the server cuts it and exits 3, and the caller sees
// the connection close.
func TestServerShutdownDeadlineExitsNonZero(t *testing.T) {
	s := startServer(t, "server", "-registry", "memory://", "-shutdown-timeout", "200ms")
	c := dialServer(t, s)
	long := longCalls(c, 1, 30_000)
	eventually(t, 30*time.Second, "the server runs Sleep(30000)", func() bool { return sleeping(t, c, 30_000) == 1 })
	t0 := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 3 {
		t.Fatalf("exit status %d, want 3 (the deadline cut the drain)", code)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("the server took %v to exit with a 200ms shutdown timeout", took)
	}
	if r := <-long; !errors.Is(r.err, consumer.ErrConnClosed) {
		t.Errorf("the cut call returned (%q, %v), want consumer.ErrConnClosed", r.instance, r.err)
	}
	if _, err := s.waitLog(0, 10*time.Second, "shutdown cut short"); err != nil {
		t.Errorf("no \"shutdown cut short\" log line: %v", err)
	}
}

// TestServerSecondSignalClosesAtOnce: a second signal during the drain
// closes the server at once, and it exits 3.
func TestServerSecondSignalClosesAtOnce(t *testing.T) {
	s := startServer(t, "server", "-registry", "memory://", "-shutdown-timeout", "60s")
	c := dialServer(t, s)
	long := longCalls(c, 1, 30_000)
	eventually(t, 30*time.Second, "the server runs Sleep(30000)", func() bool { return sleeping(t, c, 30_000) == 1 })
	s.signal(syscall.SIGTERM)
	if _, err := s.waitLog(0, 10*time.Second, "shutting down"); err != nil {
		t.Fatalf("no shutdown log line: %v", err)
	}
	s.signal(syscall.SIGINT)
	if code := s.wait(10 * time.Second); code != 3 {
		t.Fatalf("exit status %d, want 3", code)
	}
	if r := <-long; !errors.Is(r.err, consumer.ErrConnClosed) {
		t.Errorf("the cut call returned (%q, %v), want consumer.ErrConnClosed", r.instance, r.err)
	}
}

// TestServerBadFlagsAndUnreachableRegistry: bad flags exit 2; a registry
// that cannot be reached exits 1 with a hint.
func TestServerBadFlagsAndUnreachableRegistry(t *testing.T) {
	bad := start(t, "server", serverBin, "-weight", "0")
	if code := bad.wait(10 * time.Second); code != 2 {
		t.Errorf("-weight 0: exit status %d, want 2", code)
	}
	// A Consul address where nothing listens (port 1 refuses connections).
	s := startServer(t, "server", "-registry", "consul://127.0.0.1:1?timeout=500ms")
	if code := s.wait(30 * time.Second); code != 1 {
		t.Errorf("unreachable Consul: exit status %d, want 1", code)
	}
	line, err := s.waitLog(0, 10*time.Second, "serving failed")
	if err != nil {
		t.Fatalf("no \"serving failed\" log line: %v", err)
	}
	if line.str("hint") == "" {
		t.Errorf("no hint in %v", line)
	}
}
