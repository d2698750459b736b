package provider

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/reflection"
)

// HTTP/JSON on the RPC port.
//
// A connection whose first byte is not shoal's frame magic but the first
// letter of an HTTP method is served as HTTP/1.x, on the same listener:
//
//	POST /Service.Method   the body is the args as JSON (empty: zero args); the
//	                       answer is the reply as JSON (encoding/json, as the
//	                       JSON codec writes it)
//	GET /                  ShoalReflection.List: what the server serves
//	CONNECT /_shoal_       the binary protocol through HTTP (consumer http@ addresses)
//
// Every HTTP call takes the path of a binary one: it counts in flight on the
// server and on its connection (WithMaxConcurrent; WithMaxConns counts the
// HTTP connection), is refused "shutting down" once Shutdown has begun,
// passes WithAuth and the interceptors, and is seen by the stats handlers
// (codec "json"). The body limit (WithMaxBodySize) is checked against
// Content-Length before a byte of the body is read, and enforced while
// reading one without; WithTimeouts and WithIdleTimeout bound the HTTP
// connection's reads, writes and keep-alive wait.
//
// Request headers:
//
//	Shoal-Meta-<Key>: v   metadata key "<key>" (lowercased: HTTP header names have no case)
//	Authorization: v      metadata key "authorization"
//	Shoal-Timeout: 2s     the call's deadline (a Go duration); ?timeout=2s in the URL does the same
//
// The answer to a failed call is a JSON object {"status":..., "error":...}
// with shoal's status name and the message a binary caller would read, and
// an HTTP status given by HTTPStatus.
const (
	// HTTPMetaPrefix is the prefix of request headers carried as metadata.
	HTTPMetaPrefix = "Shoal-Meta-"
	// HTTPTimeoutHeader carries a call's deadline as a Go duration ("2s").
	HTTPTimeoutHeader = "Shoal-Timeout"
	// HTTPConnectPath is the path a CONNECT request names to run shoal's
	// binary protocol through HTTP.
	HTTPConnectPath = "/_shoal_"
	// HTTPConnected is the status line a provider answers CONNECT with.
	HTTPConnected = "200 Connected to shoal"
)

// StatusDeadlineExceeded is the status name, in an HTTP error body, of a call
// whose deadline (Shoal-Timeout) passed before its method returned.
const StatusDeadlineExceeded = "deadline_exceeded"

// WithoutHTTP turns off HTTP on the server's listeners: every connection is
// read as shoal's binary protocol, as before HTTP was recognised. (The
// handler of HTTPHandler still works.)
func WithoutHTTP() Option {
	return func(o *options) { o.noHTTP = true }
}

// HTTPStatus is the HTTP status of an answer with shoal status st:
//
//	ok               200 OK
//	bad request      400 Bad Request (malformed JSON, a field of the wrong type, a bad timeout)
//	unauthenticated  401 Unauthorized (WithAuth refused the credentials)
//	refused          403 Forbidden (an interceptor refused the call)
//	unknown service  404 Not Found
//	unknown method   404 Not Found
//	too large        413 Content Too Large (the body is over WithMaxBodySize; not read)
//	service error    422 Unprocessable Content (the method returned an error: it ran;
//	                 a 4xx, so HTTP clients and proxies do not retry it)
//	overloaded       429 Too Many Requests, with Retry-After (a limit; not executed)
//	internal error   500 Internal Server Error (a panic, a reply that cannot be encoded)
//	shutting down    503 Service Unavailable, with Retry-After (not executed)
//
// A call whose deadline passed is answered 504 Gateway Timeout with status
// "deadline_exceeded".
func HTTPStatus(st protocol.Status) int {
	switch st {
	case protocol.StatusOK:
		return http.StatusOK
	case protocol.StatusBadRequest:
		return http.StatusBadRequest
	case protocol.StatusUnauthenticated:
		return http.StatusUnauthorized
	case protocol.StatusRefused:
		return http.StatusForbidden
	case protocol.StatusUnknownService, protocol.StatusUnknownMethod:
		return http.StatusNotFound
	case protocol.StatusTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.StatusServiceError:
		return http.StatusUnprocessableEntity
	case protocol.StatusOverloaded:
		return http.StatusTooManyRequests
	case protocol.StatusShuttingDown:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// HTTPStatusName is the name of st in an HTTP error body: its String with
// underscores, e.g. "unknown_method".
func HTTPStatusName(st protocol.Status) string {
	return strings.ReplaceAll(st.String(), " ", "_")
}

// HTTPError is the JSON body of a failed HTTP call.
type HTTPError struct {
	Status string `json:"status"` // shoal's status name, e.g. "unknown_method"
	Error  string `json:"error"`  // what went wrong, as a binary caller reads it
}

// HTTPHandler returns an http.Handler that serves HTTP/JSON calls, the
// listing at "/" and CONNECT /_shoal_, as the server does on its own
// listeners, for a program that mounts it in its own http.Server (under a
// prefix with http.StripPrefix). Calls through it follow the same rules
// (interceptors, auth, limits, in flight, Shutdown), each request counted
// as a connection of its own for WithMaxConcurrent's per-connection limit.
// Interceptors see the request's RemoteAddr as the peer, and no TLS state.
// The read and write timeouts are the hosting server's.
func (s *Server) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			s.connectHijacked(w, r)
			return
		}
		c := &conn{srv: s, nc: remoteConn{addr: httpAddr(r.RemoteAddr)}}
		if len(s.opts.stats) > 0 {
			c.remote = r.RemoteAddr
		}
		c.serveHTTPRequest(w, r)
	})
}

