package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/demo/arith"
	"github.com/shoalrpc/shoal/internal/testcert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-weight", "3", "-tags", " blue, ,canary ", "-service", "calc", "-log", "json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.weight != 3 || strings.Join(c.tags, "|") != "blue|canary" || c.service != "calc" || c.listen != "127.0.0.1:0" || c.shutdownTimeout != 10*time.Second {
		t.Errorf("parsed %+v", c)
	}
	for _, args := range [][]string{
		{"-weight", "0"},
		{"-service", ""},
		{"-shutdown-timeout", "0s"},
		{"-drain-grace", "-1s"},
		{"-log", "xml"},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// logged returns the first JSON log line with msg, if any.
func (s *syncBuffer) logged(msg string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	for line := range strings.SplitSeq(s.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	return nil
}

func waitLogged(t *testing.T, log *syncBuffer, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := log.logged(msg); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line:\n%s", msg, log.b.String())
		}
		time.Sleep(5 * time.Millisecond) // the server logs from its own goroutine
	}
}

// TestRunDrainsOnSignal runs the server in-process with the memory
// registry: a signal drains the call in flight and run returns 0.
func TestRunDrainsOnSignal(t *testing.T) {
	var log syncBuffer
	signals := make(chan os.Signal, 2)
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"-registry", "memory://", "-log", "json", "-id", "arith-x"}, &log, signals)
	}()
	serving := waitLogged(t, &log, "serving")
	if serving["id"] != "arith-x" || !strings.HasPrefix(serving["addr"].(string), "tcp@127.0.0.1:") {
		t.Fatalf("serving line %v", serving)
	}
	c, err := consumer.Dial(serving["addr"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reply := make(chan error, 1)
	var id string
	go func() { reply <- c.Call(context.Background(), "Arith.Sleep", 200, &id) }()
	for {
		var st arith.Stats
		if err := c.Call(context.Background(), "Arith.Stats", struct{}{}, &st); err != nil {
			t.Fatal(err)
		}
		if st.Sleeping[200] == 1 {
			break
		}
	}
	signals <- syscall.SIGTERM
	if got := <-code; got != exitOK {
		t.Fatalf("run returned %d, want %d:\n%s", got, exitOK, log.b.String())
	}
	if err := <-reply; err != nil || id != "arith-x" {
		t.Errorf("the call in flight returned (%q, %v)", id, err)
	}
	if m := log.logged("drained: every accepted call was answered; exiting"); m == nil || m["served"] != 1.0 {
		t.Errorf("drained line %v, want served 1", m)
	}
}

func TestRunBadRegistryURL(t *testing.T) {
	var log syncBuffer
	if got := run([]string{"-registry", "zookeeper://x"}, &log, nil); got != exitUsage {
		t.Errorf("run returned %d, want %d", got, exitUsage)
	}
}

func TestRunServesMutualTLSFromFlags(t *testing.T) {
	certs := testcert.New(t)
	f := certs.WritePEM(t, t.TempDir())
	var log syncBuffer
	signals := make(chan os.Signal, 1)
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"-registry", "memory://", "-log", "json",
			"-tls-cert", f.ServerCert, "-tls-key", f.ServerKey, "-tls-client-ca", f.CA}, &log, signals)
	}()
	serving := waitLogged(t, &log, "serving")
	if serving["tls"] != true {
		t.Fatalf("serving line %v, want tls true", serving)
	}
	addr := serving["addr"].(string)
	c, err := consumer.Dial(addr, consumer.WithTLS(certs.ClientConfig(true)))
	if err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := c.Call(context.Background(), "Arith.Add", arith.Args{A: 2, B: 3}, &sum); err != nil || sum != 5 {
		t.Fatalf("Add over mutual TLS: %d, %v", sum, err)
	}
	c.Close()
	if _, err := consumer.Dial(addr, consumer.WithTLS(certs.ClientConfig(false))); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	signals <- syscall.SIGTERM
	if got := <-code; got != exitOK {
		t.Fatalf("run returned %d:\n%s", got, log.b.String())
	}
}

// -listen takes the address forms Dial and the registries take; the server
// says "registered" once it is, and serves at the address it logs.
func TestRunListensOnEveryAddressForm(t *testing.T) {
	for _, listen := range []string{"tcp@127.0.0.1:0", "127.0.0.1:0", "unix@" + t.TempDir() + "/arith.sock"} {
		var log syncBuffer
		signals := make(chan os.Signal, 1)
		code := make(chan int, 1)
		go func() {
			code <- run([]string{"-registry", "memory://", "-log", "json", "-listen", listen}, &log, signals)
		}()
		registered := waitLogged(t, &log, "registered")
		serving := log.logged("serving")
		if serving == nil || registered["id"] != serving["id"] {
			t.Errorf("-listen %s: registered line %v, serving line %v", listen, registered, serving)
		}
		c, err := consumer.Dial(serving["addr"].(string))
		if err != nil {
			t.Fatalf("-listen %s: dial the logged address %v: %v", listen, serving["addr"], err)
		}
		var sum int
		if err := c.Call(context.Background(), "Arith.Add", arith.Args{A: 2, B: 3}, &sum); err != nil || sum != 5 {
			t.Errorf("-listen %s: Add: %d, %v", listen, sum, err)
		}
		c.Close()
		signals <- syscall.SIGTERM
		if got := <-code; got != exitOK {
			t.Fatalf("-listen %s: run returned %d:\n%s", listen, got, log.b.String())
		}
	}
	var log syncBuffer
	if got := run([]string{"-registry", "memory://", "-log", "json", "-listen", "tcp@127.0.0.1"}, &log, nil); got != exitFailed ||
		!strings.Contains(log.b.String(), `address \"tcp@127.0.0.1\": bad address: missing port in address`) {
		t.Errorf("-listen tcp@127.0.0.1: exit %d, log %s", got, log.b.String())
	}
}

// A Consul address where no agent answers fails with a hint that says how
// to start one.
func TestRunConsulWithoutAgentHints(t *testing.T) {
	var log syncBuffer
	got := run([]string{"-registry", "consul://127.0.0.1:1?timeout=300ms", "-log", "json"}, &log, nil)
	failed := log.logged("serving failed")
	if got != exitFailed || failed == nil || !strings.Contains(failed["hint"].(string), "scripts/consul.sh start") ||
		!strings.Contains(failed["hint"].(string), "SHOAL_CONSUL") {
		t.Errorf("exit %d, serving failed line %v", got, failed)
	}
}
