#!/usr/bin/env bash
# Side-by-side load benchmark of Durable Streams servers, alternating servers per round in one
# run: `courier streams` on memory and on SQLite, the peer `durable-streams-server` (the
# `durable-streams` crate, 0.1.5) in memory and WAL mode, and the Node reference server
# (@durable-streams/server, from scripts/ds-conformance's install). The scenarios are the team's
# ds-bench ones (post.lua, post-many.lua, prepare.mjs, fanout.mjs here are its copies).
#
# Usage: benches/streams/run.sh
#   env: DUR=10 ROUNDS=2 CONNS=32
#        TARGETS="ours-memory ours-sqlite peer-memory peer-wal reference"
#          (also: ours-sqlite-normal = SQLite with sync=normal; ours-log = the embedded log
#          storage, log:DIR; base-memory, base-sqlite, base-log = the
#          same with COURIER_BASE_BIN, e.g. a build of the commit before a change)
#        SCENARIOS="append1 append32 many32 tail32 last10 read1000 latency fanout1000"
#          (also: large = 1 MiB appends at c=4, fanout100)
#        COURIER_BIN (default $CARGO_TARGET_DIR/release/courier, target/ when unset; built if
#          missing), COURIER_BASE_BIN, PEER_BIN (default durable-streams-server on PATH),
#        RESULTS (file the lines are also written to; default: a temp file, removed)
# Needs wrk, node, curl. Loopback only; every scenario is bounded to DUR seconds.
# Prints one line per (round, target, scenario): req/s, p50, p99, server CPU µs per request
# (utime+stime of the server process from /proc/PID/stat, before and after the scenario), wrk's
# own CPU µs per request (the load generator shares the cores), then
# per target its peak RSS (VmHWM) after the round, and at the end a table of medians over the
# rounds (req/s and CPU µs/req).
#
# Durability of what is compared: ours-sqlite acknowledges after the commit's fsync of the
# SQLite WAL (synchronous=FULL); ours-log after its journal group's fdatasync; peer-wal after
# its WAL's fdatasync (--durability wal).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/streams
DUR="${DUR:-10}"; ROUNDS="${ROUNDS:-2}"; CONNS="${CONNS:-32}"
TARGETS="${TARGETS:-ours-memory ours-sqlite peer-memory peer-wal reference}"
SCENARIOS="${SCENARIOS:-append1 append32 many32 tail32 last10 read1000 latency fanout1000}"
bin="${COURIER_BIN:-${CARGO_TARGET_DIR:-target}/release/courier}"
base_bin="${COURIER_BASE_BIN:-}"
peer_bin="${PEER_BIN:-$(command -v durable-streams-server || true)}"
for t in $TARGETS; do case $t in
  ours-*) [[ -x $bin ]] || cargo build --release -p courier-cli ;;
  base-*) [[ -x $base_bin ]] || { echo "$t needs COURIER_BASE_BIN"; exit 2; } ;;
  peer-*) [[ -x $peer_bin ]] || { echo "$t needs PEER_BIN (cargo install --locked durable-streams@0.1.5 --root DIR)"; exit 2; } ;;
esac; done
anchor="${DS_ANCHOR_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ds-conformance}"
if [[ " $TARGETS " == *" reference "* && ! -f "$anchor/start-reference-server.mjs" ]]; then
  scripts/ds-conformance http://127.0.0.1:9 >/dev/null 2>&1 || true
fi
tick=$(getconf CLK_TCK)
work=$(mktemp -d); pid=""
results="${RESULTS:-$work/results}"; : >"$results"
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
out() { printf "%s\n" "$1" | tee -a "$results"; }

