package provider

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"

	"github.com/shoalrpc/shoal/reflection"
)

// The stream parameter types are recognised by their shape: a pointer to a
// struct whose only field is a *streamCore. Any instantiation of
// ServerStream, ClientStream or BidiStream has it, and its kind is told by
// the (generic) type's name.
var typeOfCore = reflect.TypeFor[*streamCore]()

// streamKindOf says which stream parameter t is, or "" when it is none.
func streamKindOf(t reflect.Type) reflection.Kind {
	if t.Kind() != reflect.Pointer {
		return ""
	}
	e := t.Elem()
	if e.Kind() != reflect.Struct || e.PkgPath() != typeOfCore.Elem().PkgPath() || e.NumField() != 1 || e.Field(0).Type != typeOfCore {
		return ""
	}
	name := e.Name()
	switch {
	case strings.HasPrefix(name, "ServerStream["):
		return reflection.ServerStream
	case strings.HasPrefix(name, "ClientStream["):
		return reflection.ClientStream
	case strings.HasPrefix(name, "BidiStream["):
		return reflection.BidiStream
	}
	return ""
}

// streamShapeOf checks a method that takes a stream parameter: it returns
// (nil, "") for a method that takes none (a unary method, or none at all),
// the method when it fits one of the stream shapes
//
//	func (t *T) Name([ctx context.Context,] args A, s *ServerStream[R]) error
//	func (t *T) Name([ctx context.Context,] s *ClientStream[A][, reply *R]) error
//	func (t *T) Name([ctx context.Context,] s *BidiStream[A, R]) error
//
// and why it does not fit otherwise.
func streamShapeOf(m reflect.Method) (*method, string) {
	ft := m.Type
	at := -1
	var kind reflection.Kind
	for i := 1; i < ft.NumIn(); i++ {
		if k := streamKindOf(ft.In(i)); k != "" {
			if at >= 0 {
				return nil, "takes two streams"
			}
			at, kind = i, k
		}
	}
	if at < 0 {
		return nil, ""
	}
	if ft.NumOut() != 1 || ft.Out(0) != typeOfError {
		return nil, "must return exactly one value, of type error"
	}
	mt := &method{fn: m.Func, callKind: kind, streamType: ft.In(at)}
	if typed, ok := reflect.Zero(mt.streamType).Interface().(interface {
		msgTypes() (in, out reflect.Type)
	}); ok {
		mt.inMsg, mt.outMsg = typed.msgTypes()
	}
	first := 1
	if ft.NumIn() > 1 && ft.In(1) == typeOfContext {
		mt.hasCtx, first = true, 2
	}
	params := ft.NumIn() - first // besides the receiver and the context
	switch kind {
	case reflection.ServerStream:
		if params != 2 || at != first+1 {
			return nil, "a server stream method must take ([ctx,] args, *provider.ServerStream[R])"
		}
		mt.argType = ft.In(first)
		if !exportedOrBuiltin(mt.argType) {
			return nil, fmt.Sprintf("argument type %s is not exported", mt.argType)
		}
	case reflection.ClientStream:
		if at != first || params > 2 {
			return nil, "a client stream method must take ([ctx,] *provider.ClientStream[A][, reply *R])"
		}
		if params == 2 {
			replyType := ft.In(first + 1)
			if replyType.Kind() != reflect.Pointer {
				return nil, fmt.Sprintf("reply type %s is not a pointer", replyType)
			}
			if !exportedOrBuiltin(replyType) {
				return nil, fmt.Sprintf("reply type %s is not exported", replyType)
			}
			mt.reply = replyType.Elem()
		}
	case reflection.BidiStream:
		if at != first || params != 1 {
			return nil, "a bidirectional stream method must take ([ctx,] *provider.BidiStream[A, R])"
		}
	}
	return mt, ""
}

// newStream returns the stream parameter of a stream method, bound to sc.
func (m *method) newStream(sc *streamCore) reflect.Value {
	v := reflect.New(m.streamType.Elem())
	*(**streamCore)(v.UnsafePointer()) = sc
	return v
}

// callStream runs a stream method. A panic in it is returned as a
// *panicError, as call does.
func (m *method) callStream(ctx context.Context, arg, stream, reply reflect.Value) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	in := make([]reflect.Value, 0, 5)
	in = append(in, m.rcvr)
	if m.hasCtx {
		in = append(in, reflect.ValueOf(&ctx).Elem())
	}
	if arg.IsValid() {
		in = append(in, arg)
	}
	in = append(in, stream)
	if reply.IsValid() {
		in = append(in, reply)
	}
	out := m.fn.Call(in)
	if e := out[0].Interface(); e != nil {
		return e.(error)
	}
	return nil
}

// describedTypes are what the reflection service describes as a method's
// args and reply: for a stream, its message types where it has no args or
// reply of its own (a client stream without a reply replies with nothing:
// struct{}).
func (m *method) describedTypes() (args, reply reflect.Type) {
	args, reply = m.argTypeOrMsg(), m.reply
	if reply == nil {
		reply = m.outMsg
	}
	if reply == nil {
		reply = reflect.TypeFor[struct{}]()
	}
	return args, reply
}

// argTypeOrMsg is the method's argument type, or a client or bidi stream's
// message type.
func (m *method) argTypeOrMsg() reflect.Type {
	if m.argType != nil {
		return m.argType
	}
	return m.inMsg
}
