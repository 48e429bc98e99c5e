#!/usr/bin/env bash
# Build populi-db, start a server on a temp db, run `populi-db bench` for
# three load shapes, stop the server. The shapes (the same as the
# contributors' peer bench, which is not part of this repository):
#   A  N_A messages, 1 producer, 1 consumer, 1 mailbox, deliver all then consume
#   B  N_B messages, 16 producers, 16 consumers, 16 mailboxes, concurrent
#   C  N_C messages, 16 producers, 4 consumers, 1 mailbox, deliver all then consume
#
#   scripts/bench.sh                      # A, B and C at full size (minutes)
#   SHAPES="A" N_A=300 scripts/bench.sh   # a quick smoke run
#
# Knobs (environment), with defaults:
#   SHAPES="A B C"   shapes to run, in order
#   N_A=3000 N_B=20000 N_C=50000   messages per shape
#   PAYLOAD=256      payload bytes per message (bench --payload)
#   WAIT_MS=1000     long-poll wait_ms of each claim (bench --wait-ms; 0 = plain polling)
#   BENCH_TIMEOUT=10m  give up on a shape after this long (bench --timeout)
#   OUTPUT=text      text or json (bench -o)
#   KEEP_WORK=0      1 keeps the temp dir (binary, db files, server logs)
#   TMPDIR=/tmp      where the temp dir is made
# Each shape gets a fresh server and db. The server runs with
# VOX_MESH_A2A_MAX_MESSAGES=500000 (the default cap of 50000 rows counts acked
# rows and would evict pending work in shape C) and its own VOX_MESH_TOKEN.
set -euo pipefail
cd "$(dirname "$0")/.."

SHAPES="${SHAPES:-A B C}"
N_A="${N_A:-3000}"
N_B="${N_B:-20000}"
N_C="${N_C:-50000}"
PAYLOAD="${PAYLOAD:-256}"
WAIT_MS="${WAIT_MS:-1000}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-10m}"
OUTPUT="${OUTPUT:-text}"

work="$(mktemp -d "${TMPDIR:-/tmp}/populi-bench.XXXXXX")"
server_pid=""
cleanup() {
	if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	if [[ "${KEEP_WORK:-0}" == 1 ]]; then
		echo "work dir kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT INT TERM

echo "building populi-db..." >&2
go build -o "$work/populi-db" .
bin="$work/populi-db"
token="$("$bin" init | sed -n 's/^VOX_MESH_TOKEN=//p')"

# start_server NAME: starts a fresh server, sets server_pid and url.
start_server() {
	local name="$1"
	: >"$work/$name.out"
	VOX_MESH_TOKEN="$token" VOX_MESH_A2A_MAX_MESSAGES=500000 \
		"$bin" serve --bind 127.0.0.1:0 --db "$work/$name.db" --log-level warn \
		>"$work/$name.out" 2>"$work/$name.log" &
	server_pid=$!
	url=""
	for _ in $(seq 1 200); do
		url="$(sed -n 's/^populi-db listening on //p' "$work/$name.out")"
		[[ -n "$url" ]] && break
		if ! kill -0 "$server_pid" 2>/dev/null; then
			echo "server for shape $name exited:" >&2
			cat "$work/$name.log" >&2
			exit 1
		fi
		sleep 0.05
	done
	if [[ -z "$url" ]]; then
		echo "server for shape $name did not start; log:" >&2
		cat "$work/$name.log" >&2
		exit 1
	fi
}

stop_server() {
	kill -TERM "$server_pid"
	wait "$server_pid" || { echo "server exited non-zero; log:" >&2; cat "$work/$1.log" >&2; }
	server_pid=""
}

status=0
for shape in $SHAPES; do
	case "$shape" in
	A) args=(--n "$N_A" --producers 1 --consumers 1 --receivers 1 --phased) ;;
	B) args=(--n "$N_B" --producers 16 --consumers 16 --receivers 16) ;;
	C) args=(--n "$N_C" --producers 16 --consumers 4 --receivers 1 --phased) ;;
	*) echo "unknown shape $shape (want A, B or C)" >&2; exit 2 ;;
	esac
	start_server "$shape"
	echo "== shape $shape: ${args[*]}" >&2
	if ! VOX_MESH_TOKEN="$token" "$bin" bench --url "$url" --payload "$PAYLOAD" --wait-ms "$WAIT_MS" \
		--timeout "$BENCH_TIMEOUT" -o "$OUTPUT" "${args[@]}"; then
		status=1
	fi
	stop_server "$shape"
done
exit "$status"
