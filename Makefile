# shoal: the two commands a newcomer needs are `make quickstart` and `make test`.

.PHONY: quickstart test consul etcd bench

# Run the one-process demo: providers, a registry and a client in one process.
quickstart:
	go run ./demo/quickstart

# Every check and test, Consul-backed ones included (builds Consul once, cached).
test:
	scripts/test.sh

# Print the path of the Consul binary the tests use, building it if missing.
consul:
	scripts/consul.sh build

# Print the path of the etcd binary the tests use, building it if missing.
etcd:
	scripts/etcd.sh build

# Peer benchmark: shoal against net/rpc, rpcx, gRPC and a raw-TCP ceiling (about 2 minutes).
bench:
	cd bench && go run ./cmd/shoalbench -c 100,1000
