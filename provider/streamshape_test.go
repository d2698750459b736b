package provider

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/shoalrpc/shoal/reflection"
)

type StreamShapes struct{}

func (StreamShapes) Count(ctx context.Context, args Args, s *ServerStream[int]) error { return nil }
func (StreamShapes) CountNoCtx(args *Args, s *ServerStream[Args]) error               { return nil }
func (StreamShapes) Sum(ctx context.Context, s *ClientStream[int], total *int) error  { return nil }
func (StreamShapes) Drain(s *ClientStream[Args]) error                                { return nil }
func (StreamShapes) Echo(ctx context.Context, s *BidiStream[string, string]) error    { return nil }
func (StreamShapes) TwoStreams(s *ClientStream[int], t *ServerStream[int]) error      { return nil }
func (StreamShapes) ServerNoArgs(ctx context.Context, s *ServerStream[int]) error     { return nil }
func (StreamShapes) BidiWithReply(s *BidiStream[int, int], reply *int) error          { return nil }
func (StreamShapes) ClientReplyByValue(s *ClientStream[int], reply int) error         { return nil }
func (StreamShapes) StreamByValue(ctx context.Context, args Args, s ServerStream[int]) error {
	return nil
}
func (StreamShapes) NoErrorResult(s *BidiStream[int, int]) {}

// Stream methods are recognised, with their kind, at registration; misshapen
// ones are left out with a reason.
func TestStreamShapesAreCheckedAtRegistration(t *testing.T) {
	methods, skipped, err := methodsOf("", StreamShapes{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]reflection.Kind{
		"Count": reflection.ServerStream, "CountNoCtx": reflection.ServerStream,
		"Sum": reflection.ClientStream, "Drain": reflection.ClientStream,
		"Echo": reflection.BidiStream,
	}
	if len(methods) != len(want) {
		t.Fatalf("methods %v, want %v; skipped %v", keys(methods), want, skipped)
	}
	for name, kind := range want {
		if m := methods["StreamShapes."+name]; m == nil || m.callKind != kind {
			t.Fatalf("%s: %+v, want kind %s", name, m, kind)
		}
	}
	if m := methods["StreamShapes.Sum"]; m.reply == nil || methods["StreamShapes.Drain"].reply != nil {
		t.Fatal("a client stream's reply is its last parameter, when it has one")
	}
	if e := methods["StreamShapes.Echo"]; e.inMsg != reflect.TypeFor[string]() || e.outMsg != reflect.TypeFor[string]() {
		t.Fatalf("Echo's message types: %v, %v", e.inMsg, e.outMsg)
	}
	if c := methods["StreamShapes.CountNoCtx"]; c.outMsg != reflect.TypeFor[Args]() || c.argType != reflect.TypeFor[*Args]() {
		t.Fatalf("CountNoCtx's types: args %v, messages %v", c.argType, c.outMsg)
	}
	// StreamByValue takes a ServerStream that is not a pointer: a unary
	// method of a wrong shape, not a stream.
	if len(skipped) != 6 {
		t.Fatalf("skipped %d, want 6: %v", len(skipped), skipped)
	}
	for _, why := range skipped {
		if strings.HasPrefix(why, "StreamShapes.TwoStreams") && !strings.Contains(why, "two streams") {
			t.Fatalf("TwoStreams left out for the wrong reason: %s", why)
		}
	}
	if m, _, _ := methodsOf("", Shapes{}); m["Shapes.Plain"].callKind != reflection.Unary {
		t.Fatal("a unary method's kind is reflection.Unary")
	}
}
