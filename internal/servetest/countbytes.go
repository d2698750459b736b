package servetest

import (
	"net"
	"sync/atomic"
)

// CountBytes returns nc counting the bytes it reads into in and those it
// writes into out: what a test measures the wire with (compression, say).
func CountBytes(nc net.Conn, in, out *atomic.Int64) net.Conn {
	return &countingConn{Conn: nc, in: in, out: out}
}

type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
