#!/usr/bin/env bash
# Shared storages against the server's own speed (issue 19, item 4), in one run on fresh native
# servers with the same durability settings for both sides:
#   Redis: appendonly yes, appendfsync always. Raw rate: redis-benchmark -c CONNS XADD (100 B).
#   Postgres 15: fsync on, synchronous_commit on. Raw rate: pgbench -c CONNS, one single-row
#   INSERT (100 B) per transaction.
# Then `courier streams --storage redis://… | postgres://…` on the same server under wrk
# (-t1 -cCONNS): 100 B appends to one stream (post.lua) and to 1000 streams (post-many.lua);
# prints req/s, p50, p99, server CPU µs per request, non-2xx, and the ratio to the raw rate.
#
# Usage: benches/streams/shared-storages.sh
#   env: DUR=10 (seconds per wrk scenario and per pgbench run), CONNS=32, RAW_N=200000
#        (redis-benchmark requests), STORAGES="redis postgres",
#        BINS="label:path ..." (default "ours:target/release/courier"; several binaries, e.g.
#        "before:/tmp/courier-old after:target/release/courier", run one after another on the
#        same servers, each on streams of its own).
# Needs redis-server, redis-benchmark, Postgres 15 under /usr/lib/postgresql/15/bin, wrk, curl,
# python3 (free ports). Loopback only; every step is bounded in time; servers are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/streams
DUR="${DUR:-10}"; CONNS="${CONNS:-32}"; RAW_N="${RAW_N:-200000}"
STORAGES="${STORAGES:-redis postgres}"
BINS="${BINS:-ours:target/release/courier}"
pgbin=/usr/lib/postgresql/15/bin
tick=$(getconf CLK_TCK)
body=$(printf 'x%.0s' $(seq 100))

work=$(mktemp -d); chmod 755 "$work"
pids=(); stops=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for stop in "${stops[@]}"; do eval "$stop" >/dev/null 2>&1 || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Runs CHECK... every 0.1 s until it succeeds; fails after 10 s naming WHAT.
wait_for() {
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out after 10 s waiting for $what" >&2; exit 1
}

start_redis() { # sets backend_url, raw
  local port; port=$(free_port); mkdir -p "$work/redis"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work/redis" --save '' \
    --appendonly yes --appendfsync always --daemonize yes \
    --pidfile "$work/redis/redis.pid" --logfile "$work/redis/redis.log" >/dev/null
  stops+=("kill \$(cat $work/redis/redis.pid)")
  wait_for "redis-server on port $port" redis-cli -p "$port" ping
  echo "# redis $(redis-server --version | grep -o 'v=[0-9.]*'): appendonly=$(redis-cli -p "$port" config get appendonly | tail -1) appendfsync=$(redis-cli -p "$port" config get appendfsync | tail -1)"
  local out
  out=$(timeout 300 redis-benchmark -p "$port" -c "$CONNS" -n "$RAW_N" -q XADD raw-bench '*' d "$body" 2>&1 | tr '\r' '\n')
  raw=$(grep -o '[0-9.]* requests per second' <<<"$out" | tail -1 | awk '{print $1}')
  redis-cli -p "$port" del raw-bench >/dev/null
  printf "%-10s %-40s rps=%s\n" raw "redis-benchmark -c $CONNS XADD 100B" "$raw"
  backend_url="redis://127.0.0.1:$port/"
}

start_postgres() { # sets backend_url, raw
  local port run=(); port=$(free_port)
  [[ $(id -u) == 0 ]] && run=(runuser -u postgres --)
  mkdir -p "$work/pg"; [[ $(id -u) == 0 ]] && chown postgres "$work/pg"
  "${run[@]}" "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres >/dev/null
  stops+=("${run[*]} $pgbin/pg_ctl -D $work/pg/data -m immediate stop")
  "${run[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -t 30 \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" \
    start >/dev/null
  local psql=("$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt)
  echo "# postgres $("${psql[@]}" -c 'SHOW server_version'): fsync=$("${psql[@]}" -c 'SHOW fsync') synchronous_commit=$("${psql[@]}" -c 'SHOW synchronous_commit')"
  "${psql[@]}" -c "CREATE TABLE raw_bench (id BIGSERIAL PRIMARY KEY, data BYTEA NOT NULL)"
  echo "INSERT INTO raw_bench (data) VALUES ('$body'::bytea);" > "$work/insert.sql"
  local out
  out=$(timeout $((DUR + 60)) "$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n \
    -c "$CONNS" -j 2 -T "$DUR" -f "$work/insert.sql" postgres 2>&1)
  raw=$(grep -o 'tps = [0-9.]*' <<<"$out" | head -1 | awk '{print $3}')
  "${psql[@]}" -c "DROP TABLE raw_bench"
  printf "%-10s %-40s rps=%s\n" raw "pgbench -c $CONNS single-row INSERT 100B" "$raw"
  backend_url="postgres://postgres@127.0.0.1:$port/postgres"
}

start_courier() { # bin storage-url; sets url, pid
  local port; port=$(free_port)
  "$1" streams --storage "$2" --addr "127.0.0.1:$port" --long-poll-timeout 500ms >"$work/courier.log" 2>&1 &
  pid=$!; pids+=("$pid"); url="http://127.0.0.1:$port"
  wait_for "courier streams on $2" curl -sf "$url/health"
}

cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
wrk_run() { # label name args...
  local label=$1 name=$2; shift 2
  local c0 out c1 reqs rps p50 p99 non2xx
  c0=$(cpu); out=$(timeout $((DUR + 30)) wrk --latency -t1 -c"$CONNS" -d"${DUR}s" "$@" 2>&1); c1=$(cpu)
  reqs=$(awk '/requests in/ {print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf "%-10s %-40s rps=%-9s p50=%-8s p99=%-8s cpu_us/req=%-6s non2xx=%-5s ratio=%s\n" \
    "$label" "$name" "$rps" "$p50" "$p99" \
    "$(awk -v d=$((c1 - c0)) -v n="$reqs" -v t="$tick" 'BEGIN{ if (n>0) printf "%.1f", d/t*1e6/n; else print "-" }')" \
    "${non2xx:-0}" "$(awk -v a="$rps" -v b="$raw" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }')"
}

for storage in $STORAGES; do
  raw=""; backend_url=""
  case $storage in
    redis) start_redis ;;
    postgres) start_postgres ;;
    *) echo "unknown storage $storage (redis | postgres)"; exit 2 ;;
  esac
  for entry in $BINS; do
    label=${entry%%:*}; bin=${entry#*:}
    [[ -x $bin ]] || { echo "no binary at $bin"; exit 2; }
    start_courier "$bin" "$backend_url"
    one="/v1/stream/$label-one"
    curl -sf -o /dev/null -X PUT -H 'content-type: application/octet-stream' "$url$one"
    seq 0 999 | xargs -P 8 -I{} curl -sf -o /dev/null -X PUT \
      -H 'content-type: application/octet-stream' "$url/v1/stream/$label-many-{}"
    echo "# $label on $storage ($bin) dur=${DUR}s conns=$CONNS"
    wrk_run "$label" "$storage append 100B 1 stream c=$CONNS" -s $here/post.lua "$url$one"
    DS_STREAMS=1000 DS_PREFIX="/v1/stream/$label-many-" \
      wrk_run "$label" "$storage append 100B 1000 streams c=$CONNS" -s $here/post-many.lua "$url"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  for stop in "${stops[@]}"; do eval "$stop" >/dev/null 2>&1 || true; done
  stops=()
done
