"""Checks that the numpy port (fairlib.py) reproduces Kenning: refits the calibrations
that `kenning calibrate` wrote on the calibration half and compares them (cluster
sizes, centroids, table knots), then counts false matches per group and FNMR at
Similarity 70 and 80 on the evaluation half, both with the numpy fit and with
Kenning's own file, against the `kenning eval fairness` report. Exits 1 on a mismatch.

  python validate.py AB   --cache CACHE --sweep-dir SWEEP
  python validate.py A1A2 --cache CACHE --sweep-dir SWEEP

By default it checks what recognisers/dlib-resnet-v1/fair-sweep.sh wrote into SWEEP:
global-A.json with ev-A-B-global.json, fair-A-k20-within.json with
ev-A-B-k20-within.json (A1, A2 for A1A2). --global CAL [REPORT] and --fair CAL [REPORT]
(repeatable) name other files, e.g. fits with another seed:
  kenning calibrate ../shared/data/demographics/utkface --list SWEEP/A.txt --fair 20 \\
    --fair-pairs within --fair-seed 1 --out seed1.json
"""
import argparse
import json
import os
import sys

import fairlib as fl
import numpy as np

failures = []


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failures.append(what)


def rust_threshold(report, S):
    t = next(t for t in report["fairness"]["thresholds"] if t["label"].startswith(f"Similarity {S}"))
    return {g["group"]: g["errors"] for g in t["fmr_by_group"]}, t


def compare(st, tag, accept, genuine_reject, S, report):
    """Print one evaluation and compare its counts with the Kenning report, if any."""
    r = st.evB.rates(accept)
    misses = int(genuine_reject.sum())
    ratio = "%.4g" % r["ratio"] if r["ratio"] is not None else ">%.4g" % r["lower_bound"]
    print(f"  {tag} S{S}: ratio {ratio}  FMR {r['overall_fmr']:.4e}  FNMR {misses / len(genuine_reject):.4f}  "
          f"errors {r['errors']}")
    if report is None:
        return r["errors"], misses
    errs, t = rust_threshold(report, S)
    ours = dict(zip(st.evB.names, r["errors"]))
    check(ours == errs, f"{tag} S{S}: false matches per group as in Kenning's report")
    rust_misses = round(t["overall_fnmr"] * report["fairness"]["genuine_pairs"])
    check(misses == rust_misses and len(genuine_reject) == report["fairness"]["genuine_pairs"],
          f"{tag} S{S}: {misses} genuine misses (Kenning: {rust_misses})")
    return r["errors"], misses


def fair(st, cal_file, report_file):
    j = json.load(open(cal_file))
    cfg = j["config"]
    report = json.load(open(report_file)) if report_file else None
    print(f"fair calibration {cal_file}: k={cfg['k']} seed={cfg['seed']} pairs={cfg['pairs']}"
          + (f"; report {report_file}" if report_file else ""))
    if (cfg.get("max_iter"), cfg.get("per_decade"), cfg.get("min_count")) != (100, 10, 10):
        check(False, f"{cal_file}: max_iter/per_decade/min_count other than 100/10/10 are not ported")
        return
    m = fl.Member(st.XA, cfg["k"], cfg["seed"], st.DA, st.iuA, pairs=cfg["pairs"])
    sizes = np.bincount(m.cl, minlength=cfg["k"]).tolist()
    check(sizes == [c["photos"] for c in j["clusters"]], f"cluster sizes {sizes}")
    print(f"  max centroid difference {np.abs(m.C - np.array(j['centroids'], np.float32)).max():.2g}")
    comb = fl.combined_table(m.raw_pairs(st.DA, m.cl, st.iuA))
    theirs = np.array(j["combined"]["points"])
    if len(comb) == len(theirs):
        print(f"  combined table: {len(comb)} knots, max distance difference {np.abs(comb[:, 0] - theirs[:, 0]).max():.2g}")
    else:
        print(f"  combined table: {len(comb)} knots, Kenning {len(theirs)}")
    counts = []
    for tag, mem, table in (("numpy fit", m, comb), ("Kenning's file", fl.Member.from_kenning(j), theirs)):
        sB = mem.raw_pairs(st.DB, fl.assign(mem.C, st.XB), st.iuB)
        cg = fl.assign(mem.C, st.XG)
        sG = mem.raw_list(st.dG, cg[st.GI], cg[st.GJ])
        LB = fl.table_eval(table, sB).astype(np.float32)
        LG = fl.table_eval(table, sG).astype(np.float32)
        for S in (70, 80):
            t = np.float32((40 - S) / 10)
            counts.append(compare(st, tag, LB <= t, LG > t, S, report))
    check(counts[:2] == counts[2:], "numpy fit and Kenning's file give the same counts")


def global_table(st, cal_file, report_file):
    j = json.load(open(cal_file))
    report = json.load(open(report_file)) if report_file else None
    print(f"global table {cal_file}" + (f"; report {report_file}" if report_file else ""))
    pts = fl.global_points(st.DA[st.iuA])
    theirs = j["points"]
    same = len(pts) == len(theirs)
    check(same, f"global table: {len(pts)} points (Kenning {len(theirs)})")
    if same:
        print(f"  max distance difference {max(abs(a[1] - b[1]) for a, b in zip(pts, theirs)):.2g}")
    dB = st.DB[st.iuB]
    dG = st.dG.astype(np.float32)
    for tag, table in (("numpy fit", pts), ("Kenning's file", theirs)):
        for S in (70, 80):
            t = np.float32(fl.global_distance_for(table, (40 - S) / 10))
            compare(st, tag, dB <= t, dG > t, S, report)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    fl.add_input_args(p)
    p.add_argument("--global", dest="glob", nargs="+", metavar=("CAL", "REPORT"),
                   help="global table from `kenning calibrate --exclude-below 0.12`, and its fairness report")
    p.add_argument("--fair", action="append", nargs="+", metavar=("CAL", "REPORT"),
                   help="fair calibration from `kenning calibrate --fair`, and its fairness report")
    args = p.parse_args()
    for x in [args.glob or []] + (args.fair or []):
        if len(x) > 2:
            p.error("--global/--fair take CAL and at most one REPORT")
    c, e = ("A", "B") if args.split == "AB" else ("A1", "A2")
    d = args.sweep_dir

    def default(cal, rep):
        if not d:
            return None
        cal, rep = os.path.join(d, cal), os.path.join(d, rep)
        return [cal] + ([rep] if os.path.exists(rep) else []) if os.path.exists(cal) else None

    glob = args.glob or default(f"global-{c}.json", f"ev-{c}-{e}-global.json")
    fairs = args.fair or [x for x in [default(f"fair-{c}-k20-within.json", f"ev-{c}-{e}-k20-within.json")] if x]
    if not glob and not fairs:
        p.error("nothing to check: give --sweep-dir with fair-sweep.sh's output, or --global / --fair")
    st = fl.Study(args)
    print(args.split, "cal", st.XA.shape, "eval", st.XB.shape, "genuine pairs", len(st.GI))
    if glob:
        global_table(st, glob[0], glob[1] if len(glob) > 1 else None)
    for f in fairs:
        fair(st, f[0], f[1] if len(f) > 1 else None)
    print("all checks passed" if not failures else f"{len(failures)} check(s) FAILED")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
