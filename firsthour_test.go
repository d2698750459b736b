package shoal_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// The README's first example, run again and again: registration is over
// when Start returns, so the proxy made right after it always finds the
// instance. (With go srv.Serve(ln) instead, 20 runs out of 20 failed with
// "no instances available".)
func TestReadmeExampleIsNotRacy(t *testing.T) {
	const runs = 20
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	func() {
		defer func() { os.Stdout = stdout; w.Close() }()
		for range runs {
			Example()
		}
	}()
	got := <-out
	if want := strings.Repeat("42 <nil>\n", runs); got != want {
		t.Fatalf("%d runs of the README example printed\n%s\nwant %d lines of \"42 <nil>\"", runs, got, runs)
	}
}

// Counter counts its executions, so a test can tell whether a call ran.
type Counter struct{ runs atomic.Int64 }

// Add returns A+B.
func (c *Counter) Add(args Args, sum *int) error {
	c.runs.Add(1)
	*sum = args.A + args.B
	return nil
}

// Name returns a name.
func (c *Counter) Name(args Args, name *string) error {
	c.runs.Add(1)
	*name = "counter"
	return nil
}

// cluster starts one provider of svc, registered as "arith" in a memory
// registry, and returns a Client and a ClientProxy to it.
func cluster(t *testing.T, svc any) (*consumer.Client, *consumer.ClientProxy) {
	t.Helper()
	reg := naming.NewMemory()
	srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "arith"}),
		provider.WithLogger(slog.New(slog.DiscardHandler)))
	if err := srv.RegisterName("Arith", svc); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		t.Fatal(err)
	}
	c, err := consumer.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := consumer.NewClientProxy("arith", reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		c.Close()
		srv.Shutdown(context.Background())
		reg.Close()
	})
	return c, p
}

// errorIs fails t unless err wraps target and says every one of words.
func errorIs(t *testing.T, what string, err, target error, words ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want an error wrapping %v", what, err, target)
		return
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not say %q", what, err, w)
		}
	}
}

// Calling the registry's service name instead of the Type.Method name, or a
// method the service lacks, is answered with the names the server has.
func TestUnknownNamesSuggestTheRegisteredOnes(t *testing.T) {
	c, p := cluster(t, &Counter{})
	ctx := context.Background()
	var sum int
	for _, caller := range []consumer.Caller{c, p} {
		errorIs(t, "arith.Add", caller.Call(ctx, "arith.Add", Args{}, &sum), consumer.ErrUnknownService,
			`no service "arith" on this server`, `did you mean "Arith.Add"?`, "it serves Arith", "not the registry's service name")
		errorIs(t, "Arith.Sub", caller.Call(ctx, "Arith.Sub", Args{}, &sum), consumer.ErrUnknownMethod,
			`service Arith has no method "Sub"`, "it has Add, Name")
		errorIs(t, "Arith.add", caller.Call(ctx, "Arith.add", Args{}, &sum), consumer.ErrUnknownMethod,
			`did you mean "Arith.Add"?`)
		errorIs(t, "kv.Add", caller.Call(ctx, "kv.Add", Args{}, &sum), consumer.ErrUnknownService,
			`no service "kv" on this server; it serves Arith`, `did you mean "Arith.Add"?`)
	}
	// Word for word as the README quotes it.
	const readme = `shoal: unknown service: "arith.Add": no service "arith" on this server; it serves Arith (a call names "Service.Method" as Register or RegisterName named it, not the registry's service name); did you mean "Arith.Add"?`
	if err := c.Call(ctx, "arith.Add", Args{}, &sum); err == nil || err.Error() != readme {
		t.Errorf("arith.Add:\n got %v\nwant %s", err, readme)
	}
	if b, err := os.ReadFile("README.md"); err != nil || !strings.Contains(string(b), readme) {
		t.Errorf("the README no longer quotes the unknown-service error (%v)", err)
	}
}

