#!/usr/bin/env bash
# Installs ffmpeg and ffprobe (Debian package), which stored-video jobs run
# as child processes. A second run finds them and does nothing.
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" setup-ffmpeg ffmpeg
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null
echo "setup-ffmpeg: $(ffmpeg -version | head -n1)" >&2
