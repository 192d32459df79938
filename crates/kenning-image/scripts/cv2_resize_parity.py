"""Compare resize_bilinear with cv2.resize(INTER_LINEAR) on real images.

Usage: python cv2_resize_parity.py RGB_DUMP_BINARY FILE...
Decodes with PIL, resizes with OpenCV to several sizes, and compares with
`rgb_dump W H` (decode + resize_bilinear).
"""
import struct
import subprocess
import sys

import cv2
import numpy as np
from PIL import Image

SIZES = [(640, 640), (320, 240), (97, 131), (1000, 37), (33, 1200)]


def main():
    binary, files = sys.argv[1], sys.argv[2:]
    worst = 0
    for w, h in SIZES:
        proc = subprocess.Popen([binary, str(w), str(h)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for path in files:
            proc.stdin.write((path + "\n").encode())
            proc.stdin.flush()
            ow, oh = struct.unpack("<II", proc.stdout.read(8))
            ours = np.frombuffer(proc.stdout.read(ow * oh * 3), np.uint8).reshape(oh, ow, 3)
            with Image.open(path) as im:
                ref = cv2.resize(np.asarray(im.convert("RGB")), (w, h), interpolation=cv2.INTER_LINEAR)
            d = np.abs(ref.astype(int) - ours.astype(int))
            worst = max(worst, int(d.max()))
            print(f"{w}x{h} {path}: max {d.max()}, {(d > 0).mean():.3%} differ")
        proc.stdin.close()
        proc.wait()
    print(f"worst difference {worst}")


if __name__ == "__main__":
    main()
