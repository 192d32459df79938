#!/usr/bin/env bash
# Sets up the default models and starts the service (`kenning serve` on
# 127.0.0.1:8470 with ./data, printing the URL and credentials); with
# arguments it runs the kenning CLI instead, e.g. `scripts/run.sh compare a.jpg b.jpg`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-models.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
export KENNING_MODELS="${KENNING_MODELS:-$root/models}"
kenning="$root/target/release/kenning"
if [ $# -gt 0 ]; then
  exec "$kenning" "$@"
fi
exec "$kenning" serve --listen "${KENNING_LISTEN:-127.0.0.1:8470}" --data "${KENNING_DATA:-$root/data}"
