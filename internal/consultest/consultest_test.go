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

func TestStartWithACL(t *testing.T) {
	a, token := StartWithACL(t)
	if token == "" || a.ManagementToken() != token {
		t.Fatalf("management token %q, ManagementToken() %q", token, a.ManagementToken())
	}
	base := "http://" + a.Addr()
	status := func(path, tok string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("X-Consul-Token", tok)
		}
		resp, err := a.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	check := func(when string) {
		t.Helper()
		if s := status("/v1/acl/token/self", token); s != http.StatusOK {
			t.Fatalf("%s: token/self with the management token: %d", when, s)
		}
		if s := status("/v1/acl/token/self", ""); s != http.StatusForbidden {
			t.Fatalf("%s: token/self without a token: %d, want 403 (ACLs off?)", when, s)
		}
		// The node registered itself despite default deny (agent token).
		if nodes, err := a.get(t.Context(), base+"/v1/catalog/node/shoal-test"); err != nil || nodes == "null" {
			t.Fatalf("%s: own node in the catalog: %q, %v", when, nodes, err)
		}
	}
	check("after StartWithACL")
	a.Restart()
	check("after Restart")
}
