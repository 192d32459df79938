"""Shared code of the ensemble study: a numpy port of Kenning's fair calibration
(crates/kenning-core/src/fair.rs; fitting in crates/kenning-eval/src/calibrate.rs,
evaluation in crates/kenning-eval/src/fairness.rs, the global table in
crates/kenning-models/src/calibration.rs), the ensemble-of-clusterings variant, and
the loading of embeddings, split lists and labels.

Not run directly; run_ens.py, bootstrap.py and validate.py import it. Inputs (all
command-line options, see add_input_args):
  --cache FILE        embedding cache (JSON lines, "file" and "embedding" per photo)
                      written by any `kenning ... --cache FILE` run over UTKFace,
                      CelebA and AT&T/ORL (fair-sweep.sh with KENNING_CACHE=FILE).
  --shared-data DIR   the shared data folder (default $KENNING_SHARED_DATA, else
                      ../shared/data beside the repository).
  --split-a/--split-b UTKFace halves (default: the lists in recognisers/dlib-resnet-v1).
  --sweep-dir DIR     output folder of fair-sweep.sh, for its A1.txt and A2.txt.
Photos are matched to cache entries by their path below the shared data folder, so
a cache made on another machine (other absolute paths) works.
"""
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # single-threaded BLAS, as the study was run

import csv
import json
import sys

import numpy as np

MASK64 = (1 << 64) - 1
FLOOR = -15.0
DEFAULT_SEED = 0x6B6D6561
HERE = os.path.dirname(os.path.abspath(__file__))
RECOGNISER_DIR = os.path.dirname(HERE)  # recognisers/dlib-resnet-v1
REPO = os.path.dirname(os.path.dirname(RECOGNISER_DIR))
UTK = "demographics/utkface"  # below the shared data folder
GENUINE = ("identity/celeba", "identity/att_orl")


# ---------------------------------------------------------------- inputs
def add_input_args(p, split=True):
    """Options every script takes. With split, also the positional AB | A1A2."""
    if split:
        p.add_argument("split", choices=("AB", "A1A2"),
                       help="AB: fit on UTKFace half A, evaluate on half B; "
                            "A1A2: fit on A1, evaluate on A2 (the halves of A that fair-sweep.sh writes)")
    p.add_argument("--cache", required=True, metavar="FILE",
                   help="embedding cache written by `kenning ... --cache FILE`")
    p.add_argument("--shared-data", metavar="DIR",
                   default=os.environ.get("KENNING_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data"),
                   help="shared data folder (default: $KENNING_SHARED_DATA or ../shared/data beside the repository)")
    p.add_argument("--split-a", metavar="FILE", default=os.path.join(RECOGNISER_DIR, "utkface-split-a.txt"),
                   help="UTKFace half A (default: recognisers/dlib-resnet-v1/utkface-split-a.txt)")
    p.add_argument("--split-b", metavar="FILE", default=os.path.join(RECOGNISER_DIR, "utkface-split-b.txt"),
                   help="UTKFace half B (default: recognisers/dlib-resnet-v1/utkface-split-b.txt)")
    p.add_argument("--sweep-dir", metavar="DIR",
                   help="output folder of fair-sweep.sh (A1.txt, A2.txt); needed for A1A2")
    p.add_argument("--recogniser", default="dlib-resnet-v1",
                   help="use only cache entries of this recogniser (default %(default)s)")


def split_lists(args, split=None):
    """(calibration list, evaluation list) file names for the split."""
    split = split or args.split
    if split == "AB":
        return args.split_a, args.split_b
    if not args.sweep_dir:
        sys.exit("A1A2 needs --sweep-dir (the output folder of recognisers/dlib-resnet-v1/fair-sweep.sh)")
    return os.path.join(args.sweep_dir, "A1.txt"), os.path.join(args.sweep_dir, "A2.txt")


def read_list(path):
    return [l.strip() for l in open(path) if l.strip() and not l.startswith("#")]


def _norm(path):
    return os.path.normpath(path).replace("\\", "/")


