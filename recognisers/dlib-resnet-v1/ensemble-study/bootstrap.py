"""Bootstrap intervals (resampling people) of the held-out ratio for the single k = 20
clustering and the k = 20, E = 10 ensembles. Writes bootstrap.json here."""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import json, numpy as np
from fairlib import *
_, XA, _ = utk_set(read_list(f"{SPLITS}/utkface-split-a.txt")); _, XB, gB = utk_set(read_list(f"{SPLITS}/utkface-split-b.txt"))
XG, GI, GJ = genuine_sets()
DA, DB = dist_matrix(XA), dist_matrix(XB)
iuA, iuB = np.triu_indices(len(XA), 1), np.triu_indices(len(XB), 1)
evB = EvalSet(gB, iuB)
def members(specs):
    acc = {"raw": [0, 0], "cal": [0, 0]}
    for k, seed in specs:
        m = Member(XA, k, seed, DA, iuA)
        sA = m.raw_pairs(DA, m.cl, iuA); sB = m.raw_pairs(DB, assign(m.C, XB), iuB)
        c = combined_table(sA)
        acc["raw"][0] += sA; acc["raw"][1] += sB
        acc["cal"][0] += table_eval(c, sA); acc["cal"][1] += table_eval(c, sB)
    return acc
out = {}
def boot(tag, sA, sB):
    comb = combined_table(sA); LB = table_eval(comb, sB).astype(np.float32)
    for S in (80, 70):
        acc = LB <= np.float32((40 - S) / 10)
        r = evB.rates(acc); lo, hi, reps = evB.bootstrap_ratio(acc, 200, seed=7)
        out[f"{tag} S{S}"] = dict(ratio=r["ratio"], ci=[lo, hi], frac_le3=float((reps <= 3).mean()))
        print(f"{tag} S{S}: ratio {r['ratio']:.2f}  95% CI {lo:.2f} - {hi:.2f}  (bootstrap P(ratio<=3) = {(reps<=3).mean():.2f})", flush=True)
a = members([(20, DEFAULT_SEED)]); boot("single k20 default seed (Rust's)", a["raw"][0], a["raw"][1])
for e in range(3):
    a = members([(20, 100000 * (e + 1) + 20000 + m) for m in range(10)])
    for v in ("raw", "cal"):
        boot(f"k20 E10 {v} ens-seed {e}", a[v][0] / 10, a[v][1] / 10)
json.dump(out, open(os.path.join(HERE, "bootstrap.json"), "w"), indent=1)
