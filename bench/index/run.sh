#!/usr/bin/env bash
# 1:N search index benchmark: kenning-index vs FAISS on the same vectors.
# Usage: bench/index/run.sh N [QUERIES]   (e.g. 1000000, 10000000)
# Env: BENCH_DIR (default .cache/bench-index/N), EF (sweep, default
# 16,32,64,128,256,512,1024; the 10M run adds 2048,2304,2560,3072,4096), CROSSOVER=1
# to also measure exact-vs-HNSW at small sizes.
# Search phases are pinned to one core with taskset; builds use both cores.
set -euo pipefail
N=${1:?usage: run.sh N [QUERIES]}
Q=${2:-1000}
EF=${EF:-16,32,64,128,256,512,1024}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIR=${BENCH_DIR:-$ROOT/.cache/bench-index/$N}
VENV=$ROOT/.cache/venv-bench
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import faiss' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q faiss-cpu numpy
fi
PY=$VENV/bin/python
(cd "$ROOT" && cargo build -q --release -p kenning-index --example bench_index)
B=$ROOT/target/release/examples/bench_index
mkdir -p "$DIR"
rm -f "$DIR/results.jsonl"
[ -f "$DIR/gt.npy" ] || "$B" gen --n "$N" --queries "$Q" --dir "$DIR"
"$B" build --dir "$DIR"
taskset -c 1 "$B" search --dir "$DIR" --ef "$EF"
[ "${CROSSOVER:-0}" = 1 ] && taskset -c 1 "$B" crossover --dir "$DIR"
"$PY" "$HERE/faiss_bench.py" build --dir "$DIR" --build-threads 2
taskset -c 1 "$PY" "$HERE/faiss_bench.py" search --dir "$DIR" --ef "$EF"
taskset -c 1 "$PY" "$HERE/faiss_bench.py" flat --dir "$DIR"
"$PY" "$HERE/report.py" "$DIR/results.jsonl"
