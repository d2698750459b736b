package provider_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/reflection"
)

func TestSnapshotShowsServicesConnectionsAndRegistration(t *testing.T) {
	srv, b, addr := startHealthServer(t)
	c, err := consumer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held := make(chan error, 1)
	go func() { var out int; held <- c.Call(context.Background(), "Blocker.Wait", 0, &out) }()
	<-b.started

	snap := srv.Snapshot()
	names := []string{}
	for _, s := range snap.Services {
		names = append(names, s.Name)
		switch s.Name {
		case "Blocker":
			if s.Builtin || !slices.Equal(s.Methods, []string{"Wait"}) || s.Health != health.Serving {
				t.Errorf("Blocker: %+v", s)
			}
		case health.Service:
			if !s.Builtin || !slices.Equal(s.Methods, []string{"Check", "Watch"}) {
				t.Errorf("the health service: %+v", s)
			}
		}
	}
	if !slices.Equal(names, []string{"Blocker", health.Service, reflection.Service}) {
		t.Errorf("services %v", names)
	}
	if snap.InFlight != 1 || len(snap.Conns) != 1 || snap.Conns[0].InFlight != 1 {
		t.Errorf("in flight %d, conns %+v; want the one request held, on the one connection", snap.InFlight, snap.Conns)
	}
	if len(snap.Listeners) != 1 || "tcp@"+strings.TrimPrefix(snap.Listeners[0], "tcp@") != addr {
		t.Errorf("listeners %v, want %s", snap.Listeners, addr)
	}
	reg := snap.Registration
	if reg.State != "registered" || reg.Instance.Service != "blocker" || reg.Instance.Addr != addr || reg.Instance.ID == "" {
		t.Errorf("registration %+v", reg)
	}
	if snap.Health != health.Serving || snap.ShuttingDown {
		t.Errorf("health %v, shutting down %v", snap.Health, snap.ShuttingDown)
	}
	close(b.release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap = srv.Snapshot()
	if snap.Registration.State != "withdrawn" || snap.Registration.Instance.Addr != addr || snap.Health != health.NotServing || !snap.ShuttingDown {
		t.Errorf("after Shutdown: %+v", snap)
	}
}
