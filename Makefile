# shoal: the two commands a newcomer needs are `make quickstart` and `make test`.

.PHONY: quickstart test consul

# Run the one-process demo: providers, a registry and a client in one process.
quickstart:
	go run ./demo/quickstart

# Every check and test, Consul-backed ones included (builds Consul once, cached).
test:
	scripts/test.sh

# Print the path of the Consul binary the tests use, building it if missing.
consul:
	scripts/consul.sh build
