#!/usr/bin/env bash
# Creates .cache/venv-test with the pinned Python packages the tests drive:
# the server's compatibility tests (boto3, the aws CLI, pytest), the PIL the
# decoder's parity test compares with, the fuzzers (Schemathesis, Hypothesis),
# the SFace alignment parity test, whose reference is OpenCV's
# FaceRecognizerSF (opencv-python-headless, numpy), and what the console's
# browser tests drive Chromium with (selenium). Test-time only: the product
# never runs Python. Runs once; a second run only checks the versions.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.cache/venv-test"
want="awscli==1.46.2 boto3==1.44.5 botocore==1.44.5 pytest==9.2.0 prometheus-client==0.26.0 pillow==12.0.0 schemathesis==4.32.5 hypothesis==6.170.17 numpy==2.4.6 opencv-python-headless==5.0.0.93 selenium==4.50.0"
stamp="$venv/.kenning-requirements"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
echo "$want" > "$stamp"
