#!/usr/bin/env bash
# Publish -> deliver latency: two rill nodes on one Redis, and two on a
# 3-master Redis Cluster, against one node on the memory store as the
# baseline, all in one run. Uses the release build.
#
#   bench/redis-latency.sh [COUNT]
#
# Redis: RILL_BENCH_REDIS_URL (default redis://127.0.0.1:6379/); when none
# answers, a throwaway redis-server on a spare loopback port is started and
# stopped. The Cluster is always a throwaway one (three redis-servers on
# spare loopback ports, no persistence). Everything listens on 127.0.0.1
# and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-2000}"
cargo build --release --bin rill --example redis_latency
bin=target/release/rill
probe=target/release/examples/redis_latency
spare() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
clusterdir=$(mktemp -d "${TMPDIR:-/tmp}/rill-bench-cluster.XXXXXX")
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$clusterdir"
}
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

# A Cluster port needs its bus port (port + 10000) free as well.
cluster_port() {
  local p
  for _ in $(seq 50); do
    p=$(spare)
    [ "$p" -lt 55000 ] && python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$p+10000))" 2>/dev/null && { echo "$p"; return; }
  done
  echo "no spare cluster port" >&2; exit 1
}
seeds=()
for _ in 1 2 3; do
  p=$(cluster_port)
  redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 2000 \
    --save '' --appendonly no --dir "$clusterdir" >/dev/null &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  seeds+=("127.0.0.1:$p")
done
redis-cli --cluster create "${seeds[@]}" --cluster-yes >/dev/null
# Every node must know the slot map before the first publish, or the first
# one may be answered CLUSTERDOWN.
for seed in "${seeds[@]}"; do
  for _ in $(seq 100); do
    redis-cli -p "${seed#*:}" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
  done
done
cluster="redis+cluster://$(IFS=,; echo "${seeds[*]}")"
ca=$(spare); cb=$(spare)
node "$ca" --store "$cluster" --redis-prefix "$prefix"
node "$cb" --store "$cluster" --redis-prefix "$prefix"
echo "== redis cluster (3 masters), publish on node A, deliver on node B, $count events"
"$probe" "http://127.0.0.1:$ca" "http://127.0.0.1:$cb" "$count"
