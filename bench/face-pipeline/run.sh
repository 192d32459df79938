#!/usr/bin/env bash
# Kenning's CLI with each built-in recogniser (dlib ResNet, SFace) against
# the face_recognition Python library (dlib's HOG detector + the same dlib
# ResNet), on the same photos, one core each; then the recognisers alone
# (align + embed per face) side by side.
# Usage: bench/face-pipeline/run.sh [REPEATS]   (prints Markdown tables)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/scripts/setup-models.sh"
python="$(bash "$root/bench/face-recognition-venv.sh")"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
KENNING_MODELS="${KENNING_MODELS:-$root/models}" "$python" "$root/bench/face-pipeline/bench.py" \
  --kenning "$root/target/release/kenning" --data "$root/../shared/data" --repeats "${1:-3}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-models --example bench_recognisers
taskset -c 0 "$root/target/release/examples/bench_recognisers" "${KENNING_MODELS:-$root/models}" \
  "${1:-3}" "$root"/../shared/data/detection/dlib/images/*.jpg
