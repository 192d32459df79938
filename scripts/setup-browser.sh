#!/usr/bin/env bash
# Installs what the console's browser tests need: Debian's chromium and
# chromium-driver (apt-get, as root, when missing) and the axe-core
# accessibility engine from its npm package, pinned and checked, into
# .cache/axe-core/axe.min.js.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-browser: chromium and chromium-driver are missing; install them (apt-get install -y chromium chromium-driver) as root" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
version=4.14.1
sha=e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745
cache="$root/.cache/npm"
out="$root/.cache/axe-core"
if [ -f "$out/axe.min.js" ] && [ "$(cat "$out/VERSION" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
mkdir -p "$cache" "$out"
tarball="$cache/axe-core-$version.tgz"
if [ ! -f "$tarball" ]; then
  (cd "$cache" && npm pack --silent "axe-core@$version" >/dev/null)
fi
if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$sha" ]; then
  echo "setup-browser: $tarball has an unexpected SHA-256" >&2
  rm -f "$tarball"
  exit 1
fi
tmp="$(mktemp -d)"
tar -xzf "$tarball" -C "$tmp" package/axe.min.js
mv "$tmp/package/axe.min.js" "$out/axe.min.js"
rm -rf "$tmp"
echo "$version" > "$out/VERSION"
