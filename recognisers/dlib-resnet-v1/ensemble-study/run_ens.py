"""Ensembles of k-means clusterings for the fair calibration: fit on one half of
UTKFace, evaluate on the other, write OUT/results-SPLIT.json.

Each member is one fair calibration (k clusters, within-cluster tables) with its own
k-means seed; a pair is scored by the mean over the members of the member's score
("raw"), or of each member's own combined-table log FMR ("cal"); one combined table
on top, fitted on the calibration half. Evaluated at Similarity 70 and 80: max/min
same-group FMR ratio and overall FMR on the evaluation half, FNMR on the genuine
pairs of CelebA + AT&T/ORL. Three ensemble seeds per configuration; E = 5, 10 are
the first members of the E = 20 ensemble.

  python run_ens.py AB   --cache CACHE --out OUT                  # fit A, evaluate B
  python run_ens.py A1A2 --cache CACHE --sweep-dir SWEEP --out OUT
  options: --configs k20,k32,mixed16-32  --sizes 1,5,10,20  --ens-seeds 3  (defaults)

About 6 CPU-minutes for AB and 1.5 for A1A2 at the defaults (single thread).
"""
import argparse
import json
import os
import time

import fairlib as fl
import numpy as np

# config -> (ensemble seed e, member m) -> (k, k-means seed)
MIXED = [16, 20, 24, 32]
CONFIGS = {
    "k20": lambda e, m: (20, 100000 * (e + 1) + 20 * 1000 + m),
    "k32": lambda e, m: (32, 100000 * (e + 1) + 32 * 1000 + m),
    "mixed16-32": lambda e, m: (MIXED[m % 4], 500000 + 100000 * (e + 1) + MIXED[m % 4] * 1000 + m),
}


def evaluate(st, sA, sB, sG):
    """Ratio, FMR and FNMR at Similarity 70 and 80 for pair scores on A, B and genuine pairs."""
    comb = fl.combined_table(sA)
    LB = fl.table_eval(comb, sB).astype(np.float32)
    LG = fl.table_eval(comb, sG).astype(np.float32)
    r = {}
    for S in (70, 80):
        t = np.float32((40 - S) / 10)
        x = st.evB.rates(LB <= t)
        r[f"S{S}"] = dict(ratio=x["ratio"], lower_bound=x["lower_bound"], overall_fmr=x["overall_fmr"],
                          fnmr=float((LG > t).mean()), errors=x["errors"],
                          max_group=x["max_group"], min_group=x["min_group"])
    return r


def show_ratio(s):
    return s["ratio"] or ">%.3g" % s["lower_bound"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    fl.add_input_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for results-SPLIT.json")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    p.add_argument("--sizes", default="1,5,10,20", help="ensemble sizes E to evaluate (default %(default)s)")
    p.add_argument("--ens-seeds", type=int, default=3, help="ensembles per configuration (default %(default)s)")
    args = p.parse_args()
    configs = args.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            p.error(f"unknown config {c}")
    sizes = sorted(int(x) for x in args.sizes.split(","))
    os.makedirs(args.out, exist_ok=True)
    out_file = os.path.join(args.out, f"results-{args.split}.json")

    st = fl.Study(args)
    print(args.split, "cal", st.XA.shape, "eval", st.XB.shape, flush=True)
    out = []
    t0 = time.time()
    for name in configs:
        spec = CONFIGS[name]
        for e in range(args.ens_seeds):
            acc = {v: [0.0, 0.0, 0.0] for v in ("raw", "cal")}
            for m in range(max(sizes)):
                k, seed = spec(e, m)
                mem = fl.Member(st.XA, k, seed, st.DA, st.iuA)
                sA = mem.raw_pairs(st.DA, mem.cl, st.iuA)
                sB = mem.raw_pairs(st.DB, fl.assign(mem.C, st.XB), st.iuB)
                cg = fl.assign(mem.C, st.XG)
                sG = mem.raw_list(st.dG, cg[st.GI], cg[st.GJ])
                combm = fl.combined_table(sA)
                cal = (fl.table_eval(combm, sA), fl.table_eval(combm, sB), fl.table_eval(combm, sG))
                for v, scores in (("raw", (sA, sB, sG)), ("cal", cal)):
                    for i in range(3):
                        acc[v][i] = acc[v][i] + scores[i]
                E = m + 1
                if E not in sizes:
                    continue
                for v in ("raw", "cal"):
                    if E == 1 and v == "cal":
                        continue  # same as raw for a single member (monotone re-map)
                    r = evaluate(st, acc[v][0] / E, acc[v][1] / E, acc[v][2] / E)
                    out.append(dict(split=args.split, config=name, ens_seed=e, E=E, agg=v, **r))
                    s80, s70 = r["S80"], r["S70"]
                    print(f"{args.split} {name} e{e} E{E:2d} {v}: S80 ratio {show_ratio(s80)} "
                          f"FMR {s80['overall_fmr']:.3e} FNMR {s80['fnmr']:.3f} | S70 ratio {show_ratio(s70)} "
                          f"FNMR {s70['fnmr']:.3f}  [{time.time() - t0:.0f}s]", flush=True)
            json.dump(out, open(out_file, "w"), indent=1)
    print("wrote", out_file, f"({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