// A reply that is not a non-nil pointer is refused before anything is
// sent; a nil reply discards the reply, after the method ran.
func TestReplyMustBeANonNilPointer(t *testing.T) {
	svc := &Counter{}
	c, p := cluster(t, svc)
	ctx := context.Background()
	var sum int
	var nilPtr *int
	for _, caller := range []consumer.Caller{c, p} {
		errorIs(t, "reply int", caller.Call(ctx, "Arith.Add", Args{A: 1}, sum), consumer.ErrBadRequest,
			"call Arith.Add: reply must be a non-nil pointer (or nil to discard the reply), got int")
		errorIs(t, "reply nil *int", caller.Call(ctx, "Arith.Add", Args{A: 1}, nilPtr), consumer.ErrBadRequest,
			"call Arith.Add: reply is a nil *int")
	}
	call := c.Go(ctx, "Arith.Add", Args{A: 1}, sum, nil)
	<-call.Done
	errorIs(t, "Go with reply int", call.Error, consumer.ErrBadRequest, "reply must be a non-nil pointer")
	if n := svc.runs.Load(); n != 0 {
		t.Fatalf("the method ran %d times for calls refused before sending", n)
	}
	for _, caller := range []consumer.Caller{c, p} {
		if err := caller.Call(ctx, "Arith.Add", Args{A: 1}, nil); err != nil {
			t.Fatalf("nil reply: %v", err)
		}
	}
	if n := svc.runs.Load(); n != 2 {
		t.Fatalf("calls with a nil reply ran %d times, want 2", n)
	}
}

// Args or a reply of the wrong type are explained in Go terms: the field,
// the type it has, what was sent.
func TestWrongTypesSayWhichField(t *testing.T) {
	svc := &Counter{}
	c, p := cluster(t, svc)
	ctx := context.Background()
	type wrongArgs struct{ A string }
	for _, caller := range []consumer.Caller{c, p} {
		var sum int
		errorIs(t, "args", caller.Call(ctx, "Arith.Add", wrongArgs{A: "x"}, &sum), consumer.ErrBadRequest,
			`decode Arith.Add args: field Args.A: want int, got string "x"`)
		var name int
		errorIs(t, "reply", caller.Call(ctx, "Arith.Name", Args{}, &name), consumer.ErrReplyDecode,
			`call Arith.Name: want int, got string "counter"`)
		var s string
		errorIs(t, "reply", caller.Call(ctx, "Arith.Add", Args{A: 40, B: 2}, &s), consumer.ErrReplyDecode,
			"call Arith.Add: want string, got int 42")
	}
	// A reply that does not decode is final: the method ran once per call.
	if n := svc.runs.Load(); n != 4 {
		t.Fatalf("the methods ran %d times, want 4 (two reply mismatches per caller, no retries, no args mismatches)", n)
	}
}

// A call after Close says so, once.
func TestCallAfterCloseSaysSoOnce(t *testing.T) {
	c, p := cluster(t, &Counter{})
	c.Close()
	p.Close()
	var sum int
	err := c.Call(context.Background(), "Arith.Add", Args{}, &sum)
	errorIs(t, "client", err, consumer.ErrClientClosed, "call Arith.Add: shoal: client closed")
	if n := strings.Count(err.Error(), "closed"); n != 1 {
		t.Errorf("client: %q says closed %d times", err, n)
	}
	err = p.Call(context.Background(), "Arith.Add", Args{}, &sum)
	errorIs(t, "proxy", err, consumer.ErrProxyClosed, "call Arith.Add: consumer: client proxy closed")
	if n := strings.Count(err.Error(), "closed"); n != 1 {
		t.Errorf("proxy: %q says closed %d times", err, n)
	}
}

func TestNewClientProxyWithoutAServiceName(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	_, err := consumer.NewClientProxy("", reg)
	if err == nil || !strings.Contains(err.Error(), "the service name is empty") {
		t.Fatalf("NewClientProxy(\"\"): %v", err)
	}
}

// A typed handle calls through either caller.
func TestTypedMethodThroughClientAndProxy(t *testing.T) {
	c, p := cluster(t, &Counter{})
	for _, caller := range []consumer.Caller{c, p} {
		add := consumer.NewMethod[Args, int](caller, "Arith.Add")
		if sum, err := add.Call(context.Background(), Args{A: 40, B: 2}); sum != 42 || err != nil {
			t.Fatalf("%T: %d %v", caller, sum, err)
		}
		name := consumer.NewMethod[Args, int](caller, "Arith.Name") // R does not match the server
		_, err := name.Call(context.Background(), Args{})
		errorIs(t, "typed reply mismatch", err, consumer.ErrReplyDecode, "want int, got string")
	}
}

