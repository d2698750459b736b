package provider

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/naming"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("provider: server closed")

// Server serves registered services on any number of listeners.
type Server struct {
	opts            options
	intercept       Interceptor       // the interceptors as one, built by NewServer; nil: none
	streamIntercept StreamInterceptor // the stream interceptors as one; nil: none
	health          *Health           // the health service's statuses (health.go)

	methods  atomic.Pointer[map[string]*method] // "Service.Method" → method; copied on Register
	services atomic.Pointer[map[string]bool]    // service names, to tell unknown service from unknown method
	regMu    sync.Mutex                         // serialises Register

	idleMu     sync.Mutex // guards idle and workersEnd
	idle       []*worker  // workers waiting for a request, the most recent last
	workersEnd bool       // the server stopped: idle workers ended, none may idle again

	shuttingDown atomic.Bool
	forced       atomic.Bool   // Close ran: requests in flight lost their replies
	inFlight     atomic.Int64  // requests read whose reply is not yet flushed
	drained      chan struct{} // signalled when inFlight reaches zero while shutting down
	connsGone    chan struct{} // signalled when the last connection closes while shutting down
	done         chan struct{} // closed when the server has stopped
	doneOnce     sync.Once

	mu          sync.Mutex
	listeners   map[net.Listener]net.Listener // accepted from → as given to Serve or Start
	served      map[net.Listener]net.Listener // as given → accepted from
	loops       sync.WaitGroup                // Start's accept loops
	loopErr     error                         // what ended one of Start's loops
	conns       map[*conn]struct{}
	open        int                // conns not refused by WithMaxConns: what the limit counts
	published   bool               // the instance was (or is being) registered
	publishDone chan struct{}      // closed when the registration attempt is over
	withdrawn   bool               // Shutdown or Close withdrew the instance
	deregister  context.CancelFunc // withdraws the instance; nil when not registered
	registered  naming.Instance    // as registered, ID and Addr filled in (Snapshot)
}

// NewServer returns a server with no services.
func NewServer(opts ...Option) *Server {
	s := &Server{
		opts:      defaultOptions(),
		drained:   make(chan struct{}, 1),
		connsGone: make(chan struct{}, 1),
		done:      make(chan struct{}),
		listeners: make(map[net.Listener]net.Listener),
		served:    make(map[net.Listener]net.Listener),
		conns:     make(map[*conn]struct{}),
	}
	for _, o := range opts {
		o(&s.opts)
	}
	s.intercept = chain(s.opts.interceptors)
	s.streamIntercept = chainStream(s.opts.streamIcs)
	empty := map[string]*method{}
	s.methods.Store(&empty)
	names := map[string]bool{}
	s.services.Store(&names)
	s.health = newHealth(s)
	if !s.opts.noHealth {
		s.register(health.Service, healthService{s.health}) // cannot fail: a fixed, well-formed receiver
	}
	if !s.opts.noReflection {
		s.registerReflection()
	}
	return s
}

// Register publishes the exported methods of rcvr under the name of its type.
// A method must have the shape
//
//	func (t *T) Name([ctx context.Context,] args A, reply *R) error
//
// with A and R exported or builtin; A may be a value or a pointer. Exported
// methods of another shape are left out (and logged); a receiver with none
// that fit is an error.
func (s *Server) Register(rcvr any) error { return s.register("", rcvr) }

// RegisterName is Register under the given service name.
func (s *Server) RegisterName(name string, rcvr any) error {
	if name == "" {
		return errors.New("provider: RegisterName with an empty name")
	}
	return s.register(name, rcvr)
}

