#!/usr/bin/env bash
# Sets up the default models and runs the kenning CLI: with no arguments it
# detects faces in a sample photo; otherwise it passes its arguments on,
# e.g. `scripts/run.sh compare a.jpg b.jpg`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-models.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
export KENNING_MODELS="${KENNING_MODELS:-$root/models}"
kenning="$root/target/release/kenning"
if [ $# -gt 0 ]; then
  exec "$kenning" "$@"
fi
sample="$root/../shared/data/misc/face_recognition/examples/two_people.jpg"
if [ ! -f "$sample" ]; then
  echo "usage: scripts/run.sh detect|embed|compare IMAGE... (no sample photo found at $sample)" >&2
  exit 2
fi
exec "$kenning" detect "$sample"
