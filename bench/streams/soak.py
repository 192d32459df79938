"""A stream processor's memory over a long run, and what it costs photo
requests, side by side in one run.

* soak: one processor on the Hamilton clip served live (720p, looped,
  MPEG-TS over HTTP on loopback by ffmpeg) for --minutes; the server's RSS
  (and its ffmpeg child's) sampled every 10 s, with the processor's counters.
  Flat means the last minutes' RSS is within a few MiB of the first
  minutes' after warm-up, and the least-squares slope over the run after
  the first two minutes is near zero.
* photos: DetectFaces latency on a photo, --requests one after another,
  with no stream running, then with one stream at --stream-niceness 0 (the
  processor at the same priority as requests) and at 10 (the default).

Usage: bench/streams/run.sh --soak [--minutes 10] [--requests 40]
       [--skip-photos] [--niceness 10]
(run.sh builds, installs models/ffmpeg/python and sets KENNING,
KENNING_MODELS and the data folder).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

from live import KEY, SECRET, Camera, Feed, end, enrol_refs, make_cam, metrics, pct


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid):
    """Processes any thread of `pid` started (ffmpeg is started by a processor's thread)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


class Server:
    """`kenning serve --enable-streams` with one source and one SSE output."""

    def __init__(self, kenning, data, env, cam_url, niceness):
        cmd = [kenning, "serve", "--listen", "127.0.0.1:0", "--data", str(data), "--enable-streams",
               "--stream-source", f"cam={cam_url}",
               "--stream-output", "out=sse", "--stream-niceness", str(niceness)]
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.endpoint = "http://" + self.p.stdout.readline().strip().rsplit("://", 1)[1]
        threading.Thread(target=self.p.stdout.read, daemon=True).start()
        self.rek = boto3.client("rekognition", endpoint_url=self.endpoint, region_name="us-east-1",
                                aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                                config=Config(retries={"max_attempts": 1}))
        self.token = json.loads(subprocess.run(
            [kenning, "keys", "token", "create", KEY, "--data", data], env=env,
            capture_output=True, text=True, check=True).stdout)["Token"]

    def start_processor(self):
        if "p" not in [p["Name"] for p in self.rek.list_stream_processors()["StreamProcessors"]]:
            self.rek.create_stream_processor(
                Name="p",
                Input={"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam/1"}},
                Output={"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:123456789012:stream/out"}},
                Settings={"FaceSearch": {"CollectionId": "refs"}},
                RoleArn="arn:aws:iam::123456789012:role/bench")
        self.feed = Feed(f"{self.endpoint}/v1/stream-outputs/out/events", self.token)
        self.rek.start_stream_processor(Name="p")

    def stop_processor(self):
        self.rek.stop_stream_processor(Name="p")

    def close(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=60)


def detect_latencies(rek, photo, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        rek.detect_faces(Image={"Bytes": photo})
        out.append(time.perf_counter() - t)
    return out


def summary(xs):
    return {"n": len(xs), "p50_ms": round(1000 * pct(xs, 0.5), 1), "p95_ms": round(1000 * pct(xs, 0.95), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--skip-photos", action="store_true")
    ap.add_argument("--niceness", type=int, default=10, help="--stream-niceness of the long run")
    a = ap.parse_args()
    kenning = os.environ["KENNING"]
    shared = Path(os.environ["KENNING_TEST_DATA"])
    work = Path(tempfile.mkdtemp(prefix="kenning-stream-soak-"))
    procs, camera = [], None
    try:
        cam = work / "cam720.ts"
        make_cam(shared / "video/short_hamilton_clip.mp4", cam)
        env = dict(os.environ, KENNING_ACCESS_KEY_ID=KEY, KENNING_SECRET_ACCESS_KEY=SECRET)
        data = work / "data"
        enrol_refs(kenning, data, env, shared / "video/reference")
        camera = Camera(cam)
        photo = (shared / "misc/face_recognition/examples/two_people.jpg").read_bytes()

        # Photo requests beside a stream, at niceness 0 and 10.
        if not a.skip_photos:
            rows = {}
            for niceness in (0, 10):
                s = Server(kenning, data, env, camera.url, niceness)
                procs.append(s.p)
                detect_latencies(s.rek, photo, 5)
                if niceness == 0:
                    rows["idle"] = summary(detect_latencies(s.rek, photo, a.requests))
                s.start_processor()
                time.sleep(8)
                before = metrics(s.endpoint).get("p", {})
                lat = detect_latencies(s.rek, photo, a.requests)
                after = metrics(s.endpoint).get("p", {})
                row = summary(lat)
                d = lambda k: after.get(k, 0) - before.get(k, 0)
                row["stream_analysed_share"] = round(
                    d("kenning_stream_frames_analysed") / max(1, d("kenning_stream_frames_in")), 2)
                rows[f"stream_niceness_{niceness}"] = row
                s.stop_processor()
                s.close()
            print(json.dumps({"detect_faces_two_people": rows}), flush=True)

        # Memory over a long run.
        s = Server(kenning, data, env, camera.url, a.niceness)
        procs.append(s.p)
        s.start_processor()
        samples = []
        t0 = time.time()
        while time.time() - t0 < a.minutes * 60:
            kids = children(s.p.pid)
            m = metrics(s.endpoint).get("p", {})
            samples.append({
                "t_s": round(time.time() - t0),
                "server_rss_mib": round(rss_mib(s.p.pid), 1),
                "ffmpeg_rss_mib": round(sum(rss_mib(k) for k in kids), 1),
                "frames_analysed": m.get("kenning_stream_frames_analysed", 0),
                "records": m.get("kenning_stream_records", 0),
                "reconnects": m.get("kenning_stream_reconnects", 0),
            })
            print(json.dumps(samples[-1]), flush=True)
            time.sleep(10)
        s.stop_processor()
        s.close()
        # After the first two minutes (the whole run when it is shorter).
        warm = [x for x in samples if x["t_s"] >= 120] or samples
        first = [x["server_rss_mib"] for x in warm[:6]]
        last = [x["server_rss_mib"] for x in warm[-6:]]
        n = len(warm)
        mt = sum(x["t_s"] for x in warm) / n
        mr = sum(x["server_rss_mib"] for x in warm) / n
        slope = sum((x["t_s"] - mt) * (x["server_rss_mib"] - mr) for x in warm) / max(
            1e-9, sum((x["t_s"] - mt) ** 2 for x in warm))
        print(json.dumps({
            "minutes": a.minutes,
            "stream_niceness": a.niceness,
            "server_rss_mib_first_minute_after_warmup": round(sum(first) / len(first), 1),
            "server_rss_mib_last_minute": round(sum(last) / len(last), 1),
            "server_rss_mib_max": max(x["server_rss_mib"] for x in samples),
            "server_rss_slope_mib_per_minute": round(slope * 60, 3),
            "ffmpeg_rss_mib_max": max(x["ffmpeg_rss_mib"] for x in samples),
            "frames_analysed": samples[-1]["frames_analysed"],
            "records": samples[-1]["records"],
            "reconnects": samples[-1]["reconnects"],
        }), flush=True)
    finally:
        end(procs)
        if camera is not None:
            camera.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