start() { # target port
  local data="$work/data"; rm -rf "$data"; mkdir -p "$data"
  local courier=$bin; [[ $1 == base-* ]] && courier=$base_bin
  # exec: $! is then the server itself, whose CPU time and RSS are read from /proc.
  case "$1" in
    ours-memory|base-memory) exec "$courier" streams --storage memory --addr "127.0.0.1:$2" --long-poll-timeout 500ms ;;
    ours-sqlite|base-sqlite) exec "$courier" streams --storage "sqlite:$data/s.db" --addr "127.0.0.1:$2" --long-poll-timeout 500ms ;;
    ours-log|base-log) exec "$courier" streams --storage "log:$data/log" --addr "127.0.0.1:$2" --long-poll-timeout 500ms ;;
    ours-sqlite-normal) exec "$courier" streams --storage "sqlite:$data/s.db?sync=normal" --addr "127.0.0.1:$2" --long-poll-timeout 500ms ;;
    peer-memory) exec "$peer_bin" --host 127.0.0.1 --port "$2" --data-dir "$data" --durability memory --long-poll-timeout-ms 500 ;;
    peer-wal) exec "$peer_bin" --host 127.0.0.1 --port "$2" --data-dir "$data" --durability wal --long-poll-timeout-ms 500 ;;
    reference) DS_LONG_POLL_MS=500 DS_COMPRESSION=0 exec node "$anchor/start-reference-server.mjs" "$2" ;;
    *) echo "unknown target $1"; exit 2 ;;
  esac >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$2/v1/stream/probe" && return; sleep 0.1; done
  echo "server $1 did not start"; cat "$work/log"; exit 1
}
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
wrk_run() { # name args...
  local name=$1; shift
  local c0 out c1 reqs rps p50 p99 non2xx
  # wrk's own CPU (user + sys, bash's `time`): the client shares the machine's cores, so a
  # server whose answers cost the client more gets fewer requests per second.
  local TIMEFORMAT="%U %S" wrk_cpu
  c0=$(cpu); { time out=$(wrk --latency -d"${DUR}s" "$@" 2>&1); } 2>"$work/wrk-time"; c1=$(cpu)
  wrk_cpu=$(awk '{print $1 + $2}' "$work/wrk-time")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  out "$(printf "%-18s %-34s rps=%-9s p50=%-8s p99=%-8s cpu_us/req=%-6s non2xx=%-4s wrk_cpu_us/req=%s" "$target" "$name" "$rps" "$p50" "$p99" \
    "$(awk -v d=$((c1 - c0)) -v n="$reqs" -v t="$tick" 'BEGIN{ if (n>0) printf "%.1f", d/t*1e6/n; else print "-" }')" "${non2xx:-0}" \
    "$(awk -v w="$wrk_cpu" -v n="$reqs" 'BEGIN{ if (n>0) printf "%.1f", w*1e6/n; else print "-" }')")"
}

port=4600
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    port=$((port + 1)); start "$target" "$port"; url="http://127.0.0.1:$port"
    P="$(node $here/prepare.mjs "$url" 1000 1000 100)"
    j() { node -e "const o=JSON.parse(process.argv[1]);process.stdout.write(String(o[process.argv[2]]))" "$P" "$1"; }
    enc() { node -e "process.stdout.write(encodeURIComponent(process.argv[1]))" "$1"; }
    ONE="$(j one)"; MP="$(j manyPrefix)"; READ="$(j read)"; TAIL="$(j tail)"; NEAR="$(j near)"
    out "# round $round target $target ($url) dur=${DUR}s conns=$CONNS"
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
      latency)  o=$(node $here/fanout.mjs "$url" 1 100 "$DUR")
                out "$(printf "%-18s %-34s %s" "$target" "append->long-poll latency 1 reader 100/s" "$o")" ;;
      fanout100|fanout1000) r=${s#fanout}; o=$(node $here/fanout.mjs "$url" "$r" 10 "$DUR")
                out "$(printf "%-18s %-34s %s" "$target" "long-poll fan-out $r readers 10/s" "$o")" ;;
    esac; done
    out "$(printf "%-18s %-34s %s" "$target" "peak RSS" "$(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$pid/status")")"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done

# Medians over the rounds: one row per scenario, one column per target (req/s | CPU µs/req).
echo
echo "# medians over $ROUNDS round(s): req/s, server CPU µs per request"
awk -v targets="$TARGETS" '
  /^#/ { next }
  { t = $1; line = $0; sub(/^[^ ]+ +/, "", line)
    if (match(line, / rps=[^ ]+/)) {
      name = substr(line, 1, RSTART - 1); sub(/ +$/, "", name)
      rps = substr(line, RSTART + 5, RLENGTH - 5)
      match(line, /cpu_us\/req=[^ ]+/); c = substr(line, RSTART + 11, RLENGTH - 11)
      if (!(name in seen)) { seen[name] = 1; order[++n] = name }
      k = name SUBSEP t; cnt[k]++; R[k, cnt[k]] = rps; C[k, cnt[k]] = c
    } else if (line ~ /^peak RSS/) { rss[t] = rss[t] " " $(NF - 1) }
  }
  function med(arr, k, m,   i, j, v, tmp) {
    for (i = 1; i <= m; i++) v[i] = arr[k, i] + 0
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
  }
  END {
    nt = split(targets, T, " ")
    printf "| %-34s |", "scenario"; for (i = 1; i <= nt; i++) printf " %-18s |", T[i]; print ""
    for (r = 1; r <= n; r++) {
      printf "| %-34s |", order[r]
      for (i = 1; i <= nt; i++) { k = order[r] SUBSEP T[i]
        if (cnt[k]) printf " %7.1fk %6.1f µs |", med(R, k, cnt[k]) / 1000, med(C, k, cnt[k]); else printf " %-18s |", "-" }
      print ""
    }
    printf "| %-34s |", "peak RSS (MB, per round)"; for (i = 1; i <= nt; i++) printf " %-18s |", rss[T[i]]; print ""
  }' "$results" | tee -a "$results"
