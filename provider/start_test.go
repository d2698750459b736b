package provider

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// slowRegistry takes its time to register, as a remote registry does.
type slowRegistry struct {
	naming.Registry
	delay time.Duration
}

func (r slowRegistry) Register(ctx context.Context, in *naming.Instance) (context.CancelFunc, error) {
	time.Sleep(r.delay) // the latency of a registry round trip, not a synchronisation
	return r.Registry.Register(ctx, in)
}

// Start returns only once the instance is in the registry: a lookup right
// after it finds the instance, with no waiting.
func TestStartReturnsOnceRegistered(t *testing.T) {
	mem := naming.NewMemory()
	defer mem.Close()
	for i := range 5 {
		s := NewServer(quietLogger(), WithRegistry(slowRegistry{mem, 20 * time.Millisecond}, naming.Instance{Service: "arith"}))
		if err := s.Register(&OnlyPointer{}); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ln); err != nil {
			t.Fatal(err)
		}
		list, err := mem.Fetch(context.Background(), "arith")
		if err != nil || len(list) != 1 || list[0].Addr != "tcp@"+ln.Addr().String() {
			t.Fatalf("round %d: right after Start the registry holds %v (err %v), want the instance at %s", i, list, err, ln.Addr())
		}
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("round %d: not accepting after Start: %v", i, err)
		}
		nc.Close()
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Err(); err != nil {
			t.Fatalf("Err after Shutdown: %v", err)
		}
	}
}

func TestStartReportsAFailedRegistration(t *testing.T) {
	mem := naming.NewMemory()
	defer mem.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	reg := &orderedRegistry{Registry: mem, addr: ln.Addr().String()}
	reg.failures.Store(100)
	s := NewServer(quietLogger(), WithRegistry(reg, naming.Instance{Service: "arith"}), WithRegisterAttempts(2, time.Second))
	defer s.Close()
	err := s.Start(ln)
	if err == nil || !strings.Contains(err.Error(), "registry unavailable") || reg.attempts.Load() != 2 {
		t.Fatalf("Start: %v after %d attempts", err, reg.attempts.Load())
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still open after a failed registration")
	}
}

// One listener has one accept loop: serving it again is an error, and the
// first loop keeps serving.
func TestServeTwiceOnOneListener(t *testing.T) {
	s := NewServer(quietLogger())
	defer s.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Start(ln); err != nil {
		t.Fatal(err)
	}
	for name, serve := range map[string]func(net.Listener) error{"Serve": s.Serve, "Start": s.Start} {
		err := serve(ln)
		if !errors.Is(err, ErrListenerInUse) || !strings.Contains(err.Error(), "already served") || !strings.Contains(err.Error(), ln.Addr().String()) {
			t.Fatalf("%s on a listener already served: %v", name, err)
		}
	}
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("the first accept loop stopped: %v", err)
	}
	nc.Close()
}

// A listener that fails under Start is reported by Err.
func TestStartListenerFailureVisibleInErr(t *testing.T) {
	s := NewServer(quietLogger())
	defer s.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Start(ln); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err while serving: %v", err)
	}
	ln.Close() // not through the server
	deadline := time.Now().Add(10 * time.Second)
	for s.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := s.Err(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Err after the listener was closed: %v", err)
	}
}

// Listen takes every address form, as Dial and the registries do.
func TestListenAddressForms(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "tcp@127.0.0.1:0", "unix@" + t.TempDir() + "/s.sock"} {
		ln, err := Listen(addr)
		if err != nil {
			t.Fatalf("Listen(%q): %v", addr, err)
		}
		ln.Close()
	}
	for addr, want := range map[string]string{
		"tcp@127.0.0.1": `provider: listen: address "tcp@127.0.0.1": bad address: missing port in address`,
		"udp@h:1":       `provider: listen: address "udp@h:1": bad address: unknown network "udp"`,
		"unix@":         `provider: listen: address "unix@": bad address: empty socket path`,
	} {
		_, err := Listen(addr)
		if !errors.Is(err, naming.ErrBadAddress) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Listen(%q): %v, want %s", addr, err, want)
		}
	}
}
