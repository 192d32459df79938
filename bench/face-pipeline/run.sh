#!/usr/bin/env bash
# Kenning's CLI against the face_recognition Python library (dlib's HOG
# detector + the same dlib ResNet), on the same photos, one core each.
# Usage: bench/face-pipeline/run.sh [REPEATS]   (prints a Markdown table)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.cache/venv-bench-fr"
bash "$root/scripts/setup-models.sh"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet numpy pillow dlib-bin==20.0.1.post1
  "$venv/bin/pip" install --quiet --no-deps face_recognition==1.3.0 \
    "$(ls "$root"/.cache/pip/face_recognition_models-0.3.0.tar.gz 2>/dev/null || echo face_recognition_models==0.3.0)"
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
KENNING_MODELS="${KENNING_MODELS:-$root/models}" "$venv/bin/python" "$root/bench/face-pipeline/bench.py" \
  --kenning "$root/target/release/kenning" --data "$root/../shared/data" --repeats "${1:-3}"
