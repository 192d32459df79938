#!/usr/bin/env bash
# Sets up the default models and ffmpeg and starts the service (`kenning serve` on
# 127.0.0.1:8470 with ./data, printing the API's and the web console's URLs
# and the credentials to sign in with); with
# arguments it runs the kenning CLI instead, e.g. `scripts/run.sh compare a.jpg b.jpg`.
# KENNING_TLS=dev serves HTTPS with a self-signed development certificate made
# once in .cache/dev-tls (clients trust it with boto3 verify=, aws --ca-bundle).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-models.sh"
bash "$root/scripts/setup-ffmpeg.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
export KENNING_MODELS="${KENNING_MODELS:-$root/models}"
kenning="$root/target/release/kenning"
if [ $# -gt 0 ]; then
  exec "$kenning" "$@"
fi
tls=()
if [ "${KENNING_TLS:-}" = "dev" ]; then
  dir="$root/.cache/dev-tls"
  if [ ! -f "$dir/cert.pem" ] || [ ! -f "$dir/key.pem" ]; then
    "$kenning" tls dev-cert --out "$dir" >/dev/null
  fi
  tls=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
  echo "development certificate: $dir/cert.pem (e.g. aws ... --ca-bundle $dir/cert.pem)"
fi
exec "$kenning" serve --listen "${KENNING_LISTEN:-127.0.0.1:8470}" --data "${KENNING_DATA:-$root/data}" "${tls[@]}"
