"""Print bench_index / faiss_bench results (results.jsonl) as Markdown."""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
builds = {r["system"]: r for r in rows if r["phase"] == "build"}
build_of = {"kenning-hnsw": "kenning", "kenning-exact": "kenning", "faiss-hnsw": "faiss-hnsw"}
n = next((r["n"] for r in rows if "n" in r), 0)
print(f"N = {n:,} vectors, 128-d, k = 10\n")
print("| system | ef | recall@1 | recall@10 | p50 ms | p99 ms | p50 CPU ms | p99 CPU ms | open s | RSS B/face after open | RSS B/face after queries | build vec/s wall (threads) | build CPU s | disk B/face |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["phase"] != "search":
        continue
    b = builds.get(build_of.get(r["system"], ""), {})
    build = f'{b["rate"]:,} ({b["threads"]})' if b else "-"
    disk = f'{b["disk_bytes_per_face"]:.0f}' if b else "-"
    cpu = f'{b["cpu_s"]:.0f}' if b.get("cpu_s") else "-"
    ef = r["ef"] or "exact"
    print(f'| {r["system"]} | {ef} | {r["recall1"]:.4f} | {r["recall10"]:.4f} | {r["p50_ms"]:.3f} | {r["p99_ms"]:.3f} | '
          f'{r.get("cpu_p50_ms", 0):.3f} | {r.get("cpu_p99_ms", 0):.3f} | {r["open_s"]:.2f} | '
          f'{r["rss_load_bytes_per_face"]:.0f} | {r["rss_after_queries_per_face"]:.0f} | {build} | {cpu} | {disk} |')
cross = [r for r in rows if r["phase"] == "crossover"]
if cross:
    print("\nExact scan vs HNSW (ef 64) by collection size, single core:\n")
    print("| vectors | exact p50 ms | HNSW p50 ms | exact p99 ms | HNSW p99 ms |")
    print("|---|---|---|---|---|")
    for r in cross:
        print(f'| {r["n"]:,} | {r["exact_p50_ms"]:.3f} | {r["hnsw_p50_ms"]:.3f} | {r["exact_p99_ms"]:.3f} | {r["hnsw_p99_ms"]:.3f} |')
