// Package consumer calls shoal services.
//
// A Client is one long connection to one address, shared by any number of
// concurrent calls. A Pool keeps Clients per address. A ClientProxy calls a
// service by the name its providers registered under (naming.Instance.Service,
// e.g. "arith"): it follows the service's instances in a naming.Registry,
// picks one per call with a load-balancing policy, and when a call fails
// decides from the error whether another try is safe.
//
// # Calls
//
//	err := p.Call(ctx, "Arith.Add", Args{A: 1, B: 2}, &sum)
//
// The method is named "Service.Method" as the provider registered it: the
// Go type's name, or the name given to RegisterName, then the method's. The
// args are encoded as they are; reply must be a non-nil pointer to a value
// of the method's reply type, or nil to discard the reply. NewMethod makes
// a typed handle, so that args and reply of the wrong type do not compile:
//
//	add := consumer.NewMethod[Args, int](p, "Arith.Add")
//	sum, err := add.Call(ctx, Args{A: 1, B: 2})
//
// The caller's context bounds the whole call, retries included, and its
// deadline travels to the server, where the method's context ends with it.
//
// # Errors
//
// Every error a call returns can be tested with errors.Is or errors.As: the
// method's own error is a *ServiceError; the Err* variables of this package,
// loadbalance.ErrNoInstances and the context's errors cover the rest. Each
// one is also of one of three kinds, which decide whether a ClientProxy tries
// again: final (the method's error, a bad request, an unknown method, a reply
// that does not decode, the caller's context ended), not executed (the call
// never ran: retried on another instance in every fail mode) and maybe
// executed (the connection broke mid-call: the fail mode decides).
//
// # Streams
//
// OpenServerStream, OpenClientStream and OpenBidiStream open a stream on a
// Client, or through a ClientProxy on one instance it picks (an open
// refused not executed is tried on another; the stream then stays where it
// opened and reports its outcome to the balancer when it ends). Open returns
// once the server has accepted the stream, so refusals come from it. Send
// waits while the server's window is full; Recv returns io.EOF at a clean
// end and the method's error (*ServiceError) otherwise. The stream's context
// bounds it: its end resets the stream, and the method's context ends too.
// WithStreamInterceptors wraps the opening of streams, and stats handlers
// see a stream as one call (stats.RPCInfo.Stream).
//
// # Replies
//
// Replies decode as encoding/json does: into a reused value they merge (map
// keys from an earlier reply survive), so pass a fresh value when that
// matters. With msgpack, a time.Time comes back in the local time zone, the
// same instant as was sent.
//
// # Interceptors and stats handlers
//
// WithInterceptors wraps calls in a chain of Interceptors, built once: every
// Call of a Client, and every logical call of a ClientProxy (retries and
// hedges inside it); WithAttemptInterceptors wraps each attempt a ClientProxy
// makes on one instance (AttemptOf tells which). WithStatsHandler installs a
// stats.Handler that observes calls, attempts, connections and what a
// ClientProxy decides on its own (ejections, registry fallbacks, budget
// refusals). Options are typed by what they configure: a DialOption goes to
// Dial, NewPool and NewClientProxy, a PoolOption to NewPool and
// NewClientProxy, a ProxyOption to NewClientProxy alone.
package consumer
