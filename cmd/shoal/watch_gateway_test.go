package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/httpstatus"
	"github.com/shoalrpc/shoal/internal/consultest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/consul"
)

func TestWatch(t *testing.T) {
	agent := consultest.Start(t)
	url := "consul://" + agent.Addr()
	reg, err := naming.Open(url+"?ttl=2s", consul.Backend())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	w := startShoal(t, "watch", url, "arith")
	_, next := w.stdout.waitFor(t, 0, "arith: 0 instances", w.exited)
	p := startProvider(t, "arith-1", reg)
	_, next = w.stdout.waitFor(t, next, "arith: 1 instance", w.exited)
	w.stdout.waitFor(t, next, "  arith-1  "+p.addr+"  weight=1", w.exited)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	w.stdout.waitFor(t, next, "arith: 0 instances", w.exited)
	if code := w.stop(t, syscall.SIGINT); code != exitOK {
		t.Errorf("watch exited %d after SIGINT, want 0", code)
	}
}

// TestGatewayCommand runs `shoal gateway` in front of two providers and
// shuts it down with SIGTERM while a call is in flight: the call is
// answered, then the process exits 0.
func TestGatewayCommand(t *testing.T) {
	p1 := startProvider(t, "a1", nil)
	p2 := startProvider(t, "a2", nil)
	g := startShoal(t, "gateway", "-listen", "127.0.0.1:0", "-registry", "static://"+p1.addr+","+p2.addr, "-service", "Arith=arith")
	line, _ := g.stderr.waitFor(t, 0, "gateway: serving", g.exited)
	addr := strings.Fields(line[strings.Index(line, "addr=")+len("addr="):])[0]
	base := "http://" + addr

	post := func(path, body string) (int, string, error) {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	if code, body, err := post("/Arith.Add", `{"A":40,"B":2}`); err != nil || code != 200 || body != "42\n" {
		t.Fatalf("Arith.Add: %d %q %v", code, body, err)
	}
	code, body, err := post("/Arith.Div", `{"A":1,"B":0}`)
	var eb httpstatus.ErrorBody
	if err != nil || code != 422 || json.Unmarshal([]byte(body), &eb) != nil || eb != (httpstatus.ErrorBody{Status: "service_error", Error: "divide by zero"}) {
		t.Errorf("Arith.Div by zero: %d %q %v", code, body, err)
	}

	type answer struct {
		code int
		body string
		err  error
	}
	slow := make(chan answer, 1)
	go func() {
		code, body, err := post("/Arith.Sleep", `1500`)
		slow <- answer{code, body, err}
	}()
	// Wait until the call runs on a provider, then ask the gateway to stop.
	deadline := time.Now().Add(20 * time.Second)
	running := func(l *live) int64 {
		var st arith.Stats
		l.arith.Stats(context.Background(), struct{}{}, &st)
		return st.Running
	}
	for running(p1)+running(p2) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow call never reached a provider")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	g.stderr.waitFor(t, 0, "gateway: shutting down", g.exited)
	a := <-slow
	if a.err != nil || a.code != 200 || (a.body != "\"a1\"\n" && a.body != "\"a2\"\n") {
		t.Errorf("the call in flight at SIGTERM: %d %q %v", a.code, a.body, a.err)
	}
	if code := g.wait(t); code != exitOK {
		t.Errorf("gateway exited %d, want 0", code)
	}
	if _, _, err := post("/Arith.Add", `{}`); err == nil {
		t.Error("the gateway still answers after it exited")
	}
}

// TestGatewayHealthChecks: with -health-interval, an instance that turns
// NOT_SERVING stops getting the gateway's calls, and gets them again once
// it is SERVING.
func TestGatewayHealthChecks(t *testing.T) {
	p1 := startProvider(t, "a1", nil)
	p2 := startProvider(t, "a2", nil)
	g := startShoal(t, "gateway", "-listen", "127.0.0.1:0", "-registry", "static://"+p1.addr+","+p2.addr, "-health-interval", "100ms")
	line, _ := g.stderr.waitFor(t, 0, "gateway: serving", g.exited)
	base := "http://" + strings.Fields(line[strings.Index(line, "addr=")+len("addr="):])[0]
	served := func() string {
		resp, err := http.Post(base+"/Arith.Sleep", "application/json", strings.NewReader("0"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	// waitServed calls until until(served) holds for 20 calls in a row
	// (round robin over two instances alternates while both are in).
	waitServed := func(what string, until func(id string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for run := 0; run < 20; {
			if time.Now().After(deadline) {
				t.Fatalf("not within 30 s: %s", what)
			}
			if until(served()) {
				run++
			} else {
				run = 0
			}
		}
	}
	if err := p2.srv.Health().SetStatus("", health.NotServing); err != nil {
		t.Fatal(err)
	}
	waitServed("only a1 serves", func(id string) bool { return id == `"a1"` })
	if err := p2.srv.Health().SetStatus("", health.Serving); err != nil {
		t.Fatal(err)
	}
	// Back in: a2 serves again, every other call.
	seen := false
	waitServed("a2 serves again", func(id string) bool {
		seen = seen || id == `"a2"`
		return seen
	})
	if code := g.stop(t, syscall.SIGTERM); code != exitOK {
		t.Errorf("gateway exited %d", code)
	}
}
