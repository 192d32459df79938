#!/usr/bin/env bash
# Sets up everything the tests need (models, ONNX Runtime, test-only models)
# and runs the whole test suite: formatting, lints, unit and integration tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-models.sh
bash scripts/setup-test-models.sh
bash scripts/setup-test-python.sh
export KENNING_MODELS="${KENNING_MODELS:-$root/models}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release
