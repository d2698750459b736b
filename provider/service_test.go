package provider

import (
	"context"
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
		{"", OnlyPointer{}, "need a pointer"},
		{"a.b", &OnlyPointer{}, "must not contain a dot"},
		{"", hidden{}, "not exported"},
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
