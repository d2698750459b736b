package consumer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// httpConnectPath is the path of the CONNECT request that opens shoal's
// binary protocol through HTTP; provider.HTTPConnectPath answers it.
const httpConnectPath = "/_shoal_"

// maxConnectAnswer bounds the HTTP answer to a CONNECT: a server that sends
// more before its blank line is not a shoal provider.
const maxConnectAnswer = 8 << 10

// httpConnect asks the server at the other end of nc, with an HTTP CONNECT,
// to run shoal's binary protocol on the connection (an http@ address), as
// GeeRPC and net/rpc's DialHTTP do. It reads the answer a byte at a time,
// up to its blank line, so that no frame the server sends after it is left
// in a buffer: the connection is then used as it is.
func httpConnect(ctx context.Context, nc net.Conn, host string) error {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
		defer nc.SetDeadline(time.Time{})
	}
	req := "CONNECT " + httpConnectPath + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return fmt.Errorf("HTTP CONNECT: %w", err)
	}
	var head []byte
	var b [1]byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) && !bytes.HasSuffix(head, []byte("\n\n")) {
		if len(head) >= maxConnectAnswer {
			return fmt.Errorf("HTTP CONNECT: no end to the server's answer in %d bytes: not a shoal provider", maxConnectAnswer)
		}
		if _, err := nc.Read(b[:]); err != nil {
			if errors.Is(err, io.EOF) && len(head) == 0 {
				return fmt.Errorf("HTTP CONNECT: the server closed the connection without an answer: %w", err)
			}
			return fmt.Errorf("HTTP CONNECT: %w", err)
		}
		head = append(head, b[0])
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("HTTP CONNECT: the server's answer is not HTTP (%q): %w", firstLine(head), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP CONNECT %s: the server answered %q", httpConnectPath, resp.Status)
	}
	return nil
}

// firstLine is head's first line, for an error.
func firstLine(head []byte) string {
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i]
	}
	return string(bytes.TrimSpace(head))
}
