"""Fits the mapping from CenterFace's five points to the face box dlib's
shape predictor was trained on (dlib's HOG detector boxes).

Development tool, run by hand with a venv holding numpy, pillow, onnx,
onnxruntime==1.31.1 and dlib-bin:

    python scripts/dev/fit-box-mapping.py ../shared/data/identity/celeba/images models

It detects faces with both detectors on the photos, pairs them by overlap and
prints least-squares constants for kenning_models::pipeline::dlib_rect.
"""
import sys, pathlib
import numpy as np
from PIL import Image
import onnx, onnxruntime as ort, dlib

folder, models = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 600

m = onnx.load(str(models / "centerface.onnx"))
g = m.graph
names = {i.name for i in g.initializer}
keep = [i for i in g.input if i.name not in names]
del g.input[:]
g.input.extend(keep)
for d, v in zip(g.input[0].type.tensor_type.shape.dim, ["N", 3, "H", "W"]):
    d.Clear()
    if isinstance(v, str): d.dim_param = v
    else: d.dim_value = v
for o in g.output:
    for k, d in enumerate(o.type.tensor_type.shape.dim):
        if k != 1:
            d.Clear(); d.dim_param = "d%d" % k
del g.value_info[:]
ort.set_default_logger_severity(3)
sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
hog = dlib.get_frontal_face_detector()

def centerface(img, max_side=960, thr=0.5):
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(w, h))
    nw, nh = [int(np.ceil(max(1, round(v * s)) / 32) * 32) for v in (w, h)]
    x = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    hm, sc, of, lm = sess.run(None, {"input.1": x.transpose(2, 0, 1)[None]})
    hm, sc, of, lm = hm[0, 0], sc[0], of[0], lm[0]
    ys, xs = np.where(hm > thr)
    dets = []
    for y, x0 in zip(ys, xs):
        s0, s1 = np.exp(sc[0, y, x0]) * 4, np.exp(sc[1, y, x0]) * 4
        cx, cy = (x0 + of[1, y, x0] + 0.5) * 4, (y + of[0, y, x0] + 0.5) * 4
        x1, y1 = max(0, cx - s1 / 2), max(0, cy - s0 / 2)
        pts = [((lm[2 * j + 1, y, x0] * s1 + x1) * w / nw, (lm[2 * j, y, x0] * s0 + y1) * h / nh) for j in range(5)]
        box = (x1 * w / nw, y1 * h / nh, min(x1 + s1, nw) * w / nw, min(y1 + s0, nh) * h / nh)
        dets.append((hm[y, x0], box, pts))
    dets.sort(key=lambda d: -d[0])
    kept = []
    for d in dets:
        if all(iou(d[1], k[1]) < 0.3 for k in kept):
            kept.append(d)
    return kept

def iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0])); h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / u if u > 0 else 0

rows = []
files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[:limit]
for p in files:
    img = np.asarray(Image.open(p).convert("RGB"))
    hb = [(r.left(), r.top(), r.right(), r.bottom()) for r in hog(img, 1)]
    for _, box, pts in centerface(img):
        best = max(hb, key=lambda b: iou(b, box), default=None)
        if best is None or iou(best, box) < 0.3:
            continue
        rows.append(np.concatenate([np.array(pts).ravel(), best]))
rows = np.array(rows)
print(f"{len(rows)} paired faces from {len(files)} photos")
P = rows[:, :10].reshape(-1, 5, 2)
el, er, nose, ml, mr = (P[:, i] for i in range(5))
em, mm = (el + er) / 2, (ml + mr) / 2
eye = np.linalg.norm(er - el, axis=1); emd = np.linalg.norm(mm - em, axis=1)
l, t, r, b = rows[:, 10:].T
side = ((r - l) + (b - t)) / 2
cx, cy = (l + r) / 2, (t + b) / 2
A = np.stack([eye, emd], 1)
coef, *_ = np.linalg.lstsq(A, side, rcond=None)
pred = A @ coef
c = (em + mm) / 2
shift_x = np.median((cx - c[:, 0]) / pred); shift_y = np.median((cy - c[:, 1]) / pred)
print(f"side = {coef[0]:.4f} * eye_dist + {coef[1]:.4f} * eye_mouth   (median |err| {np.median(abs(pred - side) / side):.3%})")
print(f"centre shift x {shift_x:.4f}, y {shift_y:.4f} times side")
ex = (c[:, 0] + shift_x * pred - cx) / side; ey = (c[:, 1] + shift_y * pred - cy) / side
print(f"centre error median x {np.median(abs(ex)):.3%} y {np.median(abs(ey)):.3%}")
nose_h = ((nose - em) * (mm - em)).sum(1) / (emd ** 2)
print(f"median nose height between eye and mouth lines: {np.median(nose_h):.4f}")
