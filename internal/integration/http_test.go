package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/testcert"
	"github.com/shoalrpc/shoal/internal/testmsg"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/reflection"
)

// firstBytes records what a client's connection wrote first.
type firstBytes struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (f *firstBytes) dialer() consumer.DialOption {
	return consumer.WithDialer(func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &recordingConn{Conn: nc, f: f}, nil
	})
}

func (f *firstBytes) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.String()
}

type recordingConn struct {
	net.Conn
	f *firstBytes
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.f.mu.Lock()
	if c.f.buf.Len() < 64 {
		c.f.buf.Write(p[:min(len(p), 64)])
	}
	c.f.mu.Unlock()
	return c.Conn.Write(p)
}

// An http@ address runs the binary protocol through CONNECT on the
// provider's one port, and behaves as tcp@ once connected: same replies,
// same errors.
func TestHTTPAddress(t *testing.T) {
	s := serve(t)
	hostPort := strings.TrimPrefix(s.addr, "tcp@")
	var wrote firstBytes
	viaHTTP := dial(t, "http@"+hostPort, wrote.dialer())
	viaTCP := dial(t, s.addr)
	var sum int
	if err := viaHTTP.Call(context.Background(), "Arith.Add", Args{A: 40, B: 2}, &sum); err != nil || sum != 42 {
		t.Fatalf("Add over http@ = %d, %v", sum, err)
	}
	if got := wrote.String(); !strings.HasPrefix(got, "CONNECT /_shoal_ HTTP/1.1\r\n") {
		t.Fatalf("an http@ client began with %q, want an HTTP CONNECT", got)
	}
	for _, tc := range []struct {
		method string
		is     error
	}{
		{"Arith.Div", nil}, // the method's own error
		{"Arith.Nope", consumer.ErrUnknownMethod},
		{"Nope.Add", consumer.ErrUnknownService},
	} {
		errHTTP := viaHTTP.Call(context.Background(), tc.method, Args{A: 1}, new(int))
		errTCP := viaTCP.Call(context.Background(), tc.method, Args{A: 1}, new(int))
		if errHTTP == nil || errTCP == nil || errHTTP.Error() != errTCP.Error() {
			t.Fatalf("%s: http@ says %v, tcp@ says %v", tc.method, errHTTP, errTCP)
		}
		var se *consumer.ServiceError
		if tc.is != nil && !errors.Is(errHTTP, tc.is) || tc.is == nil && !errors.As(errHTTP, &se) {
			t.Fatalf("%s over http@: %v is not %v", tc.method, errHTTP, tc.is)
		}
	}
	// The reflection service answers binary callers too.
	var list reflection.ListResponse
	if err := viaHTTP.Call(context.Background(), reflection.ListMethod, &reflection.ListRequest{}, &list); err != nil || len(list.Services) != 3 || list.Services[0].Name != "Arith" || list.Services[2].Name != reflection.Service {
		t.Fatalf("List over http@ = %+v, %v", list, err)
	}
}

// A server that is not a shoal provider is a dial error that says so.
func TestHTTPAddressToAPlainHTTPServer(t *testing.T) {
	hs := httptest.NewServer(http.NotFoundHandler())
	defer hs.Close()
	_, err := consumer.Dial("http@" + strings.TrimPrefix(hs.URL, "http://"))
	if !errors.Is(err, consumer.ErrDial) || !strings.Contains(err.Error(), "CONNECT") {
		t.Fatalf("http@ to a plain HTTP server: %v, want ErrDial about the CONNECT", err)
	}
}

func TestHTTPAddressWithTLS(t *testing.T) {
	certs := testcert.New(t)
	s := serve(t, provider.WithTLS(certs.ServerConfig(true)))
	c := dial(t, "http@"+strings.TrimPrefix(s.addr, "tcp@"), consumer.WithTLS(certs.ClientConfig(true)))
	var sum int
	if err := c.Call(context.Background(), "Arith.Add", Args{A: 20, B: 22}, &sum); err != nil || sum != 42 {
		t.Fatalf("Add over http@ with TLS = %d, %v", sum, err)
	}
}

// A static registry of http@ addresses, one of them dead and one provider
// shut down half-way: a Failover proxy loses no call.
func TestFailoverThroughHTTPAddresses(t *testing.T) {
	a, b := serve(t), serve(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now: dials are refused
	httpAddr := func(s *served) string { return "http@" + strings.TrimPrefix(s.addr, "tcp@") }
	reg, err := naming.Open("static://http@" + deadAddr + "," + httpAddr(a) + "," + httpAddr(b))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failover), consumer.WithLoadBalance(loadbalance.RoundRobin))
	const calls = 60
	failed := 0
	for i := range calls {
		if i == calls/2 {
			if err := a.srv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		var out int
		if err := p.Call(context.Background(), "Arith.Sleep", 0, &out); err != nil {
			failed++
			t.Logf("call %d: %v", i, err)
		}
	}
	ranA, ranB := a.arith.executed.Load(), b.arith.executed.Load()
	if failed != 0 || ranA+ranB != calls || ranB < calls/2 {
		t.Fatalf("%d calls failed; ran %d on a (shut down half-way), %d on b; want 0 failed and %d run", failed, ranA, ranB, calls)
	}
}

// With WithTLS, the port answers HTTPS: the HTTP request is recognised
// once the TLS handshake is done, and interceptors see the TLS state.
func TestHTTPSOnTheRPCPort(t *testing.T) {
	certs := testcert.New(t)
	var sawTLS atomic.Bool
	ic := func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		sawTLS.Store(info.TLS != nil && info.TLS.HandshakeComplete)
		return next(ctx, args)
	}
	s := serve(t, provider.WithTLS(certs.ServerConfig(false)), provider.WithInterceptors(ic))
	tr := &http.Transport{TLSClientConfig: certs.ClientConfig(false)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post("https://"+strings.TrimPrefix(s.addr, "tcp@")+"/Arith.Add", "application/json", strings.NewReader(`{"A":40,"B":2}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "42\n" || resp.TLS == nil {
		t.Fatalf("HTTPS POST /Arith.Add = %d %q (TLS %v)", resp.StatusCode, body, resp.TLS != nil)
	}
	if !sawTLS.Load() {
		t.Fatal("the interceptor saw no TLS state for an HTTPS call")
	}
}

// BenchmarkHTTPRecognition compares binary calls on a provider that tells
// HTTP from its frames by the first byte (the default) with one that does
// not (WithoutHTTP): the recognition costs a read of one byte per
// connection, and a reader wrapper on the connection's reads.
func BenchmarkHTTPRecognition(b *testing.B) {
	args := testmsg.NewBenchmarkMessage()
	for _, tc := range []struct {
		name string
		opts []provider.Option
	}{{"recognised", nil}, {"withoutHTTP", []provider.Option{provider.WithoutHTTP()}}} {
		b.Run(tc.name, func(b *testing.B) {
			var writes atomic.Int64
			c := shoalHello(b, &writes, tc.opts)
			benchCalls(b, &writes, true, func(reply *testmsg.BenchmarkMessage) error {
				return c.Call(context.Background(), "Hello.Say", args, reply)
			})
		})
	}
}