class EmbeddingCache:
    """A `kenning --cache` file, looked up by path below the shared data folder.

    A photo whose entry has "embedding": null had no face (failure to enrol) and is
    left out, as Kenning does; a photo with no entry at all is an error (the cache was
    made from other photos), not silently dropped. When a photo has several entries
    the last one with an embedding wins."""

    def __init__(self, path, shared, recogniser=None):
        self.shared = _norm(os.path.abspath(shared))
        self.emb = {}
        self.settings = {}
        for line in open(path):
            if not line.strip():
                continue
            j = json.loads(line)
            if recogniser and j.get("recogniser", recogniser) != recogniser:
                continue
            f = _norm(j["file"])
            e = j.get("embedding")
            if e is None:
                self.emb.setdefault(f, None)
            else:
                self.emb[f] = np.asarray(e, dtype=np.float32)
                self.settings[f] = (j.get("recogniser_version"), j.get("working_size"), j.get("min_confidence"))
        # Every trailing part of every path -> full path (None when two paths share it).
        self.by_suffix = {}
        for f in self.emb:
            parts = f.split("/")
            for i in range(1, len(parts)):
                s = "/".join(parts[i:])
                self.by_suffix[s] = f if self.by_suffix.get(s, f) == f else None
        self.used = set()

    def lookup(self, rel):
        """(found, embedding or None) for a photo given relative to the shared data folder."""
        rel = _norm(rel)
        f = f"{self.shared}/{rel}"
        if f not in self.emb:
            f = self.by_suffix.get(rel, False)
            if f is None:
                sys.exit(f"cache: several entries end in {rel}; cannot tell which is meant")
            if f is False:
                return False, None
        self.used.add(f)
        return True, self.emb[f]

    def embed(self, rels, what):
        """Indices (into rels) of the photos with an embedding, and their embeddings."""
        keep, rows, missing = [], [], []
        for i, r in enumerate(rels):
            found, e = self.lookup(r)
            if not found:
                missing.append(r)
            elif e is not None:
                keep.append(i); rows.append(e)
        if missing:
            sys.exit(f"cache: {len(missing)} of {len(rels)} {what} photos are not in the cache "
                     f"(first: {missing[0]}); make it with fair-sweep.sh and KENNING_CACHE (README.md)")
        print(f"{what}: {len(keep)} of {len(rels)} photos enrolled", file=sys.stderr)
        return keep, np.stack(rows)

    def check_settings(self):
        s = {self.settings[f] for f in self.used if f in self.settings}
        if len(s) > 1:
            print(f"warning: the embeddings used come from several settings {sorted(s, key=str)}", file=sys.stderr)


def utk_set(cache, labels, names, what):
    """Embeddings (enrolled only, list order) and gender|race group per row."""
    keep, X = cache.embed([f"{UTK}/{n}" for n in names], what)
    groups = [f"{labels[names[i]]['gender']}|{labels[names[i]]['race']}" for i in keep]
    return [names[i] for i in keep], X, groups


def genuine_sets(cache, shared):
    """Embeddings and identity per row for CelebA + AT&T/ORL (enrolled), and the genuine pairs."""
    rels, ids = [], []
    for d in GENUINE:
        for r in csv.DictReader(open(os.path.join(shared, d, "identities.csv"))):
            rels.append(f"{d}/{r['file']}"); ids.append(f"{d.split('/')[-1]}:{r['identity']}")
    keep, X = cache.embed(rels, "genuine (CelebA + AT&T/ORL)")
    ids = [ids[i] for i in keep]
    by = {}
    for i, s in enumerate(ids):
        by.setdefault(s, []).append(i)
    I, J = [], []
    for v in by.values():
        for a in range(len(v)):
            for b in range(a + 1, len(v)):
                I.append(v[a]); J.append(v[b])
    return X, np.array(I), np.array(J)


class Study:
    """Everything a run needs: calibration half XA, evaluation half XB with its groups,
    their distance matrices and pair indices, and the genuine pairs."""

    def __init__(self, args, split=None):
        cal_list, eval_list = split_lists(args, split)
        cache = EmbeddingCache(args.cache, args.shared_data, args.recogniser)
        labels = {r["file"]: r for r in csv.DictReader(open(os.path.join(args.shared_data, UTK, "labels.csv")))}
        _, self.XA, _ = utk_set(cache, labels, read_list(cal_list), "calibration half")
        _, self.XB, self.gB = utk_set(cache, labels, read_list(eval_list), "evaluation half")
        self.XG, self.GI, self.GJ = genuine_sets(cache, args.shared_data)
        cache.check_settings()
        self.DA, self.DB = dist_matrix(self.XA), dist_matrix(self.XB)
        self.iuA, self.iuB = np.triu_indices(len(self.XA), 1), np.triu_indices(len(self.XB), 1)
        self.dG = dist_matrix(self.XG)[self.GI, self.GJ].astype(np.float64)
        self.evB = EvalSet(self.gB, self.iuB)


