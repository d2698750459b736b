package loadgen

import (
	"context"
	"errors"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
)

// Kind is the outcome of one call, as the demo counts them.
type Kind int

// The outcomes, in the order the summary lists them.
const (
	// OK: the call returned a reply.
	OK Kind = iota
	// ServiceError: the remote method returned an error (*consumer.ServiceError).
	ServiceError
	// NoInstances: the service had no instance to call (loadbalance.ErrNoInstances).
	NoInstances
	// ConnClosed: the connection broke while the call was in flight
	// (consumer.ErrConnClosed); the call may have run.
	ConnClosed
	// ShuttingDown: a draining server refused the call, or had told the
	// connection to go away before it was sent (consumer.ErrShuttingDown,
	// consumer.ErrClientClosed); the call did not run.
	ShuttingDown
	// Dial: no connection could be made (consumer.ErrDial); the call did not run.
	Dial
	// Deadline: the caller's deadline passed (context.DeadlineExceeded).
	Deadline
	// Other: anything else (unknown method, bad request, internal error…).
	Other

	numKinds
)

var kindNames = [numKinds]string{
	OK:           "ok",
	ServiceError: "service error",
	NoInstances:  "no instances",
	ConnClosed:   "connection closed",
	ShuttingDown: "shutting down",
	Dial:         "dial",
	Deadline:     "deadline",
	Other:        "other",
}

// Kinds returns every Kind, in summary order.
func Kinds() []Kind {
	ks := make([]Kind, numKinds)
	for i := range ks {
		ks[i] = Kind(i)
	}
	return ks
}

// String returns the kind's name as the summary prints it, e.g. "no instances".
func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return "unknown"
	}
	return kindNames[k]
}

// Classify returns the kind of a call's error (OK for nil). When an error
// wraps several causes, the one that ended the call wins: no instances over
// the caller's deadline over the method's own error over the transport
// errors a retry left behind.
func Classify(err error) Kind {
	var se *consumer.ServiceError
	switch {
	case err == nil:
		return OK
	case errors.Is(err, loadbalance.ErrNoInstances):
		return NoInstances
	case errors.Is(err, context.DeadlineExceeded):
		return Deadline
	case errors.As(err, &se):
		return ServiceError
	case errors.Is(err, consumer.ErrShuttingDown), errors.Is(err, consumer.ErrClientClosed):
		return ShuttingDown
	case errors.Is(err, consumer.ErrConnClosed):
		return ConnClosed
	case errors.Is(err, consumer.ErrDial):
		return Dial
	}
	return Other
}
