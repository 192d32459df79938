"""Compare kenning-image's decoder with PIL's Image.open(f).convert("RGB").

Usage: python pil_parity.py RGB_DUMP_BINARY FILE...   (or file names on stdin)
Prints one line per mismatch and a summary. EXIF orientation is applied by
kenning-image, so PIL's side is transposed with ImageOps.exif_transpose.
"""
import struct
import subprocess
import sys

import numpy as np
from PIL import Image, ImageOps


def main():
    binary, files = sys.argv[1], sys.argv[2:] or [l.strip() for l in sys.stdin if l.strip()]
    proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    same = differ = failed = 0
    worst = 0
    for path in files:
        proc.stdin.write((path + "\n").encode())
        proc.stdin.flush()
        w, h = struct.unpack("<II", proc.stdout.read(8))
        ours = np.frombuffer(proc.stdout.read(w * h * 3), np.uint8).reshape(h, w, 3)
        try:
            with Image.open(path) as im:
                ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        except Exception as e:  # noqa: BLE001
            print(f"PIL failed {path}: {e}; ours {w}x{h}")
            failed += 1
            continue
        if ref.shape != ours.shape:
            print(f"shape {path}: PIL {ref.shape} ours {ours.shape}")
            differ += 1
            continue
        d = int(np.abs(ref.astype(int) - ours.astype(int)).max())
        if d == 0:
            same += 1
        else:
            differ += 1
            worst = max(worst, d)
            print(f"differ {path}: max {d}, {(ref != ours).any(axis=2).mean():.4%} of pixels")
    proc.stdin.close()
    proc.wait()
    print(f"{same} identical, {differ} different (worst {worst}), {failed} PIL failures, of {len(files)}")


if __name__ == "__main__":
    main()
