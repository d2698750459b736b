// Package msg holds the benchmark's workload: rpcx-benchmark's 40-field
// BenchmarkMessage as one Go struct (used by shoal, rpcx and net/rpc alike)
// and as the generated protobuf type in package pb (used by gRPC).
package msg

import "github.com/shoalrpc/shoal/bench/msg/pb"

// Text is the value of every string field of the request.
const Text = "许多往事在眼前一幕一幕，变的那麼模糊"

// Int is the value of every integer field of the request.
const Int = 100000

// BenchmarkMessage is rpcx-benchmark's message, field for field in the
// order of its benchmark.proto. The same struct is the payload of every
// msgpack and gob peer. The msgpack "as_array" option encodes it as an array
// of its 40 values instead of a map keyed by field name; it applies to both
// msgpack peers (shoal and rpcx use the same msgpack library), and gob
// ignores it.
type BenchmarkMessage struct {
	//lint:ignore U1000 read by msgpack through reflection: encode as an array
	_msgpack struct{} `msgpack:",as_array"`

	Field1   string
	Field9   string
	Field18  string
	Field80  bool
	Field81  bool
	Field2   int32
	Field3   int32
	Field280 int32
	Field6   int32
	Field22  int64
	Field4   string
	Field5   []uint64
	Field59  bool
	Field7   string
	Field16  int32
	Field130 int32
	Field12  bool
	Field17  bool
	Field13  bool
	Field14  bool
	Field104 int32
	Field100 int32
	Field101 int32
	Field102 string
	Field103 string
	Field29  int32
	Field30  bool
	Field60  int32
	Field271 int32
	Field272 int32
	Field150 int32
	Field23  int32
	Field24  bool
	Field25  int32
	Field78  bool
	Field67  int32
	Field68  int32
	Field128 int32
	Field129 string
	Field131 int32
}

// New returns the benchmark's request: every string Text, every integer
// Int, every bool true, Field5 empty.
func New() *BenchmarkMessage {
	return &BenchmarkMessage{
		Field1: Text, Field9: Text, Field18: Text, Field80: true, Field81: true,
		Field2: Int, Field3: Int, Field280: Int, Field6: Int, Field22: Int,
		Field4: Text, Field59: true, Field7: Text, Field16: Int, Field130: Int,
		Field12: true, Field17: true, Field13: true, Field14: true,
		Field104: Int, Field100: Int, Field101: Int, Field102: Text, Field103: Text,
		Field29: Int, Field30: true, Field60: Int, Field271: Int, Field272: Int,
		Field150: Int, Field23: Int, Field24: true, Field25: Int, Field78: true,
		Field67: Int, Field68: Int, Field128: Int, Field129: Text, Field131: Int,
	}
}

// Answer fills reply the way every peer's Say does: a copy of args with
// Field1 "OK" and Field2 100.
func Answer(args, reply *BenchmarkMessage) {
	*reply = *args
	reply.Field1 = "OK"
	reply.Field2 = 100
}

// NewProto returns the same request as New, as the protobuf type.
func NewProto() *pb.BenchmarkMessage {
	return &pb.BenchmarkMessage{
		Field1: Text, Field9: Text, Field18: Text, Field80: true, Field81: true,
		Field2: Int, Field3: Int, Field280: Int, Field6: Int, Field22: Int,
		Field4: Text, Field59: true, Field7: Text, Field16: Int, Field130: Int,
		Field12: true, Field17: true, Field13: true, Field14: true,
		Field104: Int, Field100: Int, Field101: Int, Field102: Text, Field103: Text,
		Field29: Int, Field30: true, Field60: Int, Field271: Int, Field272: Int,
		Field150: Int, Field23: Int, Field24: true, Field25: Int, Field78: true,
		Field67: Int, Field68: Int, Field128: Int, Field129: Text, Field131: Int,
	}
}
