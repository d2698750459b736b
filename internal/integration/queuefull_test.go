package integration

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
)

// slowLink relays one connection to addr, passing the client's bytes on at
// about rate bytes a second, and the server's at once: a link slower than
// the callers who write on it.
func slowLink(t *testing.T, addr string, rate int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", strings.TrimPrefix(addr, "tcp@"))
		if err != nil {
			in.Close()
			return
		}
		mu.Lock()
		conns = append(conns, in, out)
		mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(in, out) }()
		const chunk = 16 << 10
		tick := time.NewTicker(time.Second * chunk / time.Duration(rate))
		defer tick.Stop()
		buf := make([]byte, chunk)
		for range tick.C {
			n, err := in.Read(buf)
			if n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "tcp@" + ln.Addr().String()
}

// TestCallsFasterThanTheLinkWaitForRoom: callers that give a connection more
// bytes than its write queue holds (twice the body limit) wait for room; none
// is failed and the connection goes on. It once failed the connection, and
// every call on it, with "write queue full".
func TestCallsFasterThanTheLinkWaitForRoom(t *testing.T) {
	s := serve(t)
	const bodyLimit = 512 << 10 // the client's queue holds 1 MiB
	link := slowLink(t, s.addr, 16<<20)
	c := dial(t, link, consumer.WithMaxBodySize(bodyLimit))

	const callers, size = 24, 400 << 10 // 9.6 MB offered at once
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		go func() {
			arg := strings.Repeat(string(rune('a'+i)), size)
			var reply string
			err := c.Call(ctx, "Arith.Echo", arg, &reply)
			if err == nil && reply != arg {
				err = io.ErrUnexpectedEOF
			}
			errs <- err
		}()
	}
	failed := 0
	for i := 0; i < callers; i++ {
		if err := <-errs; err != nil {
			failed++
			t.Errorf("call: %v", err)
		}
	}
	if ran := s.arith.echoes.Load(); ran != callers {
		t.Errorf("the server ran %d calls, want %d", ran, callers)
	}
	if failed == 0 && !c.Usable() {
		t.Error("the connection is not usable after the calls")
	}
}