# ---------------------------------------------------------------- numerics
class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next() * n) >> 64

    def unit(self):
        return (self.next() >> 11) / float(1 << 53)

    @staticmethod
    def derive(seed, index):
        g = SplitMix64(seed ^ ((index * 0xD1B54A32D192ED03) & MASK64))
        g.next()
        return g



def unit(X):
    n2 = np.einsum("ij,ij->i", X, X).astype(np.float32)
    s = np.where(n2 > 0, 1.0 / np.sqrt(n2), 1.0).astype(np.float32)
    return (X * s[:, None]).astype(np.float32)


def dist_matrix(X, Y=None):
    """Euclidean distance as Rust computes it: sqrt(max(aa + bb - 2ab, 0)) in f32."""
    Y = X if Y is None else Y
    aa = np.einsum("ij,ij->i", X, X).astype(np.float32)
    bb = np.einsum("ij,ij->i", Y, Y).astype(np.float32)
    ab = (X @ Y.T).astype(np.float32)
    return np.sqrt(np.maximum(aa[:, None] + bb[None, :] - 2.0 * ab, 0)).astype(np.float32)


def sqd_to(C, X):
    """Squared distances (f32) from every row of X to every centroid C: n x k."""
    return np.maximum(
        np.einsum("ij,ij->i", X, X)[:, None] + np.einsum("ij,ij->i", C, C)[None, :] - 2.0 * (X @ C.T), 0
    ).astype(np.float32)


# ---------------------------------------------------------------- k-means (calibrate.rs::kmeans)
def kmeans(P, k, seed, max_iter=100):
    n, dim = P.shape
    rng = SplitMix64(seed)
    cents = [P[rng.below(n)].copy()]
    d2 = ((P - cents[0]) ** 2).sum(1, dtype=np.float32)
    while len(cents) < k:
        total = float(d2.astype(np.float64).sum())
        if total > 0:
            r = rng.unit() * total
            cs = np.cumsum(d2.astype(np.float64))
            # position where r - cumsum < 0  <=> cumsum > r
            idx = int(np.searchsorted(cs, r, side="right"))
            nxt = min(idx, n - 1)
        else:
            nxt = rng.below(n)
        c = P[nxt].copy()
        d2 = np.minimum(d2, ((P - c) ** 2).sum(1, dtype=np.float32))
        cents.append(c)
    C = np.stack(cents).astype(np.float32)
    assign = np.full(n, -1)
    it = 0
    while True:
        D = sqd_to(C, P)
        nxt = D.argmin(1)
        best = D[np.arange(n), nxt]
        changed = int((nxt != assign).sum())
        assign = nxt
        if changed == 0 or it >= max_iter:
            return C, assign
        it += 1
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros((k, dim), np.float64)
        np.add.at(sums, assign, P.astype(np.float64))
        taken = np.zeros(n, bool)
        for c in range(k):
            if counts[c] > 0:
                C[c] = (sums[c] / counts[c]).astype(np.float32)
            else:
                cand = np.where(~taken, best, -np.inf)
                far = int(cand.argmax())
                taken[far] = True
                C[c] = P[far]


def assign(C, X):
    return sqd_to(C, unit(X)).argmin(1)


# ---------------------------------------------------------------- tables (calibrate.rs::Hist, fair.rs::LogFmrTable)
def hist_table(values, lo, hi, bins, per_decade=10, min_count=10):
    """Hist::table: points (x, log10 FMR), x increasing. values: 1-d array."""
    width = max(hi - lo, 1e-12) / bins
    b = np.clip(np.floor(np.maximum((values - lo) / width, 0)).astype(np.int64), 0, bins - 1)
    counts = np.bincount(b, minlength=bins)
    return table_from_counts(counts, lo, width, per_decade, min_count)


