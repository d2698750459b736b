package consumer

import (
	"context"

	"github.com/shoalrpc/shoal/naming"
)

// Invoker makes a call: what an interceptor wraps, the rest of the chain and,
// at its end, the call itself.
type Invoker func(ctx context.Context, method string, args, reply any) error

// Interceptor runs around a call: it sees the context (deadline, metadata
// set with WithMetadata), the method ("Service.Method"), the arguments and
// the reply, and may wrap the call (log it, time it, add metadata to ctx) or
// return without calling next (a cached reply, a local refusal).
//
// On a Client (Dial, NewPool) interceptors of WithInterceptors run around
// every Call. On a ClientProxy they run around every logical call, retries
// and hedges included, and the interceptors of WithAttemptInterceptors run
// around each attempt on one instance (AttemptOf tells which).
type Interceptor func(ctx context.Context, method string, args, reply any, next Invoker) error

// chain makes one interceptor of many, the first outermost; nil means none.
// It is built once, when the Client or ClientProxy is made.
func chain(ics []Interceptor) Interceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(ctx context.Context, method string, args, reply any, final Invoker) error {
		return ics[0](ctx, method, args, reply, nextOf(ics[1:], final))
	}
}

// nextOf returns the Invoker that runs ics around final.
func nextOf(ics []Interceptor, final Invoker) Invoker {
	if len(ics) == 0 {
		return final
	}
	return func(ctx context.Context, method string, args, reply any) error {
		return ics[0](ctx, method, args, reply, nextOf(ics[1:], final))
	}
}

// AttemptInfo describes one attempt of a ClientProxy call, for attempt
// interceptors.
type AttemptInfo struct {
	Service  string           // the proxy's service
	Instance *naming.Instance // the instance this attempt goes to
	Attempt  int              // 1 for a call's first attempt, 2 for the next…
	Retry    bool             // a retry after a failed attempt
	Hedge    bool             // a hedge (Failbackup), sent while another attempt runs
}

type attemptKey struct{}

// AttemptOf returns the attempt a ClientProxy makes under ctx; ok is false
// outside an attempt interceptor.
func AttemptOf(ctx context.Context) (info AttemptInfo, ok bool) {
	a, ok := ctx.Value(attemptKey{}).(*AttemptInfo)
	if !ok {
		return AttemptInfo{}, false
	}
	return *a, true
}
