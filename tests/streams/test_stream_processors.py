"""Drives `kenning serve --enable-streams` with boto3, unchanged but for the
endpoint URL: the seven stream-processor operations with Rekognition's
members and errors (every response checked against botocore's model by
conftest.py), a processor on a live HTTP MPEG-TS source that ffmpeg
serves on loopback from the Hamilton clip, its records read as Server-Sent
Events (and resumed with Last-Event-ID), the source killed and brought
back, a processor on a looped file whose faces all match nothing, HLS,
MJPEG and RTSP sources, a source sending garbage (backoff), a webhook receiver that
verifies signatures, fails and stalls, the rotating file output, and a
collection whose policy requires a case and review.

Started by crates/kenning-cli/tests/streams.rs, which runs the server with
--stream-source cam=http://127.0.0.1:PORT/cam.ts, door=<bucket>/clip#loop,
crowd=<bucket>/crowd#loop, junk=, hls=, mjpeg=, rtsp= (URLs on the ports below),
hook=, cased= (the clip, looped) and --stream-output matches=sse,
matches=FILE, crowd-out=sse, crowd-out=FILE, door-out=sse, junk-out=sse,
hls-out=sse, mjpeg-out=sse, rtsp-out=sse, hooked=http://127.0.0.1:HOOK/hook?receiver=test,
hooked=FILE, cased-out=sse, --stream-queue 4 and a small
--stream-file-max-bytes, and passes:
  KENNING_ENDPOINT, KENNING_TEST_KEY_ID, KENNING_TEST_SECRET,
  KENNING_TEST_TOKEN (an API token of that key), KENNING_TEST_OPERATOR
  (JSON [id, secret, token] of an operator key), KENNING_TEST_REFERENCE
  (the reference photos' folder), KENNING_TEST_CLIP (the Hamilton clip),
  KENNING_TEST_CAM_PORT (where the live source must listen),
  KENNING_TEST_STREAMS (JSON: junk_port, hls_port, mjpeg_port, rtsp_port, hook_port,
  hook_file, file_max_bytes, auditor [id, secret]) and
  KENNING_NOTIFY_SECRET (the webhooks' signing key).
Afterwards it kills the server (SIGKILL) with the processors the last test
leaves, restarts it and checks how each comes back.
"""
import functools
import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import botocore.session
import botocore_shapes
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from kenning_server import enrol, error_code as code, rekognition, until

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
KEY_ID = os.environ.get("KENNING_TEST_KEY_ID")
SECRET = os.environ.get("KENNING_TEST_SECRET")
TOKEN = os.environ.get("KENNING_TEST_TOKEN")
OPERATOR = json.loads(os.environ.get("KENNING_TEST_OPERATOR", "[]"))
REFERENCE = Path(os.environ.get("KENNING_TEST_REFERENCE", "."))
CLIP = os.environ.get("KENNING_TEST_CLIP", "")
CAM_PORT = os.environ.get("KENNING_TEST_CAM_PORT", "")
# Ports of the other live sources and the webhook, the file output and its
# rotation size (JSON).
SETUP = json.loads(os.environ.get("KENNING_TEST_STREAMS", "{}"))
NOTIFY_SECRET = os.environ.get("KENNING_NOTIFY_SECRET", "")
CASE = "CASE-STREAM-0001"
MODEL = botocore.session.get_session().get_service_model("rekognition")
FACE_DETAIL = MODEL.shape_for("FaceDetail")
FACE_MATCH = MODEL.shape_for("FaceMatch")
ROLE = "arn:aws:iam::123456789012:role/RekognitionStreams"
LIN = ("lin-manuel-miranda",)
BOTH = ("lin-manuel-miranda", "alex-lacamoire")


def kvs(name):
    return f"arn:aws:kinesisvideo:us-east-1:123456789012:stream/{name}/1700000000000"


def kds(name):
    return f"arn:aws:kinesis:us-east-1:123456789012:stream/{name}"


if not (ENDPOINT and KEY_ID and SECRET):
    pytest.fail(
        "run through crates/kenning-cli/tests/streams.rs (KENNING_ENDPOINT is not set)",
        pytrace=False,
    )


