#!/usr/bin/env bash
# Kenning's CLI against the face_recognition Python library (dlib's HOG
# detector + the same dlib ResNet), on the same photos, one core each.
# Usage: bench/face-pipeline/run.sh [REPEATS]   (prints a Markdown table)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/scripts/setup-models.sh"
python="$(bash "$root/bench/face-recognition-venv.sh")"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
KENNING_MODELS="${KENNING_MODELS:-$root/models}" "$python" "$root/bench/face-pipeline/bench.py" \
  --kenning "$root/target/release/kenning" --data "$root/../shared/data" --repeats "${1:-3}"
