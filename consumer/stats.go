package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shoalrpc/shoal/stats"
)

// wireSizes counts the bytes a call put on the wire and took off it.
type wireSizes struct{ out, in int }

// callStats is one call's or attempt's stats from begin to end; it is made
// only when stats handlers are installed.
type callStats struct {
	hs   stats.Handlers
	ctx  context.Context
	info stats.RPCInfo
	wire wireSizes
	out  stats.RPCEnd // how it ended: here, not allocated apart
}

// callStatsPool recycles callStats: handlers keep neither RPCInfo nor
// RPCEnd past RPCEnd (package stats), and the call that counted bytes in
// its wireSizes is done with it once the call returns, as its Call is.
var callStatsPool = sync.Pool{New: func() any { return new(callStats) }}

// beginStats starts the stats of a call or an attempt and returns the
// context it proceeds under; nil without handlers.
func beginStats(ctx context.Context, hs stats.Handlers, info stats.RPCInfo) (*callStats, context.Context) {
	if len(hs) == 0 {
		return nil, ctx
	}
	st := callStatsPool.Get().(*callStats)
	st.hs, st.info = hs, info
	st.info.Begin = time.Now()
	st.ctx = hs.RPCBegin(ctx, &st.info)
	return st, st.ctx
}

// sizes is where the call counts its bytes; nil without stats.
func (st *callStats) sizes() *wireSizes {
	if st == nil {
		return nil
	}
	return &st.wire
}

// end reports how the call or attempt ended, and recycles st; callerCtx is the caller's
// context, which tells the caller's deadline from an attempt's own.
func (st *callStats) end(callerCtx context.Context, err error) {
	if st == nil {
		return
	}
	st.out = stats.RPCEnd{
		Err:      err,
		Class:    classOf(callerCtx, err),
		Status:   statusOf(err),
		BytesIn:  st.wire.in,
		BytesOut: st.wire.out,
		Duration: time.Since(st.info.Begin),
	}
	st.hs.RPCEnd(st.ctx, &st.info, &st.out)
	*st = callStats{}
	callStatsPool.Put(st)
}

// classOf is an outcome's class for stats handlers: classify's kinds.
func classOf(ctx context.Context, err error) stats.Class {
	if err == nil {
		return stats.OK
	}
	switch classify(ctx, err) {
	case kindNotExecuted:
		return stats.NotExecuted
	case kindMaybeExecuted:
		return stats.MaybeExecuted
	}
	return stats.Final
}

// statuses names the wire status behind each error a call can return.
var statuses = []struct {
	err    error
	status string
}{
	{ErrUnknownService, "unknown service"},
	{ErrUnknownMethod, "unknown method"},
	{ErrBadRequest, "bad request"},
	{ErrShuttingDown, "shutting down"},
	{ErrInternal, "internal error"},
	{ErrOverloaded, "overloaded"},
	{ErrUnauthenticated, "unauthenticated"},
	{ErrRefused, "refused"},
	{ErrStreamAborted, "aborted"},
}

// statusOf names the outcome of a call as its response's status did, or
// says what kept a response from arriving.
func statusOf(err error) string {
	if err == nil {
		return "ok"
	}
	var se *ServiceError
	if errors.As(err, &se) {
		return "service error"
	}
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled), errors.Is(err, ErrStreamClosed):
		return "canceled" // the caller gave up: its context ended, or it closed its stream
	case errors.Is(err, ErrDial):
		return "dial failed"
	case errors.Is(err, ErrConnClosed), errors.Is(err, ErrClientClosed):
		return "connection closed"
	}
	return "error"
}

// connEvent tells the stats handlers a connection opened or closed.
func (c *Client) connEvent(begin bool, err error) {
	if hs := c.opts.stats; len(hs) > 0 {
		hs.HandleConn(&stats.ConnEvent{Side: stats.Client, Begin: begin, Local: c.nc.LocalAddr().String(), Remote: c.nc.RemoteAddr().String(), Err: err})
	}
}
