package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shoalrpc/shoal/internal/testmsg"
	"github.com/shoalrpc/shoal/protocol"
)

// fakeCaller records the call it is given and answers with a fixed reply.
type fakeCaller struct {
	method string
	args   any
}

func (f *fakeCaller) Call(ctx context.Context, method string, args, reply any) error {
	f.method, f.args = method, args
	*reply.(*int) = 42
	return nil
}

func TestMethodCallsThroughItsCaller(t *testing.T) {
	f := &fakeCaller{}
	add := NewMethod[[2]int, int](f, "Arith.Add")
	sum, err := add.Call(context.Background(), [2]int{40, 2})
	if err != nil || sum != 42 || f.method != "Arith.Add" || f.args != [2]int{40, 2} || add.Name() != "Arith.Add" {
		t.Fatalf("sum %d, err %v; the caller saw %q %v", sum, err, f.method, f.args)
	}
}

// A malformed method name is caught where the handle is made.
func TestNewMethodChecksTheName(t *testing.T) {
	for name, want := range map[string]string{
		"Add":            `method "Add" is not of the form Service.Method`,
		"arith.":         `method "arith." is not of the form Service.Method`,
		".Add":           `method ".Add" is not of the form Service.Method`,
		"":               `method "" is not of the form Service.Method`,
		"a.b.c":          `method "a.b.c" has more than one dot`,
		"Arith.Add Sub":  "contains a space",
		"Arith/Add.Call": "contains a space or slash",
	} {
		func() {
			defer func() {
				err, _ := recover().(error)
				if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), want) {
					t.Errorf("NewMethod(%q) panicked with %v, want ErrBadRequest and %q", name, err, want)
				}
			}()
			NewMethod[int, int](&fakeCaller{}, name)
		}()
	}
	for _, ok := range []string{"Arith.Add", "arith.Add", "A.B"} {
		NewMethod[int, int](&fakeCaller{}, ok) // does not panic
	}
}

// BenchmarkTypedCall compares a typed Method's call with Client.Call, on the
// client alone (see BenchmarkClientCall): "call" reuses one reply value
// across calls, "call-fresh" declares one per call as most callers do, and
// "typed" is Method.Call, which returns a fresh reply.
func BenchmarkTypedCall(b *testing.B) {
	c := dialRawResponder(b, protocol.Msgpack)
	args := testmsg.NewBenchmarkMessage()
	say := NewMethod[*testmsg.BenchmarkMessage, testmsg.BenchmarkMessage](c, "Hello.Say")
	// newCall makes each calling goroutine's call.
	run := func(b *testing.B, newCall func() func() (string, error)) {
		b.ReportAllocs()
		b.SetParallelism(50)
		b.RunParallel(func(pb *testing.PB) {
			call := newCall()
			for pb.Next() {
				f1, err := call()
				if err != nil {
					b.Fatal(err)
				}
				if f1 != "OK" {
					b.Fatalf("reply %q", f1)
				}
			}
		})
	}
	b.Run("call", func(b *testing.B) {
		run(b, func() func() (string, error) {
			var reply testmsg.BenchmarkMessage // this goroutine's, reused
			return func() (string, error) {
				err := c.Call(context.Background(), "Hello.Say", args, &reply)
				return reply.Field1, err
			}
		})
	})
	b.Run("call-fresh", func(b *testing.B) {
		run(b, func() func() (string, error) {
			return func() (string, error) {
				var reply testmsg.BenchmarkMessage
				err := c.Call(context.Background(), "Hello.Say", args, &reply)
				return reply.Field1, err
			}
		})
	})
	b.Run("typed", func(b *testing.B) {
		run(b, func() func() (string, error) {
			return func() (string, error) {
				reply, err := say.Call(context.Background(), args)
				return reply.Field1, err
			}
		})
	})
}