// Dial takes the same address forms as the registries, and its errors quote
// what the caller wrote.
func TestDialAddressErrors(t *testing.T) {
	for addr, want := range map[string]string{
		"":              `consumer: dial: address "": bad address: empty; want host:port, tcp@host:port or unix@/path/sock`,
		"127.0.0.1":     `consumer: dial: address "127.0.0.1": bad address: missing port in address`,
		"tcp@127.0.0.1": `consumer: dial: address "tcp@127.0.0.1": bad address: missing port in address`,
		"udp@h:1":       `consumer: dial: address "udp@h:1": bad address: unknown network "udp"`,
	} {
		_, err := consumer.Dial(addr)
		errorIs(t, "Dial("+addr+")", err, naming.ErrBadAddress, want)
		if addr == "" && strings.Contains(err.Error(), `"tcp@`) {
			t.Errorf("Dial(\"\") names a tcp@ nobody typed: %v", err)
		}
	}
}

// Event is a value with the things the README warns about on the wire.
type Event struct {
	Name  string            `json:"name"` // json tags do not rename a field for msgpack
	Label string            `msgpack:"label"`
	When  time.Time         // comes back in the local zone
	Attrs map[string]string // merges into a reused reply
}

// Echo returns its argument.
type Echo struct{}

// Event returns ev as it arrived.
func (Echo) Event(ev Event, out *Event) error { *out = ev; return nil }

// Raw returns the argument's msgpack map keys, as the server decoded them.
func (Echo) Raw(ev map[string]any, keys *[]string) error {
	for k := range ev {
		*keys = append(*keys, k)
	}
	slices.Sort(*keys)
	return nil
}

// The wire behaviour the README documents: msgpack names fields by Go name
// or msgpack tag (json tags do nothing), a time.Time comes back in the local
// zone as the same instant, and a reused reply's map merges.
func TestWireBehaviourTheReadmeDocuments(t *testing.T) {
	c, _ := cluster(t, Echo{})
	ctx := context.Background()
	var keys []string
	if err := c.Call(ctx, "Arith.Raw", Event{}, &keys); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "Attrs,Name,When,label" {
		t.Errorf("msgpack keys %v, want Attrs,Name,When,label (json tags ignored, msgpack tags used)", keys)
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	var out Event
	if err := c.Call(ctx, "Arith.Event", Event{When: when, Attrs: map[string]string{"a": "1"}}, &out); err != nil {
		t.Fatal(err)
	}
	if !out.When.Equal(when) || out.When.Location() != time.Local {
		t.Errorf("time %v in %v, want the same instant in time.Local", out.When, out.When.Location())
	}
	if err := c.Call(ctx, "Arith.Event", Event{Attrs: map[string]string{"b": "2"}}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Attrs) != 2 {
		t.Errorf("a reused reply's map holds %v, want a and b merged", out.Attrs)
	}
}

// The README's first program is Example: the body of its main and the body
// of Example are the same code, comments aside.
func TestReadmeProgramIsExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## A service, a server, a call")
	_, program, _ := strings.Cut(section, "```go\n")
	program, _, _ = strings.Cut(program, "```")
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	got, want := body(program, "func main() {"), body(string(src), "func Example() {")
	if got == "" || got != want {
		t.Fatalf("the README's main is not Example:\nREADME:\n%s\nExample:\n%s", got, want)
	}
}

// body returns the statements of the function that starts with header, one
// a line, trimmed, without comments or blank lines.
func body(src, header string) string {
	_, rest, ok := strings.Cut(src, header+"\n")
	if !ok {
		return ""
	}
	rest, _, _ = strings.Cut(rest, "\n}\n")
	var out []string
	for line := range strings.SplitSeq(rest, "\n") {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Every error variable a user can get from the core packages is in the
// README's error section.
func TestEverySentinelIsInTheReadme(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n## Errors\n")
	section, _, _ = strings.Cut(section, "\n## ")
	fset := token.NewFileSet()
	for _, pkg := range []string{"consumer", "provider", "naming", "loadbalance"} {
		files, _ := filepath.Glob(filepath.Join(pkg, "*.go"))
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.VAR {
					continue
				}
				for _, spec := range g.Specs {
					for _, id := range spec.(*ast.ValueSpec).Names {
						if id.IsExported() && strings.HasPrefix(id.Name, "Err") && !strings.Contains(section, pkg+"."+id.Name) && !strings.Contains(section, "`"+id.Name+"`") {
							t.Errorf("%s.%s is not in the README's error section", pkg, id.Name)
						}
					}
				}
			}
		}
	}
}
