package protocol

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Stream flow control; see the package documentation.
const (
	// StreamWindow is every stream's receive window, each way, in bytes of
	// stream data frames (header and body): the most a sender may have sent
	// on a stream that its receiver has not yet handed to the application.
	StreamWindow = 64 << 10

	// StreamSlack is the credit a receiver may keep back: it returns what
	// the application took once that reaches StreamSlack and nothing more
	// is queued (or half a window in any case), so a stream exchanging
	// small messages sends a window frame every few messages rather than
	// every one. In exchange a sender whose credit is within StreamSlack
	// of the whole window may send a message larger than its credit: the
	// receiver holds at most StreamSlack besides it.
	StreamSlack = StreamWindow / 4

	// MaxWindowCredit is the most credit a sender may hold: a window frame
	// that would raise it above is a protocol error.
	MaxWindowCredit = 1<<31 - 1

	windowBodySize = 3 + 4 // no method, metadata or timeout; a 4-byte increment
)

// StreamShape is the kind of stream a caller opens, carried in the status
// byte of the request that opens it (a request's status is otherwise 0): the
// server refuses an open whose shape is not its method's, as a bad request.
type StreamShape uint8

// Stream shapes.
const (
	ServerStream StreamShape = 1 // one message of arguments, a stream of replies
	ClientStream StreamShape = 2 // a stream of arguments, one reply
	BidiStream   StreamShape = 3 // a stream each way
)

// dataFieldsSize is the size of a stream data frame's body fields (no
// method, metadata or timeout), which come before its payload.
const dataFieldsSize = 3

// DataCost is what a stream data frame counts against its stream's window,
// as its sender reckons it from the frame it made: its whole size as it
// would be uncompressed (a compressed payload counts by the size it
// declares), so that the receiver, which queues decompressed messages,
// holds at most a window of them however well they compress. For an
// uncompressed frame it is len(frame).
func DataCost(frame []byte) int64 {
	if len(frame) > HeaderSize+dataFieldsSize && Flags(frame[3])&FlagCompressed != 0 {
		if n, err := s2.DecodedLen(frame[HeaderSize+dataFieldsSize:]); err == nil {
			return HeaderSize + dataFieldsSize + int64(n)
		}
	}
	return int64(len(frame))
}

// ReceivedCost is what a received stream data frame counts against its
// stream's window: DataCost as its receiver reckons it from the decoded
// message (payload decompressed), and never less than the frame's size.
func ReceivedCost(m *Message) int64 {
	return max(FrameCost(m.BodyLen), HeaderSize+dataFieldsSize+int64(len(m.Payload)))
}

// FrameCost is what a stream data frame of bodyLen body bytes counts against
// its stream's window: the whole frame, so that many empty messages cost
// their headers, and what a receiver queues is bounded by the window.
func FrameCost(bodyLen uint32) int64 { return HeaderSize + int64(bodyLen) }

// AppendWindow appends a window frame granting stream seq increment more
// bytes of credit (increment > 0).
func AppendWindow(dst []byte, seq uint64, increment uint32) []byte {
	dst = appendHeader(dst, &Header{Kind: KindWindow, Seq: seq, BodyLen: windowBodySize})
	dst = append(dst, 0, 0, 0)
	return binary.BigEndian.AppendUint32(dst, increment)
}

// WindowIncrement returns the credit a decoded window frame grants.
func WindowIncrement(m *Message) uint32 {
	return binary.BigEndian.Uint32(m.Payload)
}

// checkStreamFrame checks what ParseBody decoded of a stream frame: stream
// frames carry no method, metadata or timeout; a window frame carries an
// increment of 4 bytes, not zero, and no codec; end and reset frames carry
// text only with the error flag.
func checkStreamFrame(m *Message) error {
	if m.Method != "" || m.Metadata != nil || m.Timeout != 0 {
		return fmt.Errorf("%w: %s frame with a method, metadata or timeout", ErrMalformed, m.Kind)
	}
	switch m.Kind {
	case KindWindow:
		if len(m.Payload) != 4 || m.Codec != CodecNone || m.Flags != 0 || m.Status != StatusOK {
			return fmt.Errorf("%w: window frame with a payload of %d bytes, codec %d, flags 0x%02x, status %d", ErrMalformed, len(m.Payload), m.Codec, m.Flags, m.Status)
		}
		if WindowIncrement(m) == 0 {
			return fmt.Errorf("%w: window frame granting 0 bytes", ErrMalformed)
		}
	case KindStreamEnd, KindReset:
		if m.Flags&FlagError == 0 && len(m.Payload) > 0 {
			return fmt.Errorf("%w: %s frame with %d payload bytes and no error flag", ErrMalformed, m.Kind, len(m.Payload))
		}
	}
	return nil
}
