#!/usr/bin/env python3
"""Generates tests/fixtures/parity/reference.json: what dlib itself (as used by
face_recognition 1.3.0) finds on the shared test photos, for Kenning's parity
tests.

How to run (from the repository root):

    python3 -m venv .cache/venv-ref
    .cache/venv-ref/bin/pip install --find-links .cache/pip \
        numpy pillow onnxruntime==1.31.1 dlib-bin
    .cache/venv-ref/bin/pip install .cache/pip/face_recognition_models-0.3.0.tar.gz
    .cache/venv-ref/bin/python scripts/make-parity-fixtures.py [--data ../shared/data]

The data root defaults to ../shared/data beside the repository. Images are
read from <data>/misc (recursively, .jpg/.png) and
<data>/identity/deepface/images; they are never copied into the repository.

For each image: PIL's `.convert('RGB')` decode (exactly as
face_recognition.load_image_file), the SHA-256 of that RGB buffer (so a Rust
test can tell a decoder mismatch from a model mismatch), width and height,
and the faces dlib's HOG detector finds with 1 upsample (2 if none;
"upsample" records which; 0 faces with either gives an empty list). For each
face: the integer rectangle [left, top, right, bottom] (inclusive, as
dlib.rectangle), the 5 landmarks of shape_predictor_5_face_landmarks as
[[x, y], ...] and the 128-d descriptor of compute_face_descriptor with
num_jitters=1 (no jitter), written with full float precision (repr).
"""

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import dlib
import face_recognition_models
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "parity" / "reference.json"


def image_files(data: Path):
    files = [p for p in (data / "misc").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file()]
    deepface = data / "identity" / "deepface" / "images"
    files += [p for p in deepface.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(data).as_posix())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    data = Path(args.data).resolve()

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    images = []
    for path in image_files(data):
        rel = path.relative_to(data).as_posix()
        img = np.array(Image.open(path).convert("RGB"))
        h, w = img.shape[:2]
        upsample = 1
        rects = list(detector(img, 1))
        if not rects:
            upsample = 2
            rects = list(detector(img, 2))
        faces = []
        for r in rects:
            shape = predictor(img, r)
            desc = encoder.compute_face_descriptor(img, shape, 1)
            faces.append(
                {
                    "rect": [r.left(), r.top(), r.right(), r.bottom()],
                    "landmarks": [[shape.part(k).x, shape.part(k).y] for k in range(5)],
                    "descriptor": [float(v) for v in desc],
                }
            )
        images.append(
            {
                "path": rel,
                "width": w,
                "height": h,
                "rgb_sha256": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest(),
                "upsample": upsample,
                "faces": faces,
            }
        )
        print(f"{rel}: {len(faces)} face(s), upsample {upsample}", file=sys.stderr)

    doc_header = {
        "generator": "scripts/make-parity-fixtures.py",
        "dlib": dlib.__version__,
        "decoder": f"PIL {Image.__version__} .convert('RGB')",
        "detector": "dlib HOG frontal face detector, upsample 1 (2 if no face)",
        "landmarks": "shape_predictor_5_face_landmarks.dat",
        "descriptor": "dlib_face_recognition_resnet_model_v1.dat, compute_face_descriptor(num_jitters=1)",
        "rect": "[left, top, right, bottom], inclusive, as dlib.rectangle",
    }
    # Compact layout: one line per image header and one per face, so diffs
    # stay readable; floats use repr (shortest round-trip form).
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        f.write("{\n")
        for k, v in doc_header.items():
            f.write(f"  {json.dumps(k)}: {json.dumps(v)},\n")
        f.write('  "images": [\n')
        for i, im in enumerate(images):
            head = {k: v for k, v in im.items() if k != "faces"}
            f.write("    " + json.dumps(head)[:-1] + ', "faces": [')
            if im["faces"]:
                f.write("\n")
                f.write(",\n".join("      " + json.dumps(face, separators=(",", ":")) for face in im["faces"]))
                f.write("\n    ")
            f.write("]}" + ("," if i + 1 < len(images) else "") + "\n")
        f.write("  ]\n}\n")
    json.load(open(out))  # the hand-made layout must still be valid JSON
    n_faces = sum(len(im["faces"]) for im in images)
    none = [im["path"] for im in images if not im["faces"]]
    print(f"wrote {out}: {len(images)} images, {n_faces} faces, {len(none)} without a HOG face", file=sys.stderr)


if __name__ == "__main__":
    main()
