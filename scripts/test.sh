#!/usr/bin/env bash
# Every check and test of shoal, as CI runs them. `make test` calls this.
#
#   1. find or build the Consul agent and the etcd server the registry tests run
#      against (cached: the first builds take about 4 and 2-4 minutes, later
#      runs reuse them);
#   2. gofmt, go vet and staticcheck;
#   3. go test -race over the module, Consul and etcd tests included, then the bench
#      module's vet and tests (its peers come from the module proxy);
#   4. short fuzz runs of the frame decoder, the msgpack payload check and the
#      provider's connection handler.
#
# FUZZTIME (default 20s) bounds each fuzz run; FUZZTIME=0 skips them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME=${FUZZTIME:-20s}

step() { printf '\n== %s\n' "$*"; }

step "consul agent binary"
SHOAL_CONSUL=$(scripts/consul.sh build)
export SHOAL_CONSUL
echo "using $SHOAL_CONSUL"

step "etcd server binary"
SHOAL_ETCD=$(scripts/etcd.sh build)
export SHOAL_ETCD
echo "using $SHOAL_ETCD"

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
	step "fuzz FuzzDecode for $FUZZTIME"
	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "$FUZZTIME" ./protocol/
	step "fuzz FuzzMsgpackCheck for $FUZZTIME"
	go test -run '^$' -fuzz '^FuzzMsgpackCheck$' -fuzztime "$FUZZTIME" ./protocol/
	step "fuzz FuzzServeConn for $FUZZTIME"
	go test -run '^$' -fuzz '^FuzzServeConn$' -fuzztime "$FUZZTIME" ./provider/
fi

step "all checks passed"
