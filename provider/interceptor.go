package provider

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/shoalrpc/shoal/protocol"
)

// RequestInfo describes the request an interceptor wraps.
type RequestInfo struct {
	Method  string               // "Service.Method"
	Service string               // the service's name, "Service"
	Name    string               // the method's name, "Method"
	Peer    net.Addr             // the caller's address
	TLS     *tls.ConnectionState // the connection's TLS state; nil without TLS
}

// Handler is what an interceptor wraps: the rest of the chain and, at its
// end, the method itself. args is a pointer to the decoded arguments; the
// reply it returns is a pointer to the reply the method filled (or the one
// an interceptor put in its place), which is what the caller receives.
type Handler func(ctx context.Context, args any) (reply any, err error)

// Interceptor runs around a request's method: it sees the context (deadline,
// Metadata, PeerOf), the request's names, the decoded arguments and the
// outcome, and may wrap the call (time it, recover, enrich the context) or
// refuse it by returning an error without calling next. A refusal is
// answered "not executed", so the caller may safely try elsewhere: with the
// status of a Refusal (see Refuse), and otherwise with protocol.StatusRefused
// and the error's text. An error returned after next ran is the method's
// own error, as the method returning it would be.
type Interceptor func(ctx context.Context, info *RequestInfo, args any, next Handler) (reply any, err error)

// Refusal is an interceptor's refusal of a request, with the status the
// caller receives. Make one with Refuse.
type Refusal struct {
	Status protocol.Status // a not-executed status
	Err    error           // why; its text is what the caller reads
}

// Error returns Err's text.
func (r *Refusal) Error() string { return r.Err.Error() }

// Unwrap returns why.
func (r *Refusal) Unwrap() error { return r.Err }

// Refuse returns the error an interceptor returns, without calling next, to
// refuse a request with status: protocol.StatusUnauthenticated (the
// caller's credentials), protocol.StatusOverloaded (a limit: the caller may
// go elsewhere) or protocol.StatusRefused (anything else). Any other status
// is sent as StatusRefused: a refusal is never mistaken for the method's
// outcome.
func Refuse(status protocol.Status, err error) error {
	switch status {
	case protocol.StatusUnauthenticated, protocol.StatusOverloaded, protocol.StatusRefused:
	default:
		status = protocol.StatusRefused
	}
	if err == nil {
		err = errors.New(status.String())
	}
	return &Refusal{Status: status, Err: err}
}

// refusalStatus is the status of an interceptor's refusal.
func refusalStatus(err error) protocol.Status {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Status
	}
	return protocol.StatusRefused
}

// chain makes one interceptor of many, the first outermost. It is built once,
// by NewServer; nil means none.
func chain(ics []Interceptor) Interceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(ctx context.Context, info *RequestInfo, args any, final Handler) (any, error) {
		return ics[0](ctx, info, args, nextOf(ics[1:], info, final))
	}
}

// nextOf returns the Handler that runs ics around final.
func nextOf(ics []Interceptor, info *RequestInfo, final Handler) Handler {
	if len(ics) == 0 {
		return final
	}
	return func(ctx context.Context, args any) (any, error) {
		return ics[0](ctx, info, args, nextOf(ics[1:], info, final))
	}
}

// authInterceptor is WithAuth as an interceptor: a refused credential is
// answered "unauthenticated", not executed.
func authInterceptor(auth AuthFunc) Interceptor {
	return func(ctx context.Context, info *RequestInfo, args any, next Handler) (any, error) {
		if err := auth(ctx, info.Method, Metadata(ctx)); err != nil {
			return nil, Refuse(protocol.StatusUnauthenticated, err)
		}
		return next(ctx, args)
	}
}

// Peer is the other end of a request's connection.
type Peer struct {
	Addr net.Addr             // the caller's address
	TLS  *tls.ConnectionState // nil without TLS
}

type peerKey struct{}

// PeerOf returns the caller of the request handled under ctx; ok is false
// outside a request.
func PeerOf(ctx context.Context) (p Peer, ok bool) {
	c, ok := ctx.Value(peerKey{}).(*conn)
	if !ok || c == nil {
		return Peer{}, false
	}
	return Peer{Addr: c.nc.RemoteAddr(), TLS: c.tlsState()}, true
}

// tlsState returns the connection's TLS state, or nil.
func (c *conn) tlsState() *tls.ConnectionState {
	if tc, ok := c.nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}
