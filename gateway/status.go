package gateway

import (
	"context"
	"errors"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/httpstatus"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/protocol"
)

// StatusOf names the outcome of a call as shoal's status names do: "ok",
// the protocol.Status name of the response that ended it ("service error",
// "unknown method", "bad request", "shutting down", …), or, when no
// response arrived, one of httpstatus's transport statuses ("no
// instances", "unavailable", "deadline exceeded", "canceled"). The gateway
// answers with httpstatus.CodeOf(StatusOf(err)); the shoal command turns it
// into an exit status. When an error wraps several causes (a call retried
// on several instances), the one that ended the call wins: the method's
// own error, then the caller's deadline, then no instance left, then the
// last refusal.
func StatusOf(err error) string {
	var se *consumer.ServiceError
	switch {
	case err == nil:
		return protocol.StatusOK.String()
	case errors.As(err, &se):
		return protocol.StatusServiceError.String()
	case errors.Is(err, context.DeadlineExceeded):
		return httpstatus.Deadline
	case errors.Is(err, context.Canceled):
		return httpstatus.Canceled
	case errors.Is(err, loadbalance.ErrNoInstances):
		return httpstatus.NoInstances
	}
	for _, s := range statusErrors {
		if errors.Is(err, s.err) {
			return s.status.String()
		}
	}
	switch {
	case errors.Is(err, consumer.ErrDial), errors.Is(err, consumer.ErrConnClosed),
		errors.Is(err, consumer.ErrClientClosed), errors.Is(err, consumer.ErrTooManyPending),
		errors.Is(err, consumer.ErrProxyClosed), errors.Is(err, ErrClosed):
		return httpstatus.Unavailable
	}
	return protocol.StatusInternal.String()
}

// statusErrors pairs the consumer's errors with the wire statuses behind them.
var statusErrors = []struct {
	err    error
	status protocol.Status
}{
	{consumer.ErrUnknownService, protocol.StatusUnknownService},
	{consumer.ErrUnknownMethod, protocol.StatusUnknownMethod},
	{consumer.ErrBadRequest, protocol.StatusBadRequest},
	{consumer.ErrRequestTooLarge, protocol.StatusTooLarge},
	{consumer.ErrUnauthenticated, protocol.StatusUnauthenticated},
	{consumer.ErrRefused, protocol.StatusRefused},
	{consumer.ErrOverloaded, protocol.StatusOverloaded},
	{consumer.ErrShuttingDown, protocol.StatusShuttingDown},
	{consumer.ErrInternal, protocol.StatusInternal},
}
