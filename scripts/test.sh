#!/usr/bin/env bash
# Sets up everything the tests need (models, ONNX Runtime, ffmpeg, GStreamer's RTSP
# server for the stream tests' camera, test-only models,
# a PostgreSQL server with pgvector, Chromium and axe-core for the console's browser tests)
# and runs the whole test suite: formatting, lints, unit and integration tests.
# Tests that need ../shared/data skip without it (each with one line, and a
# count by reason at the end), and fail instead under CI=true or
# KENNING_REQUIRE_DATA=1 (crates/kenning-testdata).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-models.sh
bash scripts/setup-ffmpeg.sh
bash scripts/setup-rtsp.sh
bash scripts/setup-test-models.sh
bash scripts/setup-test-python.sh
bash scripts/setup-browser.sh
export KENNING_MODELS="${KENNING_MODELS:-$root/models}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings

# Every skip in every test binary appends "test<TAB>reason" here.
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target"
export KENNING_SKIP_LOG="$target/test-skips.log"
: > "$KENNING_SKIP_LOG"
skips() {
  local n
  n=$(wc -l < "$KENNING_SKIP_LOG")
  if [ "$n" -eq 0 ]; then
    echo "test suite: no tests skipped"
  else
    echo "test suite: $n tests skipped (list: $KENNING_SKIP_LOG):"
    cut -f2 "$KENNING_SKIP_LOG" | sort | uniq -c | sort -rn
  fi
}

# A real PostgreSQL with pgvector (scripts/postgres.sh) for the PostgreSQL
# backend's tests, which fail under CI without it; stopped when the suite ends.
pgdir="$(mktemp -d /tmp/kenning-test-pg.XXXXXX)"
finish() {
  bash scripts/postgres.sh stop "$pgdir" || true
  rm -rf "$pgdir"
  skips
}
trap finish EXIT
KENNING_TEST_DATABASE="$(bash scripts/postgres.sh start "$pgdir" | sed -n 's/^primary=//p')"
export KENNING_TEST_DATABASE
cargo test --workspace --release
