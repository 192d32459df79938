#!/usr/bin/env bash
# Makes .cache/venv-bench-fr: the face_recognition Python library 1.3.0 with
# dlib-bin, the peer the benchmarks compare Kenning with. Prints its python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.cache/venv-bench-fr"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet numpy pillow dlib-bin==20.0.1.post1 >&2
  "$venv/bin/pip" install --quiet --no-deps face_recognition==1.3.0 \
    "$(ls "$root"/.cache/pip/face_recognition_models-0.3.0.tar.gz 2>/dev/null || echo face_recognition_models==0.3.0)" >&2
fi
echo "$venv/bin/python"
