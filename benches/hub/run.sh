#!/usr/bin/env bash
# Hub fan-out benchmark: broadcast to 1 000 and 10 000 clients on one node and across two
# nodes (cluster over a native etcd), side by side with the anchor (a Node.js `ws` broadcast
# server, benches/hub/anchor.mjs, single node), alternating targets within each round.
# Delivery latency p50/p99, frames/s, memory per idle connection. Results go to stdout;
# method and figures in benches/README.md.
#
#   benches/hub/run.sh
#   ROUNDS=2 CLIENTS_LIST="1000 10000" TARGETS="anchor one two" LOADS="paced burst" benches/hub/run.sh
#
# Loads: paced = 100 frames at 10/s; burst = 200 frames back to back (each API call after
# the previous answered). Needs etcd, node/npm (installs ws@8 into ~/.cache/courier-hub-anchor
# once), curl. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-1}
CLIENTS_LIST=${CLIENTS_LIST:-"1000 10000"}
TARGETS=${TARGETS:-"anchor one two"}
LOADS=${LOADS:-"paced burst"}

# COURIER_BIN: another build of courier to measure (an A/B against a change, say).
source benches/hub/lib.sh
build_bench hub_fanout
install_anchor

etcd --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:23790 \
  --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
  >"$work/etcd.log" 2>&1 &
helpers+=($!)
for _ in $(seq 1 50); do curl -sf http://127.0.0.1:23790/health >/dev/null && break; sleep 0.1; done

start_hub() { # port cluster
  COURIER_LOG=warn "$bin" hub --addr "127.0.0.1:$1" --api-key bench \
    --cluster "$2" --bus etcd --etcd-endpoints http://127.0.0.1:23790 \
    --node-id "bench-$1" >"$work/hub-$1.log" 2>&1 &
  servers+=($!)
  wait_healthy "$1"
}

port=18100
for round in $(seq "$ROUNDS"); do
  for clients in $CLIENTS_LIST; do
    for load in $LOADS; do
      case $load in
        paced) frames=100 rate=10 ;;
        burst) frames=200 rate=0 ;;
        *) echo "unknown load $load" >&2; exit 1 ;;
      esac
      for target in $TARGETS; do
        port=$((port + 2))
        start_target "$target" "$port"
        printf "round=%s target=%-6s load=%-5s " "$round" "$target" "$load"
        HUB_URLS=$urls HUB_PIDS=$pids CLIENTS=$clients FRAMES=$frames RATE=$rate "$bench"
        stop_servers
      done
    done
  done
done
