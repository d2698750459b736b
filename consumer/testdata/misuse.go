//go:build ignore

// misuse gives a proxy option to Dial and a pool option to Dial: both must be
// compile errors (TestMisusedOptionsDoNotCompile).
package main

import "github.com/shoalrpc/shoal/consumer"

func main() {
	consumer.Dial("127.0.0.1:1", consumer.WithFailMode(consumer.Failover))
	consumer.Dial("127.0.0.1:1", consumer.WithConnsPerAddr(2))
	consumer.NewPool(consumer.WithRetries(3))
}
