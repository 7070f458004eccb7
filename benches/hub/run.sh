#!/usr/bin/env bash
# Hub fan-out benchmark: broadcast to 1 000 and 10 000 clients on one node and across two
# nodes (cluster over a native etcd), delivery latency p50/p99, frames/s, memory per idle
# connection. Results go to stdout; method and figures in benches/README.md.
#
#   benches/hub/run.sh                  all four scenarios
#   FRAMES=100 RATE=10 benches/hub/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
FRAMES=${FRAMES:-100}
RATE=${RATE:-10}
cargo build --release --all-features --bin courier >&2
cargo bench --all-features --bench hub_fanout --no-run >&2 2>/dev/null || true
bench=$(ls -t target/release/deps/hub_fanout-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

etcd --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:23790 \
  --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
  >"$work/etcd.log" 2>&1 &
pids+=($!)
sleep 2

start_hub() { # port [cluster]
  local port=$1 cluster=${2:-false}
  COURIER_LOG=warn target/release/courier hub --addr "127.0.0.1:$port" --api-key bench \
    --cluster "$cluster" --bus etcd --etcd-endpoints http://127.0.0.1:23790 \
    --node-id "bench-$port" >"$work/hub-$port.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  echo "$pid"
}

for clients in 1000 10000; do
  one=$(start_hub 18101)
  HUB_URLS=127.0.0.1:18101 HUB_PIDS=$one CLIENTS=$clients FRAMES=$FRAMES RATE=$RATE "$bench"
  kill "$one"; sleep 1
  a=$(start_hub 18102 true); b=$(start_hub 18103 true)
  HUB_URLS=127.0.0.1:18102,127.0.0.1:18103 HUB_PIDS=$a,$b CLIENTS=$clients FRAMES=$FRAMES RATE=$RATE "$bench"
  kill "$a" "$b"; sleep 1
done
