package etcd

import (
	"context"
	"errors"
	"github.com/shoalrpc/shoal/internal/namingtest"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoalrpc/shoal/naming"
)

// These tests run against a real etcd (internal/etcdtest); each starts its
// own server on free loopback ports and runs in parallel with the others.

func TestRegisterFetchWatchDeregister(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	provider := newTestRegistry(t, srv.Endpoint())
	consumer := newTestRegistry(t, srv.Endpoint())

	ch, err := consumer.Watch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	if snap := namingtest.Next(t, ch, 10*time.Second); snap == nil || len(snap) != 0 {
		t.Fatalf("first snapshot of an unknown service = %#v, want an empty list", snap)
	}

	in := &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9001", Weight: 3, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}
	cancel, err := provider.Register(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := []*naming.Instance{{ID: "arith-127.0.0.1-9001", Service: "arith", Addr: in.Addr, Weight: 3, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}}
	got, err := consumer.Fetch(t.Context(), "arith")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Fetch right after Register = %v, %v; want %v", namingtest.IDs(got), err, namingtest.IDs(want))
	}
	if snap := namingtest.WaitSnapshot(t, ch, 5*time.Second, "the instance", namingtest.HasIDs("arith-127.0.0.1-9001")); !reflect.DeepEqual(snap, want) {
		t.Fatalf("watched %+v, want %+v", snap[0], want[0])
	}
	// Another service sharing the name's beginning is not listed.
	c2, err := provider.Register(t.Context(), &naming.Instance{Service: "arithmetic", Addr: "tcp@127.0.0.1:9002"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2()
	if got, _ := consumer.Fetch(t.Context(), "arith"); len(got) != 1 {
		t.Fatalf("Fetch(arith) = %s, want only arith's instance", namingtest.IDs(got))
	}

	if _, err := provider.Register(t.Context(), in); err == nil {
		t.Fatal("second Register of the same ID through one registry succeeded")
	}
	if _, err := provider.Register(t.Context(), &naming.Instance{Service: "a/b", Addr: "tcp@127.0.0.1:1"}); !errors.Is(err, naming.ErrInvalidInstance) {
		t.Fatalf("Register of service a/b = %v, want ErrInvalidInstance", err)
	}

	// Deregistration revokes the lease: the key is gone when cancel returns.
	cancel()
	cancel() // idempotent
	if got, err := consumer.Fetch(t.Context(), "arith"); err != nil || len(got) != 0 {
		t.Fatalf("Fetch after cancel = %v, %v; want empty", namingtest.IDs(got), err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "no instance", namingtest.HasIDs())
}

func TestTTLExpiryRemovesAKilledProvider(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	provider := newTestRegistry(t, srv.Endpoint())
	consumer := newTestRegistry(t, srv.Endpoint())

	if _, err := provider.Register(t.Context(), &naming.Instance{Service: "hung", Addr: "tcp@127.0.0.1:9100"}); err != nil {
		t.Fatal(err)
	}
	ch, err := consumer.Watch(t.Context(), "hung")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "the instance", namingtest.HasIDs("hung-127.0.0.1-9100"))

	// The provider dies: no more keep-alives, no revoke.
	if !provider.kill(provider.serviceKey("hung") + "hung-127.0.0.1-9100") {
		t.Fatal("kill: not registered")
	}
	killed := time.Now()
	namingtest.WaitSnapshot(t, ch, testTTL+10*time.Second, "the instance gone", namingtest.HasIDs())
	el := time.Since(killed)
	t.Logf("left the list %v after its keep-alives stopped (TTL %v)", el, testTTL)
	// The last keep-alive was at most TTL/3 before the kill.
	if el < testTTL/2 {
		t.Fatalf("instance left after %v, before its TTL %v could expire", el, testTTL)
	}
}

func TestALostLeaseIsGrantedAndPutAgain(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	provider := newTestRegistry(t, srv.Endpoint())
	consumer := newTestRegistry(t, srv.Endpoint())
	cancel, err := provider.Register(t.Context(), &naming.Instance{Service: "echo", Addr: "tcp@127.0.0.1:9200"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	ch, err := consumer.Watch(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "the instance", namingtest.HasIDs("echo-127.0.0.1-9200"))

	// Someone (an operator, etcd losing it) revokes the lease: the key goes.
	provider.mu.Lock()
	lease := provider.regs[provider.serviceKey("echo")+"echo-127.0.0.1-9200"].lease
	provider.mu.Unlock()
	if _, err := consumer.cli.Revoke(t.Context(), lease); err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "the instance gone", namingtest.HasIDs())
	revoked := time.Now()
	namingtest.WaitSnapshot(t, ch, 10*time.Second, "the instance back", namingtest.HasIDs("echo-127.0.0.1-9200"))
	t.Logf("registered again %v after its lease was revoked", time.Since(revoked))
	// The counters move just after the put the watch saw.
	deadline := time.Now().Add(5 * time.Second)
	for s := provider.Stats(); s.LeaseLosses < 1 || s.Reregistrations < 1; s = provider.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want a lease loss and a re-registration", s)
		}
		time.Sleep(10 * time.Millisecond) // polling the counters
	}
}

func TestCompactionDuringAWatch(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	provider := newTestRegistry(t, srv.Endpoint())
	// The consumer reaches etcd through a proxy the test can cut.
	proxy := startCutProxy(t, srv.Endpoint())
	var logs syncBuffer
	consumer := newTestRegistry(t, proxy.addr(), WithDialTimeout(time.Second),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	cancelA, err := provider.Register(t.Context(), &naming.Instance{Service: "svc", ID: "a", Addr: "tcp@127.0.0.1:9301"})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := consumer.Watch(t.Context(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "a", namingtest.HasIDs("a"))
	waitWatching(t, consumer)

	// While the consumer is cut off, a leaves, b joins and etcd compacts
	// its history past both changes: the resumed watch cannot replay them.
	proxy.partition()
	cancelA()
	cancelB, err := provider.Register(t.Context(), &naming.Instance{Service: "svc", ID: "b", Addr: "tcp@127.0.0.1:9302"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancelB()
	resp, err := provider.cli.Get(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.cli.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	select {
	case snap := <-ch:
		t.Fatalf("watch delivered %s while cut off from etcd", namingtest.IDs(snap))
	default:
	}
	restarts := consumer.Stats().WatchRestarts
	proxy.mend()
	namingtest.WaitSnapshot(t, ch, 30*time.Second, "b only", namingtest.HasIDs("b"))
	if s := consumer.Stats(); s.WatchRestarts <= restarts || !strings.Contains(logs.String(), "compacted") {
		t.Fatalf("stats %+v: the watch did not start over on compaction; log:\n%s", s, logs.String())
	}
}

func TestEtcdDownKeepsTheLastList(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	provider := newTestRegistry(t, srv.Endpoint(), WithTTL(10*time.Second))
	consumer := newTestRegistry(t, srv.Endpoint())
	cancel, err := provider.Register(t.Context(), &naming.Instance{Service: "svc", ID: "a", Addr: "tcp@127.0.0.1:9401"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	ch, err := consumer.Watch(t.Context(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "a", namingtest.HasIDs("a"))
	waitWatching(t, consumer)

	srv.Stop()
	errs := consumer.Stats().WatchErrors
	deadline := time.Now().Add(20 * time.Second)
	for consumer.Stats().WatchErrors < errs+2 { // two failed checks while down
		if time.Now().After(deadline) {
			t.Fatalf("no failed check of the watch within 20s; stats %+v", consumer.Stats())
		}
		select {
		case snap := <-ch:
			t.Fatalf("watch delivered %s while etcd was down; want the last list kept", namingtest.IDs(snap))
		case <-time.After(50 * time.Millisecond): // polling the error counter
		}
	}
	ctx, cancelFetch := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancelFetch()
	if _, err := consumer.Fetch(ctx, "svc"); err == nil {
		t.Fatal("Fetch while etcd is down succeeded")
	}
	srv.Resume()
	c2, err := provider.Register(t.Context(), &naming.Instance{Service: "svc", ID: "b", Addr: "tcp@127.0.0.1:9402"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2()
	namingtest.WaitSnapshot(t, ch, 20*time.Second, "a and b", namingtest.HasIDs("a", "b"))
}

// TestEtcdLosingItsDataIsNoticed: etcd comes back empty (a fresh data dir)
// and its revisions start again below the ones the watch has seen, so the
// client's resumed watch would never deliver the new cluster's keys. The
// resync check notices the revision going backwards and reads again.
func TestEtcdLosingItsDataIsNoticed(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	// A long TTL: a stays in the old etcd until it stops.
	provider := newTestRegistry(t, srv.Endpoint(), WithTTL(time.Minute))
	// The consumer reaches etcd through a proxy, cut while etcd changes.
	proxy := startCutProxy(t, srv.Endpoint())
	var logs syncBuffer
	consumer := newTestRegistry(t, proxy.addr(), WithDialTimeout(time.Second),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for range 10 { // revisions the fresh etcd will not reach soon
		cancel, err := provider.Register(t.Context(), &naming.Instance{Service: "churn", Addr: "tcp@127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	if _, err := provider.Register(t.Context(), &naming.Instance{Service: "svc", ID: "a", Addr: "tcp@127.0.0.1:9501"}); err != nil {
		t.Fatal(err)
	}
	ch, err := consumer.Watch(t.Context(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "a", namingtest.HasIDs("a"))
	waitWatching(t, consumer)

	// a's provider dies with etcd's data; b registers in the new etcd
	// before the consumer reaches it. The number of keys is the same (1);
	// only the revision tells.
	proxy.partition()
	provider.kill(provider.serviceKey("svc") + "a")
	srv.Stop()
	srv.ResumeFresh()
	other := newTestRegistry(t, srv.Endpoint())
	cancelB, err := other.Register(t.Context(), &naming.Instance{Service: "svc", ID: "b", Addr: "tcp@127.0.0.1:9502"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancelB()
	proxy.mend()
	namingtest.WaitSnapshot(t, ch, 20*time.Second, "b only", namingtest.HasIDs("b"))
	if !strings.Contains(logs.String(), "went backwards") {
		t.Fatalf("the watch did not notice the revision going backwards; log:\n%s", logs.String())
	}
}

// waitWatching waits until r's watch has made a resync check, so its watch
// stream is established: cutting etcd off earlier would leave the watch
// waiting for the stream rather than following it.
func waitWatching(t *testing.T, r *Registry) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); r.Stats().WatchChecks == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the watch made no resync check within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling the counter
	}
}
