package provider

import (
	"context"
	"sync"
	"time"

	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/stats"
)

// requestStats carries one request's stats from its frame to its reply. It
// exists only when stats handlers are installed.
type requestStats struct {
	ctx  context.Context // what RPCBegin returned
	info stats.RPCInfo
	md   map[string]string
	in   int          // bytes of the request's frame
	out  stats.RPCEnd // how it ended: here, not allocated apart
}

// requestStatsPool recycles requestStats: handlers keep neither RPCInfo
// nor RPCEnd past RPCEnd (package stats), and end is a request's last use
// of its stats.
var requestStatsPool = sync.Pool{New: func() any { return new(requestStats) }}

// beginRequest starts a request's stats, or returns nil without handlers.
// RPCBegin itself runs in begin, once the request's context exists.
func (c *conn) beginRequest(m *protocol.Message) *requestStats {
	if len(c.srv.opts.stats) == 0 {
		return nil
	}
	st := requestStatsPool.Get().(*requestStats)
	st.info = stats.RPCInfo{Kind: stats.Request, Method: m.Method, Addr: c.remote, Begin: time.Now()}
	st.md = m.Metadata
	st.in = protocol.HeaderSize + int(m.BodyLen)
	if codec, err := protocol.CodecByID(m.Codec); err == nil {
		st.info.Codec = codec.Name()
	}
	return st
}

// begin calls the handlers' RPCBegin with the request's context and returns
// the context the method runs under.
func (st *requestStats) begin(hs stats.Handlers, ctx context.Context) context.Context {
	st.ctx = hs.RPCBegin(ctx, &st.info)
	return st.ctx
}

// end calls the handlers' RPCEnd, and recycles st: the request was answered
// with status (err is the method's error or the refusal), in a frame of sent
// bytes.
func (st *requestStats) end(hs stats.Handlers, status protocol.Status, err error, sent int) {
	st.out = stats.RPCEnd{
		Err:      err,
		Class:    classOf(status),
		Status:   status.String(),
		BytesIn:  st.in,
		BytesOut: sent,
		Duration: time.Since(st.info.Begin),
	}
	hs.RPCEnd(st.ctx, &st.info, &st.out)
	*st = requestStats{}
	requestStatsPool.Put(st)
}

// classOf says what a response status tells the caller about whether the
// method ran.
func classOf(s protocol.Status) stats.Class {
	switch s {
	case protocol.StatusOK:
		return stats.OK
	case protocol.StatusServiceError, protocol.StatusInternal:
		return stats.Final
	case protocol.StatusAborted:
		return stats.MaybeExecuted
	}
	return stats.NotExecuted
}

// connEvent tells the stats handlers a connection opened or closed.
func (c *conn) connEvent(begin bool, err error) {
	if hs := c.srv.opts.stats; len(hs) > 0 {
		hs.HandleConn(&stats.ConnEvent{Side: stats.Server, Begin: begin, Local: c.nc.LocalAddr().String(), Remote: c.nc.RemoteAddr().String(), Err: err})
	}
}
