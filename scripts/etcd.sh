#!/usr/bin/env bash
# Build and run the etcd server that shoal's tests and demo use.
#
#   scripts/etcd.sh build        print the etcd binary's path, building it when missing
#   scripts/etcd.sh start [DIR]  start a single-member etcd on free loopback ports,
#                                data in DIR/data, print ETCDCTL_ENDPOINTS=127.0.0.1:PORT
#   scripts/etcd.sh stop [DIR]   stop the etcd started in DIR (its data stays in DIR/data)
#
# The binary: $SHOAL_ETCD if set; else the cached build
# ${SHOAL_CACHE:-$HOME/.cache/shoal}/etcd-3.6.16/etcd; else an `etcd` on PATH
# reporting version 3.5 or newer; else it is built from tools/etcd (pinned in
# tools/etcd/go.mod and go.sum) into the cache. DIR defaults to
# ${TMPDIR:-/tmp}/shoal-etcd and holds etcd.pid, etcd.log, etcd.env and data/.
set -euo pipefail

ETCD_VERSION=3.6.16
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR="${SHOAL_CACHE:-$HOME/.cache/shoal}/etcd-$ETCD_VERSION"
CACHED_BIN="$CACHE_DIR/etcd"
START_TIMEOUT=30

log() { printf 'etcd.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# path_etcd_ok: an etcd on PATH reporting v3.5+.
path_etcd_ok() {
	local bin ver major minor
	bin=$(command -v etcd 2>/dev/null) || return 1
	ver=$("$bin" --version 2>/dev/null | sed -n 's/^etcd Version: \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n1)
	[[ -n $ver ]] || return 1
	read -r major minor <<<"$ver"
	((major > 3 || (major == 3 && minor >= 5))) || return 1
	printf '%s\n' "$bin"
}

build_etcd() {
	command -v go >/dev/null || die "go is not on PATH; install Go or set SHOAL_ETCD to an etcd binary"
	mkdir -p "$CACHE_DIR"
	local tmp="$CACHE_DIR/etcd.tmp.$$"
	log "building etcd $ETCD_VERSION into $CACHED_BIN (about 2-4 minutes, cached afterwards)…"
	local start=$SECONDS
	(
		cd "$ROOT/tools/etcd"
		GOFLAGS=-mod=readonly go build -o "$tmp" go.etcd.io/etcd/server/v3
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
		die "building etcd failed (see the go output above)"
	fi
	mv -f "$tmp" "$CACHED_BIN"
	log "built etcd $ETCD_VERSION in $((SECONDS - start))s"
}

# find_etcd prints the binary to use, building it when there is none.
find_etcd() {
	if [[ -n ${SHOAL_ETCD:-} ]]; then
		[[ -x $SHOAL_ETCD ]] || die "SHOAL_ETCD=$SHOAL_ETCD is not an executable file"
		printf '%s\n' "$SHOAL_ETCD"
		return
	fi
	if [[ -x $CACHED_BIN ]]; then
		printf '%s\n' "$CACHED_BIN"
		return
	fi
	if path_etcd_ok; then
		return
	fi
	build_etcd
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
	local pidfile="$1/etcd.pid" pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	printf '%s\n' "$pid"
}

cmd_start() {
	local dir="${1:-${TMPDIR:-/tmp}/shoal-etcd}"
	command -v curl >/dev/null || die "curl is needed to wait for etcd"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if running_pid "$dir" >/dev/null; then
		log "etcd already running (pid $(<"$dir/etcd.pid")); stop it with: $0 stop $dir"
		cat "$dir/etcd.env"
		return
	fi
	local bin setsid=""
	bin=$(find_etcd)
	command -v setsid >/dev/null && setsid=setsid

	local attempt pid addr
	for attempt in 1 2 3; do
		local -a p
		mapfile -t p < <(pick_ports 2)
		addr="127.0.0.1:${p[0]}"
		local peer="http://127.0.0.1:${p[1]}"
		log "starting $bin on $addr, data in $dir/data (log: $dir/etcd.log)"
		# etcd outlives this script; setsid (where present) detaches it
		# from the terminal's signals.
		$setsid "$bin" --name=shoal-dev --data-dir="$dir/data" \
			--listen-client-urls="http://$addr" --advertise-client-urls="http://$addr" \
			--listen-peer-urls="$peer" --initial-advertise-peer-urls="$peer" \
			--initial-cluster="shoal-dev=$peer" --log-level=warn \
			>"$dir/etcd.log" 2>&1 </dev/null &
		pid=$!
		printf '%s\n' "$pid" >"$dir/etcd.pid"

		local deadline=$((SECONDS + START_TIMEOUT)) health=""
		while ((SECONDS < deadline)); do
			kill -0 "$pid" 2>/dev/null || break
			health=$(http_get "http://$addr/health" || true)
			[[ $health == *'"health":"true"'* ]] && break
			sleep 0.2
		done
		if [[ $health == *'"health":"true"'* ]]; then
			printf 'ETCDCTL_ENDPOINTS=%s\n' "$addr" | tee "$dir/etcd.env"
			log "etcd is up (pid $pid); registry URL etcd://$addr/shoal; stop it with: $0 stop $dir"
			return
		fi
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			rm -f "$dir/etcd.pid"
			tail -n 30 "$dir/etcd.log" >&2 || true
			die "etcd was not healthy after ${START_TIMEOUT}s"
		fi
		rm -f "$dir/etcd.pid"
		log "etcd exited during start-up (attempt $attempt, a port may have been taken); last log lines:"
		tail -n 10 "$dir/etcd.log" >&2 || true
	done
	die "could not start etcd; see $dir/etcd.log"
}

cmd_stop() {
	local dir="${1:-${TMPDIR:-/tmp}/shoal-etcd}" pid
	if ! pid=$(running_pid "$dir"); then
		log "no etcd running for $dir"
		rm -f "$dir/etcd.pid" "$dir/etcd.env"
		return
	fi
	log "stopping etcd (pid $pid)"
	kill -TERM "$pid"
	local deadline=$((SECONDS + 10))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		log "etcd still running after 10s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/etcd.pid" "$dir/etcd.env"
	log "stopped (data kept in $dir/data)"
}

case "${1:-}" in
build) find_etcd ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
*) usage ;;
esac
