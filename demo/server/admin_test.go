package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
)

// TestRunServesTheAdminPage: with -admin, the server logs the page's
// address and serves it: the page counts the calls it served, /metrics
// has them, /healthz answers SERVING.
func TestRunServesTheAdminPage(t *testing.T) {
	var log syncBuffer
	signals := make(chan os.Signal, 2)
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"-registry", "memory://", "-log", "json", "-admin", "127.0.0.1:0"}, &log, signals)
	}()
	page := waitLogged(t, &log, "admin page")["url"].(string)
	serving := waitLogged(t, &log, "serving")
	c, err := consumer.Dial(serving["addr"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sum int
	for range 3 {
		if err := c.Call(context.Background(), "Arith.Add", struct{ A, B int }{1, 2}, &sum); err != nil {
			t.Fatal(err)
		}
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// A server counts a request just after its reply is on its way: the
	// third may take a moment to show, on the page as in the metrics.
	showsEventually := func(url, want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			code, body := get(url)
			if code == 200 && strings.Contains(body, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d, want %q in:\n%s", url, code, want, body)
			}
		}
	}
	showsEventually(page, `<td>Arith.Add</td><td class="n">3</td>`)
	base := strings.TrimSuffix(page, "/debug/shoal")
	showsEventually(base+"/metrics", `shoal_server_handled_total{code="ok",method="Add",service="Arith"} 3`+"\n")
	if code, body := get(base + "/healthz"); code != 200 || body != "SERVING\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	signals <- syscall.SIGTERM
	if got := <-code; got != exitOK {
		t.Fatalf("run returned %d:\n%s", got, log.b.String())
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the admin page is still served after the server exited")
	}
}
