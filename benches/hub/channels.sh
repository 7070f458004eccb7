#!/usr/bin/env bash
# Hub channel benchmark: fan-out to 1 000 channels x 10 subscribers and to 1 channel x 10 000
# subscribers, and recovery of 10 000 missed publications, on one `courier hub` node and on
# two nodes clustered over a native Redis, side by side with the anchor (a Node.js `ws` hub
# with rooms and an in-memory history, benches/hub/anchor.mjs, single node), the targets
# alternating within each round. Driver: cli/benches/hub_channels.rs. Results go to stdout;
# method and figures in benches/README.md. A full run takes about 3 minutes.
#
#   benches/hub/channels.sh
#   ROUNDS=2 CASES="1000x10 1x10000 recovery" TARGETS="anchor one two" LOADS="paced burst" benches/hub/channels.sh
#
# Loads: paced = open loop, 1000x10: 5 000 publications at 1 000/s, 1x10000: 50 at 10/s
# (10 000 and 100 000 deliveries/s offered); burst = closed loop, 1000x10: 20 000
# publications from 8 concurrent callers, 1x10000: 50 from one caller.
# History: `rec.*` channels keep 20 000 publications, in memory on one node, in the Redis
# on two. Redis runs without persistence (`--save "" --appendonly no`) and is flushed between
# cases. Needs redis-server, redis-cli, node/npm, curl. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-1}
CASES=${CASES:-"1000x10 1x10000 recovery"}
TARGETS=${TARGETS:-"anchor one two"}
LOADS=${LOADS:-"paced burst"}
REDIS_PORT=${REDIS_PORT:-16390}

# COURIER_BIN: another build of courier to measure (an A/B against a change, say).
source benches/hub/lib.sh
build_bench hub_channels
install_anchor
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f1-3)"

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  >"$work/redis.log" 2>&1 &
helpers+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

start_hub() { # port cluster(true|false)
  local storage=memory cluster=""
  if [[ $2 == true ]]; then
    storage="redis://127.0.0.1:$REDIS_PORT"
    cluster="cluster:
  enabled: true
  bus: redis
  redis:
    url: \"redis://127.0.0.1:$REDIS_PORT\"
"
  fi
  cat >"$work/hub-$1.yaml" <<YAML
${cluster}channels:
  history_storage: "$storage"
  rules:
    - pattern: "rec.*"
      history: { max_len: 20000, max_age: 10m }
YAML
  COURIER_LOG=warn "$bin" hub --config "$work/hub-$1.yaml" --addr "127.0.0.1:$1" \
    --api-key bench --node-id "bench-$1" >"$work/hub-$1.log" 2>&1 &
  servers+=($!)
  wait_healthy "$1"
}

port=18300
for round in $(seq "$ROUNDS"); do
  for case in $CASES; do
    case $case in
      1000x10) shape="CHANNELS=1000 SUBSCRIBERS=10" loads=$LOADS ;;
      1x10000) shape="CHANNELS=1 SUBSCRIBERS=10000" loads=$LOADS ;;
      recovery) shape="MODE=recovery MISSED=10000" loads=once ;;
      *) echo "unknown case $case" >&2; exit 1 ;;
    esac
    for load in $loads; do
      case $case/$load in
        1000x10/paced) params="PUBS=5000 RATE=1000" ;;
        1000x10/burst) params="PUBS=20000 RATE=0 CALLERS=8" ;;
        1x10000/paced) params="PUBS=50 RATE=10" ;;
        1x10000/burst) params="PUBS=50 RATE=0 CALLERS=1" ;;
        recovery/once) params="" ;;
        *) echo "unknown load $load" >&2; exit 1 ;;
      esac
      for target in $TARGETS; do
        port=$((port + 2))
        start_target "$target" "$port"
        printf "round=%s target=%-6s case=%-8s load=%-5s " "$round" "$target" "$case" "$load"
        # shellcheck disable=SC2086 # the words of $shape and $params are separate variables
        env HUB_URLS="$urls" HUB_PIDS="$pids" $shape $params "$bench"
        stop_servers
        redis-cli -p "$REDIS_PORT" flushall >/dev/null
      done
    done
  done
done
