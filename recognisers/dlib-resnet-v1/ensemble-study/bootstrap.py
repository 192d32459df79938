"""Bootstrap intervals of the held-out (half B) max/min same-group FMR ratio for the
single k = 20 clustering with Kenning's default seed and for the three k = 20, E = 10
ensembles ("raw" and "cal"), at Similarity 80 and 70. The threshold stays fixed; people
are resampled within each group. Writes OUT/bootstrap.json.

  python bootstrap.py --cache CACHE --out OUT [--reps 200] [--boot-seed 7]

About 1 CPU-minute at the defaults (single thread).
"""
import argparse
import json
import os

import fairlib as fl
import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fl.add_input_args(p, split=False)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for bootstrap.json")
    p.add_argument("--reps", type=int, default=200, help="bootstrap replicates (default %(default)s)")
    p.add_argument("--boot-seed", type=int, default=7, help="numpy seed of the resampling (default %(default)s)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    st = fl.Study(args, "AB")

    def members(specs):
        acc = {"raw": [0, 0], "cal": [0, 0]}
        for k, seed in specs:
            m = fl.Member(st.XA, k, seed, st.DA, st.iuA)
            sA = m.raw_pairs(st.DA, m.cl, st.iuA)
            sB = m.raw_pairs(st.DB, fl.assign(m.C, st.XB), st.iuB)
            c = fl.combined_table(sA)
            acc["raw"][0] += sA; acc["raw"][1] += sB
            acc["cal"][0] += fl.table_eval(c, sA); acc["cal"][1] += fl.table_eval(c, sB)
        return acc

    out = {}

    def boot(tag, sA, sB):
        LB = fl.table_eval(fl.combined_table(sA), sB).astype(np.float32)
        for S in (80, 70):
            acc = LB <= np.float32((40 - S) / 10)
            r = st.evB.rates(acc)
            lo, hi, reps = st.evB.bootstrap_ratio(acc, args.reps, seed=args.boot_seed)
            out[f"{tag} S{S}"] = dict(ratio=r["ratio"], ci=[lo, hi], frac_le3=float((reps <= 3).mean()))
            print(f"{tag} S{S}: ratio {r['ratio']:.2f}  95% CI {lo:.2f} - {hi:.2f}  "
                  f"(bootstrap P(ratio<=3) = {(reps <= 3).mean():.2f})", flush=True)

    a = members([(20, fl.DEFAULT_SEED)])
    boot("single k20 default seed (Rust's)", a["raw"][0], a["raw"][1])
    for e in range(3):  # the k20 ensembles of run_ens.py, first 10 members
        a = members([(20, 100000 * (e + 1) + 20000 + m) for m in range(10)])
        for v in ("raw", "cal"):
            boot(f"k20 E10 {v} ens-seed {e}", a[v][0] / 10, a[v][1] / 10)
    json.dump(out, open(os.path.join(args.out, "bootstrap.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
