package dns

import (
	"errors"
	"github.com/shoalrpc/shoal/internal/namingtest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

func addrs(list []*naming.Instance) string {
	var s []string
	for _, in := range list {
		s = append(s, in.Addr+"*"+itoa(in.Weight))
	}
	return strings.Join(s, " ")
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestOpenURLs(t *testing.T) {
	good := []struct{ url, name, server string }{
		{"dns:///arith.default.svc.cluster.local:9001", "arith.default.svc.cluster.local:9001", ""},
		{"dns://127.0.0.1:5353/arith.example:9001?refresh=5s&timeout=1s&min_resolve=100ms", "arith.example:9001", "127.0.0.1:5353"},
		{"dns:///_shoal._tcp.arith.example", "_shoal._tcp.arith.example", ""},
		{"dns:///{service}.default.svc:9001", "{service}.default.svc:9001", ""},
	}
	for _, g := range good {
		name, opts, err := parseURL(g.url)
		if err != nil || name != g.name {
			t.Errorf("parseURL(%q) = %q, %v; want %q", g.url, name, err, g.name)
			continue
		}
		var o options
		for _, opt := range opts {
			opt(&o)
		}
		if o.server != g.server {
			t.Errorf("parseURL(%q): server %q, want %q", g.url, o.server, g.server)
		}
		r, err := Open(g.url)
		if err != nil {
			t.Errorf("Open(%q): %v", g.url, err)
			continue
		}
		r.Close()
	}
	bad := map[string]string{
		"dns://":                           "one name",
		"dns:///":                          "one name",
		"dns:///a/b:1":                     "one name",
		"dns://resolver/arith:9001":        "resolver",
		"dns:///arith:0":                   "port",
		"dns:///arith:9001?refresh=never":  "refresh",
		"dns:///arith:9001?refresh=-1s":    "refresh",
		"dns:///arith:9001?ttl=1s":         "unknown parameter",
		"dns://user@127.0.0.1:53/arith:90": "without user",
		"consul:///arith:9001":             "scheme",
	}
	for url, want := range bad {
		if _, err := Open(url); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error mentioning %q", url, err, want)
		}
	}
}

func TestNamingOpenWithTheBackend(t *testing.T) {
	reg, err := naming.Open("dns:///arith.example:9001?refresh=5s", Backend())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.(*Registry); !ok {
		t.Fatalf("naming.Open gave a %T", reg)
	}
	reg.Close()
	_, err = naming.Open("dns:///arith.example:9001?refresh=soon", Backend())
	if err == nil || !strings.Contains(err.Error(), `"dns:///arith.example:9001?refresh=soon"`) || strings.Count(err.Error(), "arith.example") != 1 {
		t.Fatalf("naming.Open with a bad refresh: %v; want the URL quoted once", err)
	}
}

func TestRegisterSaysThePlatformPublishesRecords(t *testing.T) {
	r, err := New("arith.example:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cancel, err := r.Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9001"})
	if !errors.Is(err, ErrReadOnly) || cancel != nil || !strings.Contains(err.Error(), "platform publishes") {
		t.Fatalf("Register = %v, %v; want ErrReadOnly saying the platform publishes the records", cancel, err)
	}
}

func TestFetchAAndAAAARecords(t *testing.T) {
	z := startZone(t)
	z.setHosts("arith.shoal.test", "127.0.0.3", "127.0.0.2", "::1")
	r := newTestRegistry(t, z, "arith.shoal.test:9001")
	got, err := r.Fetch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	want := []*naming.Instance{
		{ID: "arith---1-9001", Service: "arith", Addr: "tcp@[::1]:9001", Weight: 1},
		{ID: "arith-127.0.0.2-9001", Service: "arith", Addr: "tcp@127.0.0.2:9001", Weight: 1},
		{ID: "arith-127.0.0.3-9001", Service: "arith", Addr: "tcp@127.0.0.3:9001", Weight: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("Fetch = %s, want 3 instances", addrs(got))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("instance %d = %+v, want %+v", i, *got[i], *want[i])
		}
	}

	// A name that does not exist is an answer: no instances, no error.
	r2 := newTestRegistry(t, z, "nothing.shoal.test:9001")
	if got, err := r2.Fetch(t.Context(), "arith"); err != nil || len(got) != 0 {
		t.Fatalf("Fetch of an unknown name = %s, %v; want empty, nil", addrs(got), err)
	}

	// {service} picks the name per service.
	z.setHosts("echo.shoal.test", "127.0.0.9")
	r3 := newTestRegistry(t, z, "{service}.shoal.test:7000")
	if got, err := r3.Fetch(t.Context(), "echo"); err != nil || len(got) != 1 || got[0].Addr != "tcp@127.0.0.9:7000" {
		t.Fatalf("Fetch(echo) via {service} = %s, %v; want tcp@127.0.0.9:7000", addrs(got), err)
	}
}

