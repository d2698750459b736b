//go:build ignore

// misuse gives options to what they do not configure: a proxy option and a
// pool option to Dial, a proxy option to NewPool, a consistent-hash option to
// P2C-EWMA. Each must be a compile error (TestMisusedOptionsDoNotCompile).
package main

import (
	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
)

func main() {
	consumer.Dial("127.0.0.1:1", consumer.WithFailMode(consumer.Failover))
	consumer.Dial("127.0.0.1:1", consumer.WithConnsPerAddr(2))
	consumer.NewPool(consumer.WithRetries(3))
	loadbalance.NewP2CEWMA(loadbalance.WithReplicas(3))
}
