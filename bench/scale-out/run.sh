#!/usr/bin/env bash
# Scale-out benchmark: the PostgreSQL backend vs the embedded one on the same
# synthetic faces (the index benchmark's generator), in one run; then search
# throughput through one and two `kenning serve --database` nodes, and the
# outage a client sees when the primary is killed and its standby promoted.
# Usage: bench/scale-out/run.sh N [QUERIES]     (e.g. 100000, 1000000)
# Env: BENCH_DIR (default .cache/bench-scale-out/N), EF (PostgreSQL
# hnsw.ef_search sweep), CLIENTS (default 8), LOAD_SECONDS (default 20; not
# SECONDS, which bash sets to its own running time), HALF (default 1: also a
# halfvec(d) index, in a server of its own), BINARY (default 0; 1: also a
# bit-quantized HNSW index with exact re-rank on the vector(d) database),
# INGEST (bulk, the default: one binary COPY then the HNSW index built; calls:
# 1,000 faces per add_faces call into the live index), M and EFC (the
# database's HNSW m and ef_construction; the product's defaults otherwise),
# EMBEDDED_EF (default 128,256,512,1024: the embedded store's own graph
# searched at these beam widths too, for the comparison at equal recall),
# PREWARM (default 1: pg_prewarm the partition and its indexes before the
# searches), SHARED_BUFFERS (default 3GB, the servers' shared_buffers: room
# for the 1M table and its indexes), NODES and FAILOVER (default 1; 0 skips
# the API-node load or the failover part while iterating), MEMCOMPARE
# (default 1: the vector(d) searches again after a restart with 128 MB of
# shared_buffers and no prewarm, at MEM_EF, default EF).
# Results: BENCH_DIR/results.jsonl.
set -euo pipefail
N=${1:?usage: run.sh N [QUERIES]}
Q=${2:-1000}
EF=${EF:-40,100,200,400,1000}
CLIENTS=${CLIENTS:-8}
SECONDS_PER_RUN=${LOAD_SECONDS:-20}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIR=${BENCH_DIR:-$ROOT/.cache/bench-scale-out/$N}
PY=$ROOT/.cache/venv-test/bin/python
[ -x "$PY" ] || bash "$ROOT/scripts/setup-test-python.sh"
(cd "$ROOT" && cargo build -q --release -p kenning-index --example bench_index \
  && cargo build -q --release -p kenning-postgres --example bench_scale_out \
  && cargo build -q --release -p kenning-cli)
KENNING=$ROOT/target/release/kenning
export KENNING_PG_SHARED_BUFFERS=${SHARED_BUFFERS:-3GB}
export KENNING_PG_EFFECTIVE_CACHE_SIZE=${KENNING_PG_EFFECTIVE_CACHE_SIZE:-8GB}
BUILD_ARGS=(--prewarm "$([ "${PREWARM:-1}" = 1 ] && echo yes || echo no)")
[ -n "${M:-}" ] && BUILD_ARGS+=(--m "$M")
[ -n "${EFC:-}" ] && BUILD_ARGS+=(--ef-construction "$EFC")
mkdir -p "$DIR"
rm -f "$DIR/results.jsonl"
[ -f "$DIR/gt.npy" ] || "$ROOT/target/release/examples/bench_index" gen --n "$N" --queries "$Q" --dir "$DIR"

# PostgreSQL under /tmp (as root its servers run as nobody, who must reach it).
PG=$(mktemp -d /tmp/kenning-bench-pg.XXXXXX)
chmod 755 "$PG"
cleanup() {
  stop_nodes
  bash "$ROOT/scripts/postgres.sh" stop "$PG/one" || true
  bash "$ROOT/scripts/postgres.sh" stop "$PG/half" || true
  bash "$ROOT/scripts/postgres.sh" stop "$PG/pair" || true
  rm -rf "$PG"
}
stop_nodes() {
  [ -f "$PG/pids" ] || return 0
  while read -r p; do kill "$p" 2>/dev/null || true; done <"$PG/pids"
  rm -f "$PG/pids"
}
trap cleanup EXIT
URL=$(bash "$ROOT/scripts/postgres.sh" start "$PG/one" | sed -n 's/^primary=//p')

INGEST=${INGEST:-bulk}
BIN=$([ "${BINARY:-0}" = 1 ] && echo yes || echo no)
"$ROOT/target/release/examples/bench_scale_out" --dir "$DIR" --database "$URL" --ef "$EF" \
  --ingest "$INGEST" --binary "$BIN" --embedded-ef "${EMBEDDED_EF-128,256,512,1024}" "${BUILD_ARGS[@]}"

