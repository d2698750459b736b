#!/usr/bin/env bash
# Build and run the Consul agent that shoal's tests and demo use.
#
#   scripts/consul.sh build        print the consul binary's path, building it when missing
#   scripts/consul.sh start [DIR]  start `consul agent -dev` on free loopback ports,
#                                  print CONSUL_HTTP_ADDR=127.0.0.1:PORT
#   scripts/consul.sh stop [DIR]   stop the agent started in DIR
#
# The binary: $SHOAL_CONSUL if set; else the cached build
# ${SHOAL_CACHE:-$HOME/.cache/shoal}/consul-1.21.0/consul; else a `consul` on PATH
# reporting version 1.14 or newer; else it is built from tools/consul (pinned in
# tools/consul/go.mod and go.sum) into the cache. DIR defaults to
# ${TMPDIR:-/tmp}/shoal-consul and holds consul.pid, consul.log and consul.env.
set -euo pipefail

CONSUL_VERSION=1.21.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR="${SHOAL_CACHE:-$HOME/.cache/shoal}/consul-$CONSUL_VERSION"
CACHED_BIN="$CACHE_DIR/consul"
START_TIMEOUT=30

log() { printf 'consul.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# path_consul_ok: a consul on PATH reporting v1.14+ (the flags used below exist since 1.14).
path_consul_ok() {
	local bin ver major minor
	bin=$(command -v consul 2>/dev/null) || return 1
	ver=$("$bin" version 2>/dev/null | sed -n 's/^Consul v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n1)
	[[ -n $ver ]] || return 1
	read -r major minor <<<"$ver"
	((major > 1 || (major == 1 && minor >= 14))) || return 1
	printf '%s\n' "$bin"
}

build_consul() {
	command -v go >/dev/null || die "go is not on PATH; install Go or set SHOAL_CONSUL to a consul binary"
	mkdir -p "$CACHE_DIR"
	local tmp="$CACHE_DIR/consul.tmp.$$"
	log "building consul $CONSUL_VERSION into $CACHED_BIN (about 4 minutes, cached afterwards)…"
	local start=$SECONDS
	(
		cd "$ROOT/tools/consul"
		# consul-awsauth is not in the checksum database; go.sum pins it.
		GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hashicorp/consul-awsauth" \
			GOFLAGS=-mod=readonly \
			go build -o "$tmp" github.com/hashicorp/consul
	) &
	local pid=$!
	local next=$((SECONDS + 15))
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if ((SECONDS >= next)) && kill -0 "$pid" 2>/dev/null; then
			log "  still building… $((SECONDS - start))s"
			next=$((SECONDS + 15))
		fi
	done
	if ! wait "$pid"; then
		rm -f "$tmp"
		die "building consul failed (see the go output above)"
	fi
	mv -f "$tmp" "$CACHED_BIN"
	log "built consul $CONSUL_VERSION in $((SECONDS - start))s"
}

# find_consul prints the binary to use, building it when there is none.
find_consul() {
	if [[ -n ${SHOAL_CONSUL:-} ]]; then
		[[ -x $SHOAL_CONSUL ]] || die "SHOAL_CONSUL=$SHOAL_CONSUL is not an executable file"
		printf '%s\n' "$SHOAL_CONSUL"
		return
	fi
	if [[ -x $CACHED_BIN ]]; then
		printf '%s\n' "$CACHED_BIN"
		return
	fi
	if path_consul_ok; then
		return
	fi
	build_consul
	printf '%s\n' "$CACHED_BIN"
}

# http_get URL: the response body, or failure.
http_get() {
	curl -fsS --max-time 2 "$1" 2>/dev/null
}

# port_free PORT: nothing listens on 127.0.0.1:PORT (TCP).
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_ports N: N distinct free ports in 20000..59999.
pick_ports() {
	local -a got=()
	local p seen
	while ((${#got[@]} < $1)); do
		p=$((20000 + RANDOM % 40000))
		seen=0
		for q in "${got[@]}"; do [[ $q == "$p" ]] && seen=1; done
		((seen == 0)) && port_free "$p" && got+=("$p")
	done
	printf '%s\n' "${got[@]}"
}

running_pid() {
	local pidfile="$1/consul.pid" pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	printf '%s\n' "$pid"
}

cmd_start() {
	local dir="${1:-${TMPDIR:-/tmp}/shoal-consul}"
	command -v curl >/dev/null || die "curl is needed to wait for the agent"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if running_pid "$dir" >/dev/null; then
		log "consul already running (pid $(<"$dir/consul.pid")); stop it with: $0 stop $dir"
		cat "$dir/consul.env"
		return
	fi
	local bin setsid=""
	bin=$(find_consul)
	command -v setsid >/dev/null && setsid=setsid

	local attempt pid addr
	for attempt in 1 2 3; do
		local -a p
		mapfile -t p < <(pick_ports 7)
		addr="127.0.0.1:${p[0]}"
		log "starting $bin agent -dev on http $addr (log: $dir/consul.log)"
		# The agent outlives this script; setsid (where present) detaches it
		# from the terminal's signals.
		$setsid "$bin" agent -dev -node=shoal-dev \
			-bind=127.0.0.1 -client=127.0.0.1 \
			-http-port="${p[0]}" -dns-port="${p[1]}" -grpc-port="${p[2]}" -grpc-tls-port="${p[3]}" \
			-serf-lan-port="${p[4]}" -serf-wan-port="${p[5]}" -server-port="${p[6]}" \
			>"$dir/consul.log" 2>&1 </dev/null &
		pid=$!
		printf '%s\n' "$pid" >"$dir/consul.pid"

		local deadline=$((SECONDS + START_TIMEOUT)) leader=""
		while ((SECONDS < deadline)); do
			kill -0 "$pid" 2>/dev/null || break
			leader=$(http_get "http://$addr/v1/status/leader" || true)
			[[ -n $leader && $leader != '""' ]] && break
			sleep 0.2
		done
		if [[ -n $leader && $leader != '""' ]]; then
			printf 'CONSUL_HTTP_ADDR=%s\n' "$addr" | tee "$dir/consul.env"
			log "consul is up (pid $pid, leader $leader); stop it with: $0 stop $dir"
			return
		fi
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			rm -f "$dir/consul.pid"
			tail -n 30 "$dir/consul.log" >&2 || true
			die "consul had no leader after ${START_TIMEOUT}s"
		fi
		rm -f "$dir/consul.pid"
		log "consul exited during start-up (attempt $attempt, a port may have been taken); last log lines:"
		tail -n 10 "$dir/consul.log" >&2 || true
	done
	die "could not start consul; see $dir/consul.log"
}

cmd_stop() {
	local dir="${1:-${TMPDIR:-/tmp}/shoal-consul}" pid
	if ! pid=$(running_pid "$dir"); then
		log "no consul running for $dir"
		rm -f "$dir/consul.pid" "$dir/consul.env"
		return
	fi
	log "stopping consul (pid $pid)"
	kill -TERM "$pid"
	local deadline=$((SECONDS + 10))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		log "consul still running after 10s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/consul.pid" "$dir/consul.env"
	log "stopped"
}

case "${1:-}" in
build) find_consul ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
*) usage ;;
esac
