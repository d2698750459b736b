package integration

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/etcdtest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/etcd"
	"github.com/shoalrpc/shoal/provider"
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
	// The etcd registry itself kept the list through the outage and the
	// reset: the proxy never had to fall back on its last instances.
	if n := p.Fallbacks(); n != 0 {
		t.Fatalf("the proxy fell back on its last instances %d times: the registry delivered an empty list", n)
	}
}

var _ naming.Registry = (*etcd.Registry)(nil)

// fetchOnClose is a listener that, when the server closes it, reads which
// instances etcd lists at that moment.
type fetchOnClose struct {
	net.Listener
	probe  naming.Registry
	once   sync.Once
	listed chan []*naming.Instance
}

func (l *fetchOnClose) Close() error {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list, err := l.probe.Fetch(ctx, "arith")
		if err != nil {
			list = []*naming.Instance{{ID: "fetch failed: " + err.Error()}}
		}
		l.listed <- list
	})
	return l.Listener.Close()
}

// TestEtcdProviderLeavesBeforeItStopsListening: Shutdown deregisters (the
// lease is revoked) before the listener closes, so no consumer is sent to a
// closed port by a stale entry.
func TestEtcdProviderLeavesBeforeItStopsListening(t *testing.T) {
	srv := etcdtest.Start(t)
	reg := etcdRegistry(t, srv)
	probe := etcdRegistry(t, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &fetchOnClose{Listener: ln, probe: probe, listed: make(chan []*naming.Instance, 1)}
	s := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "leaver"}))
	if err := s.Register(newArith()); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(fl) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := probe.Fetch(t.Context(), "arith")
		if err == nil && len(list) == 1 && list[0].ID == "leaver" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the provider is not listed 10s after Serve (last %v, %v)", list, err)
		}
		time.Sleep(10 * time.Millisecond) // polling etcd, an outside process
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-served
	if list := <-fl.listed; len(list) != 0 {
		t.Fatalf("when the listener closed, etcd still listed %v", list[0].ID)
	}
}
