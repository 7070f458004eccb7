#!/usr/bin/env bash
# The floor under the Durable Streams targets (issue 19): the same wrk scenarios against a bare
# HTTP/1.1 loop that does nothing but read each request and answer 204 (`round-trip-floor serve
# http`, benches/broker/src/bin/round-trip-floor.rs), beside `courier streams` on memory and the
# peer's memory mode, alternating, in one run. No server can beat the bare loop by much on the
# same machine, so a target above the loop's rate is a bound of the machine, not of the server.
#
#   PEER_BIN=/tmp/ds-peer/bin/durable-streams-server benches/streams/floor.sh
#   SCENARIOS="append1 append32 tail32" ROUNDS=2 DUR=8 benches/streams/floor.sh
#
# Prints one markdown row per scenario, round and server: req/s (wrk) and the server's CPU per
# request (utime + stime from /proc over the wrk run).
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p courier-cli >&2
cargo build --release --manifest-path benches/broker/Cargo.toml --target-dir "$target" --bin round-trip-floor >&2
courier="${COURIER_BIN:-$target/release/courier}"
floor="$target/release/round-trip-floor"
peer="${PEER_BIN:-$(command -v durable-streams-server || true)}"
[[ -x $peer ]] || { echo "needs PEER_BIN (cargo install --locked durable-streams@0.1.5 --root DIR)"; exit 2; }
dur="${DUR:-8}"
tick=$(getconf CLK_TCK)
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); DUR=$dur"
echo "| scenario | round | server | req/s | server CPU per request |"
echo "|---|---:|---|---:|---:|"
for scenario in ${SCENARIOS:-append1 append32 tail32}; do
  for round in $(seq "${ROUNDS:-2}"); do
    for server in floor ours-memory peer-memory; do
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      data=$(mktemp -d)
      case $server in
        floor) "$floor" serve http "$port" & ;;
        ours-memory) "$courier" streams --storage memory --addr "127.0.0.1:$port" --long-poll-timeout 500ms >/dev/null 2>&1 & ;;
        peer-memory) "$peer" --host 127.0.0.1 --port "$port" --data-dir "$data" --durability memory --long-poll-timeout-ms 500 >/dev/null 2>&1 & ;;
      esac
      pid=$!
      url="http://127.0.0.1:$port/v1/stream/bench"
      for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
      curl -sf -o /dev/null -X PUT -H 'content-type: application/octet-stream' "$url"
      case $scenario in
        append1) args=(-t1 -c1 -s benches/streams/post.lua "$url") ;;
        append32) args=(-t1 -c32 -s benches/streams/post.lua "$url") ;;
        tail32) args=(-t1 -c32 "$url?offset=-1") ;;  # the stream is empty: a read at its tail
        *) echo "unknown scenario $scenario: append1, append32 or tail32"; exit 2 ;;
      esac
      before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      out=$(wrk -d"${dur}s" "${args[@]}")
      after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$data"
      requests=$(awk '/requests in/ {print $1}' <<<"$out")
      rate=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
      if grep -q "Non-2xx" <<<"$out"; then echo "$server answered non-2xx in $scenario"; exit 1; fi
      cpu=$(awk -v a="$before" -v b="$after" -v n="$requests" -v t="$tick" 'BEGIN {printf "%.1f", (b - a) / t * 1e6 / n}')
      echo "| $scenario | $round | $server | $rate | $cpu µs |"
    done
  done
done
