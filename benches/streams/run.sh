#!/usr/bin/env bash
# Side-by-side load benchmark: `courier streams` (memory, SQLite) vs the Node reference server
# (@durable-streams/server, from scripts/ds-conformance's install), alternating servers per round.
#
# Usage: benches/streams/run.sh            env: DUR=10 ROUNDS=2 CONNS=32 TARGETS="ours-memory ours-sqlite reference"
#        SCENARIOS="append1 append32 many32 tail32 last10 read1000 large latency fanout1000"
# Needs wrk, node, curl; builds target/release/courier if missing. Loopback only; every run is bounded.
# Prints one line per (round, target, scenario): req/s, p50, p99 and server CPU µs per request
# (utime+stime of the server process from /proc/PID/stat, before and after the scenario).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/streams
DUR="${DUR:-10}"; ROUNDS="${ROUNDS:-2}"; CONNS="${CONNS:-32}"
TARGETS="${TARGETS:-ours-memory ours-sqlite reference}"
SCENARIOS="${SCENARIOS:-append1 append32 many32 tail32 last10 read1000 large latency fanout1000}"
bin=target/release/courier
[[ -x $bin ]] || cargo build --release -p courier-cli
anchor="${DS_ANCHOR_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ds-conformance}"
[[ -f "$anchor/start-reference-server.mjs" ]] || scripts/ds-conformance http://127.0.0.1:9 >/dev/null 2>&1 || true
tick=$(getconf CLK_TCK)
work=$(mktemp -d); pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # target port
  case "$1" in
    ours-memory) "$bin" streams --storage memory --addr "127.0.0.1:$2" --long-poll-timeout 500ms >"$work/log" 2>&1 & ;;
    ours-sqlite) rm -f "$work"/s.db*; "$bin" streams --storage "sqlite:$work/s.db" --addr "127.0.0.1:$2" --long-poll-timeout 500ms >"$work/log" 2>&1 & ;;
    reference) DS_LONG_POLL_MS=500 DS_COMPRESSION=0 node "$anchor/start-reference-server.mjs" "$2" >"$work/log" 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$2/v1/stream/probe" && return; sleep 0.1; done
  echo "server $1 did not start"; cat "$work/log"; exit 1
}
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
wrk_run() { # name args...
  local name=$1; shift
  local c0 out c1 reqs rps p50 p99
  c0=$(cpu); out=$(wrk --latency -d"${DUR}s" "$@" 2>&1); c1=$(cpu)
  reqs=$(awk '/requests in/ {print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf "%-12s %-34s rps=%-9s p50=%-8s p99=%-8s cpu_us/req=%-6s non2xx=%s\n" "$target" "$name" "$rps" "$p50" "$p99" \
    "$(awk -v d=$((c1 - c0)) -v n="$reqs" -v t="$tick" 'BEGIN{ if (n>0) printf "%.1f", d/t*1e6/n; else print "-" }')" "${non2xx:-0}"
}

port=4600
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    port=$((port + 1)); start "$target" "$port"; url="http://127.0.0.1:$port"
    P="$(node $here/prepare.mjs "$url" 1000 1000 100)"
    j() { node -e "const o=JSON.parse(process.argv[1]);process.stdout.write(String(o[process.argv[2]]))" "$P" "$1"; }
    enc() { node -e "process.stdout.write(encodeURIComponent(process.argv[1]))" "$1"; }
    ONE="$(j one)"; MP="$(j manyPrefix)"; READ="$(j read)"; TAIL="$(j tail)"; NEAR="$(j near)"
    echo "# round $round target $target ($url) dur=${DUR}s conns=$CONNS"
    for s in $SCENARIOS; do case $s in
      append1)  wrk_run "append 100B 1 stream c=1" -t1 -c1 -s $here/post.lua "$url$ONE" ;;
      append32) wrk_run "append 100B 1 stream c=$CONNS" -t1 -c"$CONNS" -s $here/post.lua "$url$ONE" ;;
      many32)   DS_STREAMS=1000 DS_PREFIX="$MP" wrk_run "append 100B 1000 streams c=$CONNS" -t1 -c"$CONNS" -s $here/post-many.lua "$url" ;;
      tail32)   wrk_run "GET at tail (empty) c=$CONNS" -t1 -c"$CONNS" "$url$READ?offset=$(enc "$TAIL")" ;;
      last10)   wrk_run "GET last 10 msgs (1KB) c=$CONNS" -t1 -c"$CONNS" "$url$READ?offset=$(enc "$NEAR")" ;;
      read1000) wrk_run "GET 1000 msgs (100KB) c=$CONNS" -t1 -c"$CONNS" "$url$READ?offset=-1" ;;
      large)    curl -s -o /dev/null -X PUT -H 'content-type: application/octet-stream' "$url/v1/stream/large-$round"
                DS_BODY_BYTES=1048576 wrk_run "append 1MiB 1 stream c=4" -t1 -c4 -s $here/post.lua "$url/v1/stream/large-$round"
                # drop the stream so its memory does not weigh on later scenarios
                curl -s -o /dev/null -X DELETE "$url/v1/stream/large-$round" ;;
      latency)  c0=$(cpu); out=$(node $here/fanout.mjs "$url" 1 100 "$DUR"); c1=$(cpu)
                printf "%-12s %-34s %s\n" "$target" "append->long-poll latency 1 reader 100/s" "$out" ;;
      fanout1000) out=$(node $here/fanout.mjs "$url" 1000 10 "$DUR")
                printf "%-12s %-34s %s\n" "$target" "long-poll fan-out 1000 readers 10/s" "$out" ;;
    esac; done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
