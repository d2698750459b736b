package prom

import (
	"context"

	"github.com/shoalrpc/shoal/stats"
)

// ServerHandler returns the stats handler a server reports to: install it
// with provider.WithStatsHandler.
func (m *Metrics) ServerHandler() stats.Handler { return serverHandler{m} }

// ClientHandler returns the stats handler Clients, pools and proxies report
// to: install it with consumer.WithStatsHandler.
func (m *Metrics) ClientHandler() stats.Handler { return clientHandler{m} }

type serverHandler struct{ m *Metrics }

// RPCBegin counts a request in flight.
func (h serverHandler) RPCBegin(ctx context.Context, info *stats.RPCInfo) context.Context {
	if info.Kind == stats.Request {
		h.m.serverInFlight.Inc()
	}
	return ctx
}

// RPCEnd counts a request answered.
func (h serverHandler) RPCEnd(_ context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	if info.Kind != stats.Request {
		return
	}
	h.m.serverInFlight.Dec()
	code := end.Code()
	l := h.m.server.lookup(info.Method, registered(code), h.m.serverSeconds)
	l.counter(&l.handled, h.m.serverHandled, code).Inc()
	l.seconds.Observe(end.Duration.Seconds())
}

// registered says whether a request that ended with code proves its method
// is registered: the method ran (a stream reset while it ran is
// "aborted"), or an interceptor refused it, which the server does only once
// it has found the method. Every other refusal may come before the lookup,
// so its name may be anything a peer sent.
func registered(code string) bool {
	switch code {
	case "ok", "service_error", "internal", "refused", "unauthenticated", "aborted":
		return true
	}
	return false
}

// HandleConn counts server connections.
func (h serverHandler) HandleConn(ev *stats.ConnEvent) {
	if ev.Side != stats.Server {
		return
	}
	if ev.Begin {
		h.m.serverConns.Inc()
	} else {
		h.m.serverConns.Dec()
	}
}

// HandleProxy ignores proxy events: a server has none.
func (serverHandler) HandleProxy(*stats.ProxyEvent) {}

type clientHandler struct{ m *Metrics }

// RPCBegin adds nothing: a call's duration is in its RPCEnd.
func (clientHandler) RPCBegin(ctx context.Context, _ *stats.RPCInfo) context.Context { return ctx }

// RPCEnd counts a call or an attempt. A Client's call (one without a proxy
// service) is its own one attempt, and counts as both.
func (h clientHandler) RPCEnd(_ context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	code := end.Code()
	l := h.m.client.lookup(info.Method, known(code), h.m.clientSeconds)
	switch info.Kind {
	case stats.Call:
		l.counter(&l.handled, h.m.clientHandled, code).Inc()
		l.seconds.Observe(end.Duration.Seconds())
		if info.Service == "" {
			l.counter(&l.attempts, h.m.clientAttempts, code).Inc()
		}
	case stats.Attempt:
		l.counter(&l.attempts, h.m.clientAttempts, code).Inc()
	}
}

// known says whether a call that ended with code may add its method to the
// client's table: not if the server did not know it.
func known(code string) bool {
	switch code {
	case "unknown_service", "unknown_method", "bad_request":
		return false
	}
	return true
}

// HandleConn counts client connections.
func (h clientHandler) HandleConn(ev *stats.ConnEvent) {
	if ev.Side != stats.Client {
		return
	}
	if ev.Begin {
		h.m.clientConns.Inc()
	} else {
		h.m.clientConns.Dec()
	}
}

// HandleProxy follows a proxy's instances, ejections, health checks,
// fallbacks and retry budget.
func (h clientHandler) HandleProxy(ev *stats.ProxyEvent) {
	m := h.m
	switch ev.Kind {
	case stats.InstancesChanged:
		m.proxyInstances.WithLabelValues(ev.Service).Set(float64(ev.Instances))
	case stats.InstanceEjected:
		m.proxyEjections.WithLabelValues(ev.Service).Inc()
	case stats.InstanceReadmitted:
		m.proxyReadmissions.WithLabelValues(ev.Service).Inc()
	case stats.InstanceUnhealthy:
		m.proxyUnhealthy.WithLabelValues(ev.Service).Inc()
	case stats.InstanceHealthy:
		m.proxyHealthy.WithLabelValues(ev.Service).Inc()
	case stats.BudgetExhausted:
		m.proxyBudgetRefusals.WithLabelValues(ev.Service).Inc()
	case stats.FallbackBegin:
		m.proxyFallbacks.WithLabelValues(ev.Service).Inc()
		m.proxyFallback.WithLabelValues(ev.Service).Set(1)
		m.proxyInstances.WithLabelValues(ev.Service).Set(float64(ev.Instances))
	case stats.FallbackEnd:
		m.proxyFallback.WithLabelValues(ev.Service).Set(0)
		m.proxyInstances.WithLabelValues(ev.Service).Set(float64(ev.Instances))
	}
}