def client(key=(KEY_ID, SECRET), validate=True, case=None):
    return rekognition(key=key[:2], case=case, parameter_validation=validate)


def settings(threshold=None, collection="hamilton"):
    face = {"CollectionId": collection}
    if threshold is not None:
        face["FaceMatchThreshold"] = threshold
    return {"FaceSearch": face}


def create(rek, name, source, output, **kw):
    args = dict(
        Name=name,
        Input={"KinesisVideoStream": {"Arn": kvs(source)}},
        Output={"KinesisDataStream": {"Arn": kds(output)}},
        Settings=settings(),
        RoleArn=ROLE,
    )
    args.update(kw)
    return rek.create_stream_processor(**args)


def wait_status(rek, name, want, timeout=60):
    last = {}

    def reached():
        last.update(rek.describe_stream_processor(Name=name))
        return last["Status"] in want and dict(last)

    return until(reached, timeout, lambda _: f"{name}: {last['Status']} {last.get('StatusMessage')}")


class Feed:
    """Reads a Server-Sent Events feed on a thread: (id, event, data) tuples."""

    def __init__(self, path, last_id=None):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        req = urllib.request.Request(ENDPOINT + path, headers=headers)
        self.resp = urllib.request.urlopen(req, timeout=120)
        assert self.resp.headers["Content-Type"] == "text/event-stream"
        self.events = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        ident, event, data = None, "message", []
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line == "":
                    if data:
                        with self.lock:
                            self.events.append((ident, event, json.loads("\n".join(data))))
                    ident, event, data = None, "message", []
                elif line.startswith("id: "):
                    ident = int(line[4:])
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        except Exception:
            pass

    def wait(self, pred, timeout=120, what="an event"):
        def first():
            with self.lock:
                return next((e for e in self.events if pred(e)), None)

        return until(first, timeout, lambda _: f"{what}; got {len(self.events)} events", every=0.1)

    def count(self, n, timeout=60):
        """Waits for `n` events with ids; returns their ids."""

        def ids():
            with self.lock:
                seen = [e[0] for e in self.events if e[0] is not None]
            return len(seen) >= n and seen

        return until(ids, timeout, f"{n} events")

    def close(self):
        self.resp.close()


