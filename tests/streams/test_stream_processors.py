"""Drives `kenning serve --enable-streams` with boto3, unchanged but for the
endpoint URL: the seven stream-processor operations with Rekognition's
members and errors, a processor on a live HTTP MPEG-TS source that ffmpeg
serves on loopback from the Hamilton clip, its records read as Server-Sent
Events (and resumed with Last-Event-ID), the source killed and brought
back, and a processor on a looped file whose faces all match nothing.

Started by crates/kenning-cli/tests/streams.rs, which runs the server with
--stream-source cam=http://127.0.0.1:PORT/cam.ts, door=<bucket>/clip#loop,
crowd=<bucket>/crowd#loop and --stream-output matches=sse, matches=FILE,
crowd-out=sse, crowd-out=FILE, and passes:
  KENNING_ENDPOINT, KENNING_TEST_KEY_ID, KENNING_TEST_SECRET,
  KENNING_TEST_TOKEN (an API token of that key), KENNING_TEST_OPERATOR
  (JSON [id, secret, token] of an operator key), KENNING_TEST_REFERENCE
  (the reference photos' folder), KENNING_TEST_CLIP (the Hamilton clip),
  KENNING_TEST_CAM_PORT (where the live source must listen).
"""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
KEY_ID = os.environ.get("KENNING_TEST_KEY_ID")
SECRET = os.environ.get("KENNING_TEST_SECRET")
TOKEN = os.environ.get("KENNING_TEST_TOKEN")
OPERATOR = json.loads(os.environ.get("KENNING_TEST_OPERATOR", "[]"))
REFERENCE = Path(os.environ.get("KENNING_TEST_REFERENCE", "."))
CLIP = os.environ.get("KENNING_TEST_CLIP", "")
CAM_PORT = os.environ.get("KENNING_TEST_CAM_PORT", "")
ROLE = "arn:aws:iam::123456789012:role/RekognitionStreams"


def kvs(name):
    return f"arn:aws:kinesisvideo:us-east-1:123456789012:stream/{name}/1700000000000"


def kds(name):
    return f"arn:aws:kinesis:us-east-1:123456789012:stream/{name}"


if not (ENDPOINT and KEY_ID and SECRET):
    pytest.fail(
        "run through crates/kenning-cli/tests/streams.rs (KENNING_ENDPOINT is not set)",
        pytrace=False,
    )


def client(key=(KEY_ID, SECRET), validate=True):
    return boto3.client(
        "rekognition",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
    )


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


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
    deadline = time.time() + timeout
    while True:
        d = rek.describe_stream_processor(Name=name)
        if d["Status"] in want:
            return d
        assert time.time() < deadline, f"{name}: {d['Status']} {d.get('StatusMessage')}"
        time.sleep(0.2)


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
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for e in self.events:
                    if pred(e):
                        return e
            time.sleep(0.1)
        raise AssertionError(f"no {what} within {timeout} s; got {len(self.events)} events")

    def close(self):
        self.resp.close()


def serve_cam():
    """ffmpeg serving the clip live, looped, as MPEG-TS over HTTP on loopback."""
    p = subprocess.Popen(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i", CLIP,
            "-c", "copy", "-f", "mpegts", "-listen", "1",
            f"http://127.0.0.1:{CAM_PORT}/cam.ts",
        ]
    )
    return p


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
    rek.create_collection(CollectionId="hamilton")
    for who in ("lin-manuel-miranda", "alex-lacamoire"):
        r = rek.index_faces(
            CollectionId="hamilton",
            Image={"Bytes": (REFERENCE / f"{who}.png").read_bytes()},
            ExternalImageId=who,
            MaxFaces=1,
        )
        assert len(r["FaceRecords"]) == 1
    return "hamilton"


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
        with feed.lock:
            seen = [e[0] for e in feed.events if e[0] is not None]
        assert len(seen) >= 3 and seen == sorted(seen)
        again = Feed("/v1/stream-outputs/matches/events", last_id=seen[-3])
        again.wait(lambda e: e[0] == seen[-1], what="the replayed events")
        with again.lock:
            replayed = [e[0] for e in again.events]
        assert replayed[:2] == seen[-2:]
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
    strangers = 0
    deadline = time.time() + 120
    while strangers < 10:
        assert time.time() < deadline, "too few faces in the crowd clip's records"
        time.sleep(0.5)
        with feed.lock:
            records = [e[2] for e in feed.events if e[1] == "message"]
        for r in records:
            for f in r["FaceSearchResponse"]:
                assert f["MatchedFaces"] == []
        strangers = sum(len(r["FaceSearchResponse"]) for r in records)
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
