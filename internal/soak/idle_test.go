package soak

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
)

const (
	idleProviderRole = "idle-provider"
	// idleConnsDefault is how many idle connections TestIdleConnections
	// opens (idleConnsShort with -short; SHOAL_IDLE_CONNS overrides both).
	idleConnsDefault = 10000
	idleConnsShort   = 1000
	// maxGoPerConn and maxRSSPerConn, the bounds on what one idle
	// connection may cost the provider in Go heap and stacks and in resident
	// memory, depend on the build (norace_test.go, race_test.go): the race
	// detector's instrumentation makes stack frames larger.
)

// providerStats is what the child provider reports about itself.
type providerStats struct {
	RSS        uint64 // VmRSS from /proc/self/status, bytes
	HeapInuse  uint64
	StackInuse uint64
	HeapAlloc  uint64
	Goroutines int
}

// runIdleProvider is the child process of TestIdleConnections: a provider of
// the Soak service on a loopback port. It prints "addr HOST:PORT", then
// answers each "stats" line on stdin with "stats {json}" after collecting
// garbage and returning free memory to the OS, and exits on "quit" or when
// stdin closes.
func runIdleProvider() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle provider:", err)
		return 1
	}
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)))
	if err := srv.RegisterName("Soak", &Soak{id: "idle"}); err != nil {
		fmt.Fprintln(os.Stderr, "idle provider:", err)
		return 1
	}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Printf("addr %s\n", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stats":
			st, err := selfStats()
			if err != nil {
				fmt.Fprintln(os.Stderr, "idle provider:", err)
				return 1
			}
			b, _ := json.Marshal(st)
			fmt.Printf("stats %s\n", b)
		case "quit":
			return 0
		}
	}
	return 0
}

func selfStats() (providerStats, error) {
	runtime.GC()
	debug.FreeOSMemory() // a GC, and free pages back to the OS, so RSS is what is live
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := providerStats{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, HeapAlloc: ms.HeapAlloc, Goroutines: runtime.NumGoroutine()}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return st, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return st, fmt.Errorf("VmRSS line %q: %w", line, err)
			}
			st.RSS = kb << 10
			return st, nil
		}
	}
	return st, fmt.Errorf("no VmRSS in /proc/self/status")
}

// child is the provider process of TestIdleConnections.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *bytes.Buffer
	addr   string
}

func startChild(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+idleProviderRole)
	c := &child{t: t, cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	line := c.line()
	addr, ok := strings.CutPrefix(line, "addr ")
	if !ok {
		t.Fatalf("child said %q, want addr HOST:PORT", line)
	}
	c.addr = addr
	return c
}

// line reads one line the child printed.
func (c *child) line() string {
	c.t.Helper()
	s, err := c.out.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading from the child provider: %v; its stderr:\n%s", err, c.stderr)
	}
	return strings.TrimSuffix(s, "\n")
}

func (c *child) stats() providerStats {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, "stats\n"); err != nil {
		c.t.Fatal(err)
	}
	line := c.line()
	js, ok := strings.CutPrefix(line, "stats ")
	var st providerStats
	if !ok || json.Unmarshal([]byte(js), &st) != nil {
		c.t.Fatalf("child said %q, want stats {json}", line)
	}
	return st
}

// stop asks the child to quit and waits for it; it is killed if it does not
// exit within 10 s.
func (c *child) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	_, _ = io.WriteString(c.stdin, "quit\n")
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Errorf("child provider: %v; its stderr:\n%s", err, c.stderr)
		}
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		c.t.Errorf("child provider did not quit within 10s; killed")
	}
}

