// Package testmsg holds the rpcx-benchmark workload message, shared by the
// module's tests and benchmarks.
package testmsg

// BenchmarkMessage is the 40-field message of rpcx-benchmark's benchmark.proto
// (581 bytes as protobuf with the values of NewBenchmarkMessage).
type BenchmarkMessage struct {
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

// NewBenchmarkMessage returns the benchmark's request: every string
// "许多往事在眼前一幕一幕，变的那麼模糊", every int 100000, every bool true,
// Field5 empty.
func NewBenchmarkMessage() *BenchmarkMessage {
	const s = "许多往事在眼前一幕一幕，变的那麼模糊"
	const i = 100000
	return &BenchmarkMessage{
		Field1: s, Field9: s, Field18: s, Field80: true, Field81: true,
		Field2: i, Field3: i, Field280: i, Field6: i, Field22: i,
		Field4: s, Field59: true, Field7: s, Field16: i, Field130: i,
		Field12: true, Field17: true, Field13: true, Field14: true,
		Field104: i, Field100: i, Field101: i, Field102: s, Field103: s,
		Field29: i, Field30: true, Field60: i, Field271: i, Field272: i,
		Field150: i, Field23: i, Field24: true, Field25: i, Field78: true,
		Field67: i, Field68: i, Field128: i, Field129: s, Field131: i,
	}
}
