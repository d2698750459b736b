// Package protocol is shoal's wire format: the frame header, the message body,
// the payload codecs and the limits that keep a hostile peer from making us
// allocate. It does no networking; provider and consumer read and write frames
// with it.
//
// # Frame
//
// Every frame is a fixed 20-byte header followed by a body of BodyLen bytes.
// Integers are big-endian.
//
//	offset  size  field
//	0       1     magic      0xC5
//	1       1     version    1
//	2       1     kind       1 request, 2 response, 3 heartbeat, 4 go-away, 5 cancel,
//	                         6 stream data, 7 stream end, 8 window, 9 reset
//	3       1     flags      bit 0 one-way, bit 1 error, bit 2 reply (heartbeat answer),
//	                         bit 3 compress (the sender compresses large payloads and
//	                         reads compressed ones: a server answers alike), bit 4
//	                         compressed (the payload is s2-compressed), bit 5 stream
//	                         (a request that opens a stream; not with one-way); other
//	                         bits must be zero
//	4       1     codec      payload codec: 1 msgpack, 2 JSON, 3 msgpack with structs
//	                         as arrays (0 = none, for frames
//	                         without a payload)
//	5       1     status     0 OK, 1 service error, 2 unknown service, 3 unknown
//	                         method, 4 bad request, 5 shutting down, 6 internal,
//	                         7 overloaded, 8 unauthenticated, 9 too large,
//	                         10 refused (by a server interceptor), 11 aborted (a
//	                         stream reset while its method ran; maybe executed)
//	6       2     reserved   must be zero
//	8       8     sequence   chosen by the client, echoed in the response
//	16      4     body length
//
// # Body
//
//	uvarint  method length, then the method name ("Service.Method"); 0 in responses
//	uvarint  metadata pair count, then per pair:
//	         uvarint key length, key bytes, uvarint value length, value bytes
//	uvarint  timeout: nanoseconds left of the caller's deadline when the frame was
//	         written, 0 for no deadline (a relative time, so clock skew between
//	         hosts does not move the deadline)
//	rest     payload: the codec-encoded arguments (request) or reply (response);
//	         when the error flag is set, the UTF-8 error message instead
//
// Heartbeat, go-away and cancel frames carry no method, metadata, timeout or
// payload: their body is three zero bytes. A request's sequence number is
// echoed by its response; a heartbeat answer echoes the heartbeat's. A cancel
// frame (client to server) names the sequence number of a request whose
// caller gave up: the server cancels that request's context, and its reply,
// if one is still sent, is ignored.
//
// # Streams
//
// A request with the stream flag opens a stream; its sequence number names
// the stream in every later frame, both ways. Its status byte says the
// shape the caller opens (1 server stream, 2 client stream, 3
// bidirectional); an open of another shape than the method's is refused as
// a bad request. Its payload is the arguments
// of a server stream, and empty (codec 0) for a client or bidirectional
// stream. The server answers it with a response, as a call: an error status
// refuses the stream (the not-executed statuses mean the method did not
// start), status OK without payload accepts it. Then:
//
//	stream data (6)  one message, codec-encoded in the payload, either way
//	stream end (7)   the sender will send no more: from the client a
//	                 half-close (status OK); from the server the stream's
//	                 outcome, its status and, with the error flag, the
//	                 error text; the stream is over once the server's end
//	                 has been received
//	window (8)       the receiver grants the sender more credit: the
//	                 payload is a 4-byte increment, not 0
//	reset (9)        the stream is abandoned at once, either way: from the
//	                 client, the caller gave up (the method's context ends);
//	                 from the server, with its status and text (aborted:
//	                 the server shut down before the method returned)
//
// Stream data, end, window and reset frames carry no method, metadata or
// timeout (those three body fields are zero); end and reset carry text only
// with the error flag.
//
// Flow control is per stream and per direction, in the manner of HTTP/2 and
// yamux: every stream starts with StreamWindow bytes of credit each way, and
// a data frame costs its whole size as it would be uncompressed (header and
// body, FrameCost; a compressed payload counts by the size it declares,
// DataCost and ReceivedCost), so a receiver holds at most a window of
// decompressed messages however well they compress. A sender
// sends a message only while its credit covers it, or, for a message larger
// than its credit, while the credit is within StreamSlack of the whole
// window (everything it sent but that slack was taken). The receiver
// returns credit with window frames as the application takes messages:
// once what was taken reaches StreamSlack and nothing more is queued, or
// half a window in any case, so small messages cost a window frame every
// few messages, not each. A receiver may widen its window of a stream (the
// sender's credit) by granting more once the stream is open: a larger
// window returns credit every quarter of it, the sender's rule for a large
// message is unchanged. A receiver that stops reading holds at most one
// window (or the slack and one message) per stream. A data frame beyond the
// credit its receiver granted, or a window frame raising the credit past
// MaxWindowCredit, ends the connection: the peer is cut, not obeyed. Frames
// for a stream that has ended are ignored.
//
// # Limits
//
// The body length is checked against the reader's limit (DefaultMaxBodySize,
// 8 MiB, unless configured) before a byte of the body is read or allocated; a
// large body is read in growing chunks, so a peer that announces a large frame
// and stalls holds only what it actually sent. A frame over the limit but
// within SkipFactor times it is skippable: Reader discards its body as it
// arrives and reports it as a *TooLargeError carrying its header, so the
// connection's other frames go on (a server answers such a request alone,
// status 9, not executed; a client fails only the call that response
// answered; a stream data frame resets its stream both ways, status 9, so a
// stream never goes on without a message); a header announcing more than
// that ends the connection, as does a skipped frame of any other kind. Every length inside the body is
// checked against the bytes that remain before anything is allocated. A
// msgpack payload is checked the same way before it is decoded (every string,
// binary, extension, array and map length against the bytes that remain,
// nesting at most 256 deep), because the msgpack library sizes its
// allocations from those lengths. A malformed frame is reported as an error wrapping ErrMalformed, ErrTooLarge,
// ErrBadMagic or ErrVersion; it never panics.
//
// # Compression
//
// A frame with the compress flag has its payload (whatever the codec) compressed
// by the writer when it is at least CompressThreshold bytes and compressing
// makes it smaller; the compressed flag then says so. The compressed payload is
// in the s2 block format (github.com/klauspost/compress/s2), which starts with
// the decompressed length: Reader checks that length against its body limit
// before it allocates or decompresses anything, so a frame that would inflate
// past the limit (a compression bomb) is refused like a body over it, as a
// *TooLargeError, and the stream stays in step. Reader hands the payload on
// decompressed, with the compressed flag cleared.
package protocol
