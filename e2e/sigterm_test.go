package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/loadgen"
	"github.com/shoalrpc/shoal/internal/consultest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/consul"
)

// The scenario's constants.
const (
	ttl         = 2 * time.Second // Consul TTL of every instance
	loadSleepMs = 3               // the steady load calls Arith.Sleep(3)
	callers     = 8               // in-test callers
	stepCalls   = 300             // successful calls each step waits for

	loadCallTimeout = 10 * time.Second // the deadline of each in-test call
)

// TestSIGTERMWithConsul is issue 6's scenario: three demo servers in a real
// Consul, steady Failover load on Arith.Sleep, and then a SIGTERM, a
// restart, a SIGKILL and a SIGTERM to every server at once. Each step
// asserts its own numbers, measured by an in-test client built on the same
// load generator as demo/client; the demo/client binary runs alongside
// through steps 2 to 5 and must report no failure either.
func TestSIGTERMWithConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul and four processes")
	}
	agent := consultest.Start(t)
	regURL := "consul://" + agent.Addr() + "?ttl=" + ttl.String()
	cc := consulClient(t, agent.Addr())
	serverArgs := []string{"-registry", regURL, "-service", "arith", "-shutdown-timeout", "20s"}

	// 1. Consul and three servers.
	servers := make([]*server, 3)
	for i := range servers {
		servers[i] = startServer(t, "server-"+string(rune('A'+i)), serverArgs...)
	}
	a, b, c := servers[0], servers[1], servers[2]
	all := []string{a.id, b.id, c.id}
	slices.Sort(all)
	took := eventually(t, 20*time.Second, "Consul lists the three servers as passing", func() bool {
		return slices.Equal(passing(t, cc), all)
	})
	t.Logf("step 1: servers %s, %s, %s passing in Consul %v after their start", a.id, b.id, c.id, took.Round(time.Millisecond))

	// 2. Steady load, Failover, on Sleep(3 ms): the in-test client and the
	// demo/client binary.
	reg, err := naming.Open(regURL, consul.Backend())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	p, err := consumer.NewClientProxy("arith", reg,
		consumer.WithFailMode(consumer.Failover), consumer.WithRetries(2), consumer.WithWaitForInstances(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	eventually(t, 30*time.Second, "the proxy knows the three servers", func() bool { return len(p.Instances()) == 3 })
	load := startLoad(t, p)
	client := start(t, "demo/client", clientBin, "-registry", regURL, "-method", "Sleep", "-sleep", strconv.Itoa(loadSleepMs),
		"-fail", "failover", "-concurrency", "4", "-duration", "0", "-progress", "100ms", "-json")
	progress := regexp.MustCompile(`calls ([1-9][0-9]*) `)
	if _, _, err := client.stderr.waitFor(0, 20*time.Second, client.exited, progress.MatchString); err != nil {
		t.Fatalf("demo/client shows no calls: %v", err)
	}
	s0 := load.Snapshot()
	load.waitOK(t, s0, stepCalls)
	step := load.Snapshot().Sub(s0)
	assertNoFailure(t, "step 2", step)
	for _, id := range all {
		if step.Instances[id] == 0 {
			t.Errorf("step 2: %s served no call: %v", id, step.Instances)
		}
	}
	t.Logf("step 2: %d calls in %v, 0 failed, spread %v", step.Calls, step.Elapsed.Round(time.Millisecond), step.Instances)

	// 3. SIGTERM to A, with three long calls accepted by it first: A
	// deregisters, drains, answers them and exits 0; no call fails.
	direct := dialServer(t, a)
	long := longCalls(direct, 3, 1000)
	eventually(t, 30*time.Second, "A runs the three Sleep(1000) calls", func() bool { return sleeping(t, direct, 1000) == 3 })
	s0 = load.Snapshot()
	t0 := time.Now()
	a.signal(syscall.SIGTERM)
	if code := a.wait(20 * time.Second); code != 0 {
		t.Fatalf("step 3: A exited with status %d after SIGTERM, want 0", code)
	}
	drained := time.Since(t0)
	for range 3 {
		if r := <-long; r.err != nil || r.instance != a.id {
			t.Errorf("step 3: a Sleep(1000) accepted by A before SIGTERM returned (%q, %v), want (%q, nil)", r.instance, r.err, a.id)
		}
	}
	shutLine, err := a.waitLog(0, 10*time.Second, "shutting down")
	if err != nil {
		t.Fatalf("step 3: A logged no shutdown: %v", err)
	}
	if n := shutLine.num("in_flight"); n < 3 {
		t.Errorf("step 3: A had %v calls in flight at SIGTERM, want at least the 3 long ones", n)
	}
	if _, err := a.waitLog(0, 10*time.Second, "drained"); err != nil {
		t.Errorf("step 3: A did not log a clean drain: %v", err)
	}
	if services := agentServices(t, cc); services[a.id] {
		t.Errorf("step 3: A is still registered in Consul after its exit; it should have deregistered")
	}
	eventually(t, 30*time.Second, "the proxy drops A", func() bool { return !knows(p, a.id) })
	load.waitOK(t, load.Snapshot(), 100) // every caller is past its calls to A
	mid := load.Snapshot()
	load.waitOK(t, mid, stepCalls)
	end := load.Snapshot()
	step = end.Sub(s0)
	assertNoFailure(t, "step 3", step)
	if n := end.Sub(mid).Instances[a.id]; n != 0 {
		t.Errorf("step 3: %d calls answered by A after it exited", n)
	}
	t.Logf("step 3: SIGTERM to A with %v calls in flight; A drained and exited 0 after %v; its 3 Sleep(1000) calls answered; deregistered; %d calls, 0 failed",
		shutLine.num("in_flight"), drained.Round(time.Millisecond), step.Calls)

	// 4. Restart A at the same address: same ID, registered again, called again.
	oldID := a.id
	a = startServer(t, "server-A (restarted)", append(serverArgs, "-listen", a.hostPort)...)
	if a.id != oldID {
		t.Fatalf("step 4: restarted A has ID %q, want its old one %q", a.id, oldID)
	}
	s0 = load.Snapshot()
	t0 = time.Now()
	eventually(t, 20*time.Second, "Consul lists A again", func() bool { return slices.Equal(passing(t, cc), all) })
	eventually(t, 30*time.Second, "the restarted A receives calls", func() bool { return load.Snapshot().Sub(s0).Instances[a.id] >= 50 })
	back := time.Since(t0)
	load.waitOK(t, load.Snapshot(), stepCalls)
	step = load.Snapshot().Sub(s0)
	assertNoFailure(t, "step 4", step)
	t.Logf("step 4: A restarted as %s, passing and called again within %v; %d calls, %d by A, 0 failed",
		a.id, back.Round(time.Millisecond), step.Calls, step.Instances[a.id])

	// 5. SIGKILL to B: Failover carries its calls; it leaves the passing
	// list when its TTL runs out, not at once.
	s0 = load.Snapshot()
	t0 = time.Now()
	b.signal(syscall.SIGKILL)
	b.wait(10 * time.Second)
	eventually(t, ttl+30*time.Second, "B leaves Consul's passing list", func() bool { return !slices.Contains(passing(t, cc), b.id) })
	gone := time.Since(t0)
	window := load.Snapshot().Sub(s0) // while B was dead but listed
	// The last heartbeat was at most ttl/3 before the kill, so the check
	// fails at least 2/3 of the TTL after it.
	if gone < ttl/2 {
		t.Errorf("step 5: B left the passing list %v after SIGKILL, sooner than its TTL of %v allows", gone, ttl)
	}
	if services := agentServices(t, cc); !services[b.id] {
		t.Errorf("step 5: B is no longer registered at all; a killed instance cannot deregister, only fail its check")
	}
	eventually(t, 30*time.Second, "the proxy drops B", func() bool { return !knows(p, b.id) })
	load.waitOK(t, load.Snapshot(), 100)
	mid = load.Snapshot()
	load.waitOK(t, mid, stepCalls)
	end = load.Snapshot()
	step = end.Sub(s0)
	assertNoFailure(t, "step 5", step)
	if n := end.Sub(mid).Instances[b.id]; n != 0 {
		t.Errorf("step 5: %d calls answered by B after it was killed", n)
	}
	t.Logf("step 5: SIGKILL to B; it left the passing list after %v (TTL %v), still registered; %d calls while it was dead but listed, %d in the whole step, 0 failed",
		gone.Round(time.Millisecond), ttl, window.Calls, step.Calls)

	// The demo/client binary ran through steps 2 to 5: it must have seen
	// every server and no failure.
	client.signal(syscall.SIGINT)
	if code := client.wait(20 * time.Second); code != 0 {
		t.Errorf("demo/client exited with status %d, want 0 (no failed call)", code)
	}
	var sum loadgen.Summary
	if err := json.Unmarshal([]byte(client.stdout.String()), &sum); err != nil {
		t.Fatalf("demo/client summary: %v", err)
	}
	if sum.Failed != 0 || sum.Calls == 0 || sum.OK != sum.Calls {
		t.Errorf("demo/client: %d calls, %d ok, %d failed (%v), want all ok", sum.Calls, sum.OK, sum.Failed, sum.LastErrors)
	}
	for _, id := range all {
		if sum.Instances[id] == 0 {
			t.Errorf("demo/client: no call served by %s: %v", id, sum.Instances)
		}
	}
	t.Logf("demo/client: %d calls, 0 failed, %.0f calls/s, p50 %.2f ms, p99 %.2f ms, spread %v",
		sum.Calls, sum.PerSecond, sum.P50Ms, sum.P99Ms, sum.Instances)

	// 6. SIGTERM to every server at once, with two long calls accepted by
	// each: every accepted call completes; once no instance is left, calls
	// fail at once with the no-instances error.
	live := []*server{a, c}
	var longs []<-chan result
	for _, s := range live {
		d := dialServer(t, s)
		longs = append(longs, longCalls(d, 2, 1500))
		eventually(t, 30*time.Second, s.name+" runs two Sleep(1500) calls", func() bool { return sleeping(t, d, 1500) == 2 })
	}
	s0 = load.Snapshot()
	t0 = time.Now()
	for _, s := range live {
		s.signal(syscall.SIGTERM)
	}
	for i, s := range live {
		if code := s.wait(20 * time.Second); code != 0 {
			t.Errorf("step 6: %s exited with status %d, want 0", s.name, code)
		}
		for range 2 {
			if r := <-longs[i]; r.err != nil || r.instance != s.id {
				t.Errorf("step 6: a Sleep(1500) accepted by %s returned (%q, %v), want (%q, nil)", s.name, r.instance, r.err, s.id)
			}
		}
	}
	down := time.Since(t0)
	eventually(t, 30*time.Second, "the proxy has no instance left", func() bool { return len(p.Instances()) == 0 })
	if ids := passing(t, cc); len(ids) != 0 {
		t.Errorf("step 6: Consul still lists %v as passing", ids)
	}
	mark, markTime := load.Snapshot(), time.Now()
	eventually(t, 30*time.Second, "50 more calls", func() bool { return load.Snapshot().Sub(mark).Calls >= 50 })
	final := load.stop()
	step = final.Sub(s0)
	tail := final.Sub(mark)
	for _, k := range []loadgen.Kind{loadgen.ConnClosed, loadgen.Deadline, loadgen.ServiceError, loadgen.Other} {
		if n := step.Count(k); n != 0 {
			t.Errorf("step 6: %d calls failed with %q (%s): an accepted call was lost or hung", n, k, step.LastErrors[k])
		}
	}
	if tail.Count(loadgen.NoInstances) != tail.Calls {
		t.Errorf("step 6: with no instance left, %d of %d calls failed with the no-instances error, want all: %v", tail.Count(loadgen.NoInstances), tail.Calls, tail.LastErrors)
	}
	// A call that waited for an instance would end with its deadline (a
	// failure of another kind, checked above) or near it; one that fails at
	// once takes microseconds. Half the deadline tells them apart on any
	// machine; how long it took is logged.
	slowest := load.slowestFailureSince(markTime)
	if slowest > loadCallTimeout/2 {
		t.Errorf("step 6: a call with no instance left took %v to fail (its deadline %v), want it at once", slowest, loadCallTimeout)
	}
	t.Logf("step 6: SIGTERM to A and C; both drained their 2 Sleep(1500) calls and exited 0 within %v; during the shutdown %d calls: %d ok, by kind %v; "+
		"afterwards %d calls, all %q, the slowest in %v",
		down.Round(time.Millisecond), step.Calls, step.Count(loadgen.OK), kinds(step), tail.Calls, loadgen.NoInstances, slowest.Round(time.Microsecond))
}

// assertNoFailure fails the test if any call of a step failed.
func assertNoFailure(t *testing.T, step string, s loadgen.Stats) {
	t.Helper()
	if s.Failed() != 0 {
		t.Errorf("%s: %d of %d calls failed: %v; last errors %v", step, s.Failed(), s.Calls, kinds(s), s.LastErrors)
	}
}

// kinds renders the non-zero outcome counts.
func kinds(s loadgen.Stats) map[string]int64 {
	m := map[string]int64{}
	for _, k := range loadgen.Kinds() {
		if n := s.Count(k); n > 0 {
			m[k.String()] = n
		}
	}
	return m
}

func knows(p *consumer.ClientProxy, id string) bool {
	return slices.ContainsFunc(p.Instances(), func(in *naming.Instance) bool { return in.ID == id })
}

// testLoad is the in-test client: loadgen on a ClientProxy, plus the start
// and length of every failed call.
type testLoad struct {
	*loadgen.Runner
	mu       sync.Mutex
	failures []failure
}

type failure struct {
	start time.Time
	took  time.Duration
}

// startLoad runs the steady load until the test stops it or ends.
func startLoad(t *testing.T, p *consumer.ClientProxy) *testLoad {
	t.Helper()
	l := &testLoad{}
	r, err := loadgen.Start(loadgen.Config{
		Concurrency:     callers,
		Timeout:         loadCallTimeout,
		PauseAfterError: 5 * time.Millisecond,
	}, func(ctx context.Context) (string, error) {
		start := time.Now()
		var id string
		err := p.Call(ctx, "Arith.Sleep", loadSleepMs, &id)
		if err != nil {
			l.mu.Lock()
			l.failures = append(l.failures, failure{start, time.Since(start)})
			l.mu.Unlock()
		}
		return id, err
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Runner = r
	t.Cleanup(func() { r.Stop() })
	return l
}

// waitOK waits until n more calls than in base have succeeded.
func (l *testLoad) waitOK(t *testing.T, base loadgen.Stats, n int64) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d more successful calls", n), func() bool {
		return l.Snapshot().Sub(base).Count(loadgen.OK) >= n
	})
}

func (l *testLoad) stop() loadgen.Stats { return l.Stop() }

// slowestFailureSince returns the longest failed call among those started
// at or after since.
func (l *testLoad) slowestFailureSince(since time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var slowest time.Duration
	for _, f := range l.failures {
		if !f.start.Before(since) {
			slowest = max(slowest, f.took)
		}
	}
	return slowest
}

// consulClient is a Consul API client without keep-alives, so that it
// leaves no goroutine behind.
func consulClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{
		Address:    addr,
		HttpClient: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// passing returns the sorted IDs of the passing arith instances.
func passing(t *testing.T, c *api.Client) []string {
	t.Helper()
	entries, _, err := c.Health().Service("arith", "", true, nil)
	if err != nil {
		t.Fatalf("consul health: %v", err)
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}
	slices.Sort(ids)
	return ids
}

// agentServices returns the IDs of every service the agent has registered,
// passing or not.
func agentServices(t *testing.T, c *api.Client) map[string]bool {
	t.Helper()
	services, err := c.Agent().Services()
	if err != nil {
		t.Fatalf("consul agent services: %v", err)
	}
	ids := make(map[string]bool, len(services))
	for id := range services {
		ids[id] = true
	}
	return ids
}