// handshake makes one real call on a raw connection: a Soak.Fast request
// frame, and its response read without a buffered reader, so the test's
// own side of each connection stays small.
func handshake(nc net.Conn, n int) error {
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Seq: uint64(n) + 1}, Method: "Soak.Fast"}
	frame, err := protocol.AppendFrameEncode(nil, &m, protocol.Msgpack, Args{N: n}, 0)
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write(frame); err != nil {
		return err
	}
	var head [protocol.HeaderSize]byte
	if _, err := io.ReadFull(nc, head[:]); err != nil {
		return err
	}
	h, err := protocol.ParseHeader(head[:], 1<<10)
	if err != nil {
		return err
	}
	body := make([]byte, h.BodyLen)
	if _, err := io.ReadFull(nc, body); err != nil {
		return err
	}
	var resp protocol.Message
	if err := protocol.ParseBody(body, &resp); err != nil {
		return err
	}
	if h.Kind != protocol.KindResponse || h.Status != protocol.StatusOK || h.Seq != m.Seq {
		return fmt.Errorf("answer %s %s seq %d to request seq %d: %q", h.Kind, h.Status, h.Seq, m.Seq, resp.Payload)
	}
	var reply Reply
	if err := protocol.Msgpack.Decode(resp.Payload, &reply); err != nil {
		return err
	}
	if reply.N != n+1 {
		return fmt.Errorf("reply %+v to N=%d", reply, n)
	}
	return nil
}

// TestIdleConnections measures what an idle connection costs a provider. The
// provider runs in a child process (this test binary, re-executed), so it
// holds only the server ends and its memory is its own; this process opens
// the connections, makes one real call on each, and leaves them idle.
// Memory per connection is (after − before) / N, for the resident set and
// for the Go runtime's heap and stacks in use, each measured after a
// collection that returned free pages to the OS.
func TestIdleConnections(t *testing.T) {
	n := idleConnsDefault
	if testing.Short() {
		n = idleConnsShort
	}
	if s := os.Getenv("SHOAL_IDLE_CONNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("SHOAL_IDLE_CONNS=%q: want a positive number", s)
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Each process holds one end of every connection (Go raises the soft
	// limit to the hard one at start-up).
	if lim.Cur < uint64(n)+256 {
		t.Fatalf("the open-file limit is %d, too low for %d connections (+256 spare); lower SHOAL_IDLE_CONNS or raise ulimit -n",
			lim.Cur, n)
	}
	c := startChild(t)

	// Warm the provider up with a few connections first, so that the
	// baseline includes what the first connections allocate once (worker
	// goroutines, pools).
	for i := range 8 {
		nc, err := net.Dial("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := handshake(nc, i); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	before := c.stats()

	start := time.Now()
	conns := make([]net.Conn, n)
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				nc, err := net.Dial("tcp", c.addr)
				if err == nil {
					conns[i] = nc
					err = handshake(nc, i)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	opened := time.Since(start)
	after := c.stats()
	if g := after.Goroutines - before.Goroutines; g < n {
		t.Fatalf("the provider has %d more goroutines with %d connections open: not every connection is served", g, n)
	}

	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	rss := per(after.RSS, before.RSS)
	goMem := per(after.HeapInuse+after.StackInuse, before.HeapInuse+before.StackInuse)
	t.Logf("%d idle connections opened (one call each) in %v; provider before: RSS %.1f MiB, heap in use %.1f MiB, stacks %.1f MiB, %d goroutines; after: RSS %.1f MiB, heap in use %.1f MiB, stacks %.1f MiB, %d goroutines",
		n, opened.Round(time.Millisecond),
		mib(before.RSS), mib(before.HeapInuse), mib(before.StackInuse), before.Goroutines,
		mib(after.RSS), mib(after.HeapInuse), mib(after.StackInuse), after.Goroutines)
	t.Logf("per idle connection: RSS %.1f KiB, Go heap+stacks %.1f KiB (heap %.1f KiB, stacks %.1f KiB, live heap %.1f KiB)%s",
		rss/1024, goMem/1024, per(after.HeapInuse, before.HeapInuse)/1024, per(after.StackInuse, before.StackInuse)/1024,
		per(after.HeapAlloc, before.HeapAlloc)/1024, raceNote)
	if rss > maxRSSPerConn {
		t.Errorf("an idle connection costs the provider %.1f KiB of RSS, more than %d KiB%s", rss/1024, maxRSSPerConn>>10, raceNote)
	}
	if goMem > maxGoPerConn {
		t.Errorf("an idle connection costs the provider %.1f KiB of Go heap and stacks, more than %d KiB", goMem/1024, maxGoPerConn>>10)
	}
	if elapsed := time.Since(start); elapsed > 60*time.Second {
		t.Errorf("opening %d connections took %v", n, elapsed)
	}
}
