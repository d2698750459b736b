// Package partition holds tests of shoal under real network isolation: a
// provider in a network namespace the test creates, reached over a veth
// pair whose link the test sets down, as a crashed host or a pulled cable
// looks (no RST, no FIN). The tests need root and iproute2's ip command;
// they skip without them, and fail under CI=true.
package partition