def ffmpeg_live(*out_args):
    """ffmpeg playing the Hamilton clip live, looped, with `out_args` as output."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i", CLIP, *out_args]
    )


def serve_cam():
    """ffmpeg serving the clip live, looped, as MPEG-TS over HTTP on loopback."""
    return ffmpeg_live("-c", "copy", "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{CAM_PORT}/cam.ts")


def matched(record, who):
    return any(
        m["Similarity"] >= 80 and m["Face"]["ExternalImageId"] == who
        for r in record.get("FaceSearchResponse", [])
        for m in r["MatchedFaces"]
    )


@pytest.fixture(scope="module")
def rek():
    return client()


@pytest.fixture(scope="module")
def hamilton(rek):
    return enrol(rek, "hamilton", REFERENCE, BOTH)


def test_create_follows_rekognition(rek, hamilton):
    r = create(rek, "door-proc", "door", "door-out", Settings=settings(50))
    assert r["StreamProcessorArn"].startswith("arn:aws:rekognition:")
    assert r["StreamProcessorArn"].endswith(":streamprocessor/door-proc")
    d = rek.describe_stream_processor(Name="door-proc")
    # Below 80 is raised to 80, as Rekognition does.
    assert d["Settings"]["FaceSearch"] == {"CollectionId": "hamilton", "FaceMatchThreshold": 80}
    assert d["Status"] == "STOPPED"
    assert d["Input"]["KinesisVideoStream"]["Arn"] == kvs("door")
    assert d["Output"]["KinesisDataStream"]["Arn"] == kds("door-out")
    assert d["RoleArn"] == ROLE
    assert d["CreationTimestamp"] <= d["LastUpdateTimestamp"]
    raw = client(validate=False)
    bad = [
        # Label detection is not face search.
        dict(Settings={"ConnectedHome": {"Labels": ["PERSON"]}}),
        # A stream name no --stream-source configures.
        dict(Input={"KinesisVideoStream": {"Arn": kvs("nowhere")}}),
        dict(Input={"KinesisVideoStream": {"Arn": "arn:aws:s3:::bucket/x"}}),
        dict(Output={"KinesisDataStream": {"Arn": kds("nowhere")}}),
        dict(Settings=settings(collection="no-such-collection")),
        dict(Settings=settings(101)),
        dict(RoleArn="not-a-role"),
        dict(DataSharingPreference={"OptIn": True}),
    ]
    for i, kw in enumerate(bad):
        with pytest.raises(ClientError) as e:
            create(raw, f"bad-{i}", "cam", "elsewhere", **kw)
        assert code(e) == "InvalidParameterException", kw
    # Names are unique; one processor per input and per output.
    for name, source, output in [
        ("door-proc", "cam", "matches"),
        ("door-again", "door", "matches"),
        ("door-out-again", "cam", "door-out"),
    ]:
        with pytest.raises(ClientError) as e:
            create(rek, name, source, output)
        assert code(e) == "ResourceInUseException", name
    # Only admins create.
    with pytest.raises(ClientError) as e:
        create(client(OPERATOR[:2]), "op-proc", "cam", "matches")
    assert code(e) == "AccessDeniedException"
    # Nothing of face search can be updated.
    rek.update_stream_processor(Name="door-proc", DataSharingPreferenceForUpdate={"OptIn": False})
    with pytest.raises(ClientError) as e:
        rek.update_stream_processor(
            Name="door-proc",
            SettingsForUpdate={"ConnectedHomeForUpdate": {"Labels": ["PET"]}},
        )
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        rek.describe_stream_processor(Name="nobody")
    assert code(e) == "ResourceNotFoundException"


def test_list_is_paginated(rek, hamilton):
    create(rek, "crowd-proc", "crowd", "crowd-out")
    names, token, pages = [], None, 0
    while True:
        args = {"MaxResults": 1}
        if token:
            args["NextToken"] = token
        r = rek.list_stream_processors(**args)
        pages += 1
        names += [p["Name"] for p in r["StreamProcessors"]]
        assert all(p["Status"] == "STOPPED" for p in r["StreamProcessors"])
        token = r.get("NextToken")
        if not token:
            break
    assert names == ["crowd-proc", "door-proc"] and pages >= 2
    with pytest.raises(ClientError) as e:
        rek.list_stream_processors(NextToken="not-a-token!")
    assert code(e) == "InvalidPaginationTokenException"


def test_a_live_camera_is_searched_and_survives_its_source_dropping(rek, hamilton):
    cam = serve_cam()
    try:
        create(rek, "cam-proc", "cam", "matches")
        feed = Feed("/v1/stream-outputs/matches/events")
        tracks = Feed("/v1/stream-processors/cam-proc/tracks")
        session = rek.start_stream_processor(Name="cam-proc")["SessionId"]
        assert len(session) == 36
        with pytest.raises(ClientError) as e:
            rek.start_stream_processor(Name="cam-proc")
        assert code(e) == "ResourceInUseException"
        # Lin-Manuel Miranda is matched live, in Kinesis face search shape.
        _, _, rec = feed.wait(
            lambda e: matched(e[2], "lin-manuel-miranda"), what="a match of Lin-Manuel Miranda"
        )
        assert set(rec) == {"InputInformation", "StreamProcessorInformation", "FaceSearchResponse"}
        kv = rec["InputInformation"]["KinesisVideo"]
        assert set(kv) == {
            "StreamArn", "FragmentNumber", "ServerTimestamp", "ProducerTimestamp",
            "FrameOffsetInSeconds",
        }
        assert kv["StreamArn"] == kvs("cam") and kv["FragmentNumber"].isdigit()
        assert abs(kv["ServerTimestamp"] - time.time()) < 120
        assert rec["StreamProcessorInformation"] == {"Status": "RUNNING"}
        for r in rec["FaceSearchResponse"]:
            assert set(r) == {"DetectedFace", "MatchedFaces"}
            assert {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"} <= set(
                r["DetectedFace"]
            )
            for m in r["MatchedFaces"]:
                assert m["Similarity"] >= 80 and set(m["Face"]) >= {"FaceId", "ExternalImageId"}
        # Strangers in the audience go out live with no match.
        feed.wait(
            lambda e: any(not r["MatchedFaces"] for r in e[2].get("FaceSearchResponse", [])),
            what="a face that matches nothing",
        )
        tracks.wait(lambda e: e[2]["Event"] == "TrackStarted", what="a track")
        t = tracks.wait(
            lambda e: e[2]["Event"] == "TrackMatched"
            and e[2]["BestMatch"]["Face"]["ExternalImageId"] == "lin-manuel-miranda",
            what="a matched track",
        )[2]
        assert t["StreamProcessor"] == "cam-proc" and t["FirstSeen"] <= t["LastSeen"]
        assert wait_status(rek, "cam-proc", {"RUNNING"})["Status"] == "RUNNING"
        # Resuming with Last-Event-ID replays exactly what came after it.
        # Records keep coming while the looped clip plays; wait for three.
        seen = feed.count(3)
        assert seen == sorted(seen)
        again = Feed("/v1/stream-outputs/matches/events", last_id=seen[-3])
        again.wait(lambda e: e[0] == seen[-1], what="the replayed events")
        with again.lock:
            replayed = [e[0] for e in again.events]
        assert replayed[:2] == seen[-2:]
        # /metrics counts the records sent, to each client, and the clients.
        with feed.lock:
            sent = len(feed.events)
        assert metric("kenning_stream_output_clients", output="matches", sink="sse") == 2
        delivered = metric("kenning_stream_output_delivered", output="matches", sink="sse")
        assert delivered >= sent + len(replayed), (delivered, sent, replayed)
        again.close()
        # An id this service never gave: told the count is unknown.
        stale = Feed("/v1/stream-outputs/matches/events", last_id=5)
        stale.wait(lambda e: e[1] == "missed" and e[2] == {"MissedEvents": None}, what="missed")
        stale.close()
        # The source drops: FAILED, reconnecting, while it is gone...
        cam.send_signal(signal.SIGKILL)
        cam.wait()
        d = wait_status(rek, "cam-proc", {"FAILED"}, timeout=60)
        assert "reconnecting" in d["StatusMessage"], d
        # ... and RUNNING again with records once it is back.
        cam = serve_cam()
        d = wait_status(rek, "cam-proc", {"RUNNING"}, timeout=90)
        assert "reconnected" in d.get("StatusMessage", ""), d
        fragment = kv["FragmentNumber"]
        feed.wait(
            lambda e: e[2].get("InputInformation", {}).get("KinesisVideo", {}).get(
                "FragmentNumber", fragment
            )
            > fragment,
            what="a record after reconnecting",
        )
        # A running processor is not deleted.
        with pytest.raises(ClientError) as e:
            rek.delete_stream_processor(Name="cam-proc")
        assert code(e) == "ResourceInUseException"
        rek.stop_stream_processor(Name="cam-proc")
        assert rek.describe_stream_processor(Name="cam-proc")["Status"] == "STOPPED"
        with pytest.raises(ClientError) as e:
            rek.stop_stream_processor(Name="cam-proc")
        assert code(e) == "ResourceInUseException"
        feed.close()
        tracks.close()
    finally:
        cam.kill()
        cam.wait()
    rek.delete_stream_processor(Name="cam-proc")
    with pytest.raises(ClientError) as e:
        rek.describe_stream_processor(Name="cam-proc")
    assert code(e) == "ResourceNotFoundException"


def test_strangers_go_out_live_only(rek, hamilton):
    """The crowd clip holds nobody of the collection: its records carry
    detected faces with no match, and its file output (matches only) gets
    nothing. The Rust side then scans the data directory for them."""
    feed = Feed("/v1/stream-outputs/crowd-out/events")
    rek.start_stream_processor(Name="crowd-proc")

    def strangers():
        with feed.lock:
            records = [e[2] for e in feed.events if e[1] == "message"]
        for r in records:
            for f in r["FaceSearchResponse"]:
                assert f["MatchedFaces"] == []
        return sum(len(r["FaceSearchResponse"]) for r in records) >= 10

    until(strangers, 120, "10 faces in the crowd clip's records", every=0.5)
    rek.stop_stream_processor(Name="crowd-proc")
    feed.close()


def test_operators_start_and_stop_but_do_not_delete(rek, hamilton):
    op = client(OPERATOR[:2])
    op.start_stream_processor(Name="door-proc")
    wait_status(rek, "door-proc", {"RUNNING"})
    op.stop_stream_processor(Name="door-proc")
    with pytest.raises(ClientError) as e:
        op.delete_stream_processor(Name="door-proc")
    assert code(e) == "AccessDeniedException"
    rek.delete_stream_processor(Name="door-proc")
    assert [p["Name"] for p in rek.list_stream_processors()["StreamProcessors"]] == ["crowd-proc"]


# ---- Sources of every kind, robustness, webhooks, files, policies ----------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def http_server(port, handler):
    """A threaded HTTP server on loopback (ended by `stop`)."""
    s = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def stop(server):
    server.shutdown()
    server.server_close()


def metric(name, **labels):
    """The value of one /metrics sample (0 when absent)."""
    text = urllib.request.urlopen(ENDPOINT + "/metrics", timeout=30).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or line.startswith(f"{name}_total{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def matched_live(rek, name, output, people=LIN, timeout=120):
    """Starts processor `name` and waits for records on `output` matching
    each of `people` (Similarity >= 80, faces in botocore's shapes); stops
    it; returns those records, one per person."""
    feed = Feed(f"/v1/stream-outputs/{output}/events")
    try:
        rek.start_stream_processor(Name=name)
        found = []
        for who in people:
            _, _, rec = feed.wait(
                lambda e: matched(e[2], who), timeout=timeout, what=f"a match of {who} on {name}"
            )
            for r in rec["FaceSearchResponse"]:
                assert not botocore_shapes.check_shape(FACE_DETAIL, r["DetectedFace"], "DetectedFace")
                for i, m in enumerate(r["MatchedFaces"]):
                    assert not botocore_shapes.check_shape(FACE_MATCH, m, f"MatchedFaces[{i}]")
            found.append(rec)
        return found
    finally:
        feed.close()
        rek.stop_stream_processor(Name=name)


def test_hls_and_mjpeg_sources_produce_records(rek, hamilton):
    """HLS (ffmpeg writing a live playlist, served over HTTP on loopback)
    and MJPEG over HTTP (ffmpeg's multipart JPEG server) are searched as
    MPEG-TS is."""
    with tempfile.TemporaryDirectory() as hls_dir:
        hls = ffmpeg_live(
            "-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "4",
            "-hls_flags", "delete_segments", f"{hls_dir}/live.m3u8",
        )
        web = http_server(SETUP["hls_port"], functools.partial(_Quiet, directory=hls_dir))
        try:
            until(
                lambda: Path(hls_dir, "live.m3u8").exists() or hls.poll() is not None,
                30,
                "a playlist written by ffmpeg",
            )
            assert hls.poll() is None, "ffmpeg ended"
            create(rek, "hls-proc", "hls", "hls-out")
            (rec,) = matched_live(rek, "hls-proc", "hls-out")
            assert rec["InputInformation"]["KinesisVideo"]["StreamArn"] == kvs("hls")
        finally:
            stop(web)
            hls.kill()
            hls.wait()
    mjpeg = ffmpeg_live(
        "-an", "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1",
        f"http://127.0.0.1:{SETUP['mjpeg_port']}/cam.mjpg",
    )
    try:
        create(rek, "mjpeg-proc", "mjpeg", "mjpeg-out")
        matched_live(rek, "mjpeg-proc", "mjpeg-out")
    finally:
        mjpeg.kill()
        mjpeg.wait()
    for name in ("hls-proc", "mjpeg-proc"):
        rek.delete_stream_processor(Name=name)


def test_an_rtsp_camera_is_searched(rek, hamilton, tmp_path):
    """An RTSP camera: GStreamer's RTSP server (tests/streams/rtsp_server.py,
    installed by scripts/setup-rtsp.sh) serves the Hamilton clip's H.264 as
    it is, paced live, on loopback; Kenning's ffmpeg reads it over TCP, and
    both reference people are matched."""
    # The clip played 30 times over, so the camera outlasts the test.
    looped = tmp_path / "hamilton-looped.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-stream_loop", "30", "-i", CLIP, "-an", "-c", "copy",
         str(looped)],
        check=True,
    )
    server = Path(__file__).with_name("rtsp_server.py")
    cam = subprocess.Popen(
        ["/usr/bin/python3", str(server), str(looped), str(SETUP["rtsp_port"]), "cam"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert cam.stdout.readline().strip() == "ready", (
            "GStreamer's RTSP server did not start: scripts/setup-rtsp.sh installs it"
        )
        create(rek, "rtsp-proc", "rtsp", "rtsp-out")
        for rec in matched_live(rek, "rtsp-proc", "rtsp-out", BOTH):
            kv = rec["InputInformation"]["KinesisVideo"]
            assert kv["StreamArn"] == kvs("rtsp") and kv["FragmentNumber"].isdigit()
    finally:
        cam.kill()
        cam.wait()
    rek.delete_stream_processor(Name="rtsp-proc")


def test_a_source_sending_garbage_is_retried_with_backoff(rek, hamilton):
    """A source that answers with bytes that are no video: the processor is
    FAILED and reconnecting, ever more slowly (the delays double), counts
    its reconnects, and the server goes on answering."""
    arrivals = []

    class Junk(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            arrivals.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(os.urandom(256 * 1024))

        def log_message(self, *args):
            pass

    junk = http_server(SETUP["junk_port"], Junk)
    try:
        create(rek, "junk-proc", "junk", "junk-out")
        rek.start_stream_processor(Name="junk-proc")
        delays = []

        def five_connections():
            d = rek.describe_stream_processor(Name="junk-proc")
            if d["Status"] == "FAILED":
                m = re.search(r"attempt (\d+), next in ([0-9.]+) s", d["StatusMessage"])
                assert m and "reconnecting" in d["StatusMessage"], d
                delays.append((int(m.group(1)), float(m.group(2))))
            return len(arrivals) >= 5

        until(five_connections, 90, lambda _: f"5 connections to the junk source, not {len(arrivals)}", every=0.1)
        # Exponential backoff: the announced delay doubles with each attempt
        # (from 0.5 s), and the source sees the connections at least that far apart.
        assert len({a for a, _ in delays}) >= 3, delays
        assert all(d == min(0.5 * 2 ** (a - 1), 30) for a, d in delays), delays
        # Each gap is ffmpeg giving up on the garbage (longer on a busy
        # machine) plus the delay: at least 0.5, 1, 2 and 4 s.
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert all(g >= 0.9 * 0.5 * 2**i for i, g in enumerate(gaps[:4])), gaps
        assert metric("kenning_stream_reconnects", processor="junk-proc") >= 4
        assert metric("kenning_stream_processor_status", processor="junk-proc", status="FAILED") == 1
        # The server is unharmed: photo operations and other processors answer.
        assert rek.list_collections()["CollectionIds"]
        assert "junk-proc" in [p["Name"] for p in rek.list_stream_processors()["StreamProcessors"]]
    finally:
        stop(junk)
    # Left FAILED and reconnecting (stored as running) for the restart the
    # Rust side does after this suite.


class Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: keeps every request (time, path, headers, body);
    `Hook.fail` requests are answered 500, and each waits `Hook.stall` s."""

    requests = []
    fail = 0
    stall = 0.0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.requests.append((time.monotonic(), self.path, dict(self.headers), body))
        if Hook.stall:
            time.sleep(Hook.stall)
        code = 200
        if Hook.fail > 0:
            Hook.fail -= 1
            code = 500
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def signed_by_kenning(headers, body):
    ts = headers["X-Kenning-Timestamp"]
    want = hmac.new(NOTIFY_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Kenning-Signature"], f"sha256={want}")


def test_webhook_and_file_outputs(rek, hamilton):
    """Records POSTed, HMAC-signed, retried with backoff when the receiver
    fails; a receiver that is too slow loses the oldest records (counted),
    not the newest; the file output rotates and keeps matched faces only."""
    Hook.fail = 3
    hook = http_server(SETUP["hook_port"], Hook)
    try:
        create(rek, "hook-proc", "hook", "hooked")
        rek.start_stream_processor(Name="hook-proc")
        until(lambda: len(Hook.requests) >= 6, 120, lambda _: f"6 webhook requests, not {len(Hook.requests)}")
        # The first record, refused three times, came again after 0.5, 1 and 2 s.
        first = Hook.requests[:4]
        assert len({r[3] for r in first}) == 1, "retries carry the same record"
        gaps = [b[0] - a[0] for a, b in zip(first, first[1:])]
        assert 0.4 < gaps[0] and gaps[1] > 1.5 * gaps[0] and gaps[2] > 1.5 * gaps[1], gaps
        for at, path, headers, body in Hook.requests:
            assert path == "/hook?receiver=test"
            assert headers["Content-Type"] == "application/json"
            assert signed_by_kenning(headers, body), "HMAC signature"
            rec = json.loads(body)
            assert set(rec) == {"InputInformation", "StreamProcessorInformation", "FaceSearchResponse"}
            assert rec["InputInformation"]["KinesisVideo"]["StreamArn"] == kvs("hook")
        # A tampered body does not verify.
        assert not signed_by_kenning(first[0][2], first[0][3] + b" ")
        # A receiver slower than the records: the queue (4) drops its oldest.
        dropped = metric("kenning_stream_output_dropped", output="hooked", sink="webhook")
        Hook.stall = 3.0
        until(
            lambda: metric("kenning_stream_output_dropped", output="hooked", sink="webhook") >= dropped + 5,
            60,
            "records dropped by a stalled webhook",
            every=0.5,
        )
        Hook.stall = 0.0
        before = len(Hook.requests)
        until(lambda: len(Hook.requests) >= before + 6, 30, "the webhook catching up")
        # The file output (matches only) has rotated twice.
        until(lambda: Path(f"{SETUP['hook_file']}.2").exists(), 120, "the file output rotating twice", every=0.5)
        rek.stop_stream_processor(Name="hook-proc")
    finally:
        stop(hook)
    offsets = [
        json.loads(r[3])["InputInformation"]["KinesisVideo"]["FrameOffsetInSeconds"]
        for r in Hook.requests[3:]
    ]
    # Delivered in order, with a jump where the oldest were dropped.
    assert offsets == sorted(offsets), offsets
    assert max(b - a for a, b in zip(offsets, offsets[1:])) > 1.0, offsets
    assert metric("kenning_stream_output_delivered", output="hooked", sink="webhook") >= len(offsets) - 1
    # The file output: rotated at --stream-file-max-bytes, two old files kept,
    # each line a record of matched faces only, readable by the service only.
    path = Path(SETUP["hook_file"])
    files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
    assert all(f.exists() for f in files), files
    assert not Path(f"{path}.3").exists()
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600
        assert f.stat().st_size <= SETUP["file_max_bytes"]
        for line in f.read_text().splitlines():
            for face in json.loads(line)["FaceSearchResponse"]:
                assert face["MatchedFaces"], line
    rek.delete_stream_processor(Name="hook-proc")


def kenning_op(op, body, key=(KEY_ID, SECRET)):
    """A KenningService operation, signed by botocore's SigV4 signer."""
    req = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"KenningService.{op}"},
    )
    SigV4Auth(Credentials(*key), "rekognition", "us-east-1").add_auth(req)
    r = urllib.request.Request(req.url, data=req.body, headers=dict(req.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(r) as resp:
            return 200, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_collection_policy_rules_a_processor(rek, hamilton):
    """A collection whose policy requires a case and review: a processor
    needs a case reference at Create; its matches are audited under that
    case and queued for review, and the records carry the ReviewId."""
    rek.create_collection(CollectionId="watch")
    rek.index_faces(
        CollectionId="watch",
        Image={"Bytes": (REFERENCE / "lin-manuel-miranda.png").read_bytes()},
        ExternalImageId="lin-manuel-miranda",
        MaxFaces=1,
    )
    status, r = kenning_op(
        "PutCollectionPolicy",
        {"CollectionId": "watch", "Policy": {"RequireCase": True, "RequiredReviewers": 1}},
    )
    assert status == 200, r
    with pytest.raises(ClientError) as e:
        create(rek, "cased-proc", "cased", "cased-out", Settings=settings(collection="watch"))
    assert code(e) == "AccessDeniedException" and "case reference" in str(e.value)
    cased = client(case=CASE)
    create(cased, "cased-proc", "cased", "cased-out", Settings=settings(collection="watch"))
    (rec,) = matched_live(rek, "cased-proc", "cased-out")
    review_ids = {
        m["ReviewId"]
        for f in rec["FaceSearchResponse"]
        for m in f["MatchedFaces"]
        if m.get("ReviewStatus") == "PENDING"
    }
    assert review_ids, rec
    status, items = kenning_op("ListReviewItems", {"CollectionId": "watch", "Status": "PENDING"})
    assert status == 200, items
    queued = {i["ReviewId"]: i for i in items["Items"]}
    assert review_ids <= set(queued), (review_ids, queued)
    for rid in review_ids:
        assert queued[rid]["Case"] == CASE
    # The policy now forbids live streams: Start is refused, and the report
    # counts both refusals (Create without a case, this Start) as searches
    # refused by policy.
    status, r = kenning_op(
        "PutCollectionPolicy",
        {
            "CollectionId": "watch",
            "Policy": {"RequireCase": True, "RequiredReviewers": 1, "AllowStreams": False},
        },
    )
    assert status == 200, r
    with pytest.raises(ClientError) as e:
        rek.start_stream_processor(Name="cased-proc")
    assert code(e) == "AccessDeniedException" and "live-stream" in str(e.value)
    status, report = kenning_op(
        "GetAccountabilityReport",
        {"From": "2000-01-01T00:00:00Z", "To": "2100-01-01T00:00:00Z", "CollectionId": "watch"},
        key=tuple(SETUP["auditor"]),
    )
    assert status == 200, report
    assert report["Totals"]["SearchesRefusedByPolicy"] == 2, report["Totals"]
    assert report["RefusalsByRule"] == {"RequireCase": 1, "AllowStreams": 1}, report
    status, exported = kenning_op("ExportAudit", {"Case": CASE}, key=tuple(SETUP["auditor"]))
    assert status == 200, exported
    searches = [r for r in exported["Records"] if r["operation"] == "StreamFaceSearch"]
    assert searches and all(s["collection"] == "watch" and s["outcome"] == "ok" for s in searches)
    assert review_ids <= {rid for s in searches for rid in s["details"]["ReviewIds"]}
    rek.delete_stream_processor(Name="cased-proc")
    # What was done to the processor is under its case too.
    status, exported = kenning_op("ExportAudit", {"Case": CASE}, key=tuple(SETUP["auditor"]))
    assert status == 200, exported
    assert {
        "CreateStreamProcessor",
        "StartStreamProcessor",
        "StopStreamProcessor",
        "DeleteStreamProcessor",
    } <= {r["operation"] for r in exported["Records"]}


def test_every_stream_operation_is_answered_on_the_model():
    """conftest.py checked every response above against botocore's model;
    every stream operation was among them, in success and in error."""
    ops_rs = Path(__file__).resolve().parents[2] / "crates/kenning-api/src/ops.rs"
    body = re.search(r"pub const STREAM_OPERATIONS: &\[&str\] = &\[(.*?)\];", ops_rs.read_text(), re.S)
    stream_ops = set(re.findall(r'"(\w+)"', body.group(1)))
    assert len(stream_ops) == 7, stream_ops
    assert botocore_shapes.CHECKED >= stream_ops, sorted(stream_ops - botocore_shapes.CHECKED)


def test_leave_processors_for_the_restart(rek, hamilton):
    """Leaves one processor running on a looped file (besides junk-proc,
    FAILED and reconnecting, and crowd-proc, stopped): the Rust side kills
    the server with SIGKILL, restarts it, and checks each comes back as it was."""
    create(rek, "resume-proc", "door", "door-out")
    rek.start_stream_processor(Name="resume-proc")
    wait_status(rek, "resume-proc", {"RUNNING"})