func (s *Server) register(name string, rcvr any) error {
	found, skipped, err := methodsOf(name, rcvr)
	if err != nil {
		return err
	}
	for _, why := range skipped {
		s.opts.logger.Warn("provider: method left out", "why", why)
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	methods := make(map[string]*method, len(*s.methods.Load())+len(found))
	for k, v := range *s.methods.Load() {
		methods[k] = v
	}
	services := make(map[string]bool, len(*s.services.Load())+1)
	for k := range *s.services.Load() {
		services[k] = true
	}
	for k, v := range found {
		svc, _, _ := strings.Cut(k, ".")
		if services[svc] {
			return fmt.Errorf("provider: service %q already registered", svc)
		}
		methods[k] = v
	}
	for k := range found {
		svc, _, _ := strings.Cut(k, ".")
		services[svc] = true
	}
	s.methods.Store(&methods)
	s.services.Store(&services)
	if s.health != nil {
		s.health.registered() // a watched name may now be known
	}
	return nil
}

// ErrListenerInUse is returned by Serve and Start for a listener this server
// is already serving: one listener has one accept loop.
var ErrListenerInUse = errors.New("provider: listener already served by this server")

// Serve accepts connections on ln and serves each on its own goroutine. With
// WithRegistry, the first Serve publishes the instance once it is accepting;
// if that fails after the configured attempts, ln is closed and the error
// returned. Serve returns ErrServerClosed once Shutdown or Close has
// finished, an error wrapping ErrListenerInUse if ln is already being
// served, and any other error the listener returns.
//
// Serve blocks. To continue only once the instance is registered, and serve
// in the background, use Start.
func (s *Server) Serve(ln net.Listener) error {
	ln, err := s.begin(ln)
	if err != nil {
		return err
	}
	defer s.end(ln)
	if err := s.publish(ln); err != nil {
		ln.Close()
		return err
	}
	return s.accept(ln)
}

// Start serves ln in the background, like Serve, and returns once ln is
// accepting and, with WithRegistry, the instance is registered: a consumer
// that looks the service up after Start returns finds it. It returns the
// error Serve would return at that point: an invalid option, the server is
// closed, the registration failed (ln is then closed), or ln is already
// served (ErrListenerInUse; ln keeps being served).
//
// Serving then continues until Shutdown or Close. If the listener fails
// later (someone else closed it), the error is logged and Err returns it.
func (s *Server) Start(ln net.Listener) error {
	ln, err := s.begin(ln)
	if err != nil {
		return err
	}
	if err := s.publish(ln); err != nil {
		s.end(ln)
		ln.Close()
		return err
	}
	s.loops.Go(func() {
		defer s.end(ln)
		if err := s.accept(ln); !errors.Is(err, ErrServerClosed) {
			s.opts.logger.Error("provider: stopped serving a listener", "addr", ln.Addr().String(), "err", err)
			s.mu.Lock()
			if s.loopErr == nil {
				s.loopErr = err
			}
			s.mu.Unlock()
		}
	})
	return nil
}

// Err returns the error that ended serving a listener given to Start, or nil
// while every such listener is served and after a Shutdown or Close. (Serve
// returns the same error to its own caller.)
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loopErr
}

// begin takes ln for serving: it is refused once the server is shutting
// down, or while this server already serves it. It returns the listener
// connections are accepted from (ln, or ln wrapped for TLS).
func (s *Server) begin(ln net.Listener) (net.Listener, error) {
	if ln == nil {
		return nil, errors.New("provider: no listener to serve (nil)")
	}
	if err := errors.Join(s.opts.errs...); err != nil { // invalid options
		ln.Close()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown.Load() {
		ln.Close()
		return nil, ErrServerClosed
	}
	if _, dup := s.served[ln]; dup {
		// Not closed: the loop already serving it keeps going.
		return nil, fmt.Errorf("%w: %s", ErrListenerInUse, ln.Addr())
	}
	outer := ln
	if s.opts.tls != nil {
		ln = tls.NewListener(ln, s.opts.tls)
	}
	s.served[outer] = ln
	s.listeners[ln] = outer
	return ln, nil
}

// end forgets a listener begin took.
func (s *Server) end(ln net.Listener) {
	s.mu.Lock()
	delete(s.served, s.listeners[ln])
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// accept is a listener's accept loop.
func (s *Server) accept(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown.Load() {
				<-s.done
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("provider: accept: %w", err)
			}
			// Out of file descriptors and the like: back off and retry.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.opts.logger.Warn("provider: accept failed; retrying", "err", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-s.done:
			}
			continue
		}
		delay = 0
		c := newConn(s, nc)
		s.trackConn(c)
		go c.serve()
	}
}