def table_from_counts(counts, lo, width, per_decade=10, min_count=10):
    n = int(counts.sum())
    cum = np.cumsum(counts)
    pts = []
    if n == 0:
        return np.zeros((0, 2))
    step = 0
    while step < 100000:
        level = -step / per_decade
        target = 10.0 ** level * n
        if target < max(min_count, 1):
            break
        bb = min(int(np.searchsorted(cum, target, side="left")), len(cum) - 1)
        before = cum[bb - 1] if bb > 0 else 0
        frac = (target - before) / max(counts[bb], 1)
        x = lo + (bb + min(max(frac, 0.0), 1.0)) * width
        if not pts or x < pts[-1][0]:
            pts.append((x, level))
        step += 1
    pts.reverse()
    return np.array(pts, dtype=np.float64)


def table_eval(T, x):
    """LogFmrTable::log_fmr vectorised. T: (m,2) array."""
    x = np.asarray(x, dtype=np.float64)
    xs, ys = T[:, 0], T[:, 1]
    out = np.interp(x, xs, ys)  # inside; above last -> last y
    first = T[0]
    top = next((q for q in T if q[1] >= first[1] + 1.0 - 1e-9), T[-1])
    if top[0] <= first[0]:
        below = np.full_like(x, max(FLOOR, first[1]))
    else:
        slope = (top[1] - first[1]) / (top[0] - first[0])
        below = np.maximum(first[1] + (x - first[0]) * slope, FLOOR)
    return np.where(x < first[0], below, out)


# ---------------------------------------------------------------- fair member
class Member:
    """One k-means clustering with per-cluster distance -> log FMR tables (within pairs)."""

    def __init__(self, X, k, seed, D=None, iu=None, pairs="within"):
        self.k, self.seed = k, seed
        n = len(X)
        P = unit(X)
        self.C, cl = kmeans(P, k, seed)
        self.cl = cl
        if D is None:
            D = dist_matrix(X)
        if iu is None:
            iu = np.triu_indices(n, 1)
        norms = np.sqrt(np.einsum("ij,ij->i", X, X).astype(np.float32).astype(np.float64))
        self.hi = 2.0 * norms.max()
        d = D[iu].astype(np.float64)
        self.glob = hist_table(d, 0.0, self.hi, 8192)
        ci, cj = cl[iu[0]], cl[iu[1]]
        self.tables = []
        for c in range(k):
            if pairs == "within":
                m = (ci == c) & (cj == c)
            else:
                m = (ci == c) | (cj == c)
            t = hist_table(d[m], 0.0, self.hi, 8192)
            self.tables.append(t if len(t) >= 2 else None)

    @classmethod
    def from_kenning(cls, j):
        """A member made from a fair calibration file written by `kenning calibrate --fair`."""
        m = cls.__new__(cls)
        m.k, m.seed = j["config"]["k"], j["config"]["seed"]
        m.C = np.array(j["centroids"], np.float32)
        m.glob = np.array(j["global"]["points"], np.float64)
        m.tables = [np.array(c["table"]["points"], np.float64) if c["table"] else None for c in j["clusters"]]
        return m

    def face_logfmr(self, D, cl_rows):
        """F[i, j] = table_{cl_rows[i]}(D[i, j])."""
        F = np.empty(D.shape, np.float64)
        for c in range(self.k):
            rows = np.where(cl_rows == c)[0]
            if len(rows) == 0:
                continue
            T = self.tables[c] if self.tables[c] is not None else self.glob
            F[rows] = table_eval(T, D[rows])
        return F

    def raw_pairs(self, D, cl, iu):
        """Raw score s = mean of the two faces' cluster log FMRs, for pairs iu of a square D."""
        F = self.face_logfmr(D, cl)
        return 0.5 * (F[iu] + F.T[iu])

    def raw_list(self, d, ca, cb):
        """Raw score for explicit pairs with distances d and clusters ca, cb."""
        fa = np.empty(len(d)); fb = np.empty(len(d))
        for c in range(self.k):
            T = self.tables[c] if self.tables[c] is not None else self.glob
            m = ca == c; fa[m] = table_eval(T, d[m])
            m = cb == c; fb[m] = table_eval(T, d[m])
        return 0.5 * (fa + fb)


