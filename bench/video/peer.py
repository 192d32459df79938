"""The peer for the video benchmark: the face_recognition library on every
6th frame, as its README's video example (facerec_from_video_file.py) does:
HOG detection, dlib ResNet encodings, compare_faces with tolerance 0.50
against the reference photos. Frames come from ffmpeg (raw RGB on a pipe).

Prints one JSON line: frames, wall time and time per stage (model loading
and the reference encodings excluded), faces found, and which reference
people were identified in how many frames.
"""

import argparse
import json
import resource
import subprocess
import time
from pathlib import Path

import face_recognition
import numpy as np


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    s = json.loads(out)["streams"][0]
    return s["width"], s["height"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("--reference", nargs="*", default=[])
    ap.add_argument("--every", type=int, default=6)
    a = ap.parse_args()
    known, names = [], []
    for r in a.reference:
        enc = face_recognition.face_encodings(face_recognition.load_image_file(r))
        if enc:
            known.append(enc[0])
            names.append(Path(r).stem)
    w, h = probe(a.video)
    size = w * h * 3
    def cpu():
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + c.ru_utime + c.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    ff = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-i", a.video, "-an", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        stdout=subprocess.PIPE,
    )
    stages = {"decode": 0.0, "detect": 0.0, "embed": 0.0, "match": 0.0}
    frames = faces = 0
    found = {}
    n = 0
    while True:
        t = time.perf_counter()
        buf = ff.stdout.read(size)
        stages["decode"] += time.perf_counter() - t
        if len(buf) < size:
            break
        n += 1
        if (n - 1) % a.every:
            continue
        frame = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        frames += 1
        t = time.perf_counter()
        locations = face_recognition.face_locations(frame)
        stages["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        encodings = face_recognition.face_encodings(frame, locations)
        stages["embed"] += time.perf_counter() - t
        faces += len(locations)
        t = time.perf_counter()
        for e in encodings:
            for name, hit in zip(names, face_recognition.compare_faces(known, e, tolerance=0.50)):
                if hit:
                    found[name] = found.get(name, 0) + 1
        stages["match"] += time.perf_counter() - t
    ff.wait()
    print(json.dumps({
        "Frames": frames,
        "WallSeconds": time.perf_counter() - t0,
        "CpuSeconds": cpu() - c0,
        "Stages": {k: round(v, 3) for k, v in stages.items()},
        "Faces": faces,
        "Identified": found,
    }))


if __name__ == "__main__":
    main()
