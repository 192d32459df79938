#!/usr/bin/env bash
# Rebuilds calibration.json, the default recogniser's distance-to-FMR table,
# from every impostor pair of UTKFace (one person per photo; 6,000 photos
# balanced over gender x race, so about 18 million pairs).
#
# Pairs closer than 0.12 are left out: UTKFace holds a few copies of the same
# photo (distance 0 to 0.1), which are not comparisons of different people.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data="${1:-$root/../shared/data/demographics/utkface/images}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
"$root/target/release/kenning" --models "${KENNING_MODELS:-$root/models}" calibrate "$data" \
  --exclude-below 0.12 \
  --source "UTKFace (../shared/data/demographics/utkface): all pairs of 6,000 one-person photos; recognisers/dlib-resnet-v1/calibrate.sh" \
  --out "$root/recognisers/dlib-resnet-v1/calibration.json"
