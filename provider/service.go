package provider

import (
	"context"
	"errors"
	"fmt"
	"go/token"
	"reflect"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/shoalrpc/shoal/reflection"
)

var (
	typeOfError   = reflect.TypeFor[error]()
	typeOfContext = reflect.TypeFor[context.Context]()
)

// method is one callable method of a registered service, with its shape
// worked out once, at registration.
type method struct {
	name    string // "Service.Method"
	rcvr    reflect.Value
	fn      reflect.Value // the method's func, receiver first
	hasCtx  bool          // takes a leading context.Context
	argType reflect.Type  // as declared: a value or a pointer type; nil for a client or bidi stream
	reply   reflect.Type  // the reply's element type (reply is declared as *reply); nil when there is none

	// callKind is how the method is called: reflection.Unary, or one of
	// the three stream kinds (the reflection service reads it through
	// kind). inMsg and outMsg are a stream's message types, A and R of its
	// stream parameter (nil for a unary method). streamType is
	// the stream parameter's type (*ServerStream[R], *ClientStream[A] or
	// *BidiStream[A, R]) for a stream method.
	callKind   reflection.Kind
	inMsg      reflect.Type
	outMsg     reflect.Type
	streamType reflect.Type

	// replySize is the size of a recent reply frame, 0 before the first:
	// what a call reserves of its connection for its reply (see
	// conn.awaitRoom). It is stored only when a reply is larger, or much
	// smaller, so that calls of a method with steady replies share it
	// read-only.
	replySize atomic.Int64

	// direct and directNoCtx are the method as a plain Go function, set
	// when its argument is a pointer (see directCall); call then skips
	// reflect.Value.Call. recv is the receiver they take.
	direct      func(recv unsafe.Pointer, ctx context.Context, arg, reply unsafe.Pointer) error
	directNoCtx func(recv, arg, reply unsafe.Pointer) error
	recv        unsafe.Pointer
}

// newArg returns a pointer to a fresh argument for decoding, and the value
// to pass to the method.
func (m *method) newArg() (ptr any, arg reflect.Value) {
	if m.argType.Kind() == reflect.Pointer {
		v := reflect.New(m.argType.Elem())
		return v.Interface(), v
	}
	v := reflect.New(m.argType)
	return v.Interface(), v.Elem()
}

// argOf converts arguments an interceptor passed in place of the decoded
// ones to the value the method takes: a pointer to its argument type.
func (m *method) argOf(args any) (reflect.Value, bool) {
	v := reflect.ValueOf(args)
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return reflect.Value{}, false
	}
	if m.argType.Kind() == reflect.Pointer {
		return v, v.Type() == m.argType
	}
	return v.Elem(), v.Type().Elem() == m.argType
}

// newReply returns a pointer to a fresh reply. A map is made and a slice is
// empty rather than nil, as net/rpc does, so a method can fill its reply in
// place ((*counts)[w]++); other kinds start as their zero value, as there.
func (m *method) newReply() reflect.Value {
	reply := reflect.New(m.reply)
	switch m.reply.Kind() {
	case reflect.Map:
		reply.Elem().Set(reflect.MakeMap(m.reply))
	case reflect.Slice:
		reply.Elem().Set(reflect.MakeSlice(m.reply, 0, 0))
	}
	return reply
}

// unknownReplySize is what a call reserves for its reply before the method
// has replied once: a guess, corrected by the first reply.
const unknownReplySize = 64 << 10

// expectedReply is the reply size a call of m reserves.
func (m *method) expectedReply() int {
	if n := m.replySize.Load(); n > 0 {
		return int(n)
	}
	return unknownReplySize
}

// replied records the size of a reply frame of m (0: none was sent).
func (m *method) replied(size int) {
	if n := int64(size); n > 0 {
		if prev := m.replySize.Load(); n > prev || n < prev/4 {
			m.replySize.Store(n)
		}
	}
}

// panicError is a panic in a method, turned into an error, with the stack
// where it happened (for the log; the caller gets only the value).
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// call runs the method. A panic in it is returned as a *panicError so that
// one bad request cannot take the server down.
func (m *method) call(ctx context.Context, arg reflect.Value, reply reflect.Value) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	switch {
	case m.direct != nil:
		return m.direct(m.recv, ctx, arg.UnsafePointer(), reply.UnsafePointer())
	case m.directNoCtx != nil:
		return m.directNoCtx(m.recv, arg.UnsafePointer(), reply.UnsafePointer())
	}
	return m.callReflect(ctx, arg, reply)
}

// callReflect is call through reflect.Value.Call, for a method without a
// direct path. It is its own function so that only this path pays for the
// context escaping to the heap.
func (m *method) callReflect(ctx context.Context, arg reflect.Value, reply reflect.Value) error {
	var in [4]reflect.Value
	n := 0
	in[n], n = m.rcvr, n+1
	if m.hasCtx {
		// A Value of the interface type itself: Call then need not check,
		// on every call, that ctx's dynamic type implements context.Context.
		in[n], n = reflect.ValueOf(&ctx).Elem(), n+1
	}
	in[n], n = arg, n+1
	in[n], n = reply, n+1
	out := m.fn.Call(in[:n])
	if e := out[0].Interface(); e != nil {
		return e.(error)
	}
	return nil
}

