"""Live stream processors under load, side by side in one run.

For each N in --streams: N cameras serve the Hamilton clip, re-encoded
once to 1280x720, live as MPEG-TS over HTTP on loopback (each connection
gets its own ffmpeg, -re and looped, from the start of the clip);
`kenning serve --enable-streams` runs N processors (5 fps each) on them
against a collection of the two reference photos, and a client reads every
output's Server-Sent Events for --seconds. Reported per N:

* latency from a frame entering Kenning's ffmpeg to its record arriving on
  SSE (p50, p99). The camera sends in real time, so a frame entered
  Kenning's ffmpeg FrameOffsetInSeconds after the connection's first
  frame did, and that one entered at its ProducerTimestamp (when it came
  out of the decoder) less its own decoding time (tens of ms, not counted).
  So it counts demuxing, decoding, scaling, waiting, detection, tracking,
  embedding, search, audit and delivery;
* first frame: from the camera's first byte (its ffmpeg's first frame,
  -flush_packets 1) to Kenning's first decoded frame, once per connection:
  ffmpeg probes the stream (-analyzeduration 2 s) and drops what it read
  while probing;
* frames in / analysed / skipped (skipped: analysis was behind live and a
  newer frame replaced one not yet taken) and the last lag from /metrics;
* whether the processors kept up: analysed >= 90% of frames in and
  p99 <= 1 s.

Then the stored-video real-time factor of `kenning video search` on the
Hamilton clip, with no streams running and with the largest N running.

Usage: bench/streams/run.sh [--streams 1 2 3] [--seconds 60]
(run.sh builds, installs models/ffmpeg/python and calls this with
KENNING, KENNING_MODELS and the data folder set).
"""

import argparse
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

KEY, SECRET = "AKKNSTREAMBENCH00001", "stream-bench-secret-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


class Feed(threading.Thread):
    """Reads a Server-Sent Events output on a thread: `arrivals` holds, per
    record, (when it arrived, its InputInformation.KinesisVideo)."""

    @staticmethod
    def latency(arrived, kv):
        """Seconds from the record's frame entering Kenning's ffmpeg to `arrived`."""
        return arrived - (kv["ProducerTimestamp"] + kv["FrameOffsetInSeconds"])

    def __init__(self, url, token):
        super().__init__(daemon=True)
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        self.resp = urllib.request.urlopen(req, timeout=600)
        self.arrivals = []
        self.start()

    def run(self):
        try:
            for raw in self.resp:
                line = raw.decode()
                if not line.startswith("data: "):
                    continue
                now = time.time()
                self.arrivals.append((now, json.loads(line[6:])["InputInformation"]["KinesisVideo"]))
        except Exception:
            pass


