"""FAISS side of the 1:N index benchmark (see run.sh).

Reads the same base.npy / queries.npy / gt.npy that bench_index wrote and
appends JSON lines to results.jsonl in the same shape as the Rust side.
Search is single-threaded (omp 1, and run.sh pins the process to one core);
latency is measured per query, both wall clock and thread CPU time.
"""
import argparse, json, os, time
import numpy as np
import faiss

K = 10


def rss():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out


def record(d, obj):
    line = json.dumps(obj)
    print(line, flush=True)
    with open(os.path.join(d, "results.jsonl"), "a") as f:
        f.write(line + "\n")


def pct(xs, p):
    xs = sorted(xs)
    i = min(len(xs), max(1, int(np.ceil(len(xs) * p)))) - 1
    return xs[i]


def timed_queries(index, queries, gt, count):
    wall, cpu, r1, r10 = [], [], 0, 0
    for i in range(count):
        q = queries[i : i + 1]
        t, c = time.perf_counter_ns(), time.thread_time_ns()
        _, ids = index.search(q, K)
        cpu.append((time.thread_time_ns() - c) / 1e6)
        wall.append((time.perf_counter_ns() - t) / 1e6)
        truth = gt[i]
        r1 += int(ids[0, 0] == truth[0])
        r10 += len(set(ids[0].tolist()) & set(truth.tolist()))
    return dict(
        queries=count,
        p50_ms=round(pct(wall, 0.5), 3),
        p99_ms=round(pct(wall, 0.99), 3),
        cpu_p50_ms=round(pct(cpu, 0.5), 3),
        cpu_p99_ms=round(pct(cpu, 0.99), 3),
        recall1=r1 / count,
        recall10=r10 / (count * K),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["build", "search", "flat"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--ef", default="16,32,64,128")
    ap.add_argument("--build-threads", type=int, default=1)
    ap.add_argument("--flat-queries", type=int, default=50)
    a = ap.parse_args()
    d = a.dir
    path = os.path.join(d, "faiss_hnsw.index")
    base = np.load(os.path.join(d, "base.npy"), mmap_mode="r")
    n = base.shape[0]
    if a.phase == "build":
        faiss.omp_set_num_threads(a.build_threads)
        index = faiss.IndexHNSWFlat(base.shape[1], a.m)
        index.hnsw.efConstruction = a.efc
        t, cpu = time.perf_counter(), time.process_time()
        step = 100_000
        for s in range(0, n, step):
            index.add(np.ascontiguousarray(base[s : s + step]))
        build_s = time.perf_counter() - t
        cpu_s = time.process_time() - cpu
        faiss.write_index(index, path)
        size = os.path.getsize(path)
        record(d, dict(system="faiss-hnsw", phase="build", n=n, m=a.m, efc=a.efc, threads=a.build_threads,
                       build_s=round(build_s, 2), rate=round(n / build_s), cpu_s=round(cpu_s, 1), file_bytes=size,
                       disk_bytes_per_face=round(size / n, 1)))
        return
    faiss.omp_set_num_threads(1)
    queries = np.load(os.path.join(d, "queries.npy"))
    gt = np.load(os.path.join(d, "gt.npy"))
    r0 = rss()
    t = time.perf_counter()
    if a.phase == "search":
        index = faiss.read_index(path)
        system, runs = "faiss-hnsw", [int(e) for e in a.ef.split(",")]
    else:
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(np.load(os.path.join(d, "base.npy")))
        system, runs = "faiss-flat", [0]
    open_s = time.perf_counter() - t
    r1 = rss()
    for ef in runs:
        if ef:
            index.hnsw.efSearch = ef
        count = len(queries) if ef else min(a.flat_queries, len(queries))
        res = timed_queries(index, queries, gt, count)
        r2 = rss()
        record(d, dict(system=system, phase="search", n=n, ef=ef, open_s=round(open_s, 3), **res,
                       rss_load_bytes_per_face=round((r1["VmRSS"] - r0["VmRSS"]) / n, 1),
                       rss_after_queries_per_face=round((r2["VmRSS"] - r0["VmRSS"]) / n, 1)))


if __name__ == "__main__":
    main()