# API nodes: SearchFaces by FaceId with CLIENTS concurrent clients.
export KENNING_ACCESS_KEY_ID=AKIDBENCHSCALEOUT KENNING_SECRET_ACCESS_KEY=bench-secret-scale-out
export KENNING_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export KENNING_MODELS=${KENNING_MODELS:-$ROOT/models}
serve() { # data-dir [args...]: starts a node, prints its URL
  local data=$1
  shift
  mkdir -p "$data"
  RUST_LOG=warn "$KENNING" serve --data "$data" --listen 127.0.0.1:0 "$@" \
    >"$data.out" 2>"$data.err" </dev/null &
  echo $! >>"$PG/pids"
  for _ in $(seq 1 600); do
    grep -q 'http://' "$data.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -o 'http://[0-9.:]*' "$data.out" | head -1 | grep . || { cat "$data.err" >&2; exit 1; }
}
load() { # endpoints
  "$PY" "$HERE/load.py" --endpoints "$1" --key-id "$KENNING_ACCESS_KEY_ID" \
    --secret "$KENNING_SECRET_ACCESS_KEY" --face-ids "$DIR/face-ids.txt" \
    --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN"
}
if [ "${NODES:-1}" = 1 ]; then
  A=$(serve "$PG/node-a" --database "$URL")
  B=$(serve "$PG/node-b" --database "$URL")
  load "$A" | tee -a "$DIR/results.jsonl"
  load "$A,$B" | tee -a "$DIR/results.jsonl"
  stop_nodes
fi
# The same searches on the same database after a restart with PostgreSQL's
# default 128 MB of shared_buffers and nothing prewarmed (the settings of
# the runs before): what the memory does.
if [ "${MEMCOMPARE:-1}" = 1 ]; then
  bash "$ROOT/scripts/postgres.sh" stop "$PG/one"
  URL=$(KENNING_PG_SHARED_BUFFERS=128MB bash "$ROOT/scripts/postgres.sh" start "$PG/one" | sed -n 's/^primary=//p')
  "$ROOT/target/release/examples/bench_scale_out" --dir "$DIR" --database "$URL" --ef "${MEM_EF:-$EF}" \
    --ingest none --embedded no --prewarm no
fi
bash "$ROOT/scripts/postgres.sh" stop "$PG/one"

# After the load (face-ids.txt is the vector(d) database's): the same faces
# in a halfvec(d) HNSW index (re-ranked on the float4 column).
if [ "${HALF:-1}" = 1 ]; then
  HURL=$(bash "$ROOT/scripts/postgres.sh" start "$PG/half" | sed -n 's/^primary=//p')
  "$ROOT/target/release/examples/bench_scale_out" --dir "$DIR" --database "$HURL" --ef "$EF" \
    --precision half --embedded no --ingest "$INGEST" "${BUILD_ARGS[@]}"
  bash "$ROOT/scripts/postgres.sh" stop "$PG/half"
fi

# Failover: a primary with a synchronous standby, two nodes on both hosts,
# a client writing every 50 ms; the primary is killed (-9) and the standby
# promoted at once (a failover manager adds its detection time to this).
[ "${FAILOVER:-1}" = 1 ] || exit 0
out=$(bash "$ROOT/scripts/postgres.sh" start "$PG/pair" --standby)
P=$(echo "$out" | sed -n 's/^primary=//p')
S=$(echo "$out" | sed -n 's/^standby=//p')
hostport() { echo "$1" | sed 's|.*@\([^/]*\)/.*|\1|'; }
MULTI="$(echo "$P" | sed 's|@.*||')@$(hostport "$P"),$(hostport "$S")/kenning?target_session_attrs=read-write"
A=$(serve "$PG/node-c" --database "$MULTI")
B=$(serve "$PG/node-d" --database "$MULTI")
"$PY" "$HERE/outage.py" --endpoints "$A,$B" --key-id "$KENNING_ACCESS_KEY_ID" \
  --secret "$KENNING_SECRET_ACCESS_KEY" --stop-file "$PG/stop" >"$PG/outage.json" &
client=$!
sleep 5
kill -KILL "$(head -1 "$PG/pair/primary/postmaster.pid")"
bash "$ROOT/scripts/postgres.sh" promote "$PG/pair" >/dev/null
"$(dirname "$(find "$ROOT/.cache" "$PG/pair" -path '*pginstall/bin/psql' 2>/dev/null | head -1)")/psql" \
  -X -q "$S" -c "ALTER SYSTEM SET synchronous_standby_names = ''" -c "SELECT pg_reload_conf()" >/dev/null
sleep 10
touch "$PG/stop"
wait "$client"
tee -a "$DIR/results.jsonl" <"$PG/outage.json"
