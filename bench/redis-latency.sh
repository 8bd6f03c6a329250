#!/usr/bin/env bash
# Publish -> deliver latency: two rill nodes on one Redis, against one node
# on the memory store as the baseline. Uses the release build.
#
#   bench/redis-latency.sh [COUNT]
#
# Redis: RILL_BENCH_REDIS_URL (default redis://127.0.0.1:6379/); when none
# answers, a throwaway redis-server on a spare loopback port is started and
# stopped. Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-2000}"
cargo build --release --bin rill --example redis_latency
bin=target/release/rill
probe=target/release/examples/redis_latency
spare() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

redis="${RILL_BENCH_REDIS_URL:-redis://127.0.0.1:6379/}"
if ! redis-cli -u "$redis" ping >/dev/null 2>&1; then
  port=$(spare)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  pids+=($!)
  redis="redis://127.0.0.1:$port/"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
prefix="rill-bench:$$:"

node() { # node PORT ARGS...
  local port=$1; shift
  "$bin" serve --listen "127.0.0.1:$port" "$@" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.05; done
  echo "node on $port did not start" >&2; exit 1
}

mem=$(spare); a=$(spare); b=$(spare)
node "$mem"
node "$a" --store "$redis" --redis-prefix "$prefix"
node "$b" --store "$redis" --redis-prefix "$prefix"

echo "== memory store, one node (baseline), $count events"
"$probe" "http://127.0.0.1:$mem" "http://127.0.0.1:$mem" "$count"
echo "== redis store, same node, $count events"
"$probe" "http://127.0.0.1:$a" "http://127.0.0.1:$a" "$count"
echo "== redis store, publish on node A, deliver on node B, $count events"
"$probe" "http://127.0.0.1:$a" "http://127.0.0.1:$b" "$count"
redis-cli -u "$redis" --scan --pattern "${prefix}*" | xargs -r redis-cli -u "$redis" del >/dev/null