func TestFetchSRVRecordsWeightsAndPriority(t *testing.T) {
	z := startZone(t)
	z.setHosts("a.shoal.test", "127.0.0.1")
	z.setHosts("b.shoal.test", "127.0.0.2")
	z.setSRV("_shoal._tcp.arith.shoal.test",
		srv{"a.shoal.test", 9001, 3, 10},
		srv{"b.shoal.test", 9002, 0, 10},
		srv{"backup.shoal.test", 9003, 5, 20}, // higher priority value: only if the others are gone
	)
	r := newTestRegistry(t, z, "_shoal._tcp.arith.shoal.test")
	got, err := r.Fetch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	if s := addrs(got); s != "tcp@127.0.0.1:9001*3 tcp@127.0.0.2:9002*1" {
		t.Fatalf("Fetch = %q, want a at weight 3 and b at weight 1 (SRV weight 0), no backup", s)
	}
}

func TestResolverTimeoutKeepsTheLastList(t *testing.T) {
	z := startZone(t)
	z.setHosts("arith.shoal.test", "127.0.0.2")
	r := newTestRegistry(t, z, "arith.shoal.test:9001",
		WithTimeout(300*time.Millisecond), WithRefresh(100*time.Millisecond))
	ch, err := r.Watch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	if snap := namingtest.Next(t, ch, 5*time.Second); addrs(snap) != "tcp@127.0.0.2:9001*1" {
		t.Fatalf("first snapshot %s", addrs(snap))
	}

	// The resolver stops answering: resolutions time out, the watch
	// delivers nothing (the consumer keeps its list).
	z.drop.Store(true)
	before := r.Stats().ResolveErrors
	if _, err := r.Fetch(t.Context(), "arith"); err == nil {
		t.Fatal("Fetch while the resolver does not answer succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().ResolveErrors < before+3 { // the Fetch and two watch resolutions
		if time.Now().After(deadline) {
			t.Fatalf("only %d failed resolutions in 10s", r.Stats().ResolveErrors-before)
		}
		select {
		case snap := <-ch:
			t.Fatalf("watch delivered %s while the resolver timed out; want the last list kept", addrs(snap))
		case <-time.After(50 * time.Millisecond): // polling the error counter
		}
	}

	// Answers again, with a change: delivered within a few resolutions,
	// not after lookups left running behind timed-out callers give up
	// (the system resolver's timeout, 5 s by default, several attempts).
	z.setHosts("arith.shoal.test", "127.0.0.2", "127.0.0.3")
	z.drop.Store(false)
	back := time.Now()
	if snap := namingtest.Next(t, ch, 10*time.Second); addrs(snap) != "tcp@127.0.0.2:9001*1 tcp@127.0.0.3:9001*1" {
		t.Fatalf("after the resolver came back: %s", addrs(snap))
	}
	if el := time.Since(back); el > 3*time.Second {
		t.Fatalf("the change reached the watch %v after the resolver answered again (resolutions every 100ms, timeout 300ms)", el)
	}
}

func TestResolveNowIsRateLimited(t *testing.T) {
	z := startZone(t)
	z.setHosts("arith.shoal.test", "127.0.0.2")
	const gap = 500 * time.Millisecond
	r := newTestRegistry(t, z, "arith.shoal.test:9001", WithRefresh(time.Hour), WithMinResolveInterval(gap))
	ch, err := r.Watch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.Next(t, ch, 5*time.Second)

	// Without ResolveNow, an hour's refresh would hide this change.
	z.setHosts("arith.shoal.test", "127.0.0.3")
	r.ResolveNow()
	if snap := namingtest.Next(t, ch, 5*time.Second); addrs(snap) != "tcp@127.0.0.3:9001*1" {
		t.Fatalf("after ResolveNow: %s", addrs(snap))
	}
	// A storm of requests (a consumer whose connections all fail) for a
	// second: at most one resolution per gap, plus the one at once.
	start := time.Now()
	for time.Since(start) < time.Second {
		r.ResolveNow()
		time.Sleep(2 * time.Millisecond) // the pace of the storm
	}
	el := time.Since(start)
	if n, limit := r.Stats().ResolveNows, uint64(2+el/gap); n < 2 || n > limit {
		t.Fatalf("ResolveNow every 2ms for %v made %d resolutions, want 2..%d", el, n, limit)
	}
}
