#!/usr/bin/env bash
# Live stream processors: latency from a frame to its record on SSE, how
# many 720p streams at 5 fps two cores keep up with, and the stored-video
# real-time factor beside them (see bench/streams/live.py).
# Usage: bench/streams/run.sh [--streams 1 2 3] [--seconds 60]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/scripts/setup-models.sh"
bash "$root/scripts/setup-ffmpeg.sh"
bash "$root/scripts/setup-test-python.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
export KENNING_MODELS="${KENNING_MODELS:-$root/models}"
export KENNING="$root/target/release/kenning"
export KENNING_TEST_DATA="${KENNING_TEST_DATA:-$root/../shared/data}"
exec "$root/.cache/venv-test/bin/python" "$root/bench/streams/live.py" "$@"
