package provider

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/naming"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// orderedRegistry wraps a real registry and records, when the instance is
// withdrawn, whether the listener still accepted connections.
type orderedRegistry struct {
	naming.Registry
	addr              string
	acceptingAtCancel atomic.Bool
	cancelled         chan struct{}
	failures          atomic.Int64 // Register calls left to fail
	attempts          atomic.Int64
}

func (r *orderedRegistry) Register(ctx context.Context, in *naming.Instance) (context.CancelFunc, error) {
	r.attempts.Add(1)
	if r.failures.Add(-1) >= 0 {
		return nil, errors.New("registry unavailable")
	}
	cancel, err := r.Registry.Register(ctx, in)
	if err != nil {
		return nil, err
	}
	return func() {
		nc, err := net.Dial("tcp", r.addr)
		if err == nil {
			nc.Close()
		}
		r.acceptingAtCancel.Store(err == nil)
		cancel()
		close(r.cancelled)
	}, nil
}

func quietLogger() Option { return WithLogger(slog.New(slog.DiscardHandler)) }

func TestRegistersAfterListeningAndWithdrawsBeforeClosing(t *testing.T) {
	mem := naming.NewMemory()
	defer mem.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := &orderedRegistry{Registry: mem, addr: ln.Addr().String(), cancelled: make(chan struct{})}
	s := NewServer(quietLogger(), WithRegistry(reg, naming.Instance{Service: "arith", Weight: 3}))
	if err := s.Register(&OnlyPointer{}); err != nil {
		t.Fatal(err)
	}
	watch, err := mem.Watch(context.Background(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	var list []*naming.Instance
	for len(list) == 0 {
		list = <-watch
	}
	want := "tcp@" + ln.Addr().String()
	if list[0].Addr != want || list[0].ID != naming.DefaultID("arith", want) || list[0].Weight != 3 {
		t.Fatalf("registered %+v, want addr %s", list[0], want)
	}
	nc, err := net.Dial("tcp", ln.Addr().String()) // it is accepting
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-reg.cancelled
	if !reg.acceptingAtCancel.Load() {
		t.Fatal("the listener was closed before the instance was withdrawn")
	}
	got, _ := mem.Fetch(context.Background(), "arith")
	if len(got) != 0 {
		t.Fatalf("still registered after Shutdown: %v", got)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestFailedRegistrationIsRetriedThenReported(t *testing.T) {
	mem := naming.NewMemory()
	defer mem.Close()

	// Fails twice, then succeeds on the third and last attempt.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	reg := &orderedRegistry{Registry: mem, addr: ln.Addr().String(), cancelled: make(chan struct{})}
	reg.failures.Store(2)
	s := NewServer(quietLogger(), WithRegistry(reg, naming.Instance{Service: "arith"}), WithRegisterAttempts(3, time.Second))
	s.Register(&OnlyPointer{})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	w, _ := mem.Watch(context.Background(), "arith")
	for list := <-w; len(list) == 0; list = <-w {
	}
	s.Close()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}

	// Fails every time: Serve reports it and closes the listener.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	reg2 := &orderedRegistry{Registry: mem, addr: ln2.Addr().String()}
	reg2.failures.Store(100)
	s2 := NewServer(quietLogger(), WithRegistry(reg2, naming.Instance{Service: "arith"}), WithRegisterAttempts(2, time.Second))
	s2.Register(&OnlyPointer{})
	err := s2.Serve(ln2)
	if err == nil || !strings.Contains(err.Error(), "registry unavailable") || reg2.attempts.Load() != 2 {
		t.Fatalf("Serve: %v after %d attempts", err, reg2.attempts.Load())
	}
	if _, err := net.Dial("tcp", ln2.Addr().String()); err == nil {
		t.Fatal("listener still open after a failed registration")
	}
	s2.Close()
}

func TestInstanceWithoutServiceIsAnError(t *testing.T) {
	mem := naming.NewMemory()
	defer mem.Close()
	s := NewServer(quietLogger(), WithRegistry(mem, naming.Instance{}))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(ln); err == nil || !strings.Contains(err.Error(), "Service") {
		t.Fatalf("Serve: %v", err)
	}
	s.Close()
}

func TestServeAfterShutdownReturnsErrServerClosed(t *testing.T) {
	s := NewServer()
	s.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener left open")
	}
}