// publish registers the instance with the configured registry, once per
// server, retrying a bounded number of times.
func (s *Server) publish(ln net.Listener) error {
	o := &s.opts
	s.mu.Lock()
	if o.registry == nil || s.published {
		s.mu.Unlock()
		return nil
	}
	s.published = true
	s.publishDone = make(chan struct{})
	defer close(s.publishDone)
	s.mu.Unlock()

	in := o.instance
	if in.Service == "" {
		return errors.New("provider: WithRegistry: the instance needs a Service name")
	}
	if in.Addr == "" {
		in.Addr = ln.Addr().Network() + "@" + ln.Addr().String()
	}
	if in.ID == "" {
		in.ID = naming.DefaultID(in.Service, in.Addr)
	}
	var err error
	for attempt := 1; attempt <= o.registerAttempts; attempt++ {
		if s.shuttingDown.Load() {
			return ErrServerClosed
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.registerTimeout)
		var deregister context.CancelFunc
		deregister, err = o.registry.Register(ctx, &in)
		cancel()
		if err == nil {
			s.mu.Lock()
			if s.withdrawn { // Close, or a Shutdown that could not wait, came first
				s.mu.Unlock()
				deregister()
				return ErrServerClosed
			}
			s.deregister, s.registered = deregister, in
			s.mu.Unlock()
			s.opts.logger.Debug("provider: registered", "service", in.Service, "instance", in.ID, "addr", in.Addr)
			return nil
		}
		s.opts.logger.Warn("provider: register failed", "instance", in.ID, "attempt", attempt, "err", err)
		if attempt < o.registerAttempts {
			select {
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			case <-s.done:
				return ErrServerClosed
			}
		}
	}
	attempts := "1 attempt"
	if o.registerAttempts > 1 {
		attempts = fmt.Sprintf("%d attempts", o.registerAttempts)
	}
	return fmt.Errorf("provider: register %s after %s: %w", in.ID, attempts, err)
}

// trackConn adds a new connection, and refuses it if the open connections
// are at WithMaxConns: a refused connection is told to go away (by serve,
// as is one that arrives while shutting down), has what it sends answered
// "overloaded", and is closed refusedGrace after it arrived, whatever its
// peer does. It does not count against the limit.
func (s *Server) trackConn(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	if s.opts.maxConns > 0 && s.open >= s.opts.maxConns {
		c.overLimit = true
		time.AfterFunc(refusedGrace, c.close) // a no-op if the client closed it first
		return
	}
	s.open++
}

// refusedGrace is how long a connection refused by WithMaxConns lives: long
// enough for the requests its client sent before it read the go-away to
// arrive and be answered "overloaded", short enough that refused
// connections hold no goroutine or descriptor for long.
const refusedGrace = time.Second

func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if !c.overLimit {
		s.open--
	}
	gone := len(s.conns) == 0 && s.shuttingDown.Load()
	s.mu.Unlock()
	if gone {
		select {
		case s.connsGone <- struct{}{}:
		default:
		}
	}
}

// connCount returns how many connections are open.
func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// release ends n requests' time in flight (conn.admit counts them).
func (s *Server) release(n int) {
	if s.inFlight.Add(-int64(n)) == 0 && s.shuttingDown.Load() {
		select {
		case s.drained <- struct{}{}:
		default:
		}
	}
}

// maxIdleWorkers bounds the workers kept waiting for requests. A worker
// exists only once that many requests ran at once; the garbage collector
// shrinks an idle worker's stack, so 1024 of them hold a few MiB. Keeping
// them measured 12.3 → 11.6 CPU-µs per call at 1000 callers (against 128).
const maxIdleWorkers = 1024

// worker is a goroutine that runs requests, one at a time.
type worker struct {
	tasks chan task // the next request; closed when the server stops
}

// dispatch runs a request on an idle worker, or on a new one. Workers are
// reused so that a request runs on a stack that has already grown to what
// decoding and calling need; up to maxIdleWorkers wait for the next request,
// and all of them end when the server stops. The most recently idle worker
// is reused first, its stack the likeliest to be warm. Each worker waits
// on its own channel: a plain receive costs less than a select on a shared
// channel and the done channel.
func (s *Server) dispatch(t task) {
	s.idleMu.Lock()
	if n := len(s.idle); n > 0 {
		w := s.idle[n-1]
		s.idle[n-1] = nil
		s.idle = s.idle[:n-1]
		s.idleMu.Unlock()
		w.tasks <- t // buffered: never blocks
		return
	}
	s.idleMu.Unlock()
	go s.work(t)
}

// work runs t, then the requests dispatch hands it while it idles.
func (s *Server) work(t task) {
	w := &worker{tasks: make(chan task, 1)}
	for {
		t.run()
		s.idleMu.Lock()
		if s.workersEnd || len(s.idle) >= maxIdleWorkers {
			s.idleMu.Unlock()
			return
		}
		s.idle = append(s.idle, w)
		s.idleMu.Unlock()
		var ok bool
		if t, ok = <-w.tasks; !ok {
			return
		}
	}
}