// httpAddr is an HTTP request's RemoteAddr as a net.Addr.
type httpAddr string

func (a httpAddr) Network() string { return "tcp" }
func (a httpAddr) String() string  { return string(a) }

// remoteConn stands for the connection of a request HTTPHandler serves: it
// answers only for its remote address (PeerOf, RequestInfo.Peer, stats).
type remoteConn struct {
	net.Conn // nil: nothing else may be called
	addr     net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.addr }
func (c remoteConn) LocalAddr() net.Addr  { return c.addr }

// isHTTPStart says whether b can begin an HTTP/1.x request line: the first
// letter of GET, POST, PUT, HEAD, DELETE, OPTIONS, PATCH, CONNECT or TRACE.
// shoal's frame magic is not among them.
func isHTTPStart(b byte) bool {
	return strings.IndexByte("GPHDOCT", b) >= 0
}

// httpConn is the connection of a conn being sniffed or served as HTTP;
// conn.goAway hands Shutdown's go-away to it.
type httpConn struct {
	c   *conn
	mu  sync.Mutex
	srv *http.Server // nil until the connection is known to be HTTP
	off bool         // goAway came: keep-alives off
}

// goAway stops the HTTP connection's keep-alive: an idle connection is
// closed now, a busy one once its answer is written.
func (h *httpConn) goAway() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.off = true
	if h.srv != nil {
		h.srv.SetKeepAlivesEnabled(false)
	}
}

// sniff reads the connection's first byte and serves the connection as
// HTTP if it begins an HTTP request. It returns what the binary protocol
// reads from: the connection from its first byte, or, after an HTTP CONNECT,
// what follows it; nil when the connection was served as HTTP, or closed.
func (c *conn) sniff() io.Reader {
	h := &httpConn{c: c}
	c.http.Store(h) // from here Shutdown's go-away goes to h (serve sends it once binary)
	if t := c.srv.opts.idleTimeout; t > 0 {
		c.nc.SetReadDeadline(time.Now().Add(t))
	}
	var first [1]byte
	if _, err := io.ReadFull(c.nc, first[:]); err != nil {
		c.http.Store(nil)
		return nil // closed or idle before a byte: nothing to answer
	}
	c.nc.SetReadDeadline(time.Time{})
	in := io.MultiReader(bytes.NewReader(first[:]), c.nc)
	if !isHTTPStart(first[0]) { // shoal's magic, or garbage the frame reader rejects
		c.http.Store(nil)
		return in
	}
	return h.serve(in)
}

