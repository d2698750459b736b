// Package provider serves the exported methods of Go values over shoal's
// protocol, publishes itself in a registry, and shuts down without losing a
// request.
//
// # Services
//
// Register takes a value whose exported methods have the net/rpc shape plus
// an optional context:
//
//	func (t *T) Name([ctx context.Context,] args A, reply *R) error
//
// and serves each as "T.Name"; RegisterName("Calc", v) serves them as
// "Calc.Name" instead. That "Service.Method" name is what a consumer's call
// names. It is not the name the instance registers under in a registry
// (naming.Instance.Service, e.g. "arith"), which is what a consumer's
// ClientProxy looks up. Shapes are checked once, at registration: exported
// methods of another shape are left out and logged, and a value with none
// that fit is an error that says why.
//
// A method's context carries the caller's deadline and metadata (Metadata)
// and ends when the caller gives up or the connection closes. The error a
// method returns reaches the caller as its text; a panic is answered as an
// internal error and logged, and does not stop the server.
//
// # Streams
//
// A method may instead be one of three kinds of stream, recognised at
// registration by its stream parameter:
//
//	func (t *T) Name([ctx,] args A, s *ServerStream[R]) error          // one args, many replies
//	func (t *T) Name([ctx,] s *ClientStream[A][, reply *R]) error      // many args, one reply
//	func (t *T) Name([ctx,] s *BidiStream[A, R]) error                 // many each way
//
// Send waits while the caller's window (protocol.StreamWindow) is full; Recv
// returns io.EOF once the caller has sent everything. The stream ends when
// the method returns, with its error if any. Streams count in flight; at
// most WithMaxStreams are open per connection; Shutdown lets open streams
// run while its context lasts, then resets them (aborted, maybe executed).
// WithStreamInterceptors wraps stream methods as WithInterceptors wraps
// unary ones. A method's kind (reflection.Kind) is kept in the method table
// for the reflection service.
//
// # Serving
//
// Start serves a listener in the background and returns once the listener
// accepts and, with WithRegistry, the instance is registered, so a consumer
// that looks the service up afterwards finds it. Serve does the same but
// blocks until the server stops. Listen makes a listener from any of shoal's
// address forms ("host:port", "tcp@host:port", "unix@/path").
//
// # Shutting down
//
// Shutdown withdraws the instance from the registry, stops accepting, tells
// every connection to go away, answers requests that still arrive "shutting
// down" without running them (a consumer retries those on another instance),
// waits for the requests in flight, and closes. Close does it all at once.
//
// # Arguments and replies on the wire
//
// They travel in the codec the caller chose, msgpack unless it said
// otherwise: struct fields by name, renamed with `msgpack:"name"` tags (not
// `json:` tags). Arguments that do not fit the method's argument type are
// refused before the method runs, with an error that names the field and
// both types.
//
// # Interceptors and stats handlers
//
// WithInterceptors wraps every request's method in a chain of Interceptors,
// built once by NewServer: each sees the context (Metadata, PeerOf), the
// RequestInfo, the decoded arguments and the outcome, and may wrap the call
// or refuse it by returning without calling next. A refusal is answered "not
// executed" (Refuse picks the status), so the caller may safely go
// elsewhere; WithAuth is such an interceptor. WithStatsHandler installs a
// stats.Handler that observes every request and connection and changes
// nothing. With neither, a request pays nothing for them.
package provider