// methodsOf builds the method table of one receiver: every exported method of
// the shape
//
//	func (t *T) Name([ctx context.Context,] args A, reply *R) error
//
// where A and R are exported or builtin types. Exported methods of another
// shape are left out; their names and reasons are returned in skipped.
func methodsOf(name string, rcvr any) (methods map[string]*method, skipped []string, err error) {
	if rcvr == nil {
		return nil, nil, errors.New("provider: register nil receiver")
	}
	v := reflect.ValueOf(rcvr)
	t := v.Type()
	if et := reflect.Indirect(v).Type(); et.PkgPath() == "" && et.Kind() != reflect.Struct && t.NumMethod() == 0 {
		// 42, "x", a map: nothing the caller wrote has methods here.
		return nil, nil, fmt.Errorf("provider: register %s: a builtin type has no methods to serve; register a value of your own type, e.g. Register(&Arith{})", t)
	}
	if name == "" {
		name = reflect.Indirect(v).Type().Name()
		if name == "" {
			return nil, nil, fmt.Errorf("provider: register %s: no service name for an unnamed type; use RegisterName", t)
		}
		if !token.IsExported(name) {
			return nil, nil, fmt.Errorf("provider: register type %s: not exported; export it or use RegisterName", name)
		}
	}
	if strings.Contains(name, ".") {
		return nil, nil, fmt.Errorf("provider: service name %q: must not contain a dot", name)
	}
	methods = make(map[string]*method)
	for i := range t.NumMethod() {
		m := t.Method(i)
		if !m.IsExported() {
			continue
		}
		mt, why := streamShapeOf(m)
		if mt == nil && why == "" {
			mt, why = shapeOf(m)
		}
		if why != "" {
			skipped = append(skipped, fmt.Sprintf("%s.%s: %s", name, m.Name, why))
			continue
		}
		mt.rcvr, mt.name = v, name+"."+m.Name
		if mt.callKind == reflection.Unary {
			directCall(mt, v, m.Name)
		}
		methods[mt.name] = mt
	}
	if len(methods) == 0 {
		msg := fmt.Sprintf("provider: register %s: type %s has no exported methods of the form func([ctx context.Context,] args A, reply *R) error (or of a stream's form)", name, t)
		if t.Kind() != reflect.Pointer && reflect.PointerTo(t).NumMethod() > t.NumMethod() {
			msg += "; methods with pointer receivers need a pointer: Register(&v)"
		}
		if len(skipped) > 0 {
			msg += "; left out: " + strings.Join(skipped, "; ")
		}
		return nil, skipped, errors.New(msg)
	}
	return methods, skipped, nil
}

// directCall sets mt.direct (or mt.directNoCtx) when the method's argument
// is a pointer, so that a call costs a function call instead of
// reflect.Value.Call: reflection's call path costs about a microsecond,
// and its deep stack makes pooled workers regrow the stacks that each
// garbage collection shrinks.
//
// The method is taken from the pointer receiver's method set: rcvr itself
// when it is a pointer, otherwise a private copy of it behind a new pointer
// (the compiler's (*T).M wrapper then copies it into the value receiver, as
// a call on the value would). Every argument is then pointer-shaped — the
// receiver, the argument, the reply — besides the context and the error, so
// the function's type is converted to one taking unsafe.Pointer in their
// places: Go passes and returns both types alike, in registers or on the
// stack, on every architecture.
func directCall(mt *method, rcvr reflect.Value, name string) {
	if mt.argType.Kind() != reflect.Pointer {
		return
	}
	ptr := rcvr
	if rcvr.Kind() != reflect.Pointer {
		ptr = reflect.New(rcvr.Type())
		ptr.Elem().Set(rcvr)
	}
	pm, ok := ptr.Type().MethodByName(name)
	if !ok {
		return
	}
	fn := pm.Func.Interface() // a func value: its interface data word is the func itself
	data := (*[2]unsafe.Pointer)(unsafe.Pointer(&fn))[1]
	if mt.hasCtx {
		*(*unsafe.Pointer)(unsafe.Pointer(&mt.direct)) = data
	} else {
		*(*unsafe.Pointer)(unsafe.Pointer(&mt.directNoCtx)) = data
	}
	mt.recv = ptr.UnsafePointer()
}

// shapeOf checks a method's signature and returns why it does not fit, or "".
func shapeOf(m reflect.Method) (*method, string) {
	ft := m.Type // receiver is In(0)
	if ft.NumOut() != 1 || ft.Out(0) != typeOfError {
		return nil, "must return exactly one value, of type error"
	}
	in := ft.NumIn() - 1
	mt := &method{fn: m.Func, callKind: reflection.Unary}
	first := 1
	if in == 3 {
		if ft.In(1) != typeOfContext {
			return nil, "with three arguments the first must be context.Context"
		}
		mt.hasCtx, first = true, 2
	} else if in != 2 {
		return nil, "must take (args, *reply) or (ctx, args, *reply)"
	}
	mt.argType = ft.In(first)
	if !exportedOrBuiltin(mt.argType) {
		return nil, fmt.Sprintf("argument type %s is not exported", mt.argType)
	}
	replyType := ft.In(first + 1)
	if replyType.Kind() != reflect.Pointer {
		return nil, fmt.Sprintf("reply type %s is not a pointer", replyType)
	}
	if !exportedOrBuiltin(replyType) {
		return nil, fmt.Sprintf("reply type %s is not exported", replyType)
	}
	mt.reply = replyType.Elem()
	return mt, ""
}

func exportedOrBuiltin(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return token.IsExported(t.Name()) || t.PkgPath() == ""
}
