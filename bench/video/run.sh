#!/usr/bin/env bash
# Stored-video benchmark, side by side in one run:
#  1. `kenning video search` (5 fps sampling, 2 threads) against the
#     face_recognition library on every 6th frame (its README's video
#     example), on ../shared/data/video: real-time factor, time per stage,
#     and which reference people each identified;
#  2. DetectFaces latency on a running `kenning serve`, idle and while
#     video jobs run back to back (does video starve photo requests?).
# Start-up is reported apart from the job: loading the models and opening
# the data directory (before the job starts, not in its real-time factor),
# and the job's own start (probe, ffmpeg's first frame). Stage times are
# CPU seconds of the threads doing each stage (they run side by side).
# BASELINE=/path/to/an/older/kenning adds its runs, alternating with this
# build's, as tool "baseline" (compare on a busy machine by CPU seconds).
# Usage: bench/video/run.sh [REPEATS]   (JSON lines, then a Markdown summary)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data="$root/../shared/data/video"
repeats="${1:-3}"
bash "$root/scripts/setup-models.sh"
bash "$root/scripts/setup-ffmpeg.sh"
bash "$root/scripts/setup-test-python.sh"
python="$(bash "$root/bench/face-recognition-venv.sh")"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kenning-cli
export KENNING_MODELS="${KENNING_MODELS:-$root/models}"
kenning="$root/target/release/kenning"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$kenning" --data "$work/data" collection create refs >/dev/null
"$kenning" --data "$work/data" index --collection refs --max-faces 1 "$data/reference" >/dev/null 2>&1
results="$work/results.jsonl"
for i in $(seq "$repeats"); do
  for v in short_hamilton_clip street_crowd_1080p; do
   for tool in kenning ${BASELINE:+baseline}; do
    bin="$kenning"; [ "$tool" = baseline ] && bin="$BASELINE"
    "$bin" --data "$work/data" --threads 2 video search --collection refs --tracks --stats \
      "$data/$v.mp4" 2>"$work/stats" >"$work/tracks"
    python3 - "$tool" "$v" "$work/stats" "$work/tracks" >>"$results" <<'PY'
import json, sys
tool, v, stats, tracks = sys.argv[1:]
s = json.loads(open(stats).read().strip().splitlines()[-1])
t = [json.loads(l) for l in open(tracks)]
ids = {}
for p in t:
    if p["BestMatch"]:
        name = p["BestMatch"]["ExternalImageId"].rsplit(".", 1)[0]
        ids[name] = ids.get(name, 0) + p["Sightings"]
print(json.dumps({"tool": tool, "video": v, "frames": s["Stages"]["Frames"],
                  "video_s": s["VideoSeconds"], "wall_s": s["WallSeconds"], "cpu_s": s["CpuSeconds"],
                  "startup_s": s.get("StartupSeconds"), "startup_cpu_s": s.get("StartupCpuSeconds"),
                  "stages_ms": s["Stages"],
                  "faces": sum(p["Sightings"] for p in t), "persons": len(t), "identified": ids}))
PY
   done
    "$python" "$root/bench/video/peer.py" "$data/$v.mp4" --reference "$data"/reference/*.png >"$work/peer"
    python3 - "$v" "$work/peer" "$data/$v.mp4" >>"$results" <<'PY'
import json, subprocess, sys
v, peer, path = sys.argv[1:]
p = json.loads(open(peer).read())
dur = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                           capture_output=True, text=True, check=True).stdout)
print(json.dumps({"tool": "face_recognition", "video": v, "frames": p["Frames"], "video_s": dur,
                  "wall_s": p["WallSeconds"], "cpu_s": p["CpuSeconds"], "stages_s": p["Stages"],
                  "faces": p["Faces"],
                  "identified": p["Identified"]}))
PY
  done
done
# Photo latency with and without video jobs running.
mkdir -p "$work/bucket"
cp "$data/street_crowd_1080p.mp4" "$work/bucket/"
KENNING_ACCESS_KEY_ID=AKKNBENCHVIDEO000001 KENNING_SECRET_ACCESS_KEY=bench-video-secret-0123456789 \
  "$kenning" --data "$work/serve" serve --listen 127.0.0.1:0 --bucket "bench=$work/bucket" \
  >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 300); do grep -q "http://" "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
endpoint="$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -n1)"
"$root/.cache/venv-test/bin/python" "$root/bench/video/starve.py" --endpoint "$endpoint" \
  --key AKKNBENCHVIDEO000001 --secret bench-video-secret-0123456789 \
  --photo "$root/../shared/data/misc/face_recognition/examples/two_people.jpg" \
  --bucket bench --video street_crowd_1080p.mp4 | sed 's/^/{"tool": "starvation", "result": /; s/$/}/' >>"$results"
kill "$server"; wait "$server" 2>/dev/null || true
cat "$results"
python3 "$root/bench/video/report.py" "$results"
