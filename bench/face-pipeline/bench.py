"""Throughput and faces found: Kenning's CLI vs face_recognition, one core each.

Both run pinned to CPU 0. face_recognition is timed in-process after a
warm-up (HOG detector with one upsample, then the 5-point landmarks and the
ResNet encoding for every face found, as `face_encodings` does by default).
Kenning is timed as the `kenning embed --threads 1` command on the photo list
repeated R times, minus a one-photo run, so model loading is not counted.

A ground-truth face counts as found when a detected box's centre lies inside
it and the two widths are within a factor of two: a rule that does not
depend on either detector's box convention.
"""
import argparse, csv, json, os, subprocess, sys, time
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--kenning", required=True)
p.add_argument("--data", required=True)
p.add_argument("--repeats", type=int, default=3)
a = p.parse_args()
data = Path(a.data)
if not data.is_dir():
    sys.exit(f"no data folder at {data}")

os.sched_setaffinity(0, {0})
import face_recognition  # noqa: E402  (after pinning, so dlib's threads stay on CPU 0)

det = data / "detection/dlib"
truth = {}
for row in csv.DictReader(open(det / "boxes.csv")):
    if row.get("ignore", "0").strip() == "1":
        continue
    l, t, w, h = (float(row[k]) for k in ("left", "top", "width", "height"))
    truth.setdefault(str(det / row["file"]), []).append((l, t, l + w, t + h))
sets = {
    "annotated photos (dlib/PASCAL VOC, ~500x375, 43 faces)": sorted(truth),
    "group photos (misc: couple, selfie, multiface, two_people)": [
        str(data / f) for f in ("misc/deepface/couple.jpg", "misc/deepface/selfie-many-people.jpg",
                                "misc/facenet_pytorch/multiface.jpg", "misc/face_recognition/examples/two_people.jpg")],
}


def found(boxes, gts):
    hit = 0
    for g in gts:
        gw = g[2] - g[0]
        for b in boxes:
            cx, cy, bw = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0]
            if g[0] <= cx <= g[2] and g[1] <= cy <= g[3] and 0.5 <= bw / gw <= 2:
                hit += 1
                break
    return hit


def run_face_recognition(files):
    face_recognition.face_encodings(face_recognition.load_image_file(files[0]))  # warm-up
    best, boxes = None, {}
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for f in files:
            img = face_recognition.load_image_file(f)
            locs = face_recognition.face_locations(img)
            face_recognition.face_encodings(img, locs)
            boxes[f] = [(l, t, r, b) for (t, r, b, l) in locs]
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return len(files) / best, boxes


def kenning(files, recogniser):
    cmd = ["taskset", "-c", "0", a.kenning, "--threads", "1", "--recogniser", recogniser, "embed"]
    t0 = time.perf_counter()
    subprocess.run(cmd + files[:1], check=True, capture_output=True)
    one = time.perf_counter() - t0
    many = files * a.repeats
    t0 = time.perf_counter()
    out = subprocess.run(cmd + many, check=True, capture_output=True, text=True).stdout
    total = time.perf_counter() - t0
    boxes = {}
    for line in out.splitlines():
        r = json.loads(line)
        from PIL import Image
        w, h = Image.open(r["File"]).size
        boxes[r["File"]] = [(f["BoundingBox"]["Left"] * w, f["BoundingBox"]["Top"] * h,
                             (f["BoundingBox"]["Left"] + f["BoundingBox"]["Width"]) * w,
                             (f["BoundingBox"]["Top"] + f["BoundingBox"]["Height"]) * h) for f in r["Faces"]]
    return (len(many) - 1) / (total - one), boxes


print("| photos | tool | images/s (1 core) | faces found | annotated faces found |")
print("|---|---|---|---|---|")
for name, files in sets.items():
    rates = {}
    tools = (("face_recognition 1.3.0 (HOG + dlib ResNet)", run_face_recognition),
             ("kenning embed, dlib-resnet-v1", lambda f: kenning(f, "dlib-resnet-v1")),
             ("kenning embed, sface-2021dec (default)", lambda f: kenning(f, "sface-2021dec")))
    for tool, fn in tools:
        rate, boxes = fn(files)
        rates[tool] = rate
        n_found = sum(len(v) for v in boxes.values())
        gt = sum(found(boxes.get(f, []), truth[f]) for f in files if f in truth)
        gt_s = f"{gt}/{sum(len(truth[f]) for f in files if f in truth)}" if any(f in truth for f in files) else "n/a"
        print(f"| {name} | {tool} | {rate:.2f} | {n_found} | {gt_s} |")
    r = list(rates.values())
    print(f"| {name} | **ratio kenning (dlib) / face_recognition** | **{r[1] / r[0]:.2f}x** | | |")
    print(f"| {name} | **ratio kenning (SFace) / face_recognition** | **{r[2] / r[0]:.2f}x** | | |")
    print(f"| {name} | **time per photo, SFace / dlib** | **{r[1] / r[2]:.2f}x** | | |")
