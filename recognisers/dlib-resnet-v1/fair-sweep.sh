#!/usr/bin/env bash
# The measurement behind docs/accuracy.md, "Fair calibration": fits fair
# calibrations on UTKFace half A (utkface-split-a.txt) and evaluates them on
# the held-out half B (utkface-split-b.txt), against a global table also fitted
# on A, for k in 2..32 and both pair choices; k and the pair choice are
# picked on A alone (fit on alternate photos of each A cell, "A1", evaluated on
# the others, "A2"). Labels are used only to evaluate.
#
#   fair-sweep.sh OUT_DIR      (set KENNING_CACHE to reuse embeddings)
#
# Writes OUT_DIR/*.json (kenning eval fairness reports), OUT_DIR/sweep.tsv and
# OUT_DIR/fair-sweep.svg.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${KENNING_SHARED_DATA:-$root/../shared/data}"
utk="$data/demographics/utkface"
out="${1:?output folder}"
mkdir -p "$out"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
kenning() { "$root/target/release/kenning" --models "${KENNING_MODELS:-$root/models}" "$@"; }
cache=(); [ -n "${KENNING_CACHE:-}" ] && cache=(--cache "$KENNING_CACHE")
# labels.csv of each half, and the A1/A2 split of A (alternate within each cell).
python3 - "$utk" "$here" "$out" <<'PY'
import csv, sys
utk, here, out = sys.argv[1:]
rows = {r["file"]: r for r in csv.DictReader(open(f"{utk}/labels.csv"))}
def names(f): return [l.strip() for l in open(f) if l.strip() and not l.startswith("#")]
def write(name, files):
    with open(f"{out}/{name}-labels.csv", "w") as f:
        f.write("file,age,gender,race\n")
        for x in files:
            r = rows[x]; f.write(f"{x},{r['age']},{r['gender']},{r['race']}\n")
    open(f"{out}/{name}.txt", "w").write("".join(x + "\n" for x in files))
a, b = names(f"{here}/utkface-split-a.txt"), names(f"{here}/utkface-split-b.txt")
seen, a1, a2 = {}, [], []
for x in a:
    c = (rows[x]["gender"], rows[x]["race"]); n = seen.get(c, 0); seen[c] = n + 1
    (a1 if n % 2 == 0 else a2).append(x)
write("A", a); write("B", b); write("A1", a1); write("A2", a2)
PY
genuine=(--genuine "$data/identity/celeba" --genuine "$data/identity/att_orl")
evalf() { # CAL_JSON_FLAG FILE EVAL_HALF REPORT
  kenning eval fairness "$utk" --labels "$out/$3-labels.csv" --groups gender,race "$1" "$2" \
    --fmr 1e-3,1e-4 --similarity 70,80 --bootstrap "${BOOTSTRAP:-200}" "${genuine[@]}" "${cache[@]}" --json "$4" 2>/dev/null
}
for cal in A1:A2 A:B; do
  c=${cal%:*}; e=${cal#*:}
  kenning calibrate "$utk" --list "$out/$c.txt" --exclude-below 0.12 "${cache[@]}" --out "$out/global-$c.json" 2>/dev/null
  evalf --calibration "$out/global-$c.json" "$e" "$out/ev-$c-$e-global.json"
  for v in within involving; do
    for k in 2 4 6 8 12 16 20 24 32; do
      kenning calibrate "$utk" --list "$out/$c.txt" --fair "$k" --fair-pairs "$v" "${cache[@]}" --out "$out/fair-$c-k$k-$v.json" 2>/dev/null
      evalf --fair-calibration "$out/fair-$c-k$k-$v.json" "$e" "$out/ev-$c-$e-k$k-$v.json"
    done
  done
done
python3 - "$out" <<'PY'
import json, sys, math
out = sys.argv[1]
def at(f, label):
    j = json.load(open(f))["fairness"]
    t = next(t for t in j["thresholds"] if t["label"].startswith(label))
    r = t["fmr_ratio"] or {}
    return r.get("ratio") or r.get("lower_bound"), r.get("ratio") is None, t["overall_fmr"], t["overall_fnmr"]
rows = [("global", "-")] + [(v, k) for v in ("within", "involving") for k in (2, 4, 6, 8, 12, 16, 20, 24, 32)]
with open(f"{out}/sweep.tsv", "w") as f:
    f.write("pairs\tk\tA2 ratio@1e-3\tA2 ratio@1e-4\tB ratio@1e-3\tB ratio@1e-4\tB FMR@1e-4\tB FNMR@1e-4\n")
    for v, k in rows:
        s = "global" if v == "global" else f"k{k}-{v}"
        a3, a4 = at(f"{out}/ev-A1-A2-{s}.json", "Similarity 70"), at(f"{out}/ev-A1-A2-{s}.json", "Similarity 80")
        b3, b4 = at(f"{out}/ev-A-B-{s}.json", "Similarity 70"), at(f"{out}/ev-A-B-{s}.json", "Similarity 80")
        g = lambda x: (">" if x[1] else "") + f"{x[0]:.3g}"
        f.write(f"{v}\t{k}\t{g(a3)}\t{g(a4)}\t{g(b3)}\t{g(b4)}\t{b4[2]:.3g}\t{b4[3]:.3f}\n")
# A small log-scale line chart: B max/min ratio at Similarity 80 against k.
W, H, L, T, R, B = 640, 380, 70, 40, 150, 50
ks = [2, 4, 6, 8, 12, 16, 20, 24, 32]
x = lambda k: L + (math.log2(k) - 1) / 4 * (W - L - R)
y = lambda v: T + (math.log10(1000) - math.log10(v)) / 3 * (H - T - B)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
       '<rect width="100%" height="100%" fill="white"/>',
       f'<text x="{W/2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">Max/min same-group FMR on half B at Similarity 80, by clusters k</text>']
for v in (1, 3, 10, 30, 100, 300, 1000):
    svg.append(f'<line x1="{L}" x2="{W-R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/><text x="{L-6}" y="{y(v)+4:.1f}" text-anchor="end">{v}</text>')
for k in ks:
    svg.append(f'<text x="{x(k):.1f}" y="{H-B+18}" text-anchor="middle">{k}</text>')
svg.append(f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">clusters k (log scale)</text>')
svg.append(f'<line x1="{L}" x2="{W-R}" y1="{y(3):.1f}" y2="{y(3):.1f}" stroke="#d62728" stroke-dasharray="5,4"/><text x="{W-R+6}" y="{y(3)+4:.1f}" fill="#d62728">target 3</text>')
g = at(f"{out}/ev-A-B-global.json", "Similarity 80")[0]
svg.append(f'<line x1="{L}" x2="{W-R}" y1="{y(g):.1f}" y2="{y(g):.1f}" stroke="#555" stroke-dasharray="2,3"/><text x="{W-R+6}" y="{y(g)+4:.1f}">global {g:.0f}</text>')
for v, col in (("within", "#1f77b4"), ("involving", "#ff7f0e")):
    pts = [(x(k), y(max(1.01, at(f"{out}/ev-A-B-k{k}-{v}.json", "Similarity 80")[0]))) for k in ks]
    svg.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (col, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)))
    svg += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{col}"/>' for a, b in pts]
    svg.append(f'<text x="{pts[-1][0]+8:.1f}" y="{pts[-1][1]+4:.1f}" fill="{col}">{v}</text>')
svg.append('</svg>')
open(f"{out}/fair-sweep.svg", "w").write("\n".join(svg) + "\n")
PY
column -t -s $'\t' "$out/sweep.tsv"
