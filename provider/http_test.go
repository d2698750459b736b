package provider

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/reflection"
	"github.com/shoalrpc/shoal/stats"
)

// Calc is the service the HTTP tests call. ran counts executions on the
// server side, apart from what the tests' clients see.
type Calc struct {
	ran     atomic.Int64
	entered chan struct{} // Wait says it has begun
	release chan struct{} // Wait returns once this is closed (or its context ends)
}

func newCalc() *Calc {
	return &Calc{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (c *Calc) Add(args *Args, reply *int) error {
	c.ran.Add(1)
	*reply = args.A + args.B
	return nil
}

func (c *Calc) Fail(args *Args, reply *int) error {
	c.ran.Add(1)
	return fmt.Errorf("no good: %d", args.A)
}

func (c *Calc) Panic(args *Args, reply *int) error {
	c.ran.Add(1)
	panic("boom")
}

func (c *Calc) Meta(ctx context.Context, args *Args, reply *map[string]string) error {
	c.ran.Add(1)
	*reply = Metadata(ctx)
	return nil
}

func (c *Calc) Wait(ctx context.Context, args *Args, reply *string) error {
	c.ran.Add(1)
	c.entered <- struct{}{}
	select {
	case <-c.release:
		*reply = "finished"
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startHTTP serves a Calc on a loopback listener and returns its base URL.
func startHTTP(t *testing.T, opts ...Option) (*Server, string, *Calc) {
	t.Helper()
	s := NewServer(append([]Option{quietLogger()}, opts...)...)
	calc := newCalc()
	if err := s.Register(calc); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, "http://" + ln.Addr().String(), calc
}

// httpClient is a client whose idle connections the test closes.
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// post sends body to url and returns the status, the body and the headers.
func post(t *testing.T, c *http.Client, url, body string, header ...string) (int, string, http.Header) {
	t.Helper()
	code, b, h, err := tryPost(c, url, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return code, b, h
}

// tryPost is post for a goroutine other than the test's.
func tryPost(c *http.Client, url, body string, header ...string) (int, string, http.Header, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", nil, fmt.Errorf("POST %s: read: %w", url, err)
	}
	return resp.StatusCode, string(b), resp.Header, nil
}

func TestHTTPCallOnTheRPCPort(t *testing.T) {
	_, base, calc := startHTTP(t)
	c := httpClient(t)
	code, body, h := post(t, c, base+"/Calc.Add", `{"A":40,"B":2}`)
	if code != 200 || body != "42\n" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("POST /Calc.Add = %d %q (%s), want 200 42", code, body, h.Get("Content-Type"))
	}
	// The same keep-alive connection serves the next call; an empty body is
	// the zero args.
	if code, body, _ := post(t, c, base+"/Calc.Add", ""); code != 200 || body != "0\n" {
		t.Fatalf("POST /Calc.Add with no body = %d %q, want 200 0", code, body)
	}
	if n := calc.ran.Load(); n != 2 {
		t.Fatalf("the method ran %d times, want 2", n)
	}
}

func TestHTTPListsAndDescribes(t *testing.T) {
	_, base, _ := startHTTP(t)
	c := httpClient(t)
	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	var list reflection.ListResponse
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET / = %d, %v", resp.StatusCode, err)
	}
	want := []reflection.ServiceInfo{
		{Name: "Calc", Methods: []reflection.MethodInfo{{Name: "Add", Kind: reflection.Unary}, {Name: "Fail", Kind: reflection.Unary}, {Name: "Meta", Kind: reflection.Unary}, {Name: "Panic", Kind: reflection.Unary}, {Name: "Wait", Kind: reflection.Unary}}},
		{Name: "ShoalHealth", Methods: []reflection.MethodInfo{{Name: "Check", Kind: reflection.Unary}, {Name: "Watch", Kind: reflection.ServerStream}}},
		{Name: "ShoalReflection", Methods: []reflection.MethodInfo{{Name: "Describe", Kind: reflection.Unary}, {Name: "List", Kind: reflection.Unary}}},
	}
	if got, _ := json.Marshal(list.Services); string(got) != string(must(json.Marshal(want))) {
		t.Fatalf("GET / listed %s\nwant %s", got, must(json.Marshal(want)))
	}
	code, body, _ := post(t, c, base+"/"+reflection.DescribeMethod, `{"Method":"Calc.Add"}`)
	var d reflection.DescribeResponse
	if err := json.Unmarshal([]byte(body), &d); err != nil || code != 200 {
		t.Fatalf("Describe = %d %s (%v)", code, body, err)
	}
	if d.Method != "Calc.Add" || d.Kind != reflection.Unary || d.ArgsType != "*provider.Args" || d.ReplyType != "int" || d.Example != `{"A":0,"B":0}` ||
		!strings.Contains(d.ArgsSchema, `"properties":{"A":{"type":"integer"},"B":{"type":"integer"}}`) || !strings.Contains(d.ReplySchema, `"type":"integer"`) {
		t.Fatalf("Describe(Calc.Add) = %+v", d)
	}
	code, body, _ = post(t, c, base+"/"+reflection.DescribeMethod, `{"Method":"Calc.Ad"}`)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "has no method") {
		t.Fatalf("Describe of an unknown method = %d %s", code, body)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestWithoutReflection(t *testing.T) {
	_, base, _ := startHTTP(t, WithoutReflection())
	code, body, _ := post(t, httpClient(t), base+"/"+reflection.ListMethod, "")
	if code != http.StatusNotFound || !strings.Contains(body, `"status":"unknown_service"`) || !strings.Contains(body, "it serves Calc") {
		t.Fatalf("List without reflection = %d %s, want 404 unknown_service", code, body)
	}
}

// An unknown-service answer offers the user's services, not the built-in ones.
func TestUnknownServiceListsNoBuiltins(t *testing.T) {
	_, base, _ := startHTTP(t)
	_, body, _ := post(t, httpClient(t), base+"/Calx.Add", "")
	if !strings.Contains(body, `it serves Calc (`) {
		t.Fatalf("unknown service answer %s lists more than Calc", body)
	}
}

func TestHTTPErrors(t *testing.T) {
	_, base, calc := startHTTP(t)
	c := httpClient(t)
	for _, tc := range []struct {
		name, path, body string
		header           []string
		code             int
		status           string
		msg              []string
		runs             bool
	}{
		{"wrong type", "/Calc.Add", `{"A":"forty"}`, nil, 400, "bad_request", []string{"Args.A", "string"}, false},
		{"unknown field", "/Calc.Add", `{"A":1,"C":2}`, nil, 400, "bad_request", []string{`unknown field "C"`}, false},
		{"not JSON", "/Calc.Add", `{"A":1`, nil, 400, "bad_request", []string{"decode Calc.Add args"}, false},
		{"two values", "/Calc.Add", `{} {}`, nil, 400, "bad_request", []string{"more than one JSON value"}, false},
		{"unknown method", "/Calc.add", `{}`, nil, 404, "unknown_method", []string{"has no method", "Add, Fail, Meta, Panic, Wait", `did you mean "Calc.Add"?`}, false},
		{"typo", "/Calc.Ad", `{}`, nil, 404, "unknown_method", []string{`did you mean "Calc.Add"?`}, false},
		{"unknown service", "/Calk.Add", `{}`, nil, 404, "unknown_service", []string{`no service "Calk"`}, false},
		{"no dot", "/Add", `{}`, nil, 404, "bad_request", []string{"Service.Method"}, false},
		{"method error", "/Calc.Fail", `{"A":7}`, nil, 422, "service_error", []string{"no good: 7"}, true},
		{"panic", "/Calc.Panic", `{}`, nil, 500, "internal_error", []string{"panic: boom"}, true},
		{"bad timeout", "/Calc.Add", `{}`, []string{HTTPTimeoutHeader, "soon"}, 400, "bad_request", []string{"Shoal-Timeout", "soon"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := calc.ran.Load()
			code, body, _ := post(t, c, base+tc.path, tc.body, tc.header...)
			var e HTTPError
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("%d: the error body is not JSON: %q", code, body)
			}
			if code != tc.code || e.Status != tc.status {
				t.Fatalf("%d %s, want %d %s (%s)", code, e.Status, tc.code, tc.status, e.Error)
			}
			for _, m := range tc.msg {
				if !strings.Contains(e.Error, m) {
					t.Errorf("error %q does not say %q", e.Error, m)
				}
			}
			if ran := calc.ran.Load() - before; ran != map[bool]int64{true: 1, false: 0}[tc.runs] {
				t.Errorf("the method ran %d times", ran)
			}
		})
	}
	resp, err := c.Get(base + "/Calc.Add")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /Calc.Add = %d (Allow %q), want 405", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestHTTPMetadataAndAuth(t *testing.T) {
	auth := func(ctx context.Context, method string, md map[string]string) error {
		if md["token"] != "s3cret" && md["authorization"] != "Bearer s3cret" {
			return errors.New("who are you?")
		}
		return nil
	}
	_, base, calc := startHTTP(t, WithAuth(auth))
	c := httpClient(t)
	code, body, h := post(t, c, base+"/Calc.Add", `{"A":1}`)
	if code != http.StatusUnauthorized || !strings.Contains(body, `"status":"unauthenticated"`) || !strings.Contains(body, "who are you?") {
		t.Fatalf("no credentials: %d %s %v, want 401 unauthenticated", code, body, h)
	}
	if n := calc.ran.Load(); n != 0 {
		t.Fatalf("a refused call ran %d times", n)
	}
	code, body, _ = post(t, c, base+"/Calc.Meta", `{}`, "Shoal-Meta-Token", "s3cret", "Shoal-Meta-Trace-Id", "abc", "X-Other", "no")
	if code != 200 || body != `{"token":"s3cret","trace-id":"abc"}`+"\n" {
		t.Fatalf("with Shoal-Meta-Token: %d %s", code, body)
	}
	if code, body, _ = post(t, c, base+"/Calc.Add", `{"A":1}`, "Authorization", "Bearer s3cret"); code != 200 {
		t.Fatalf("with Authorization: %d %s", code, body)
	}
}

func TestHTTPCallsPassTheInterceptors(t *testing.T) {
	var seen sync.Map // method → peer
	ic := func(ctx context.Context, info *RequestInfo, args any, next Handler) (any, error) {
		p, _ := PeerOf(ctx)
		seen.Store(info.Method, p.Addr.String())
		if info.Name == "Fail" {
			return nil, Refuse(protocol.StatusRefused, errors.New("not today"))
		}
		reply, err := next(ctx, args)
		if n, ok := reply.(*int); ok {
			*n *= 10
		}
		return reply, err
	}
	_, base, calc := startHTTP(t, WithInterceptors(ic))
	c := httpClient(t)
	if code, body, _ := post(t, c, base+"/Calc.Add", `{"A":4,"B":0}`); code != 200 || body != "40\n" {
		t.Fatalf("Add through an interceptor that multiplies by 10 = %d %q, want 40", code, body)
	}
	if peer, ok := seen.Load("Calc.Add"); !ok || !strings.HasPrefix(peer.(string), "127.0.0.1:") {
		t.Fatalf("the interceptor saw peer %v", peer)
	}
	code, body, _ := post(t, c, base+"/Calc.Fail", `{}`)
	if code != http.StatusForbidden || !strings.Contains(body, `"status":"refused"`) || !strings.Contains(body, "not today") {
		t.Fatalf("refused by an interceptor: %d %s, want 403 refused", code, body)
	}
	if n := calc.ran.Load(); n != 1 {
		t.Fatalf("the methods ran %d times, want 1 (Add)", n)
	}
}

// rawExchange sends req on a fresh connection and reads one response
// within a bound, so a server that waits for a body it will not get fails
// the test rather than hangs it.
func rawExchange(t *testing.T, base, req string) (*http.Response, string) {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("no answer (the server waits for the body?): %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHTTPBodyTooLarge(t *testing.T) {
	_, base, calc := startHTTP(t, WithMaxBodySize(64))
	// Announced too large: answered before any body is sent.
	resp, body := rawExchange(t, base, "POST /Calc.Add HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"status":"too_large"`) || !strings.Contains(body, "1000000 bytes") {
		t.Fatalf("Content-Length 1000000 = %d %s, want 413 too_large", resp.StatusCode, body)
	}
	// Chunked, no length: cut at the limit while reading.
	big := `{"A":1,"B":2,"C":"` + strings.Repeat("x", 100) + `"}`
	resp, body = rawExchange(t, base, fmt.Sprintf("POST /Calc.Add HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "limit of 64 bytes") {
		t.Fatalf("a chunked body of %d bytes = %d %s, want 413", len(big), resp.StatusCode, body)
	}
	if n := calc.ran.Load(); n != 0 {
		t.Fatalf("a too-large call ran %d times", n)
	}
}

func TestHTTPDeadline(t *testing.T) {
	_, base, calc := startHTTP(t)
	c := httpClient(t)
	for _, tc := range []struct {
		url    string
		header []string
	}{
		{base + "/Calc.Wait", []string{HTTPTimeoutHeader, "100ms"}},
		{base + "/Calc.Wait?timeout=100ms", nil},
	} {
		start := time.Now()
		code, body, _ := post(t, c, tc.url, `{}`, tc.header...)
		if code != http.StatusGatewayTimeout || !strings.Contains(body, `"status":"deadline_exceeded"`) {
			t.Fatalf("%s %v: %d %s, want 504 deadline_exceeded", tc.url, tc.header, code, body)
		}
		if took := time.Since(start); took < 100*time.Millisecond {
			t.Fatalf("answered after %v, before the deadline", took)
		}
		<-calc.entered
	}
}

func TestHTTPOverloaded(t *testing.T) {
	_, base, calc := startHTTP(t, WithMaxConcurrent(0, 1))
	c := httpClient(t)
	done := make(chan string, 1)
	go func() {
		_, body, _, err := tryPost(c, base+"/Calc.Wait", `{}`)
		done <- fmt.Sprint(body, err)
	}()
	<-calc.entered
	code, body, h := post(t, c, base+"/Calc.Add", `{}`)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(body, `"status":"overloaded"`) {
		t.Fatalf("past WithMaxConcurrent: %d %s (Retry-After %q), want 429 overloaded", code, body, h.Get("Retry-After"))
	}
	close(calc.release)
	if body := <-done; body != `"finished"`+"\n<nil>" {
		t.Fatalf("the call in flight got %q", body)
	}
	if n := calc.ran.Load(); n != 1 {
		t.Fatalf("ran %d, want 1: the refused call must not run", n)
	}
}

// shutdownStarted returns a channel closed once Shutdown has withdrawn the
// server's instance from mem (its first step after raising the flag).
func shutdownStarted(t *testing.T, mem naming.Registry) <-chan struct{} {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := mem.Watch(ctx, "calc")
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	go func() {
		// The instance was registered before the watch began (Start), so
		// an empty list means it was withdrawn; snapshots coalesce, so the
		// one listing it may never be seen.
		for list := range w {
			if len(list) == 0 {
				close(gone)
				cancel()
				return
			}
		}
	}()
	return gone
}

// An HTTP call in flight counts: Shutdown waits for it, and it finishes.
func TestShutdownWaitsForHTTPCalls(t *testing.T) {
	mem := naming.NewMemory()
	defer mem.Close()
	s, base, calc := startHTTP(t, WithRegistry(mem, naming.Instance{Service: "calc"}), WithDrainGrace(0))
	gone := shutdownStarted(t, mem)
	c := httpClient(t)
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		code, body, _, err := tryPost(c, base+"/Calc.Wait", `{}`)
		done <- answer{code, fmt.Sprint(body, err)}
	}()
	<-calc.entered
	if n := s.InFlight(); n != 1 {
		t.Fatalf("InFlight = %d with an HTTP call running, want 1", n)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	<-gone
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with an HTTP call in flight", err)
	case <-time.After(200 * time.Millisecond): // a negative: Shutdown had that long to return wrongly
	}
	close(calc.release)
	if a := <-done; a.code != 200 || a.body != `"finished"`+"\n<nil>" {
		t.Fatalf("the HTTP call in flight during Shutdown got %d %q, want 200 finished", a.code, a.body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Through HTTPHandler, while draining: the call in flight finishes, new
// calls are refused "shutting down" with 503 and Retry-After, not run.
func TestHTTPHandlerWhileDraining(t *testing.T) {
	mem := naming.NewMemory()
	defer mem.Close()
	s, _, calc := startHTTP(t, WithRegistry(mem, naming.Instance{Service: "calc"}), WithDrainGrace(0))
	gone := shutdownStarted(t, mem)
	hs := httptest.NewServer(http.StripPrefix("/rpc", s.HTTPHandler()))
	defer hs.Close()
	c := httpClient(t)
	if code, body, _ := post(t, c, hs.URL+"/rpc/Calc.Add", `{"A":40,"B":2}`); code != 200 || body != "42\n" {
		t.Fatalf("through HTTPHandler: %d %q", code, body)
	}
	done := make(chan string, 1)
	go func() {
		_, body, _, err := tryPost(c, hs.URL+"/rpc/Calc.Wait", `{}`)
		done <- fmt.Sprint(body, err)
	}()
	<-calc.entered
	if n := s.InFlight(); n != 1 {
		t.Fatalf("InFlight = %d with a call running through HTTPHandler, want 1", n)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	<-gone
	ran := calc.ran.Load()
	code, body, h := post(t, c, hs.URL+"/rpc/Calc.Add", `{}`)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(body, `"status":"shutting_down"`) {
		t.Fatalf("a new call while draining: %d %s (Retry-After %q), want 503 shutting_down", code, body, h.Get("Retry-After"))
	}
	if calc.ran.Load() != ran {
		t.Fatal("a call refused while draining ran")
	}
	// The health check is answered while draining, over HTTP as in binary.
	code, body, _ = post(t, c, hs.URL+"/rpc/"+health.CheckMethod, `{}`)
	if want := fmt.Sprintf(`{"Status":%d}`+"\n", health.NotServing); code != 200 || body != want {
		t.Fatalf("health check while draining: %d %s, want 200 %s", code, body, want)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a call in flight through HTTPHandler", err)
	default:
	}
	close(calc.release)
	if body := <-done; body != `"finished"`+"\n<nil>" {
		t.Fatalf("the call in flight got %q", body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Shutdown closes an idle keep-alive HTTP connection rather than waiting
// for its client.
func TestShutdownClosesIdleHTTPConnections(t *testing.T) {
	s, base, _ := startHTTP(t, WithDrainGrace(time.Minute))
	c := httpClient(t)
	if code, _, _ := post(t, c, base+"/Calc.Add", `{}`); code != 200 {
		t.Fatal(code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Shutdown took %v: it waited for the drain grace on an idle HTTP connection", took)
	}
}

// A binary client and an HTTP client share one listener.
func TestCONNECTHandsTheConnectionToTheBinaryProtocol(t *testing.T) {
	_, base, _ := startHTTP(t)
	nc, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	// The CONNECT and a heartbeat frame in one write: the bytes after the
	// request belong to the binary protocol.
	hb, _ := protocol.AppendFrame(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat, Seq: 7}}, 0)
	if _, err := nc.Write(append([]byte("CONNECT "+HTTPConnectPath+" HTTP/1.0\r\n\r\n"), hb...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.0 "+HTTPConnected+"\r\n" {
		t.Fatalf("CONNECT answered %q (%v)", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("then %q", blank)
	}
	var m protocol.Message
	if err := protocol.NewReader(br, 0).Read(&m); err != nil || m.Kind != protocol.KindHeartbeat || m.Seq != 7 || m.Flags&protocol.FlagReply == 0 {
		t.Fatalf("heartbeat through CONNECT: %+v, %v", m.Header, err)
	}
	// CONNECT elsewhere is refused.
	resp, body := rawExchange(t, base, "CONNECT /other HTTP/1.0\r\n\r\n")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, HTTPConnectPath) {
		t.Fatalf("CONNECT /other = %d %s", resp.StatusCode, body)
	}
}

func TestWithoutHTTP(t *testing.T) {
	_, base, _ := startHTTP(t, WithoutHTTP())
	nc, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, "POST /Calc.Add HTTP/1.1\r\nHost: x\r\n\r\n")
	if b, err := io.ReadAll(nc); len(b) != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WithoutHTTP answered %q (%v): want the connection closed as a bad frame", b, err)
	}
}

// httpStats records the requests the stats handlers see.
type httpStats struct {
	stats.Base
	mu   sync.Mutex
	seen []string // "method codec status addr-prefix"
}

func (h *httpStats) RPCEnd(_ context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	h.mu.Lock()
	defer h.mu.Unlock()
	host, _, _ := net.SplitHostPort(info.Addr)
	h.seen = append(h.seen, strings.Join([]string{info.Method, info.Codec, end.Status, host}, " "))
}

// The stats handlers see HTTP calls as requests, with codec "json" and
// the caller's address: served ones and refused ones, on the RPC port and
// through HTTPHandler.
func TestHTTPCallsReachTheStatsHandlers(t *testing.T) {
	h := &httpStats{}
	s, base, _ := startHTTP(t, WithStatsHandler(h))
	hs := httptest.NewServer(s.HTTPHandler())
	defer hs.Close()
	c := httpClient(t)
	post(t, c, base+"/Calc.Add", `{}`)
	post(t, c, base+"/Calc.Nope", `{}`)
	post(t, c, hs.URL+"/Calc.Fail", `{}`)
	h.mu.Lock()
	defer h.mu.Unlock()
	want := []string{"Calc.Add json ok 127.0.0.1", "Calc.Nope json unknown method 127.0.0.1", "Calc.Fail json service error 127.0.0.1"}
	if strings.Join(h.seen, "|") != strings.Join(want, "|") {
		t.Fatalf("stats saw %q\nwant %q", h.seen, want)
	}
}
