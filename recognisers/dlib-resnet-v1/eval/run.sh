#!/usr/bin/env bash
# Measures the shipped fair calibration's demographic differentials on
# UTKFace's extra photos (demographics/utkface-extra: 13,612 people the
# calibration was not fitted on; it was fitted on demographics/utkface) and
# writes the two reports the console's Accuracy page and the accountability
# report show: per gender x race (FMR), and per gender (FMR, and FNMR from
# CelebA's gender-labelled genuine pairs).
# Usage (from the repository root): recognisers/dlib-resnet-v1/eval/run.sh [CACHE_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
data=../shared/data
cache="${1:-$(mktemp -d)}"
out=recognisers/dlib-resnet-v1/eval
mkdir -p "$cache"
cargo build --release --quiet -p kenning-cli
run() { # GROUPS OUT
  target/release/kenning --models "${KENNING_MODELS:-models}" eval fairness "$data/demographics/utkface-extra" \
    --groups "$1" --fair-calibration recognisers/dlib-resnet-v1/fair-calibration.json \
    --fmr 1e-3,1e-4 --similarity 70,80,90 --bootstrap 1000 \
    --genuine "$data/identity/celeba" --genuine "$data/identity/att_orl" \
    --cache "$cache/embeddings.jsonl" --json "$2"
}
run gender,race "$out/fairness-gender-race.json"
run gender "$out/fairness-gender.json"