// serve serves the connection as HTTP until it ends, and returns nil, or
// the reader of the binary protocol after a CONNECT.
func (h *httpConn) serve(in io.Reader) io.Reader {
	c, s := h.c, h.c.srv
	hc := &sniffedConn{Conn: c.nc, in: in, done: make(chan struct{})}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodConnect {
				hc.connect(w, r)
				return
			}
			c.serveHTTPRequest(w, r)
		}),
		ReadTimeout:  s.opts.readTimeout,
		WriteTimeout: s.opts.writeTimeout,
		IdleTimeout:  s.opts.idleTimeout,
		ErrorLog:     slog.NewLogLogger(s.opts.logger.Handler(), slog.LevelDebug),
	}
	if s.opts.idleTimeout == 0 {
		srv.IdleTimeout = -1 // never, as for binary connections (http.Server reads 0 as ReadTimeout)
	}
	h.mu.Lock()
	h.srv = srv
	if h.off || s.shuttingDown.Load() {
		srv.SetKeepAlivesEnabled(false)
	}
	h.mu.Unlock()
	srv.Serve(&oneConnListener{conn: hc, done: hc.done})
	if hc.hijacked == nil {
		return nil
	}
	// The connection is the binary protocol's from here: Shutdown's go-away
	// is a frame again. serve sends it if Shutdown began in between.
	c.http.Store(nil)
	c.nc.SetDeadline(time.Time{})
	return hc.hijacked
}

// sniffedConn is an HTTP connection served by a one-connection
// http.Server: it reads from the sniffed reader, and says when the server
// is done with it (closed, or hijacked by CONNECT).
type sniffedConn struct {
	net.Conn
	in       io.Reader
	once     sync.Once
	done     chan struct{}
	hijacked io.Reader // after CONNECT: the binary protocol's reader
}

func (hc *sniffedConn) Read(p []byte) (int, error) { return hc.in.Read(p) }

func (hc *sniffedConn) Close() error {
	hc.once.Do(func() { close(hc.done) })
	return hc.Conn.Close()
}

// connect answers CONNECT /_shoal_ and hands the connection back to the
// binary protocol.
func (hc *sniffedConn) connect(w http.ResponseWriter, r *http.Request) {
	_, rw, ok := connectAnswer(w, r)
	if !ok {
		return
	}
	hc.hijacked = io.MultiReader(bufferedOf(rw.Reader), hc.in)
	hc.once.Do(func() { close(hc.done) })
}

// connectAnswer checks a CONNECT request, hijacks its connection and says
// it is connected; ok false: the request was answered with an error.
func connectAnswer(w http.ResponseWriter, r *http.Request) (net.Conn, *bufio.ReadWriter, bool) {
	if r.URL.Path != HTTPConnectPath && r.RequestURI != HTTPConnectPath {
		writeHTTPError(w, http.StatusNotFound, protocol.StatusUnknownService, "CONNECT "+r.RequestURI+": this server tunnels only "+HTTPConnectPath)
		return nil, nil, false
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeHTTPError(w, http.StatusInternalServerError, protocol.StatusInternal, "CONNECT: the HTTP server cannot hand the connection over")
		return nil, nil, false
	}
	nc, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	nc.SetDeadline(time.Time{})
	proto := "HTTP/1.0"
	if r.ProtoAtLeast(1, 1) {
		proto = "HTTP/1.1"
	}
	rw.WriteString(proto + " " + HTTPConnected + "\r\n\r\n")
	if err := rw.Flush(); err != nil {
		nc.Close()
		return nil, nil, false
	}
	return nc, rw, true
}

// bufferedOf returns what br holds already, without reading more.
func bufferedOf(br *bufio.Reader) io.Reader {
	b, _ := br.Peek(br.Buffered())
	return bytes.NewReader(bytes.Clone(b))
}

// connectHijacked is CONNECT through HTTPHandler: the hijacked connection is
// served as one of the server's own, on the handler's goroutine.
func (s *Server) connectHijacked(w http.ResponseWriter, r *http.Request) {
	if s.shuttingDown.Load() {
		writeHTTPError(w, http.StatusServiceUnavailable, protocol.StatusShuttingDown, "the server is shutting down; not connected")
		return
	}
	nc, rw, ok := connectAnswer(w, r)
	if !ok {
		return
	}
	c := newConn(s, &readerConn{Conn: nc, in: io.MultiReader(bufferedOf(rw.Reader), nc)})
	s.trackConn(c)
	c.serve()
}

// readerConn is a connection whose reads come from in.
type readerConn struct {
	net.Conn
	in io.Reader
}

func (rc *readerConn) Read(p []byte) (int, error) { return rc.in.Read(p) }

