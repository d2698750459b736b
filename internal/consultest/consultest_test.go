package consultest

import (
	"net/http"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	a := Start(t)
	addr := a.Addr()
	leader := func() (string, error) { return a.get(t.Context(), "http://"+addr+"/v1/status/leader") }
	if l, err := leader(); err != nil || l == `""` {
		t.Fatalf("leader after Start: %q, %v", l, err)
	}
	a.Stop()
	if _, err := leader(); err == nil {
		t.Fatal("agent still answers after Stop")
	}
	a.Stop() // stopping a stopped agent does nothing
	a.Restart()
	if a.Addr() != addr {
		t.Fatalf("Restart moved the agent from %s to %s", addr, a.Addr())
	}
	if l, err := leader(); err != nil || l == `""` {
		t.Fatalf("leader after Restart: %q, %v", l, err)
	}
	resp, err := a.client.Get("http://" + addr + "/v1/catalog/services")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("catalog after Restart: %s", resp.Status)
	}
}