class Camera:
    """A camera on loopback: `clip` (MPEG-TS) live, looped, at `url`; each
    connection gets its own ffmpeg (-re) from the start of the clip.
    `starts` holds when each connection's first bytes (the first frame,
    flushed at once) left ffmpeg."""

    def __init__(self, clip):
        self.clip = clip
        self.starts = []
        self.procs = []
        cam = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                p = subprocess.Popen(
                    ["ffmpeg", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i",
                     str(cam.clip), "-c", "copy", "-f", "mpegts", "-flush_packets", "1", "pipe:1"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                cam.procs.append(p)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp2t")
                    self.end_headers()
                    first = True
                    while chunk := os.read(p.stdout.fileno(), 1 << 16):
                        if first:
                            cam.starts.append(time.time())
                            first = False
                        self.wfile.write(chunk)
                except OSError:
                    pass
                finally:
                    end([p])

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.ts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first_frame(self, kv):
        """Seconds from the camera's first byte on the record's connection
        to Kenning's first frame of it (None if unknown)."""
        start = max((s for s in self.starts if s <= kv["ProducerTimestamp"]), default=None)
        return None if start is None else kv["ProducerTimestamp"] - start

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        end(self.procs)


def make_cam(clip, dst):
    """The clip re-encoded once to 1280x720 MPEG-TS, a keyframe a second."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-vf", "scale=1280:720", "-c:v", "libx264",
         "-preset", "veryfast", "-g", "30", "-an", "-f", "mpegts", str(dst)],
        check=True,
    )


def end(procs):
    """Kills whatever of `procs` still runs."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def metrics(endpoint):
    text = urllib.request.urlopen(endpoint + "/metrics").read().decode()
    out = {}
    for m in re.finditer(r'^(kenning_stream_\w+?)(?:_total)?\{processor="([^"]+)"\} ([0-9.e+-]+)$', text, re.M):
        out.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return out


def video_rtf(kenning, data, clip, env):
    p = subprocess.run(
        [kenning, "--data", data, "--threads", "2", "video", "search", "--collection", "refs",
         "--stats", clip],
        capture_output=True, text=True, env=env, check=True,
    )
    s = json.loads(p.stderr.strip().splitlines()[-1])
    return s["VideoSeconds"] / s["WallSeconds"]


def enrol_refs(kenning, data, env, reference):
    """The collection `refs` of the reference photos, in data directory `data`."""
    subprocess.run([kenning, "--data", data, "collection", "create", "refs"], check=True, env=env,
                   capture_output=True)
    subprocess.run([kenning, "--data", data, "index", "--collection", "refs", "--max-faces", "1",
                    reference], check=True, env=env, capture_output=True)


def run(args):
    kenning = os.environ["KENNING"]
    shared = Path(os.environ["KENNING_TEST_DATA"]) / "video"
    work = Path(tempfile.mkdtemp(prefix="kenning-stream-bench-"))
    procs, cameras = [], []
    print(json.dumps({"load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                      "cpus": os.cpu_count()}), flush=True)
    try:
        cam = work / "cam720.ts"
        make_cam(shared / "short_hamilton_clip.mp4", cam)
        env = dict(os.environ, KENNING_ACCESS_KEY_ID=KEY, KENNING_SECRET_ACCESS_KEY=SECRET)
        # The server's data directory, and one for `kenning video search`
        # beside it (a running server holds its directory's lock).
        data, vdata = work / "data", work / "vdata"
        for d in (data, vdata):
            enrol_refs(kenning, d, env, shared / "reference")
        rows = []
        idle_rtf = video_rtf(kenning, vdata, shared / "short_hamilton_clip.mp4", env)
        loaded_rtf = None
        for n in args.streams:
            cams = [Camera(cam) for _ in range(n)]
            cameras += cams
            cmd = [kenning, "serve", "--listen", "127.0.0.1:0", "--data", str(data), "--enable-streams"]
            for i, c in enumerate(cams):
                cmd += ["--stream-source", f"cam{i}={c.url}", "--stream-output", f"out{i}=sse"]
            server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
            procs.append(server)
            endpoint = "http://" + server.stdout.readline().strip().rsplit("://", 1)[1]
            threading.Thread(target=server.stdout.read, daemon=True).start()
            token = json.loads(subprocess.run(
                [kenning, "keys", "token", "create", KEY, "--data", data], env=env,
                capture_output=True, text=True, check=True).stdout)["Token"]
            rek = boto3.client("rekognition", endpoint_url=endpoint, region_name="us-east-1",
                               aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                               config=Config(retries={"max_attempts": 1}))
            feeds = []
            for i in range(n):
                rek.create_stream_processor(
                    Name=f"p{i}",
                    Input={"KinesisVideoStream": {
                        "Arn": f"arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam{i}/1"}},
                    Output={"KinesisDataStream": {
                        "Arn": f"arn:aws:kinesis:us-east-1:123456789012:stream/out{i}"}},
                    Settings={"FaceSearch": {"CollectionId": "refs"}},
                    RoleArn="arn:aws:iam::123456789012:role/bench")
                feeds.append(Feed(f"{endpoint}/v1/stream-outputs/out{i}/events", token))
                rek.start_stream_processor(Name=f"p{i}")
            # Warm-up, then measure from zero.
            time.sleep(10)
            before = metrics(endpoint)
            for f in feeds:
                f.arrivals.clear()
            if n == max(args.streams) and args.video:
                loaded_rtf = video_rtf(kenning, vdata, shared / "short_hamilton_clip.mp4", env)
                time.sleep(max(0, args.seconds - 10))
            else:
                time.sleep(args.seconds)
            after = metrics(endpoint)
            lat = [Feed.latency(t, kv) for f in feeds for t, kv in list(f.arrivals)]
            firsts = {
                (i, kv["FragmentNumber"]): c.first_frame(kv)
                for i, (c, f) in enumerate(zip(cams, feeds)) for _, kv in list(f.arrivals)
            }
            firsts = [x for x in firsts.values() if x is not None]
            d = lambda k: sum(after[p].get(k, 0) - before.get(p, {}).get(k, 0) for p in after)
            row = {
                "streams": n, "records": len(lat),
                "p50_s": round(pct(lat, 0.5), 3), "p99_s": round(pct(lat, 0.99), 3),
                "first_frame_s": round(pct(firsts, 0.5), 3),
                "frames_in": d("kenning_stream_frames_in"),
                "analysed": d("kenning_stream_frames_analysed"),
                "skipped": d("kenning_stream_frames_skipped"),
                "reconnects": d("kenning_stream_reconnects"),
                "lag_s": max(after[p].get("kenning_stream_lag_seconds", 0) for p in after),
            }
            row["analysed_share"] = round(row["analysed"] / max(1, row["frames_in"]), 3)
            row["kept_up"] = row["analysed_share"] >= 0.9 and row["p99_s"] <= 1.0
            print(json.dumps(row), flush=True)
            rows.append(row)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            for c in cams:
                c.close()
            shutil.rmtree(data / "streams", ignore_errors=True)
        print(json.dumps({"hamilton_video_search_rtf_idle": round(idle_rtf, 2),
                          f"hamilton_video_search_rtf_with_{max(args.streams)}_streams":
                              None if loaded_rtf is None else round(loaded_rtf, 2)}), flush=True)
        print("\n| streams | records | p50 s | p99 s | first frame s | frames in | analysed | skipped "
              "| analysed share | kept up |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['streams']} | {r['records']} | {r['p50_s']} | {r['p99_s']} | {r['first_frame_s']} "
                  f"| {r['frames_in']:.0f} "
                  f"| {r['analysed']:.0f} | {r['skipped']:.0f} | {r['analysed_share']} | {r['kept_up']} |")
        kept = [r["streams"] for r in rows if r["kept_up"]]
        print(f"\nmost streams kept up (of {sorted(args.streams)}): {max(kept) if kept else 0}; "
              f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        end(procs)
        for c in cameras:
            c.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("--streams", type=int, nargs="+", default=[1, 2, 3])
    a.add_argument("--seconds", type=float, default=60)
    a.add_argument("--no-video", dest="video", action="store_false")
    run(a.parse_args())
    sys.exit(0)