def combined_table(raw_A):
    return hist_table(raw_A, FLOOR, 0.0, int(-FLOOR * 2000))


# ---------------------------------------------------------------- global table (kenning-models calibration.rs)
def global_points(dA, exclude_below=0.12, step=0.05):
    v = np.sort(dA[dA >= exclude_below].astype(np.float32))
    n = len(v)
    min_log = np.log10(100 / n)
    pts = []
    i = 0
    while True:
        lf = round(-i * step * 1e9) / 1e9 + 0.0
        if lf < min_log - 1e-12:
            break
        kk = min(max(int(round(10 ** lf * n)), 1), n) - 1
        d = float(v[kk])
        if not pts or d < pts[-1][1]:
            pts.append((lf, d))
        i += 1
    return pts


def global_distance_for(pts, log_fmr):
    if log_fmr >= pts[0][0]:
        return np.inf
    i = next((q for q, p in enumerate(pts) if not p[0] > log_fmr), len(pts))
    a, b = (pts[i - 1], pts[i]) if i < len(pts) else (pts[-2], pts[-1])
    t = (log_fmr - a[0]) / (b[0] - a[0])
    return max(a[1] + t * (b[1] - a[1]), 0.0)


# ---------------------------------------------------------------- evaluation (fairness.rs)
class EvalSet:
    """Same-group bookkeeping for a one-photo-per-person labelled set."""

    def __init__(self, groups, iu):
        self.names = sorted(set(groups))
        g = np.array([self.names.index(x) for x in groups])
        self.g = g
        self.iu = iu
        gi, gj = g[iu[0]], g[iu[1]]
        self.same = np.where(gi == gj, gi, -1)
        self.sizes = np.bincount(g, minlength=len(self.names))
        self.npairs = self.sizes * (self.sizes - 1) // 2
        self.total = len(iu[0])

    def rates(self, accept):
        """accept: bool per pair (score <= threshold). Returns per-group rates, ratio (or None), lower bound."""
        s = self.same[accept]
        err = np.bincount(s[s >= 0], minlength=len(self.names))
        rates = err / self.npairs
        mx, mn = rates.max(), rates.min()
        ratio = mx / mn if mn > 0 else None
        lb = None if mn > 0 else mx / (3.0 / self.npairs[rates.argmin()])
        return dict(rates=rates.tolist(), errors=err.tolist(), ratio=ratio, lower_bound=lb,
                    max_group=self.names[int(rates.argmax())], min_group=self.names[int(rates.argmin())],
                    overall_fmr=float(accept.sum()) / self.total, false_matches=int(accept.sum()))

    def bootstrap_ratio(self, accept, reps=200, seed=12345):
        """Resample people within each group (one photo per person), threshold fixed."""
        rng = np.random.default_rng(seed)
        I, J = self.iu[0][accept], self.iu[1][accept]
        s = self.same[accept]
        keep = s >= 0
        I, J, s = I[keep], J[keep], s[keep]
        # local indices
        local = np.zeros(len(self.g), int)
        members = []
        for gi in range(len(self.names)):
            idx = np.where(self.g == gi)[0]
            local[idx] = np.arange(len(idx))
            members.append(idx)
        out = []
        for _ in range(reps):
            rates = []
            for gi in range(len(self.names)):
                m = len(members[gi])
                w = np.bincount(rng.integers(0, m, m), minlength=m).astype(np.int64)
                den = (w.sum() ** 2 - (w ** 2).sum()) // 2
                sel = s == gi
                num = (w[local[I[sel]]] * w[local[J[sel]]]).sum()
                rates.append(num / den)
            rates = np.array(rates)
            mx, mn = rates.max(), rates.min()
            out.append(1.0 if mx == 0 else (np.inf if mn == 0 else mx / mn))
        out = np.sort(np.array(out))
        def q(p):  # fairness.rs::quantile: linear, infinities propagate
            pos = p * (len(out) - 1); lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            a, b = out[lo], out[hi]
            if lo == hi or a == b: return float(a)
            if not np.isfinite(a) or not np.isfinite(b): return float(b)
            return float(a + (b - a) * (pos - lo))
        return q(0.025), q(0.975), out
