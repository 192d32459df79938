"""Markdown summary of bench/video/run.sh's JSON lines (medians over runs)."""

import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1])]
print("| video | tool | frames | wall s (median) | real-time factor | CPU s (median) | cores used | RTF if CPU-bound on 2 cores | start-up before the job, s wall / CPU | time per stage (s) | faces | reference people identified (frames) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
ratios = {}
for v in ("short_hamilton_clip", "street_crowd_1080p"):
    for tool in ("kenning", "baseline", "face_recognition"):
        rs = [r for r in rows if r.get("video") == v and r["tool"] == tool]
        if not rs:
            continue
        wall = statistics.median(r["wall_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        rtf = rs[0]["video_s"] / wall
        # A single-threaded tool cannot use the second core.
        cores = 1 if tool == "face_recognition" else 2
        cpu_rtf = rs[0]["video_s"] / (cpu / cores)
        ratios.setdefault(v, {})[tool] = (wall, cpu)
        last = rs[-1]
        startup = "-"
        if tool == "face_recognition":
            stages = ", ".join(f"{k} {x:.2f}" for k, x in last["stages_s"].items())
        else:
            s = last["stages_ms"]
            # Older builds timed stages in wall time and had no start stage.
            stages = ", ".join(f"{k[:-2].lower()} {s[k] / 1000:.2f}" for k in
                               ("StartMs", "DecodeMs", "DetectMs", "TrackMs", "EmbedMs", "SearchMs") if k in s)
            if last.get("startup_s") is not None:
                startup = f"{statistics.median(r['startup_s'] for r in rs):.2f} / {statistics.median(r['startup_cpu_s'] for r in rs):.2f}"
        used = statistics.median(r["cpu_s"] / r["wall_s"] for r in rs)
        ids = ", ".join(f"{k} ({n})" for k, n in sorted(last["identified"].items())) or "none"
        print(f"| {v} | {tool} | {last['frames']} | {wall:.2f} | {rtf:.2f} | {cpu:.2f} | {used:.2f} | {cpu_rtf:.2f} | {startup} | {stages} | {last['faces']} | {ids} |")
for v, t in ratios.items():
    if "baseline" in t:
        b, k = t["baseline"], t["kenning"]
        print(f"| {v} | **kenning vs baseline** | | **{b[0] / k[0]:.2f}x** | | **{b[1] / k[1]:.2f}x** | | | | | | |")
    if "face_recognition" in t and "kenning" in t:
        fr, k = t["face_recognition"], t["kenning"]
        print(f"| {v} | **kenning speed-up** | | **{fr[0] / k[0]:.1f}x** | | **{fr[1] / k[1]:.1f}x** | | | | | | |")
for r in rows:
    if r["tool"] == "starvation":
        s = r["result"]
        print()
        print(f"DetectFaces while idle: p50 {s['idle']['p50_ms']} ms, p95 {s['idle']['p95_ms']} ms; "
              f"during video jobs: p50 {s['during_video']['p50_ms']} ms, p95 {s['during_video']['p95_ms']} ms "
              f"({s['video_jobs_finished_meanwhile']} jobs finished meanwhile)")
