#!/usr/bin/env bash
# Installs Debian packages with apt-get, through sudo when not root:
#   bash scripts/apt-install.sh WHO PACKAGE...
# WHO (the calling setup script) names it in messages.
set -euo pipefail
who="$1"
shift
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "$who: installing needs root: apt-get install -y $*" >&2
    exit 1
  fi
fi
echo "$who: installing $* with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
