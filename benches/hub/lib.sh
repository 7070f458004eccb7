# Shared by benches/hub/run.sh and benches/hub/channels.sh (sourced, not run): the release
# build and bench driver, the Node `ws` anchor, a scratch directory, servers started and
# stopped between cases. Expects to be sourced from the repository root with `set -euo pipefail`.

# The release `courier` (or COURIER_BIN, another build to measure) and the bench driver $1.
# Sets $bin and $bench.
build_bench() { # bench-name
  bin=${COURIER_BIN:-target/release/courier}
  [[ -n "${COURIER_BIN:-}" ]] || cargo build --release -p courier-cli >&2
  bench=$(cargo bench -p courier-cli --bench "$1" --no-run --message-format=json 2>/dev/null |
    sed -n "s/.*\"executable\":\"\([^\"]*$1[^\"]*\)\".*/\1/p" | tail -1)
  [[ -x "$bench" ]] || { echo "$1 bench binary not found" >&2; exit 1; }
}

# Installs ws@8 for the anchor once (into ~/.cache/courier-hub-anchor) and names its versions.
anchor_dir=${XDG_CACHE_HOME:-$HOME/.cache}/courier-hub-anchor
install_anchor() {
  if [[ ! -d "$anchor_dir/node_modules/ws" ]]; then
    npm install --silent --prefix "$anchor_dir" ws@8 >&2
  fi
  echo "# anchor: node $(node --version), ws $(node -p "require('$anchor_dir/node_modules/ws/package.json').version")"
}

work=$(mktemp -d)
servers=()
# Helper processes (etcd, redis) the scripts add; stopped on exit after the servers.
helpers=()
cleanup() {
  for p in "${servers[@]}" "${helpers[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# 10 000 sockets per process (driver and server) need more than the default 1 024.
ulimit -n "$(ulimit -Hn)"

wait_healthy() { # port
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.1; done
  echo "server on port $1 did not start" >&2; cat "$work"/*.log >&2; exit 1
}
start_anchor() { # port
  NODE_PATH="$anchor_dir/node_modules" node benches/hub/anchor.mjs "$1" bench >"$work/anchor-$1.log" 2>&1 &
  servers+=($!)
  wait_healthy "$1"
}
stop_servers() {
  for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${servers[@]}"; do wait "$p" 2>/dev/null || true; done
  servers=()
  sleep 1 # let the sockets of the last run drain
}

# Starts target $1 (anchor | one | two, the two nodes on ports $2 and $2+1) with the script's
# own start_hub PORT CLUSTER; sets $urls and $pids for the driver.
start_target() { # target port
  case $1 in
    anchor) start_anchor "$2"; urls="127.0.0.1:$2" ;;
    one) start_hub "$2" false; urls="127.0.0.1:$2" ;;
    two)
      start_hub "$2" true; start_hub "$(($2 + 1))" true
      urls="127.0.0.1:$2,127.0.0.1:$(($2 + 1))"
      ;;
    *) echo "unknown target $1" >&2; exit 1 ;;
  esac
  pids=$(IFS=,; echo "${servers[*]}")
}
