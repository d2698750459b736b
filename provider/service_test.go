package provider

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type Args struct{ A, B int }

type Shapes struct{}

func (Shapes) Plain(args Args, reply *int) error                                { return nil }
func (Shapes) WithContext(ctx context.Context, args *Args, reply *int) error    { return nil }
func (Shapes) Builtin(s string, reply *[]string) error                          { return nil }
func (Shapes) NoError(args Args, reply *int)                                    {}
func (Shapes) ReplyNotPointer(args Args, reply int) error                       { return nil }
func (Shapes) TooFew(args Args) error                                           { return nil }
func (Shapes) BadFirst(x int, args Args, reply *int) error                      { return nil }
func (Shapes) Unexported(args hidden, reply *int) error                         { return nil }
func (Shapes) TwoResults(args Args, reply *int) (int, error)                    { return 0, nil }
func (Shapes) UnexportedReply(args Args, reply *hidden) error                   { return nil }
func (Shapes) ContextNotFirst(args Args, ctx context.Context, reply *int) error { return nil }

type hidden struct{}

func TestMethodShapesAreCheckedAtRegistration(t *testing.T) {
	methods, skipped, err := methodsOf("", Shapes{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"Plain": false, "WithContext": true, "Builtin": false}
	if len(methods) != len(want) {
		t.Fatalf("methods %v, want %v", keys(methods), want)
	}
	for name, hasCtx := range want {
		m := methods["Shapes."+name]
		if m == nil || m.hasCtx != hasCtx {
			t.Fatalf("%s: %+v", name, m)
		}
	}
	if len(skipped) != 8 {
		t.Fatalf("skipped %d: %v", len(skipped), skipped)
	}
}

func keys(m map[string]*method) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

type OnlyPointer struct{}

func (*OnlyPointer) Do(args Args, reply *int) error { return nil }

func TestRegisterErrors(t *testing.T) {
	s := NewServer()
	tests := []struct {
		name string
		rcvr any
		want string
	}{
		{"", nil, "nil receiver"},
		{"", struct{}{}, "no service name"},
		{"", OnlyPointer{}, "methods with pointer receivers need a pointer: Register(&v)"},
		{"a.b", &OnlyPointer{}, "must not contain a dot"},
		{"", hidden{}, "not exported"},
		{"", 42, "register int: a builtin type has no methods to serve"},
		{"", new(string), "register *string: a builtin type has no methods to serve"},
		{"arith", map[string]int{}, "a builtin type has no methods to serve"},
	}
	for _, tt := range tests {
		err := s.register(tt.name, tt.rcvr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("register(%q, %T): %v, want it to mention %q", tt.name, tt.rcvr, err, tt.want)
		}
	}
	if err := s.Register(&OnlyPointer{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(&OnlyPointer{}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second Register: %v", err)
	}
	if err := s.RegisterName("Other", &OnlyPointer{}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterName("", &OnlyPointer{}); err == nil {
		t.Fatal("RegisterName with an empty name succeeded")
	}
}

func TestLookup(t *testing.T) {
	s := NewServer()
	if err := s.Register(&OnlyPointer{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"OnlyPointer.Do":   "ok",
		"OnlyPointer.Nope": "unknown method",
		"Nope.Do":          "unknown service",
		"NoDot":            "bad request",
	} {
		if _, st := s.lookup(name); st.String() != want {
			t.Errorf("lookup(%q) = %s, want %s", name, st, want)
		}
	}
}

func TestPanicInMethodBecomesAnError(t *testing.T) {
	methods, _, err := methodsOf("P", &panicky{})
	if err != nil {
		t.Fatal(err)
	}
	m := methods["P.Boom"]
	_, arg := m.newArg()
	err = m.call(context.Background(), arg, reflectNew(m))
	if err == nil || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("call: %v", err)
	}
}

type panicky struct{}

func (*panicky) Boom(int, *int) error { panic("boom") }

// Counter has pointer-receiver methods in every shape the direct call path
// handles, and one (a value argument) it leaves to reflection.
type Counter struct{ base, calls int }

type ctxKey struct{}

func (c *Counter) Add(ctx context.Context, args *Args, reply *int) error {
	c.calls++
	*reply = c.base + args.A + args.B + ctx.Value(ctxKey{}).(int)
	return nil
}

func (c *Counter) AddNoCtx(args *Args, reply *int) error {
	c.calls++
	*reply = c.base + args.A + args.B
	return nil
}

func (c *Counter) AddValue(args Args, reply *int) error {
	c.calls++
	*reply = c.base + args.A + args.B
	return nil
}

func (c *Counter) Fail(args *Args, reply *int) error { return errors.New("odd") }

// Offset has a value receiver.
type Offset struct{ by int }

func (o Offset) Add(_ context.Context, args *Args, reply *int) error {
	*reply = o.by + args.A + args.B
	return nil
}

// TestDirectCallsMatchReflection calls every method twice, through the
// direct path and through reflect.Value.Call, and checks both see the same
// receiver, context, argument and reply, and return the same error.
func TestDirectCallsMatchReflection(t *testing.T) {
	counter := &Counter{base: 100}
	tests := []struct {
		service, method string
		rcvr            any
		direct          bool
		want            int
		wantErr         string
	}{
		{"C", "Add", counter, true, 100 + 1 + 2 + 1000, ""},
		{"C", "AddNoCtx", counter, true, 103, ""},
		{"C", "AddValue", counter, false, 103, ""},
		{"C", "Fail", counter, true, 0, "odd"},
		{"O", "Add", Offset{by: 10}, true, 13, ""},
	}
	ctx := context.WithValue(context.Background(), ctxKey{}, 1000)
	for _, tt := range tests {
		methods, _, err := methodsOf(tt.service, tt.rcvr)
		if err != nil {
			t.Fatal(err)
		}
		m := methods[tt.service+"."+tt.method]
		if got := m.direct != nil || m.directNoCtx != nil; got != tt.direct {
			t.Errorf("%s.%s: direct path %v, want %v", tt.service, tt.method, got, tt.direct)
		}
		// The same method without its direct path.
		reflected := method{name: m.name, rcvr: m.rcvr, fn: m.fn, hasCtx: m.hasCtx, argType: m.argType, reply: m.reply}
		for _, mm := range []*method{m, &reflected} {
			ptr, arg := mm.newArg()
			*ptr.(*Args) = Args{A: 1, B: 2}
			reply := reflectNew(mm)
			err := mm.call(ctx, arg, reply)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("%s.%s (direct %v): error %v, want %q", tt.service, tt.method, mm.direct != nil || mm.directNoCtx != nil, err, tt.wantErr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s.%s: %v", tt.service, tt.method, err)
			}
			if got := *reply.Interface().(*int); got != tt.want {
				t.Errorf("%s.%s (direct %v): reply %d, want %d", tt.service, tt.method, mm.direct != nil || mm.directNoCtx != nil, got, tt.want)
			}
		}
	}
	if counter.calls != 6 { // Add, AddNoCtx and AddValue, twice each, on the registered receiver itself
		t.Errorf("the registered Counter saw %d calls, want 6", counter.calls)
	}
}

func TestPanicInDirectCallBecomesAnError(t *testing.T) {
	methods, _, err := methodsOf("P", &panicky{})
	if err != nil {
		t.Fatal(err)
	}
	m := methods["P.BoomPtr"]
	if m.directNoCtx == nil {
		t.Fatal("BoomPtr does not take the direct path")
	}
	_, arg := m.newArg()
	if err := m.call(context.Background(), arg, reflectNew(m)); err == nil || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("call: %v", err)
	}
}

func (*panicky) BoomPtr(*int, *int) error { panic("boom") }

type valueOnly struct{}

// ValueOnly has a value-receiver method of the wrong shape, and none with a
// pointer receiver.
type ValueOnly struct{}

func (ValueOnly) Do(a valueOnly, r *int) error { return nil }

// The pointer hint is given only when the pointer has methods the value
// lacks.
func TestRegisterHintsAPointerOnlyWhenItHelps(t *testing.T) {
	err := NewServer().Register(ValueOnly{})
	if err == nil || strings.Contains(err.Error(), "need a pointer") || !strings.Contains(err.Error(), "argument type provider.valueOnly is not exported") {
		t.Fatalf("Register(ValueOnly{}): %v", err)
	}
}
