package integration

import (
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/etcdtest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/etcd"
)

// etcdRegistry returns a registry on a real etcd server (internal/etcdtest),
// closed when the test ends.
func etcdRegistry(t *testing.T, srv *etcdtest.Server, opts ...etcd.Option) *etcd.Registry {
	t.Helper()
	opts = append([]etcd.Option{
		etcd.WithTTL(5 * time.Second),
		etcd.WithResync(time.Second),
		etcd.WithBackoff(100*time.Millisecond, time.Second),
		etcd.WithRequestTimeout(2 * time.Second),
		etcd.WithDialTimeout(2 * time.Second),
	}, opts...)
	reg, err := etcd.New([]string{srv.Endpoint()}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

func TestEtcdProxyJoinAndLeaveUnderLoad(t *testing.T) {
	testJoinAndLeave(t, etcdRegistry(t, etcdtest.Start(t)))
}

func TestEtcdProxyGracefulShutdownLosesNoCallInAnyFailMode(t *testing.T) {
	testGracefulShutdownEveryMode(t, etcdRegistry(t, etcdtest.Start(t)))
}

// TestEtcdRestartedUnderLoad: 3 providers, a Failover proxy with 8 callers;
// etcd is stopped for 3 s and started again, with the same data dir and
// then with a fresh one. No call fails, and every provider is listed again
// within seconds.
func TestEtcdRestartedUnderLoad(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		name := "same-data"
		if fresh {
			name = "fresh-data"
		}
		t.Run(name, func(t *testing.T) { testEtcdRestart(t, fresh) })
	}
}

func testEtcdRestart(t *testing.T, fresh bool) {
	srv := etcdtest.Start(t)
	providers := etcdRegistry(t, srv)
	consumers := etcdRegistry(t, srv)
	probe := etcdRegistry(t, srv)
	c := newCluster(t, providers, 3)
	p := newProxy(t, consumers, consumer.WithFailMode(consumer.Failover), consumer.WithWaitForInstances(10*time.Second))
	waitListed(t, p, 3)
	l := startLoad(p, 8, "Arith.Who", WhoArgs{SleepMS: 1})
	l.until(t, 200)
	// Move etcd's revision well ahead, so that a fresh etcd's revisions
	// start below the ones the consumer has seen.
	for i := range 10 {
		cancel, err := probe.Register(t.Context(), &naming.Instance{Service: "churn", ID: itoa(i), Addr: "tcp@127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
	}

	srv.Stop()
	before := l.ok.Load()
	time.Sleep(3 * time.Second) // the outage under test; the load runs on
	during := l.ok.Load() - before
	if fresh {
		srv.ResumeFresh()
	} else {
		srv.Resume()
	}
	restarted := time.Now()

	// Every provider is in etcd again.
	deadline := restarted.Add(20 * time.Second)
	for {
		list, err := probe.Fetch(t.Context(), "arith")
		if err == nil && len(list) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd lists %d providers 20s after the restart (err %v), want 3", len(list), err)
		}
		time.Sleep(20 * time.Millisecond) // polling etcd, an outside process
	}
	relisted := time.Since(restarted)
	waitListed(t, p, 3)
	l.until(t, 300)

	ok, failed, errs := l.finish()
	var executed int64
	for _, n := range c.nodes {
		executed += n.arith.whos.Load()
	}
	t.Logf("etcd restarted (fresh data: %v): %d calls made (%d during the 3 s outage), %d failed, %d executed by the providers; all 3 providers listed again %v after the restart; provider registry %+v, consumer registry %+v",
		fresh, ok+failed, during, failed, executed, relisted.Round(time.Millisecond), providers.Stats(), consumers.Stats())
	if failed != 0 {
		t.Fatalf("%d of %d calls failed, first: %v", failed, ok+failed, errs[0])
	}
	if executed != ok {
		t.Fatalf("providers executed %d calls, callers saw %d succeed", executed, ok)
	}
	if during == 0 {
		t.Fatal("no call succeeded while etcd was down")
	}
	if relisted > 15*time.Second {
		t.Fatalf("providers listed again only %v after the restart", relisted)
	}
}

var _ naming.Registry = (*etcd.Registry)(nil)
