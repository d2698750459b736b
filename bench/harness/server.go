package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoalrpc/shoal/bench/peer"
)

// readyPrefix starts the one line a server prints on stdout once it
// listens: "listening on 127.0.0.1:PORT".
const readyPrefix = "listening on "

// startTimeout bounds how long a server may take to print its address.
const startTimeout = 15 * time.Second

// ServeMain is the server mode: it serves p on addr, prints
// "listening on ADDR" to stdout, and serves until ctx ends or, with
// exitOnEOF, until stdin reaches end of file (the runner holds the other
// end of that pipe, so the server goes when the runner goes, however it
// died).
func ServeMain(ctx context.Context, p peer.Server, addr string, stdin io.Reader, stdout io.Writer, exitOnEOF bool) error {
	if exitOnEOF {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			cancel()
		}()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server %s: %w", p.Name(), err)
	}
	if _, err := fmt.Fprintf(stdout, "%s%s\n", readyPrefix, ln.Addr()); err != nil {
		ln.Close()
		return fmt.Errorf("server %s: print the address: %w", p.Name(), err)
	}
	if err := p.Serve(ctx, ln); err != nil {
		return fmt.Errorf("server %s: %w", p.Name(), err)
	}
	return nil
}

// server is a peer's server process, started by the runner.
type server struct {
	peer   string
	addr   string
	pid    int
	cmd    *exec.Cmd
	stdin  io.Closer
	stderr *tail
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, set before done closes
}

// startServer starts exe with args as peer's server and waits until it
// prints its address. The process is in its own process group, killed
// when ctx ends, when stop is called, and (on Linux) when the runner dies.
func startServer(ctx context.Context, exe string, args []string, peerName string) (*server, error) {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.SysProcAttr = serverSysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = 5 * time.Second
	s := &server{peer: peerName, cmd: cmd, stderr: &tail{max: 4096}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", peerName, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", peerName, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("server %s: start %s: %w", peerName, exe, err)
	}
	s.pid, s.stdin = cmd.Process.Pid, stdin

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout) // nothing more is expected; don't block the server
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-lines:
		addr, found := strings.CutPrefix(line, readyPrefix)
		if ok && found && addr != "" {
			s.addr = addr
			return s, nil
		}
		s.stop()
		return nil, fmt.Errorf("server %s: expected %q, got %q%s", peerName, readyPrefix+"ADDR", line, s.stderr.suffix())
	case <-timer.C:
		s.stop()
		return nil, fmt.Errorf("server %s: no address within %v%s", peerName, startTimeout, s.stderr.suffix())
	case <-ctx.Done():
		s.stop()
		return nil, fmt.Errorf("server %s: %w", peerName, ctx.Err())
	}
}

// alive reports an error if the server process has exited.
func (s *server) alive() error {
	select {
	case <-s.done:
		return fmt.Errorf("server %s exited: %v%s", s.peer, s.err, s.stderr.suffix())
	default:
		return nil
	}
}

// stopGrace is how long a server has to exit by itself once its standard
// input closes (long enough to write a CPU profile) before it is killed.
const stopGrace = 5 * time.Second

// stop closes the server's standard input, which asks it to exit, and kills
// its process group if it is still running after stopGrace; then it waits
// for it to exit. A server that has exited already is not signalled: its
// id may be reused.
func (s *server) stop() {
	s.stdin.Close()
	select {
	case <-s.done:
		return
	case <-time.After(stopGrace):
	}
	_ = killGroup(s.cmd.Process)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second): // Wait returns within WaitDelay after a kill
	}
}

// killGroup kills p's process group (p leads it).
func killGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return p.Kill()
	}
	return nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// suffix is ": stderr: ..." when the process wrote anything there.
func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return ""
	}
	return "; its stderr: " + s
}
