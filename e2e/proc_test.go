package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/arith"
)

// lines collects a process's output line by line and lets a test wait for
// a line that matches.
type lines struct {
	mu      sync.Mutex
	partial []byte
	all     []string
	changed chan struct{} // closed and replaced whenever a line arrives
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

// Write implements io.Writer; exec's copying goroutine calls it.
func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.all = append(l.all, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		added = true
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

// String returns everything written so far.
func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n") + string(l.partial)
}

// waitFor returns the first line, from index from on, for which match is
// true, with its index. It gives up when stop is closed (the process
// exited) or after d.
func (l *lines) waitFor(from int, d time.Duration, stop <-chan struct{}, match func(string) bool) (string, int, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	exited := false
	for {
		l.mu.Lock()
		for i := from; i < len(l.all); i++ {
			if match(l.all[i]) {
				line := l.all[i]
				l.mu.Unlock()
				return line, i, nil
			}
		}
		from = len(l.all)
		changed := l.changed
		l.mu.Unlock()
		if exited {
			return "", 0, errors.New("the process exited")
		}
		select {
		case <-changed:
		case <-stop:
			exited = true // its output is complete: look once more, then give up
		case <-timer.C:
			return "", 0, fmt.Errorf("not within %v", d)
		}
	}
}

// proc is a process a test started; t.Cleanup kills it if it still runs.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout *lines
	stderr *lines
	exited chan struct{} // closed when the process has exited and its output is read
	state  *os.ProcessState
}

// start runs bin with args. Its output is kept, and written to the test log
// if the test fails.
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, stdout: newLines(), stderr: newLines(), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = 5 * time.Second // never hang on an inherited pipe
	dieWithTest(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("---- %s (%s) stderr:\n%s\n---- stdout:\n%s", name, strings.Join(p.cmd.Args, " "), p.stderr, p.stdout)
		}
	})
	return p
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// wait waits up to d for the process to exit and returns its exit status
// (-1 when a signal ended it).
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.state.ExitCode()
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %v", p.name, d)
		return 0
	}
}

// logLine is one line of the server's JSON log.
type logLine map[string]any

func (l logLine) str(key string) string {
	s, _ := l[key].(string)
	return s
}

func (l logLine) num(key string) float64 {
	f, _ := l[key].(float64)
	return f
}

// server is a demo/server process.
type server struct {
	*proc
	id       string // instance ID, from its log
	addr     string // "tcp@127.0.0.1:port"
	hostPort string // "127.0.0.1:port"
}

// startServer runs demo/server with args (and -log json) and waits for the
// log line that gives its instance ID and address.
func startServer(t *testing.T, name string, args ...string) *server {
	t.Helper()
	p := start(t, name, serverBin, append(args, "-log", "json")...)
	line, err := p.waitLog(0, 20*time.Second, "serving")
	if err != nil {
		t.Fatalf("%s: no \"serving\" log line: %v", name, err)
	}
	s := &server{proc: p, id: line.str("id"), addr: line.str("addr")}
	s.hostPort = strings.TrimPrefix(s.addr, "tcp@")
	if s.id == "" || s.hostPort == s.addr {
		t.Fatalf("%s: \"serving\" line without id or tcp addr: %v", name, line)
	}
	return s
}

// waitLog waits for a JSON log line on stderr with the given msg prefix.
func (p *proc) waitLog(from int, d time.Duration, msgPrefix string) (logLine, error) {
	var found logLine
	_, _, err := p.stderr.waitFor(from, d, p.exited, func(s string) bool {
		var l logLine
		if json.Unmarshal([]byte(s), &l) != nil || !strings.HasPrefix(l.str("msg"), msgPrefix) {
			return false
		}
		found = l
		return true
	})
	return found, err
}

// dialServer connects to one server directly, bypassing the registry.
func dialServer(t *testing.T, s *server) *consumer.Client {
	t.Helper()
	c, err := consumer.Dial(s.addr)
	if err != nil {
		t.Fatalf("dial %s: %v", s.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sleeping asks a server how many Sleep(ms) calls it is running.
func sleeping(t *testing.T, c *consumer.Client, ms int) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st arith.Stats
	if err := c.Call(ctx, "Arith.Stats", struct{}{}, &st); err != nil {
		t.Fatalf("Arith.Stats on %s: %v", c.Addr(), err)
	}
	return st.Sleeping[ms]
}

// result is the outcome of one call made outside the load generator.
type result struct {
	instance string
	err      error
}

// longCalls starts n calls of Arith.Sleep(ms) on c and returns where their
// results arrive.
func longCalls(c *consumer.Client, n, ms int) <-chan result {
	out := make(chan result, n)
	for range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(ms)*time.Millisecond+20*time.Second)
			defer cancel()
			var r result
			r.err = c.Call(ctx, "Arith.Sleep", ms, &r.instance)
			out <- r
		}()
	}
	return out
}

// eventually polls cond every 10 ms until it holds or d passes, and reports
// how long it took. Polling is for conditions outside the test's control:
// a registry's view, another process's state.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
