package consumer

import (
	"context"
	"fmt"
	"strings"
)

// Caller makes calls by method name: *Client and *ClientProxy satisfy it,
// as does anything that wraps them.
type Caller interface {
	// Call calls method ("Service.Method") with args and decodes the reply
	// into reply, a non-nil pointer (or nil to discard it).
	Call(ctx context.Context, method string, args, reply any) error
}

// Method is a typed handle on one remote method: its arguments are an A,
// its reply an R, so passing the wrong type is a compile error rather than
// a decoding error at run time. Make it once with NewMethod and call it from
// any number of goroutines; a call costs what Caller.Call costs.
//
//	add := consumer.NewMethod[Args, int](client, "Arith.Add")
//	sum, err := add.Call(ctx, Args{A: 40, B: 2})
//
// The types still have to match what the server's method takes and
// returns: generics check the caller against itself, not against the
// server. A reply that does not fit R is an error wrapping ErrReplyDecode.
type Method[A, R any] struct {
	c    Caller
	name string
}

// NewMethod returns the handle for calling method ("Service.Method") through
// c. It panics, with an error wrapping ErrBadRequest, when c is nil or
// method is not of the form Service.Method: both are mistakes in the
// program, found where the handle is made rather than at the first call.
func NewMethod[A, R any](c Caller, method string) Method[A, R] {
	if c == nil {
		panic(fmt.Errorf("%w: consumer.NewMethod(%q) with a nil Caller", ErrBadRequest, method))
	}
	if err := checkMethodName(method); err != nil {
		panic(err)
	}
	return Method[A, R]{c: c, name: method}
}

// Name returns the method's "Service.Method" name.
func (m Method[A, R]) Name() string { return m.name }

// Call calls the method with args and returns its reply, as Caller.Call
// does.
func (m Method[A, R]) Call(ctx context.Context, args A) (R, error) {
	var reply R
	err := m.c.Call(ctx, m.name, args, &reply)
	return reply, err
}

// checkMethodName says what is wrong with a method name that is not of the
// form "Service.Method", or returns nil.
func checkMethodName(method string) error {
	svc, name, ok := strings.Cut(method, ".")
	switch {
	case !ok || svc == "" || name == "":
		return fmt.Errorf("%w: method %q is not of the form Service.Method, e.g. \"Arith.Add\" (the Go type's name, or the name given to RegisterName, a dot, the method's name)", ErrBadRequest, method)
	case strings.Contains(name, "."):
		return fmt.Errorf("%w: method %q has more than one dot; want Service.Method", ErrBadRequest, method)
	case strings.ContainsAny(method, " \t\n/"):
		return fmt.Errorf("%w: method %q contains a space or slash; want Service.Method", ErrBadRequest, method)
	}
	return nil
}
