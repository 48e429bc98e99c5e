#!/usr/bin/env bash
# Interleaved A/B of two populi-db binaries in scenario B's shape (16
# producers, 16 consumers, 16 receivers), a fresh server and db per run:
# prints e2e msg/s and the server's CPU time per request (user+sys from
# /proc, divided by populi_http_requests_total), which on a shared machine
# is steadier than throughput. Linux only.
#
#   BEFORE_BIN=/path/old AFTER_BIN=/path/new scripts/ab-bench.sh
#
# Knobs: N (4000 messages per run), ROUNDS (5), AFTER_ARGS (extra serve
# flags for the after binary, e.g. "--log-level warn"), SCRAPE=1 (scrape the
# after server's /metrics every second).
set -euo pipefail
: "${BEFORE_BIN:?set BEFORE_BIN}" "${AFTER_BIN:?set AFTER_BIN}"
N="${N:-4000}"
ROUNDS="${ROUNDS:-5}"
AFTER_ARGS="${AFTER_ARGS:-}"
SCRAPE="${SCRAPE:-0}"
work="$(mktemp -d "${TMPDIR:-/tmp}/populi-ab.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tok="ab-bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
hz="$(getconf CLK_TCK)"

run() { # name bin args...
	local name=$1 bin=$2
	shift 2
	VOX_MESH_TOKEN=$tok VOX_MESH_A2A_MAX_MESSAGES=500000 "$bin" serve --bind 127.0.0.1:0 \
		--db "$work/$name.db" "$@" >"$work/$name.out" 2>"$work/$name.log" &
	local pid=$! url="" scraper=""
	for _ in $(seq 1 200); do
		url="$(sed -n 's/^populi-db listening on //p' "$work/$name.out")"
		[[ -n "$url" ]] && break
		sleep 0.05
	done
	[[ -n "$url" ]] || { echo "$name: server did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
	if [[ "$SCRAPE" == 1 && "$name" == after* ]]; then
		(while true; do curl -s -o /dev/null -H "Authorization: Bearer $tok" "$url/metrics"; sleep 1; done) &
		scraper=$!
	fi
	"$AFTER_BIN" bench --url "$url" --token "$tok" --n "$N" --producers 16 --consumers 16 --receivers 16 -o json >"$work/$name.json"
	[[ -n "$scraper" ]] && kill "$scraper"
	local reqs ticks
	reqs="$(curl -s -H "Authorization: Bearer $tok" "$url/metrics" | awk '/^populi_http_requests_total/ {s += $2} END {print s}')"
	ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
	kill -TERM "$pid"
	wait "$pid" || true
	python3 -c "import json; d = json.load(open('$work/$name.json')); print('$name e2e_msg_per_sec=%.0f server_cpu_us_per_request=%.1f' % (d['e2e_msg_per_sec'], $ticks * 1e6 / $hz / $reqs))"
}

uptime
for r in $(seq 1 "$ROUNDS"); do
	run "before$r" "$BEFORE_BIN"
	# shellcheck disable=SC2086 # AFTER_ARGS is a list of flags
	run "after$r" "$AFTER_BIN" $AFTER_ARGS
done
uptime
