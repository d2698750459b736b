package consumer

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/shoalrpc/shoal/protocol"
)

// Errors a call can return, testable with errors.Is. The remote method's own
// error is a *ServiceError instead; the caller's context errors come back as
// they are (wrapped with the method name).
var (
	// ErrUnknownService: the server has no service of that name. Not executed.
	ErrUnknownService = errors.New("shoal: unknown service")
	// ErrUnknownMethod: the service has no method of that name. Not executed.
	ErrUnknownMethod = errors.New("shoal: unknown method")
	// ErrBadRequest: the call could not be encoded, or the server could not
	// decode it. Not executed.
	ErrBadRequest = errors.New("shoal: bad request")
	// ErrShuttingDown: the server is draining and refused the call. Not
	// executed; another instance may take it.
	ErrShuttingDown = errors.New("shoal: server shutting down")
	// ErrInternal: the server failed while running the call (a panic in the
	// method, or a reply it could not encode).
	ErrInternal = errors.New("shoal: internal server error")
	// ErrConnClosed: the connection closed while the call was in flight; the
	// server may or may not have run it.
	ErrConnClosed = errors.New("shoal: connection closed")
	// ErrClientClosed: the client was closed, or the server asked it to go
	// away, before the call was sent. Not executed.
	ErrClientClosed = errors.New("shoal: client closed")
	// ErrDial: no connection could be made. Not executed.
	ErrDial = errors.New("shoal: dial failed")
	// ErrOverloaded: the server is past a connection or concurrency limit
	// and refused the call. Not executed; another instance may take it.
	ErrOverloaded = errors.New("shoal: server overloaded")
	// ErrUnauthenticated: the server's auth check refused the credentials.
	// Not executed.
	ErrUnauthenticated = errors.New("shoal: unauthenticated")
	// ErrRefused: a server interceptor refused the call (provider.Refuse).
	// Not executed; another instance may take it.
	ErrRefused = errors.New("shoal: refused by the server")
	// ErrTooManyPending: the connection already has as many calls awaiting
	// replies as WithMaxPending allows. Not sent.
	ErrTooManyPending = errors.New("shoal: too many calls pending on the connection")
	// ErrReplyDecode: the method ran and answered, but its reply does not
	// fit the reply value's type (the error names the field and both
	// types). Executed; not retried.
	ErrReplyDecode = errors.New("shoal: reply does not fit its type")
	// ErrRequestTooLarge: the request's body was over the server's limit
	// (the error names it), or over the client's own (WithMaxBodySize). Not
	// executed, and final: no instance with the same limit would take it.
	// The connection stays up.
	ErrRequestTooLarge = errors.New("shoal: request too large")
	// ErrReplyTooLarge: the server ran the call, but its reply was over the
	// client's body limit (WithMaxBodySize), and was skipped. Final: the call
	// ran. The connection stays up.
	ErrReplyTooLarge = errors.New("shoal: reply too large")
	// ErrNotSent: no byte of the request reached the connection — the call's
	// context ended while the request waited in the client's write queue
	// (the context's error is wrapped too), or the connection had failed, or
	// was known to be dead, before the request was written. Not executed.
	// errors.Is(err, ErrClientClosed) is true of it as well, so whatever
	// retries calls that were not sent retries these.
	ErrNotSent error = notSent{}
)

// checkReply rejects a reply the call could not decode into, before the call
// is sent: it must be a non-nil pointer, or nil to discard the reply.
func checkReply(method string, reply any) error {
	if reply == nil {
		return nil
	}
	rv := reflect.ValueOf(reply)
	switch {
	case rv.Kind() != reflect.Pointer:
		return fmt.Errorf("%w: call %s: reply must be a non-nil pointer (or nil to discard the reply), got %T: pass &reply", ErrBadRequest, method, reply)
	case rv.IsNil():
		return fmt.Errorf("%w: call %s: reply is a nil %T: pass a pointer to a value (or nil to discard the reply)", ErrBadRequest, method, reply)
	}
	return nil
}

// notSent is ErrNotSent: its own message, and one of the ErrClientClosed kind.
type notSent struct{}

func (notSent) Error() string { return "shoal: request not sent" }

// Is makes errors.Is(ErrNotSent, ErrClientClosed) true.
func (notSent) Is(target error) bool { return target == ErrClientClosed }

// errSilentConn marks a call that timed out while a probe of its connection
// went unanswered: the instance, not the method, is the likely cause, and
// the outlier detector counts it (instanceFault).
var errSilentConn = errors.New("the connection has been silent: a probe went unanswered")

// ServiceError is an error returned by the remote method itself. Message is
// the method's error text, intact.
type ServiceError struct {
	// Method is the called method, "Service.Method".
	Method string
	// Message is the text of the error the method returned.
	Message string
}

// Error returns Message, as the method wrote it.
func (e *ServiceError) Error() string { return e.Message }

// statusError turns an error response into the error the caller sees.
func statusError(method string, status protocol.Status, msg string) error {
	switch status {
	case protocol.StatusServiceError:
		return &ServiceError{Method: method, Message: msg}
	case protocol.StatusUnknownService:
		return fmt.Errorf("%w: %s", ErrUnknownService, msg)
	case protocol.StatusUnknownMethod:
		return fmt.Errorf("%w: %s", ErrUnknownMethod, msg)
	case protocol.StatusBadRequest:
		return fmt.Errorf("%w: %s", ErrBadRequest, msg)
	case protocol.StatusShuttingDown:
		return fmt.Errorf("%w: %s", ErrShuttingDown, msg)
	case protocol.StatusOverloaded:
		return fmt.Errorf("%w: %s", ErrOverloaded, msg)
	case protocol.StatusRefused:
		return fmt.Errorf("%w: %s: %s", ErrRefused, method, msg)
	case protocol.StatusUnauthenticated:
		return fmt.Errorf("%w: %s: %s", ErrUnauthenticated, method, msg)
	case protocol.StatusTooLarge:
		return fmt.Errorf("%w: %s: %s", ErrRequestTooLarge, method, msg)
	case protocol.StatusAborted:
		return fmt.Errorf("%w: %s", ErrStreamAborted, msg)
	}
	return fmt.Errorf("%w (%s): %s", ErrInternal, status, msg)
}
