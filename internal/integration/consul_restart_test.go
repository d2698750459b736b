package integration

import (
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/consultest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/consul"
)

// TestConsulRestartLosesNoCall (issue 12, item 4): 3 providers, a Failover
// proxy with 8 callers; the Consul agent stops for 3 s and restarts on the
// same ports, empty (a dev agent keeps nothing). No call fails: while the
// restarted agent lists no instance the proxy keeps calling the last known
// ones. Every provider registers again by itself and is listed within 10 s
// of the restart. Server-side executions and client-side results are
// counted apart and must agree.
//
// The providers reach the agent through a gate the test holds shut from the
// stop until the proxy has seen the restarted agent list nothing, so that
// the empty window always happens (left alone, a provider sometimes
// re-registers before the consumer's watch asks again, and the run tests
// nothing).
//
//	go test -run TestConsulRestartLosesNoCall -v ./internal/integration
func TestConsulRestartLosesNoCall(t *testing.T) {
	agent := consultest.Start(t)
	// The providers keep the default TTL (10 s): they heartbeat every 3.3 s,
	// and the first heartbeat after the restart finds the check gone and
	// registers again within a further 3.3 s.
	g := newGate(t, agent.Addr())
	provReg, err := consul.New(&api.Config{Address: g.addr()}, consul.WithRequestTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { provReg.Close() })
	c := newCluster(t, provReg, 3)
	// The consumer's registry is its own client, as in another process. Its
	// watch backs off at most 1 s while the agent is away, so it sees the
	// restarted agent soon (the default is 10 s).
	consReg, err := consul.New(&api.Config{Address: agent.Addr()}, consul.WithBackoff(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consReg.Close() })
	var logs logBuffer
	p := newProxy(t, consReg, consumer.WithFailMode(consumer.Failover), consumer.WithLogger(logs.logger()))
	waitListed(t, p, 3)
	l := startLoad(p, 8, "Arith.Who", WhoArgs{SleepMS: 1})
	t.Cleanup(func() { l.finish() })
	l.until(t, 200)

	g.hold()
	agent.Stop()
	time.Sleep(3 * time.Second) // the outage the calls ride out
	restarted := time.Now()
	agent.Restart() // returns once the agent has a leader
	ready := time.Since(restarted)
	for len(p.Instances()) != 0 {
		if time.Since(restarted) > 10*time.Second {
			t.Fatalf("10 s after the restart the proxy has not seen the agent list no instance: it lists %v", sortedIDs(p.Instances()))
		}
		time.Sleep(5 * time.Millisecond) // polling the proxy's view of the registry, an outside event
	}
	emptied := time.Since(restarted)
	if !p.InFallback() {
		t.Errorf("the registry lists no instance and the proxy is not in fallback")
	}
	g.release()
	// Listed again: in Consul (a fresh query), and in the proxy (its watch,
	// which kept the old list while the agent was away, has caught up).
	want := []string{c.nodes[0].id, c.nodes[1].id, c.nodes[2].id}
	slices.Sort(want)
	for {
		inConsul, err := consReg.Fetch(t.Context(), "arith")
		if err == nil && slices.Equal(sortedIDs(inConsul), want) && slices.Equal(sortedIDs(p.Instances()), want) && !p.InFallback() {
			break
		}
		if time.Since(restarted) > 10*time.Second {
			t.Fatalf("10 s after the restart Consul lists %v (%v), the proxy %v (in fallback: %v); want %v",
				sortedIDs(inConsul), err, sortedIDs(p.Instances()), p.InFallback(), want)
		}
		time.Sleep(20 * time.Millisecond) // polling the registry, an outside event
	}
	relisted := time.Since(restarted)
	l.until(t, 200)
	ok, failed, errs := l.finish()
	span := l.failedFor()
	ran := c.executed()
	t.Logf("after the restart began: agent ready after %v, the proxy saw no instance after %v, every provider listed again after %v; registry fallbacks: %d; calls: %d succeeded, %d failed; providers ran %d",
		ready.Round(time.Millisecond), emptied.Round(time.Millisecond), relisted.Round(time.Millisecond), p.Fallbacks(), ok, failed, ran)
	for _, line := range logs.lines() {
		t.Logf("proxy log: %s", line)
	}
	if len(errs) > 0 {
		t.Logf("calls failed for %v, first: %v", span, errs[0])
	}
	if failed != 0 {
		t.Fatalf("%d of %d calls failed across the registry restart, first: %v", failed, ok+failed, errs[0])
	}
	if ran != ok {
		t.Fatalf("the providers ran %d calls, the callers saw %d succeed", ran, ok)
	}
}

func sortedIDs(list []*naming.Instance) []string {
	ids := make([]string, 0, len(list))
	for _, in := range list {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}

// gate is a TCP relay to an address that can hold new connections: while
// held, a connection is accepted but not passed on until release.
type gate struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   chan struct{} // closed while the gate lets connections through
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newGate(t *testing.T, target string) *gate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{t: t, ln: ln, target: target, open: make(chan struct{})}
	close(g.open)
	g.wg.Go(g.accept)
	t.Cleanup(func() {
		g.release()
		ln.Close()
		g.mu.Lock()
		for _, c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }

// hold makes new connections wait; those already through are cut when their
// target goes (the agent stops).
func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

// release lets waiting and new connections through.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gate) track(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conns = append(g.conns, c)
}

func (g *gate) accept() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.track(c)
		g.mu.Lock()
		open := g.open
		g.mu.Unlock()
		g.wg.Go(func() {
			<-open
			up, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				return
			}
			g.track(up)
			g.wg.Go(func() { io.Copy(up, c); up.Close() })
			io.Copy(c, up)
			c.Close()
		})
	}
}
