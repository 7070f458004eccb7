#!/usr/bin/env bash
# Broker benchmarks, one command: produce rate, end-to-end p50/p99 latency and server CPU per
# message for 1 KiB messages with 1 and 16 producers: `courier broker` reliable on SQLite (the
# embedded default), the log storage (SYSTEMS="log log-normal", not in the default set), Redis and Postgres (the testkit's native servers) and non-reliable, beside
# NATS JetStream (nats-server -js: file storage, acked publish, explicit-ack pull consumer) in
# the same run. Prints a markdown table; method in benches/README.md ("Broker").
#
#   benches/broker/run.sh
#   DUR=5 PRODUCERS="1 16" SYSTEMS="sqlite sqlite-normal log redis postgres non-reliable jetstream" DRAIN=10 \
#     benches/broker/run.sh
#   PROFILE=debug DUR=1 benches/broker/run.sh     # a smoke run of the harness only
#
# The bench is a Cargo project of its own (benches/broker/Cargo.toml: async-nats stays out of
# Courier's dependency tree); it shares CARGO_TARGET_DIR with the workspace build when set.
# Needs nats-server (Debian: apt-get install nats-server), redis-server and postgres 15.
set -euo pipefail
cd "$(dirname "$0")/../.."
export COURIER_TESTKIT_MODE="${COURIER_TESTKIT_MODE:-native}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
profile="${PROFILE:-release}"
flag=(--release)
[[ "$profile" == release ]] || flag=()
cargo build "${flag[@]}" -p courier-cli >&2
cargo build "${flag[@]}" --manifest-path benches/broker/Cargo.toml --target-dir "$target" >&2
export COURIER_BIN="${COURIER_BIN:-$target/$profile/courier}"
nats="${NATS_BIN:-nats-server}"
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); profile $profile; $("$nats" --version); $(redis-server --version | cut -d' ' -f1-3); postgres $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}')"
echo "# DUR=${DUR:-5} PRODUCERS=\"${PRODUCERS:-1 16}\" SYSTEMS=\"${SYSTEMS:-sqlite sqlite-normal redis postgres non-reliable jetstream}\" DRAIN=${DRAIN:-10}"
"$target/$profile/broker-bench"
