package consumer

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
)

func TestMisusedOptionsDoNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	out, err := exec.Command("go", "build", "-o", "/dev/null", "./testdata/misuse.go").CombinedOutput()
	if err == nil {
		t.Fatal("a proxy option given to Dial compiled")
	}
	for _, want := range []string{
		"misuse.go:14:31: cannot use consumer.WithFailMode(consumer.Failover) (value of interface type consumer.ProxyOption) as consumer.DialOption value",
		"misuse.go:15:31: cannot use consumer.WithConnsPerAddr(2) (value of interface type consumer.PoolOption) as consumer.DialOption value",
		"misuse.go:16:19: cannot use consumer.WithRetries(3) (value of interface type consumer.ProxyOption) as consumer.PoolOption value",
		"misuse.go:17:25: cannot use loadbalance.WithReplicas(3) (value of interface type loadbalance.ConsistentHashOption) as loadbalance.P2COption value",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the compiler did not say %q; it said:\n%s", want, out)
		}
	}
}

func TestInvalidOptionValuesAreErrorsNamingTheOption(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	tests := []struct {
		opt  ProxyOption
		want string
	}{
		{WithCodec(nil), "WithCodec"},
		{WithMaxBodySize(-1), "WithMaxBodySize(-1): negative size"},
		{WithDialTimeout(0), "WithDialTimeout(0s): must be more than 0"},
		{WithHeartbeat(-time.Second, 0), "WithHeartbeat(-1s, 0s): negative duration"},
		{WithMaxPending(-1), "WithMaxPending(-1)"},
		{WithConnsPerAddr(0), "WithConnsPerAddr(0): must be at least 1"},
		{WithLoadBalance(loadbalance.Mode(99)), "WithLoadBalance(Mode(99)): not a load-balancing mode"},
		{WithFailMode(FailMode(9)), "WithFailMode(FailMode(9)): not a fail mode"},
		{WithRetries(-1), "WithRetries(-1): negative count"},
		{WithAttemptTimeout(-time.Second), "WithAttemptTimeout(-1s)"},
		{WithBackoff(time.Second, time.Millisecond, 0), "WithBackoff(1s, 1ms, 0): cap below base"},
		{WithBackoff(time.Millisecond, time.Second, 1.5), "WithBackoff(1ms, 1s, 1.5): jitter must be from 0 to 1"},
		{WithRetryBudget(-1, 0.1), "WithRetryBudget(-1, 0.1)"},
		{WithHedging(0), "WithHedging(0s)"},
		{WithWaitForInstances(-time.Second), "WithWaitForInstances(-1s)"},
		{WithOutlierEjection(3, 0, time.Second), "WithOutlierEjection(3, 0s, 1s): want 0 < base <= max"},
	}
	for _, tt := range tests {
		_, err := NewClientProxy("arith", reg, tt.opt)
		if err == nil || !strings.Contains(err.Error(), "consumer: "+tt.want) {
			t.Errorf("NewClientProxy with an invalid option: %v, want an error containing %q", err, tt.want)
		}
	}
	if _, err := Dial("127.0.0.1:1", WithDialTimeout(-time.Second)); err == nil || !strings.Contains(err.Error(), "WithDialTimeout(-1s)") {
		t.Errorf("Dial with an invalid option: %v", err)
	}
	if _, err := NewPool(WithConnsPerAddr(-2)); err == nil || !strings.Contains(err.Error(), "WithConnsPerAddr(-2)") {
		t.Errorf("NewPool with an invalid option: %v", err)
	}
}
