#!/usr/bin/env bash
# Ingestion benchmarks, one command: events/s accepted through the ingest server (batches of
# 50 and 1000, 200 B events) on memory, SQLite, Redis and Postgres with the server's CPU per
# event, beside the storage's own `append_keyed` rate in the same run (the ceiling); the SDK's
# `track` cost while the transport is stalled; 1 M events end to end through the SDK with the
# stream checked for every one. Prints markdown tables; method in benches/README.md.
#
#   benches/ingest/run.sh
#   DUR=5 ROUNDS=5 CONNS=4 BATCHES="50 1000" STORAGES="memory sqlite redis postgres" \
#   SECTIONS="accept track e2e" TRACK_CALLS=1000000 TRACK_QUEUE=10000 \
#   E2E_EVENTS=1000000 E2E_BATCH=1000 E2E_STORAGES="memory" benches/ingest/run.sh
#   SERVER=courier benches/ingest/run.sh   # the server is `courier ingest` (release build)
#   LOAD=transport benches/ingest/run.sh   # the load through Courier's HttpTransport (before
#                                          # 2026-11-30 15:30Z; default: raw, see raw_http.rs)
#   LOAD_THREADS=2 benches/ingest/run.sh   # the load on a 2-worker runtime (before 2026-12-02;
#                                          # default 1: one thread, as wrk -t1)
#
# Each accept row is ROUNDS rounds of the ceiling and the server, each in a fresh process on a
# fresh stream, alternating which goes first; the row holds medians. The server runs in a process of its own: by default the bench binary's `serve` (the same
# `IngestServer` as `courier ingest`, answering the bench's stream checks on stdin); with
# SERVER=courier (or SERVER_BIN=path/to/courier) `courier ingest`, whose streams the bench reads
# from the storage directly (not possible on memory: those checks are reported "unchecked").
#
# Redis and Postgres are the testkit's native servers (redis-server, /usr/lib/postgresql/15);
# COURIER_TESTKIT_MODE may choose another way (see testkit/src/fixtures). Loopback only; every
# run is bounded by DUR, the event counts and the bench's own timeouts.
set -euo pipefail
cd "$(dirname "$0")/../.."
export COURIER_TESTKIT_MODE="${COURIER_TESTKIT_MODE:-native}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p courier-ingest-bench >&2
if [[ "${SERVER:-bench}" == courier && -z "${SERVER_BIN:-}" ]]; then
  cargo build --release -p courier-cli >&2
  export SERVER_BIN="$target/release/courier"
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f1-3); postgres $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}')"
echo "# DUR=${DUR:-5} ROUNDS=${ROUNDS:-5} CONNS=${CONNS:-4} BATCHES=\"${BATCHES:-50 1000}\" STORAGES=\"${STORAGES:-memory sqlite redis postgres}\" SECTIONS=\"${SECTIONS:-accept track e2e}\" E2E_EVENTS=${E2E_EVENTS:-1000000} E2E_BATCH=${E2E_BATCH:-1000} E2E_STORAGES=\"${E2E_STORAGES:-memory}\" LOAD=${LOAD:-raw} LOAD_THREADS=${LOAD_THREADS:-1} server=${SERVER_BIN:-ingest-bench serve}"
"$target/release/ingest-bench" run
