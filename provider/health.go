package provider

import (
	"context"
	"fmt"
	"sync"

	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/reflection"
)

// Health is a server's health, as its built-in health service answers it:
// "ShoalHealth.Check" (see package health) is served by every server unless
// WithoutHealth is given, with "ShoalHealth.Watch", a server stream of the
// same answers, one now and one at every change (see healthService.Watch).
// Check answers for
//
//   - "" — the server as a whole: SERVING until Shutdown or Close, or until
//     SetStatus("", health.NotServing);
//   - every service the server knows: the services registered with Register
//     or RegisterName ("Arith"), the registry's service name of WithRegistry
//     ("arith"), and any name given to SetStatus: SERVING unless SetStatus
//     said otherwise, and NOT_SERVING while the server as a whole is not;
//   - any other name: SERVICE_UNKNOWN.
//
// Shutdown turns every answer to NOT_SERVING first thing (its step 1), and
// the health service keeps answering while the server drains, even though
// every other request is then refused "shutting down": a consumer that
// checks health (consumer.WithHealthCheck) reads why the instance is going.
//
// Its methods are safe for concurrent use.
type Health struct {
	srv *Server

	mu       sync.Mutex
	statuses map[string]health.Status // what SetStatus set
	down     bool                     // Shutdown or Close began: everything is NOT_SERVING
	change   chan struct{}            // closed (and replaced) when any status may have changed: watchers look again
}

func newHealth(s *Server) *Health {
	return &Health{srv: s, statuses: make(map[string]health.Status), change: make(chan struct{})}
}

// changed wakes every watcher to look at its service's status again. The
// caller holds h.mu.
func (h *Health) changed() {
	close(h.change)
	h.change = make(chan struct{})
}

// registered wakes the watchers after a service was registered: a watched
// name may have turned from SERVICE_UNKNOWN to SERVING.
func (h *Health) registered() {
	h.mu.Lock()
	h.changed()
	h.mu.Unlock()
}

// watch returns service's status and a channel closed at its next possible
// change, and whether the status is final (the server is going down).
func (h *Health) watch(service string) (health.Status, <-chan struct{}, bool) {
	h.mu.Lock()
	change, down := h.change, h.down
	h.mu.Unlock()
	// Status after taking the channel: a change in between closes the
	// channel, so it is not missed.
	return h.Status(service), change, down
}

// Health returns the server's health, to set statuses and read them.
func (s *Server) Health() *Health { return s.health }

// WithoutHealth leaves out the built-in health service: a "ShoalHealth.Check"
// is then answered "unknown service", like any name the server does not
// serve (consumer.WithHealthCheck then takes an answer as a heartbeat).
// Server.Health still keeps the statuses, for the process's own use (an
// admin page's /healthz).
func WithoutHealth() Option {
	return func(o *options) { o.noHealth = true }
}

// SetStatus sets service's status to health.Serving or health.NotServing;
// service "" is the server as a whole, and a name the server does not
// serve becomes known to the health service. A NOT_SERVING server answers
// NOT_SERVING for every service, whatever was set for it; set the status of
// "" to take the whole instance out of consumers' picks, and of one service
// to take only the consumers of that service's name away.
//
// Once Shutdown or Close has begun every status is NOT_SERVING for good,
// and SetStatus returns an error wrapping ErrServerClosed; any status other
// than Serving and NotServing is an error too.
func (h *Health) SetStatus(service string, status health.Status) error {
	if status != health.Serving && status != health.NotServing {
		return fmt.Errorf("provider: SetStatus(%q, %v): a status is set to SERVING or NOT_SERVING", service, status)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return fmt.Errorf("provider: SetStatus(%q, %v): the server is shutting down: %w", service, status, ErrServerClosed)
	}
	if old, set := h.statuses[service]; !set || old != status {
		h.statuses[service] = status
		h.changed()
	}
	return nil
}

// Status returns service's status as the health service answers it: see
// Health for what each name answers.
func (h *Health) Status(service string) health.Status {
	h.mu.Lock()
	down := h.down
	whole, wholeSet := h.statuses[""]
	st, set := h.statuses[service]
	h.mu.Unlock()
	known := service == "" || set || h.srv.knowsService(service)
	switch {
	case !known:
		return health.ServiceUnknown
	case down, wholeSet && whole == health.NotServing:
		return health.NotServing
	case set:
		return st
	}
	return health.Serving
}

// shutdown turns every status to NOT_SERVING, for good: Shutdown's and
// Close's first step.
func (h *Health) shutdown() {
	h.mu.Lock()
	if !h.down {
		h.down = true
		h.changed()
	}
	h.mu.Unlock()
}

// knowsService reports whether name is a service this server serves, by
// its registered name or by the registry's service name of WithRegistry.
func (s *Server) knowsService(name string) bool {
	return (*s.services.Load())[name] || (s.opts.registry != nil && name == s.opts.instance.Service)
}

// builtinService reports whether svc is one of the services every server
// serves on its own: the caller did not register it, so it is not listed as
// the caller's (an unknown-service answer, the service table of
// Server.Snapshot marks it).
func builtinService(svc string) bool { return svc == health.Service || svc == reflection.Service }

// answersWhileDraining reports whether a request for method is answered
// while the server shuts down, rather than refused "shutting down": the
// health check is, so that a caller learns the server is NOT_SERVING. It
// counts in flight, as any request does, until its answer is flushed.
func (s *Server) answersWhileDraining(method string) bool {
	return method == health.CheckMethod && !s.opts.noHealth
}

// healthService is the built-in health service, registered as
// health.Service ("ShoalHealth").
type healthService struct{ h *Health }

// Check answers req.Service's status.
func (hs healthService) Check(_ context.Context, req *health.CheckRequest, resp *health.CheckResponse) error {
	resp.Status = hs.h.Status(req.Service)
	return nil
}

// Watch sends req.Service's status now, then again at every change of it
// (SetStatus, a Register that makes the name known, Shutdown or Close); an
// unknown service is answered SERVICE_UNKNOWN and watched on, as it may
// appear later.
//
// A watch is not work that Shutdown waits for: once the server goes down it
// sends NOT_SERVING, the last status there will be, and ends the stream
// cleanly, so that Shutdown's drain does not wait for watchers (and a
// watcher learns why the stream ended before the connection goes).
func (hs healthService) Watch(ctx context.Context, req *health.CheckRequest, s *ServerStream[health.CheckResponse]) error {
	sent := health.Unknown // no status has the zero value: the first is always sent
	for {
		st, change, final := hs.h.watch(req.Service)
		if st != sent {
			if err := s.Send(&health.CheckResponse{Status: st}); err != nil {
				return err
			}
			sent = st
		}
		if final {
			return nil
		}
		select {
		case <-change:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