// oneConnListener gives an http.Server one connection, then blocks Accept
// until that connection is done.
type oneConnListener struct {
	conn  net.Conn
	taken bool
	done  chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// writeHTTPError answers with code and an HTTPError body.
func writeHTTPError(w http.ResponseWriter, code int, st protocol.Status, msg string) {
	writeHTTPErrorName(w, code, HTTPStatusName(st), msg)
}

func writeHTTPErrorName(w http.ResponseWriter, code int, name, msg string) {
	body, _ := json.Marshal(HTTPError{Status: name, Error: msg})
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	w.Write(body)
}

// serveHTTPRequest serves one HTTP request on c as a call.
func (c *conn) serveHTTPRequest(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodGet && name == "":
		name = reflection.ListMethod
	case r.Method == http.MethodPost:
	default:
		w.Header().Set("Allow", "POST")
		writeHTTPError(w, http.StatusMethodNotAllowed, protocol.StatusBadRequest,
			r.Method+" "+r.URL.Path+": call a method with POST /Service.Method and its args as a JSON body (GET / lists the methods)")
		return
	}
	s := c.srv
	md := HTTPMetadata(r.Header)
	limit := bodyLimit(s.opts.maxBody)
	m := &protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Codec: protocol.CodecJSON}, Method: name, Metadata: md}
	if r.ContentLength > 0 {
		m.BodyLen = uint32(min(r.ContentLength, 1<<32-1))
	}
	st := c.beginRequest(m)
	// Counted in flight from here until the answer is flushed to the
	// connection, like a frame from its read to its reply's flush: Shutdown
	// may close the connection as soon as nothing is in flight.
	status := c.admit()
	defer func() {
		http.NewResponseController(w).Flush()
		c.release(1)
	}()
	refuse := func(code int, status protocol.Status, msg string) {
		writeHTTPError(w, code, status, msg)
		if st != nil {
			st.begin(s.opts.stats, newRequestContext(time.Time{}, md, c))
			st.end(s.opts.stats, status, errors.New(msg), 0)
		}
	}
	if status != protocol.StatusOK && (status != protocol.StatusShuttingDown || !s.answersWhileDraining(name)) {
		refuse(HTTPStatus(status), status, name+" not executed")
		return
	}
	if s.shuttingDown.Load() {
		w.Header().Set("Connection", "close")
	}
	mt, status := s.lookup(name)
	switch {
	case status == protocol.StatusBadRequest:
		refuse(http.StatusNotFound, status, "method "+strconv.Quote(name)+" is not of the form Service.Method: POST /Service.Method (GET / lists the methods)")
		return
	case status != protocol.StatusOK:
		refuse(HTTPStatus(status), status, s.unknownMessage(name, status))
		return
	}
	if mt.streamType != nil {
		refuse(http.StatusBadRequest, protocol.StatusBadRequest, name+" is a "+string(mt.callKind)+" method, which HTTP/JSON does not serve; not executed")
		return
	}
	if r.ContentLength > int64(limit) {
		refuse(http.StatusRequestEntityTooLarge, protocol.StatusTooLarge,
			fmt.Sprintf("request body of %d bytes is over the server's limit of %d bytes; not executed", r.ContentLength, limit))
		return
	}
	timeout, err := httpTimeout(r)
	if err != nil {
		refuse(http.StatusBadRequest, protocol.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			w.Header().Set("Connection", "close") // the rest of the body is not read
			refuse(http.StatusRequestEntityTooLarge, protocol.StatusTooLarge,
				fmt.Sprintf("request body is over the server's limit of %d bytes; not executed", limit))
			return
		}
		refuse(http.StatusBadRequest, protocol.StatusBadRequest, "read the body of "+name+": "+err.Error())
		return
	}
	ptr, arg := mt.newArg()
	if err := decodeJSONArgs(body, ptr); err != nil {
		refuse(http.StatusBadRequest, protocol.StatusBadRequest, "decode "+name+" args: "+err.Error())
		return
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	rc := newRequestContext(deadline, md, c)
	stop := context.AfterFunc(r.Context(), rc.cancel) // the client went away
	defer stop()
	t := task{c: c, ctx: rc, mt: mt, argPtr: ptr, arg: arg, codec: protocol.JSON, stats: st}
	c.runHTTP(&t, w)
}

