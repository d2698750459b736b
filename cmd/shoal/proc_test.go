package main

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lines collects a process's output and lets a test wait for a line.
type lines struct {
	mu      sync.Mutex
	buf     []byte
	all     []string
	changed chan struct{} // closed and replaced when a line arrives
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	added := false
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.all = append(l.all, string(l.buf[:i]))
		l.buf = l.buf[i+1:]
		added = true
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n") + string(l.buf)
}

// waitFor returns the first line from index from on that contains s, and
// the index after it.
func (l *lines) waitFor(t *testing.T, from int, s string, exited <-chan struct{}) (string, int) {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	gone := false
	for {
		l.mu.Lock()
		for i := from; i < len(l.all); i++ {
			if strings.Contains(l.all[i], s) {
				line := l.all[i]
				l.mu.Unlock()
				return line, i + 1
			}
		}
		from = len(l.all)
		changed := l.changed
		l.mu.Unlock()
		if gone {
			t.Fatalf("no line with %q: the process exited", s)
		}
		select {
		case <-changed:
		case <-exited:
			gone = true
		case <-timer.C:
			t.Fatalf("no line with %q within 30 s", s)
		}
	}
}

// proc is a running shoal command.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *lines
	exited         chan struct{}
}

func startShoal(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(shoalBin, args...), stdout: newLines(), stderr: newLines(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("---- shoal %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

// stop sends sig and returns the exit status.
func (p *proc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("shoal %v did not exit within 30 s", p.cmd.Args[1:])
		return 0
	}
}
