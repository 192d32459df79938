"""Ensemble-of-clusterings experiments: run_ens.py AB|A1A2 (fit on UTKFace half A and
evaluate on half B, or fit on A1 and evaluate on A2). Writes results-SPLIT.json here."""
import os, sys
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1"); os.environ.setdefault("OMP_NUM_THREADS", "1")
import json, time, numpy as np
from fairlib import *

split = sys.argv[1]
if split == "AB":
    cal_names = read_list(f"{SPLITS}/utkface-split-a.txt"); ev_names = read_list(f"{SPLITS}/utkface-split-b.txt")
else:
    cal_names = read_list(f"{SWEEP_DIR}/A1.txt"); ev_names = read_list(f"{SWEEP_DIR}/A2.txt")
_, XA, _ = utk_set(cal_names); _, XB, gB = utk_set(ev_names)
XG, GI, GJ = genuine_sets()
DA, DB = dist_matrix(XA), dist_matrix(XB)
iuA, iuB = np.triu_indices(len(XA), 1), np.triu_indices(len(XB), 1)
dG = dist_matrix(XG)[GI, GJ].astype(np.float64)
evB = EvalSet(gB, iuB)
print(split, "cal", XA.shape, "eval", XB.shape, flush=True)

CONFIGS = {
    "k20": lambda e, m: (20, 100000 * (e + 1) + 20 * 1000 + m),
    "k32": lambda e, m: (32, 100000 * (e + 1) + 32 * 1000 + m),
    "mixed16-32": lambda e, m: ([16, 20, 24, 32][m % 4], 500000 + 100000 * (e + 1) + [16, 20, 24, 32][m % 4] * 1000 + m),
}
ES = [1, 5, 10, 20]
out = []
t0 = time.time()

def evaluate(sA, sB, sG):
    comb = combined_table(sA)
    LB = table_eval(comb, sB).astype(np.float32); LG = table_eval(comb, sG).astype(np.float32)
    r = {}
    for S in (70, 80):
        t = np.float32((40 - S) / 10)
        acc = LB <= t
        x = evB.rates(acc)
        r[f"S{S}"] = dict(ratio=x["ratio"], lower_bound=x["lower_bound"], overall_fmr=x["overall_fmr"],
                          fnmr=float((LG > t).mean()), errors=x["errors"], max_group=x["max_group"], min_group=x["min_group"])
    return r

for name, spec in CONFIGS.items():
    for e in range(3):
        acc = {v: [0.0, 0.0, 0.0] for v in ("raw", "cal")}
        for m in range(max(ES)):
            k, seed = spec(e, m)
            mem = Member(XA, k, seed, DA, iuA)
            sA = mem.raw_pairs(DA, mem.cl, iuA)
            sB = mem.raw_pairs(DB, assign(mem.C, XB), iuB)
            cg = assign(mem.C, XG)
            sG = mem.raw_list(dG, cg[GI], cg[GJ])
            combm = combined_table(sA)
            for v, (a, b, g) in (("raw", (sA, sB, sG)), ("cal", (table_eval(combm, sA), table_eval(combm, sB), table_eval(combm, sG)))):
                acc[v][0] = acc[v][0] + a; acc[v][1] = acc[v][1] + b; acc[v][2] = acc[v][2] + g
            E = m + 1
            if E in ES:
                for v in ("raw", "cal"):
                    if E == 1 and v == "cal":
                        continue  # identical to raw for a single member (monotone re-map)
                    r = evaluate(acc[v][0] / E, acc[v][1] / E, acc[v][2] / E)
                    rec = dict(split=split, config=name, ens_seed=e, E=E, agg=v, **r)
                    out.append(rec)
                    s80, s70 = r["S80"], r["S70"]
                    print(f"{split} {name} e{e} E{E:2d} {v}: S80 ratio {s80['ratio'] or ('>%.3g' % s80['lower_bound'])} FMR {s80['overall_fmr']:.3e} FNMR {s80['fnmr']:.3f} | S70 ratio {s70['ratio'] or ('>%.3g' % s70['lower_bound'])} FNMR {s70['fnmr']:.3f}  [{time.time()-t0:.0f}s]", flush=True)
        json.dump(out, open(os.path.join(HERE, f"results-{split}.json"), "w"), indent=1)
print("done", time.time() - t0)
