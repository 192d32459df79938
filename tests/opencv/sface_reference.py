"""OpenCV's own SFace pipeline, the reference for Kenning's alignment parity test.

Usage: sface_reference.py MODEL.onnx TASKS.json

TASKS.json is a list of {"image": path, "points": [[x, y] x 5]} (eye centres
image-left then image-right, nose tip, mouth corners image-left then
image-right, in pixels). For each task the face is cut out by
cv2.FaceRecognizerSF.alignCrop from those five points and embedded by
FaceRecognizerSF.feature; prints the list of raw 128-value features as JSON.
Run by crates/kenning-cli/tests/sface.rs with the test venv
(scripts/setup-test-python.sh).
"""
import json
import sys

import cv2
import numpy as np


def main():
    model, tasks = sys.argv[1], json.load(open(sys.argv[2]))
    recogniser = cv2.FaceRecognizerSF.create(model, "")
    images, out = {}, []
    for t in tasks:
        if t["image"] not in images:
            img = cv2.imread(t["image"], cv2.IMREAD_COLOR)
            if img is None:
                sys.exit(f"cannot read {t['image']}")
            images = {t["image"]: img}
        img = images[t["image"]]
        # alignCrop reads the five points from a YuNet detection row:
        # x, y, w, h, then the points, then the score (box and score unused).
        row = np.zeros((1, 15), np.float32)
        row[0, 4:14] = np.array(t["points"], np.float32).ravel()
        crop = recogniser.alignCrop(img, row)
        out.append([float(v) for v in recogniser.feature(crop).ravel()])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