// endWorkers ends the idle workers, and each busy one once its request is done.
func (s *Server) endWorkers() {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	s.workersEnd = true
	for _, w := range s.idle {
		close(w.tasks)
	}
	s.idle = nil
}

// Shutdown stops the server gracefully, in this order:
//  1. set the shutdown flag;
//  2. withdraw the instance from the registry, so consumers stop choosing it;
//  3. close the listeners;
//  4. send go-away on every connection: consumers send no new calls on it;
//  5. answer requests that still arrive "shutting down", without running them;
//  6. wait until every request in flight has had its reply flushed, or ctx
//     ends; then give clients the drain grace (WithDrainGrace) to close their
//     connections, still answering late requests as in step 5;
//  7. close the connections and the done channel; Serve returns ErrServerClosed.
//
// It returns ctx's error if ctx ended before the requests in flight finished,
// and an error wrapping ErrServerClosed if Close cut the drain short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shuttingDown.Store(true) // 1; step 5 is admit's refusal
	s.health.shutdown()        // 1: every service NOT_SERVING
	s.withdraw(ctx)            // 2
	s.mu.Lock()
	listeners := make([]net.Listener, 0, len(s.listeners))
	for ln := range s.listeners {
		listeners = append(listeners, ln)
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, ln := range listeners { // 3
		ln.Close()
	}
	// 4: concurrently, so a peer that stopped reading (whose write blocks
	// until the write timeout) delays no one else's go-away; closing the
	// connections in step 7 ends any write still blocked.
	var goAways sync.WaitGroup
	for _, c := range conns {
		goAways.Go(c.goAway)
	}
	defer goAways.Wait()
	err := s.drain(ctx) // 6
	if err != nil {
		s.abortStreams(conns) // streams still open are reset: maybe executed
	}
	s.closeAll() // 7
	if err == nil && s.forced.Load() {
		err = fmt.Errorf("provider: shutdown cut short by Close: %w", ErrServerClosed)
	}
	return err
}

// drain waits for the requests in flight, then for clients to close their
// connections within the drain grace. Only ctx ending is an error.
func (s *Server) drain(ctx context.Context) error {
	for s.inFlight.Load() > 0 {
		select {
		case <-s.drained:
		case <-ctx.Done():
			return fmt.Errorf("provider: shutdown with %d requests in flight: %w", s.inFlight.Load(), ctx.Err())
		}
	}
	grace := time.NewTimer(s.opts.drainGrace)
	defer grace.Stop()
	for s.connCount() > 0 {
		select {
		case <-s.connsGone:
		case <-grace.C:
			return nil
		case <-ctx.Done():
			return nil // every request was answered; only idle connections remain
		}
	}
	return nil
}

// Close stops the server at once: it withdraws the instance, closes the
// listeners and every connection; requests in flight lose their replies.
func (s *Server) Close() error {
	if s.inFlight.Load() > 0 {
		s.forced.Store(true)
	}
	s.shuttingDown.Store(true)
	s.health.shutdown()
	ended, cancel := context.WithCancel(context.Background())
	cancel() // Close does not wait for a registration in progress
	s.withdraw(ended)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.closeAll()
	return nil
}

// Done is closed when the server has stopped, after Shutdown or Close.
func (s *Server) Done() <-chan struct{} { return s.done }

// InFlight reports how many requests have been read and not yet answered.
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }

// withdraw deregisters the instance, once: the registry stops its heartbeat
// first, then removes it. A registration still in progress is waited for
// until ctx ends; if it completes later, it withdraws itself.
func (s *Server) withdraw(ctx context.Context) {
	s.mu.Lock()
	inProgress := s.publishDone
	s.mu.Unlock()
	if inProgress != nil && ctx.Err() == nil {
		select {
		case <-inProgress:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	s.withdrawn = true
	deregister := s.deregister
	s.deregister = nil
	s.mu.Unlock()
	if deregister != nil {
		deregister()
	}
}

// closeAll closes every connection and the done channel.
func (s *Server) closeAll() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	s.endWorkers()
	s.doneOnce.Do(func() { close(s.done) })
	s.loops.Wait() // Start's accept loops see done and return
}
