"""CelebA FNMR by gender and by age group, at one global threshold per FMR.

Usage: celeba-fnmr-by-group.py CACHE RECOGNISER [CELEBA_DIR]

CACHE is a `kenning ... --cache` file (JSON lines with file, recogniser and
embedding) holding CelebA's photos for RECOGNISER (e.g. from `kenning
--recogniser R eval verify ../shared/data/identity/celeba --cache CACHE`).
The threshold for each target FMR is set on all of CelebA's impostor pairs
(the largest distance whose FMR is at most the target); FNMR is then reported
for the genuine pairs of each group of labels.csv: gender (a person's
majority label) and age group (a pair counts in a group when both photos
carry it; pairs across groups are "mixed"). Prints a Markdown table.
"""
import csv, json, sys
from collections import defaultdict
from pathlib import Path

import numpy as np

cache, recogniser = sys.argv[1], sys.argv[2]
celeba = Path(sys.argv[3] if len(sys.argv) > 3 else Path(__file__).resolve().parents[2] / "../shared/data/identity/celeba")
ident = {str((celeba / r["file"]).resolve()): r["identity"] for r in csv.DictReader(open(celeba / "identities.csv"))}
labels = {str((celeba / r["file"]).resolve()): r for r in csv.DictReader(open(celeba / "labels.csv"))}
emb = {}
for line in open(cache):
    j = json.loads(line)
    f = str(Path(j["file"]).resolve())
    if j.get("recogniser") == recogniser and f in ident and j.get("embedding"):
        emb[f] = np.array(j["embedding"], np.float64)
files = sorted(emb)
E = np.stack([emb[f] for f in files])
cosine = recogniser.startswith("sface") or np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-3)
if cosine:
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    D = 1 - E @ E.T
else:
    sq = (E * E).sum(1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * E @ E.T, 0))
ids = np.array([ident[f] for f in files])
iu = np.triu_indices(len(files), 1)
d, same = D[iu], (ids[:, None] == ids[None])[iu]
imp = np.sort(d[~same])
gender_votes = defaultdict(list)
for f in files:
    gender_votes[ident[f]].append(labels[f]["gender"])
gender = {p: max(set(v), key=v.count) for p, v in gender_votes.items()}
age = np.array([labels[f]["age_group"] for f in files])
gi, gj = iu[0][same], iu[1][same]
gd = d[same]
groups = {"all": np.ones(len(gd), bool)}
for g in sorted(set(gender.values())):
    groups[f"gender {g}"] = np.array([gender[ids[i]] == g for i in gi])
for a in sorted(set(age)):
    groups[f"age {a}"] = (age[gi] == a) & (age[gj] == a)
groups["age mixed"] = age[gi] != age[gj]
targets = [1e-3, 1e-4]
thr = {t: imp[int(np.floor(t * len(imp))) - 1] if t * len(imp) >= 1 else None for t in targets}
print(f"{recogniser}: {len(files)} photos, {int(same.sum())} genuine / {len(imp)} impostor pairs; "
      + ", ".join(f"threshold at FMR {t:g}: {thr[t]:.4f}" for t in targets))
print("| group | genuine pairs | " + " | ".join(f"FNMR at FMR {t:g}" for t in targets) + " |")
print("|---|---|" + "---|" * len(targets))
for name, m in groups.items():
    cells = [f"{(gd[m] > thr[t]).mean() * 100:.1f}%" for t in targets]
    print(f"| {name} | {int(m.sum())} | " + " | ".join(cells) + " |")
