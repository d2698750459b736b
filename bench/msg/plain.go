package msg

// Plain is the benchmark message the way a user writes it: the same 40
// fields as BenchmarkMessage, in the same order, as a plain Go struct with
// no struct tags and no methods. It is the payload of the default path,
// the headline of the benchmark: shoal's default codec (msgpack, a map keyed
// by field name), rpcx's msgpack codec and net/rpc's gob all encode it by
// reflection, as they would any user's struct. Keep it free of tags and
// methods (TestPlainIsPlain checks it).
type Plain struct {
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

// NewPlain returns the benchmark's request (New's values) as a Plain.
func NewPlain() *Plain {
	return &Plain{
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

// AnswerPlain fills reply the way every peer's Say does (see Answer).
func AnswerPlain(args, reply *Plain) {
	*reply = *args
	reply.Field1 = "OK"
	reply.Field2 = 100
}
