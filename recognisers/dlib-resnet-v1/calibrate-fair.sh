#!/usr/bin/env bash
# Rebuilds fair-calibration.json, the default recogniser's fair (per-region)
# calibration (issue 7; docs/accuracy.md, "Fair calibration"), from the
# impostor pairs of UTKFace, without its labels: k-means with 20 clusters on
# the unit-normalised embeddings, one distance-to-FMR table per cluster from
# the pairs within it, and a final table mapping the pair score to the FMR
# over all pairs.
#
#   calibrate-fair.sh            all 6,000 photos -> fair-calibration.json (shipped)
#   calibrate-fair.sh a OUT      half A of utkface-split-a.txt only (for the
#                                held-out measurement on utkface-split-b.txt)
#
# k = 20 and "within" pairs were chosen on half A alone (fit on one half of
# A, evaluated on the other); see docs/accuracy.md for the sweep.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${KENNING_UTKFACE:-$root/../shared/data/demographics/utkface}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
k=20
if [ "${1:-all}" = a ]; then
  out="${2:?output file}"
  set -- --list "$here/utkface-split-a.txt"
  source="UTKFace half A (recognisers/dlib-resnet-v1/utkface-split-a.txt), k=$k, within-cluster pairs; recognisers/dlib-resnet-v1/calibrate-fair.sh a"
else
  out="$here/fair-calibration.json"
  set --
  source="UTKFace (../shared/data/demographics/utkface): all pairs of 6,000 one-person photos, k=$k, within-cluster pairs; recognisers/dlib-resnet-v1/calibrate-fair.sh"
fi
"$root/target/release/kenning" --models "${KENNING_MODELS:-$root/models}" calibrate "$data" "$@" \
  ${KENNING_CACHE:+--cache "$KENNING_CACHE"} \
  --fair "$k" --fair-pairs within \
  --source "$source" \
  --out "$out"
