#!/usr/bin/env bash
# Every check and test of shoal, as CI runs them. `make test` calls this.
#
#   1. find or build the Consul agent and the etcd server the registry tests run
#      against (cached: the first builds take about 4 and 2-4 minutes, later
#      runs reuse them);
#   2. install curl and chromium when either is missing (scripts/tools.sh), for
#      the admin page's tests;
#   3. gofmt, go vet and staticcheck;
#   4. go test -race over the module, Consul and etcd tests included, then the bench
#      module's vet and tests (its peers come from the module proxy);
#   5. short fuzz runs of the frame decoder, the msgpack payload check, the
#      compiled msgpack codec against vmihailenco/msgpack (both directions, and
#      arbitrary bytes) and the provider's connection handler.
#
# Each fuzz run is bounded by a count of executions, about 20 s each on two
# cores: a duration-bounded run (-fuzztime 20s) can fail with a bare "context
# deadline exceeded" at its end, a race in Go 1.26's fuzz coordinator
# (go.dev/issue/75804, fixed in Go 1.27), never a finding. FUZZTIME (a count
# such as 5000000x, or a duration) overrides every run's bound; FUZZTIME=0
# skips them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME=${FUZZTIME:-}

step() { printf '\n== %s\n' "$*"; }

step "consul agent binary"
SHOAL_CONSUL=$(scripts/consul.sh build)
export SHOAL_CONSUL
echo "using $SHOAL_CONSUL"

step "etcd server binary"
SHOAL_ETCD=$(scripts/etcd.sh build)
export SHOAL_ETCD
echo "using $SHOAL_ETCD"

step "curl and chromium (the admin page's tests)"
scripts/tools.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bench/*'))
if [[ -n $unformatted ]]; then
	echo "gofmt would change:"
	echo "$unformatted"
	exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
go run "$STATICCHECK" ./...

step "go test -race"
go test -race -count=1 -timeout 10m ./...

step "bench module: vet and tests of the peer benchmark harness"
(cd bench && go vet ./... && go test -count=1 ./...)

if [[ $FUZZTIME != 0 ]]; then
	step "fuzz FuzzDecode for ${FUZZTIME:-1000000x}"
	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "${FUZZTIME:-1000000x}" ./protocol/
	step "fuzz FuzzMsgpackCheck for ${FUZZTIME:-700000x}"
	go test -run '^$' -fuzz '^FuzzMsgpackCheck$' -fuzztime "${FUZZTIME:-700000x}" ./protocol/
	step "fuzz FuzzCompiledFromReference for ${FUZZTIME:-600000x}"
	go test -run '^$' -fuzz '^FuzzCompiledFromReference$' -fuzztime "${FUZZTIME:-600000x}" ./protocol/
	step "fuzz FuzzCompiledToReference for ${FUZZTIME:-500000x}"
	go test -run '^$' -fuzz '^FuzzCompiledToReference$' -fuzztime "${FUZZTIME:-500000x}" ./protocol/
	step "fuzz FuzzCompiledDecodeBytes for ${FUZZTIME:-300000x}"
	go test -run '^$' -fuzz '^FuzzCompiledDecodeBytes$' -fuzztime "${FUZZTIME:-300000x}" ./protocol/
	step "fuzz FuzzServeConn for ${FUZZTIME:-150000x}"
	go test -run '^$' -fuzz '^FuzzServeConn$' -fuzztime "${FUZZTIME:-150000x}" ./provider/
	step "fuzz the connection engine's reader, FuzzServe, for ${FUZZTIME:-200000x}"
	go test -run '^$' -fuzz '^FuzzServe$' -fuzztime "${FUZZTIME:-200000x}" ./internal/engine/
fi

step "all checks passed"