// runHTTP runs an HTTP call's method as task.run runs a binary one, and
// writes its answer.
func (c *conn) runHTTP(t *task, w http.ResponseWriter) {
	s := c.srv
	var ctx context.Context = t.ctx
	if t.stats != nil {
		ctx = t.stats.begin(s.opts.stats, ctx)
	}
	var (
		reply any
		err   error
		ran   = true
	)
	if ic := s.intercept; ic != nil {
		reply, err, ran = t.intercepted(ctx, ic)
	} else {
		rv := t.mt.newReply()
		err = t.mt.call(ctx, t.arg, rv)
		reply = rv.Interface()
	}
	late := t.ctx.Err() == context.DeadlineExceeded
	t.ctx.cancel()
	status, name, code, msg := protocol.StatusOK, "", http.StatusOK, ""
	var body []byte
	switch {
	case !ran && err != nil:
		status = refusalStatus(err)
		code, msg = HTTPStatus(status), err.Error()
	case err != nil && isPanic(err):
		s.opts.logger.Error("provider: method panicked", "method", t.mt.name, "remote", c.nc.RemoteAddr(), "err", err, "stack", string(panicStack(err)))
		status, msg = protocol.StatusInternal, err.Error()
		code = HTTPStatus(status)
	case err != nil && late && errors.Is(err, context.DeadlineExceeded):
		status, msg = protocol.StatusServiceError, err.Error()
		code, name = http.StatusGatewayTimeout, StatusDeadlineExceeded
	case err != nil:
		status, msg = protocol.StatusServiceError, err.Error()
		code = HTTPStatus(status)
	default:
		body, err = json.Marshal(reply)
		if err == nil && len(body) > bodyLimit(s.opts.maxBody) {
			err = fmt.Errorf("reply of %d bytes is over the server's limit of %d bytes", len(body), bodyLimit(s.opts.maxBody))
		}
		if err != nil {
			status, msg = protocol.StatusInternal, "encode reply: "+err.Error()
			code = HTTPStatus(status)
			body = nil
		}
	}
	sent := 0
	if code == http.StatusOK {
		body = append(body, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(code)
		sent, _ = w.Write(body)
	} else {
		if name == "" {
			name = HTTPStatusName(status)
		}
		writeHTTPErrorName(w, code, name, msg)
	}
	if t.stats != nil {
		t.stats.end(s.opts.stats, status, err, sent)
	}
}

// decodeJSONArgs decodes an HTTP call's body into ptr: an empty body is the
// zero args; a field the args type does not have is an error (a typo would
// otherwise pass unnoticed), as is anything after the JSON value.
func decodeJSONArgs(body []byte, ptr any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(ptr); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return fmt.Errorf("%w (at byte %d of the body)", err, syntax.Offset)
		}
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value in the body")
	}
	return nil
}

// HTTPMetadata returns the metadata carried by h's HTTPMetaPrefix headers
// (the prefix matched in any case), keys lower-cased, and the Authorization
// header as "authorization" (for WithAuth), or nil when there is none. A
// header given more than once keeps its first value. The provider's HTTP
// side and the gateway read metadata with it.
func HTTPMetadata(h http.Header) map[string]string {
	var md map[string]string
	for k, vs := range h {
		key := ""
		switch {
		case len(k) > len(HTTPMetaPrefix) && strings.EqualFold(k[:len(HTTPMetaPrefix)], HTTPMetaPrefix):
			key = k[len(HTTPMetaPrefix):]
		case strings.EqualFold(k, "Authorization"):
			key = k
		}
		if key == "" || len(vs) == 0 {
			continue
		}
		if md == nil {
			md = make(map[string]string)
		}
		md[strings.ToLower(key)] = vs[0]
	}
	return md
}

// httpTimeout reads a request's timeout: the Shoal-Timeout header, or the
// timeout query parameter; 0 for none.
func httpTimeout(r *http.Request) (time.Duration, error) {
	v, from := r.Header.Get(HTTPTimeoutHeader), HTTPTimeoutHeader+" header"
	if v == "" {
		v, from = r.URL.Query().Get("timeout"), "timeout parameter"
	}
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive Go duration such as 2s or 500ms", from, v)
	}
	return d, nil
}
