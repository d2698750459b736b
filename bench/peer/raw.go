package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/shoalrpc/shoal/bench/msg"
	"google.golang.org/protobuf/proto"
)

// Raw is the ceiling: no RPC stack at all. The client sends the request's
// 581 protobuf bytes as a frame (4-byte length, 8-byte request id, payload)
// through a tiny multiplexer on one connection; the server echoes every
// frame without decoding it. It shows what one loopback connection carries
// with next to no work per call.
type Raw struct{}

// Name implements Peer.
func (Raw) Name() string { return "raw" }

const (
	rawLen      = 4       // frame length prefix: bytes after it (id + payload)
	rawID       = 8       // request id
	rawMaxFrame = 1 << 20 // largest id + payload the server accepts
	rawBufSize  = 64 << 10
)

// errRawClosed is the error of calls on a closed raw client.
var errRawClosed = errors.New("raw: client closed")

// Serve implements Peer.
func (Raw) Serve(ctx context.Context, ln net.Listener) error {
	return serveConns(ctx, "raw", ln, rawEcho)
}

// rawEcho writes every frame read from nc back to it, unchanged; it
// flushes when no more input is buffered, so replies are batched the way
// requests arrived.
func rawEcho(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, rawBufSize)
	bw := bufio.NewWriterSize(nc, rawBufSize)
	buf := make([]byte, rawLen+4096)
	for {
		if _, err := io.ReadFull(br, buf[:rawLen]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(buf))
		if n < rawID || n > rawMaxFrame {
			return
		}
		if cap(buf) < rawLen+n {
			buf = append(buf[:rawLen], make([]byte, n)...)
		}
		frame := buf[:rawLen+n]
		if _, err := io.ReadFull(br, frame[rawLen:]); err != nil {
			return
		}
		if _, err := bw.Write(frame); err != nil {
			return
		}
		if br.Buffered() == 0 && bw.Flush() != nil {
			return
		}
	}
}

// Dial implements Peer.
func (Raw) Dial(ctx context.Context, addr string) (Client, error) {
	payload, err := proto.Marshal(msg.NewProto())
	if err != nil {
		return nil, fmt.Errorf("raw: encode the request: %w", err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raw: dial %s: %w", addr, err)
	}
	c := &rawClient{
		nc:      nc,
		payload: payload,
		pending: make(map[uint64]chan int),
		kick:    make(chan struct{}, 1),
		dead:    make(chan struct{}),
	}
	go c.writeLoop()
	go c.readLoop()
	return c, nil
}

// rawClient multiplexes calls on one connection: callers append frames to
// out and wake the writer, which writes whatever accumulated in one write;
// the reader hands each echoed frame to the caller waiting for its id.
type rawClient struct {
	nc      net.Conn
	payload []byte
	kick    chan struct{} // wakes the writer; capacity 1
	dead    chan struct{} // closed by fail

	mu      sync.Mutex
	out     []byte
	pending map[uint64]chan int // id → the caller's channel, given the reply's payload length
	nextID  uint64
	err     error
}

func (c *rawClient) NewCaller() func(ctx context.Context) error {
	ch := make(chan int, 1)
	return func(ctx context.Context) error {
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return err
		}
		c.nextID++
		id := c.nextID
		c.pending[id] = ch
		c.out = binary.BigEndian.AppendUint32(c.out, uint32(rawID+len(c.payload)))
		c.out = binary.BigEndian.AppendUint64(c.out, id)
		c.out = append(c.out, c.payload...)
		c.mu.Unlock()
		select {
		case c.kick <- struct{}{}:
		default:
		}
		select {
		case n := <-ch:
			if n != len(c.payload) {
				return ErrBadReply
			}
			return nil
		case <-ctx.Done():
			c.forget(id, ch)
			return ctx.Err()
		case <-c.dead:
			c.forget(id, ch)
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.err
		}
	}
}

// forget drops a call that gave up; if the reader already took it, it
// waits for the reply so the channel is empty for the caller's next call.
func (c *rawClient) forget(id uint64, ch chan int) {
	c.mu.Lock()
	_, waiting := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if !waiting {
		<-ch
	}
}

func (c *rawClient) writeLoop() {
	var buf []byte
	for {
		select {
		case <-c.kick:
		case <-c.dead:
			return
		}
		c.mu.Lock()
		buf, c.out = c.out, buf[:0]
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := c.nc.Write(buf); err != nil {
			c.fail(fmt.Errorf("raw: write: %w", err))
			return
		}
	}
}

func (c *rawClient) readLoop() {
	br := bufio.NewReaderSize(c.nc, rawBufSize)
	var hdr [rawLen + rawID]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.fail(fmt.Errorf("raw: read: %w", err))
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:rawLen]))
		id := binary.BigEndian.Uint64(hdr[rawLen:])
		if n < rawID || n > rawMaxFrame {
			c.fail(fmt.Errorf("raw: read: frame length %d out of range", n))
			return
		}
		if _, err := br.Discard(n - rawID); err != nil {
			c.fail(fmt.Errorf("raw: read: %w", err))
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ok {
			ch <- n - rawID
		}
	}
}

// fail marks the client dead with err (the first error wins) and closes
// the connection; every waiting call returns.
func (c *rawClient) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		close(c.dead)
	}
	c.mu.Unlock()
	c.nc.Close()
}

func (c *rawClient) Close() error {
	c.fail(errRawClosed)
	return nil
}
