"""Markdown table of the ensemble study from run_ens.py's results.

Reads OUT/results-AB.json (and OUT/results-A1A2.json, for the A1/A2 columns and the
choice of the best ensemble on half A alone); writes OUT/table.md and OUT/best.json.

  python summarise.py --out OUT
"""
import argparse
import json
import os

import numpy as np


def val(S):
    """The ratio, or its lower bound when the best group had no false match."""
    return S["ratio"] if S["ratio"] is not None else S["lower_bound"]


def fmt(v):
    return " / ".join("%.1f" % x for x in v) if v else "-"


def mean(v, f):
    return f % np.mean(v) if v else "-"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="DIR", help="folder with results-*.json; table.md goes here")
    args = p.parse_args()
    AB = json.load(open(os.path.join(args.out, "results-AB.json")))
    a1a2 = os.path.join(args.out, "results-A1A2.json")
    AA = json.load(open(a1a2)) if os.path.exists(a1a2) else []

    key = lambda x: (x["config"], x["E"], x["agg"])
    keys = sorted({key(x) for x in AB}, key=lambda k: (k[0], k[1], k[2] != "raw"))
    lines = ["| config | E | agg | B ratio S80 (3 ens. seeds) | mean | B ratio S70 | mean | B FMR S80 | B FNMR S80 | A1/A2 ratio S70 | mean |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    summ = {}
    for k in keys:
        b = sorted([x for x in AB if key(x) == k], key=lambda x: x["ens_seed"])
        a = sorted([x for x in AA if key(x) == k], key=lambda x: x["ens_seed"])
        r80 = [val(x["S80"]) for x in b]
        r70 = [val(x["S70"]) for x in b]
        lb80 = [">" if x["S80"]["ratio"] is None else "" for x in b]
        fm = [x["S80"]["overall_fmr"] for x in b]
        fn = [x["S80"]["fnmr"] for x in b]
        a70 = [val(x["S70"]) for x in a]
        summ[k] = a70
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {' / '.join(l + ('%.1f' % v) for l, v in zip(lb80, r80))} | "
                     f"{mean(r80, '%.1f')} | {fmt(r70)} | {mean(r70, '%.1f')} | "
                     f"{min(fm):.2e}-{max(fm):.2e} | {100 * min(fn):.1f}-{100 * max(fn):.1f}% | {fmt(a70)} | {mean(a70, '%.2f')} |")
    open(os.path.join(args.out, "table.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    ens = {k: v for k, v in summ.items() if k[1] >= 5 and v}
    if ens:
        best = min(ens, key=lambda k: np.mean(ens[k]))
        print("best ensemble by A1/A2 mean S70 ratio:", best, np.mean(ens[best]))
        json.dump(dict(best=list(best)), open(os.path.join(args.out, "best.json"), "w"))


if __name__ == "__main__":
    main()
