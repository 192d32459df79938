#!/usr/bin/env bash
# Installs ffmpeg and ffprobe (Debian package), which stored-video jobs run
# as child processes. A second run finds them and does nothing.
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "setup-ffmpeg: ffmpeg is missing and installing it needs root: apt-get install -y ffmpeg" >&2
    exit 1
  fi
fi
echo "setup-ffmpeg: installing ffmpeg with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null
echo "setup-ffmpeg: $(ffmpeg -version | head -n1)" >&2
