package consul

import (
	"github.com/shoalrpc/shoal/internal/namingtest"
	"github.com/shoalrpc/shoal/naming"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/shoalrpc/shoal/internal/consultest"
)

// These tests run against a real consul agent -dev (internal/consultest);
// each starts its own agent and runs in parallel with the others.

const (
	// testTTL is short, so that TestConsulMissedHeartbeatsFailTTL is quick,
	// but long enough that a heartbeat (TTL/3 apart) delayed by a loaded
	// machine does not fail an instance the test expects passing.
	testTTL = 3 * time.Second
	// eventWait bounds every wait for something a test needs to happen
	// (an instance showing up or leaving, a heartbeat, a restart): generous,
	// because several agents run in parallel on a loaded machine. How long an
	// event took is logged, never asserted.
	eventWait = 30 * time.Second
)

// newTestConsul returns a registry on agent with a short TTL and fast
// backoff, closed when the test ends.
func newTestConsul(t *testing.T, agent *consultest.Agent, opts ...Option) *Registry {
	t.Helper()
	opts = append([]Option{
		WithTTL(testTTL),
		WithRequestTimeout(10 * time.Second),
		WithWatchWait(10 * time.Second),
		WithBackoff(50*time.Millisecond, 500*time.Millisecond),
		WithWatchRateLimit(20*time.Millisecond, 5),
	}, opts...)
	c, err := New(&api.Config{Address: agent.Addr()}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFetch polls Fetch until ok holds, failing the test after d.
func waitFetch(t *testing.T, r naming.Registry, service string, d time.Duration, what string, ok func([]*naming.Instance) bool) []*naming.Instance {
	t.Helper()
	deadline := time.Now().Add(d)
	var last []*naming.Instance
	var lastErr error
	for {
		list, err := r.Fetch(t.Context(), service)
		if err == nil && ok(list) {
			return list
		}
		last, lastErr = list, err
		if time.Now().After(deadline) {
			t.Fatalf("Fetch(%s): no %s within %v (last %s, err %v)", service, what, d, namingtest.IDs(last), lastErr)
		}
		time.Sleep(50 * time.Millisecond) // polling Consul's state
	}
}

func TestConsulRegisterWatchDeregister(t *testing.T) {
	t.Parallel()
	agent := consultest.Start(t)
	provider := newTestConsul(t, agent)
	consumer := newTestConsul(t, agent)

	ch, err := consumer.Watch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	if snap := namingtest.Next(t, ch, eventWait); snap == nil || len(snap) != 0 {
		t.Fatalf("first snapshot of an unknown service = %#v, want an empty list", snap)
	}

	in := &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9001", Weight: 3, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}
	start := time.Now()
	cancel, err := provider.Register(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := []*naming.Instance{{ID: "arith-127.0.0.1-9001", Service: "arith", Addr: in.Addr, Weight: 3, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}}
	// Passing at once: the first heartbeat went out with the registration.
	got, err := consumer.Fetch(t.Context(), "arith")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Fetch right after Register = %v, %v; want %v", got, err, want)
	}
	snap := namingtest.WaitSnapshot(t, ch, eventWait, "the instance", namingtest.HasIDs("arith-127.0.0.1-9001"))
	if !reflect.DeepEqual(snap, want) {
		t.Fatalf("watched %+v, want %+v", snap[0], want[0])
	}
	t.Logf("visible to Watch %v after Register", time.Since(start))

	if _, err := provider.Register(t.Context(), in); err == nil {
		t.Fatal("second Register of the same ID through one registry succeeded")
	}

	start = time.Now()
	cancel()
	cancel() // idempotent
	if got, err := consumer.Fetch(t.Context(), "arith"); err != nil || len(got) != 0 {
		t.Fatalf("Fetch after cancel = %v, %v; want empty", namingtest.IDs(got), err)
	}
	namingtest.WaitSnapshot(t, ch, eventWait, "no instance", namingtest.HasIDs())
	t.Logf("gone from Watch %v after cancel", time.Since(start))
}

func TestConsulMissedHeartbeatsFailTTL(t *testing.T) {
	t.Parallel()
	agent := consultest.Start(t)
	provider := newTestConsul(t, agent)
	consumer := newTestConsul(t, agent)

	cancel, err := provider.Register(t.Context(), &naming.Instance{Service: "hung", Addr: "tcp@127.0.0.1:9100"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	ch, err := consumer.Watch(t.Context(), "hung")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, eventWait, "the instance", namingtest.HasIDs("hung-127.0.0.1-9100"))

	// The provider hangs: no more heartbeats, no deregistration.
	if !provider.stopHeartbeat("hung-127.0.0.1-9100") {
		t.Fatal("stopHeartbeat: not registered")
	}
	stopped := time.Now()
	namingtest.WaitSnapshot(t, ch, testTTL+eventWait, "the instance gone", namingtest.HasIDs())
	el := time.Since(stopped)
	t.Logf("left the passing list %v after the last heartbeat stopped (TTL %v)", el, testTTL)
	// The last heartbeat was at most TTL/3 before the stop.
	if el < testTTL/2 {
		t.Fatalf("instance left after %v, before its TTL %v could expire", el, testTTL)
	}
	waitFetch(t, consumer, "hung", eventWait, "empty list", namingtest.HasIDs())

	// Cancel still deregisters the critical instance.
	cancel()
	all, _, err := consumer.client.Health().Service("hung", "", false, nil)
	if err != nil || len(all) != 0 {
		t.Fatalf("after cancel, Consul still has %d instances (any health), err %v", len(all), err)
	}
}

func TestConsulAgentRestart(t *testing.T) {
	t.Parallel()
	agent := consultest.Start(t)
	provider := newTestConsul(t, agent)
	consumer := newTestConsul(t, agent)

	for _, port := range []string{"9201", "9202"} {
		cancel, err := provider.Register(t.Context(), &naming.Instance{Service: "echo", Addr: "tcp@127.0.0.1:" + port, Meta: map[string]string{"port": port}})
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
	}
	ch, err := consumer.Watch(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	both := namingtest.HasIDs("echo-127.0.0.1-9201", "echo-127.0.0.1-9202")
	good := namingtest.WaitSnapshot(t, ch, eventWait, "both instances", both)

	agent.Stop()
	down := consumer.Stats()
	downProvider := provider.Stats()
	stopped := time.Now()
	// Stay down until the provider has missed several heartbeats.
	deadline := stopped.Add(eventWait)
	for provider.Stats().HeartbeatErrors < downProvider.HeartbeatErrors+3 {
		if time.Now().After(deadline) {
			t.Fatalf("provider noticed no failed heartbeats: %+v", provider.Stats())
		}
		time.Sleep(20 * time.Millisecond) // polling an external condition
	}
	downFor := time.Since(stopped)
	st := consumer.Stats()
	queries := st.WatchQueries - down.WatchQueries
	t.Logf("agent down %v: watch sent %d queries (%d failed), provider %d failed heartbeats",
		downFor, queries, st.WatchErrors-down.WatchErrors, provider.Stats().HeartbeatErrors-downProvider.HeartbeatErrors)
	// Backoff starts at 50ms (drawn from 25–50ms) and doubles up to 500ms
	// (drawn from 250–500ms): after the first few, at most one query per
	// 250ms however long the agent stays down (a loaded machine only makes
	// it longer); a busy loop would make hundreds.
	if limit := 6 + uint64(downFor/(250*time.Millisecond)); queries > limit {
		t.Fatalf("%d watch queries in %v with the agent down: not backing off", queries, downFor)
	}
	// The last good list is kept: nothing was delivered.
	select {
	case snap := <-ch:
		t.Fatalf("watch delivered %s while the agent was down (last good %s)", namingtest.IDs(snap), namingtest.IDs(good))
	default:
	}

	restarted := time.Now()
	agent.Restart()
	namingtest.WaitSnapshot(t, ch, 2*eventWait, "both instances back", both)
	t.Logf("watch converged %v after the agent came back (start-up included)", time.Since(restarted))
	waitFetch(t, consumer, "echo", eventWait, "both instances", both)
	// The instances are visible as soon as the agent has them, a moment
	// before register returns and counts.
	deadline = time.Now().Add(eventWait)
	for provider.Stats().Reregistrations < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("provider stats %+v: want 2 re-registrations", provider.Stats())
		}
		time.Sleep(20 * time.Millisecond) // polling an external condition
	}
	// The heartbeats keep the re-registered instances passing past a TTL.
	hb := provider.Stats().Heartbeats
	deadline = time.Now().Add(eventWait)
	for provider.Stats().Heartbeats < hb+4 {
		if time.Now().After(deadline) {
			t.Fatalf("heartbeats stalled after the restart: %+v", provider.Stats())
		}
		time.Sleep(20 * time.Millisecond) // polling: heartbeats are TTL/3 apart
	}
	waitFetch(t, consumer, "echo", eventWait, "both instances", both)
}

func TestConsulManyServicesRoundTrip(t *testing.T) {
	t.Parallel()
	agent := consultest.Start(t)
	consumer := newTestConsul(t, agent)

	instances := []*naming.Instance{
		{Service: "alpha", Addr: "tcp@127.0.0.1:9301", Weight: 1, Meta: map[string]string{"zone": "a", "version": "1.0.0"}},
		{Service: "alpha", Addr: "tcp@127.0.0.1:9302", Weight: 5, Tags: []string{"canary", "v2"}, Meta: map[string]string{"zone": "b"}},
		{ID: "alpha-custom", Service: "alpha", Addr: "tcp@10.1.2.3:9303", Weight: 100},
		{Service: "beta", Addr: "unix@/tmp/beta.sock", Weight: 2, Meta: map[string]string{"empty": ""}},
		{Service: "beta", Addr: "tcp@[::1]:9402", Weight: 7, Tags: []string{"x"}},
	}
	for _, in := range instances {
		provider := newTestConsul(t, agent) // one registry per provider process
		cancel, err := provider.Register(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
	}
	want := map[string][]*naming.Instance{
		"alpha": {
			{ID: "alpha-127.0.0.1-9301", Service: "alpha", Addr: "tcp@127.0.0.1:9301", Weight: 1, Meta: map[string]string{"zone": "a", "version": "1.0.0"}},
			{ID: "alpha-127.0.0.1-9302", Service: "alpha", Addr: "tcp@127.0.0.1:9302", Weight: 5, Tags: []string{"canary", "v2"}, Meta: map[string]string{"zone": "b"}},
			{ID: "alpha-custom", Service: "alpha", Addr: "tcp@10.1.2.3:9303", Weight: 100},
		},
		"beta": {
			{ID: "beta---1-9402", Service: "beta", Addr: "tcp@[::1]:9402", Weight: 7, Tags: []string{"x"}},
			{ID: "beta-unix--tmp-beta.sock", Service: "beta", Addr: "unix@/tmp/beta.sock", Weight: 2, Meta: map[string]string{"empty": ""}},
		},
	}
	for service, w := range want {
		got, err := consumer.Fetch(t.Context(), service)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, w) {
			for i := range got {
				t.Logf("got  %+v", got[i])
			}
			for i := range w {
				t.Logf("want %+v", w[i])
			}
			t.Fatalf("Fetch(%s) does not round-trip", service)
		}
		ch, err := consumer.Watch(t.Context(), service)
		if err != nil {
			t.Fatal(err)
		}
		if snap := namingtest.Next(t, ch, eventWait); !reflect.DeepEqual(snap, w) {
			t.Fatalf("Watch(%s) = %s, want %s", service, namingtest.IDs(snap), namingtest.IDs(w))
		}
	}
}

func TestConsulCloseDeregistersAndOpenURL(t *testing.T) {
	t.Parallel()
	agent := consultest.Start(t)
	r, err := Open("consul://" + agent.Addr() + "?ttl=2s&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(t.Context(), &naming.Instance{Service: "svc", Addr: "tcp@127.0.0.1:9501"}); err != nil {
		t.Fatal(err)
	}
	ch, err := r.Watch(t.Context(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, eventWait, "the instance", namingtest.HasIDs("svc-127.0.0.1-9501"))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	namingtest.AssertClosed(t, ch, eventWait)
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	other := newTestConsul(t, agent)
	if got, err := other.Fetch(t.Context(), "svc"); err != nil || len(got) != 0 {
		t.Fatalf("after Close: %s, %v; want deregistered", namingtest.IDs(got), err)
	}
}
