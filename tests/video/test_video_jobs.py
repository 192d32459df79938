"""Drives `kenning serve`'s stored-video operations with boto3, unchanged but
for the endpoint URL: StartFaceDetection / GetFaceDetection and
StartFaceSearch / GetFaceSearch on real video, pagination, SortBy,
idempotency, every error Rekognition names, bad files, the REST twins and
uploads, policy and audit.

Started by crates/kenning-cli/tests/video.rs, which runs the server with a
bucket `videos` (holding the clips and the bad files below) and passes:
  KENNING_ENDPOINT, KENNING_TEST_KEY_ID, KENNING_TEST_SECRET, KENNING_TEST_TOKEN
  (an API token of that key, for REST), KENNING_TEST_ROLE_KEYS (JSON
  {role: [id, secret, token]}), KENNING_TEST_REFERENCE
  (the reference photos' folder), KENNING_TEST_HAMILTON_SHA256,
  KENNING_TEST_TOPIC (an SNS topic ARN mapped to a webhook).
"""

import json
import os
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from kenning_server import enrol, error_code as code, rekognition, until

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
KEY_ID = os.environ.get("KENNING_TEST_KEY_ID")
SECRET = os.environ.get("KENNING_TEST_SECRET")
TOKEN = os.environ.get("KENNING_TEST_TOKEN")
ROLE_KEYS = json.loads(os.environ.get("KENNING_TEST_ROLE_KEYS", "{}"))
REFERENCE = Path(os.environ.get("KENNING_TEST_REFERENCE", "."))
HAMILTON_SHA = os.environ.get("KENNING_TEST_HAMILTON_SHA256", "")
TOPIC = os.environ.get("KENNING_TEST_TOPIC", "")
ROLE = "arn:aws:iam::123456789012:role/RekognitionVideo"
UNMAPPED = "arn:aws:sns:us-east-1:123456789012:AmazonRekognitionNobodyListens"

if not (ENDPOINT and KEY_ID and SECRET):
    pytest.fail(
        "run through crates/kenning-cli/tests/video.rs (KENNING_ENDPOINT is not set)",
        pytrace=False,
    )


def client(key=(KEY_ID, SECRET), validate=True, case=None):
    return rekognition(key=key[:2], case=case, parameter_validation=validate)


def video(name, bucket="videos"):
    return {"S3Object": {"Bucket": bucket, "Name": name}}


def wait(get, job_id, timeout=600, **kw):
    def done():
        r = get(JobId=job_id, **kw)
        if r["JobStatus"] == "IN_PROGRESS":
            assert "Faces" not in r or r["Faces"] == []
            return None
        return r

    return until(done, timeout, f"job {job_id} finishing", every=0.3)


def all_pages(get, job_id, key, **kw):
    pages, token = [], None
    while True:
        args = dict(JobId=job_id, **kw)
        if token:
            args["NextToken"] = token
        r = get(**args)
        pages.append(r)
        token = r.get("NextToken")
        if not token:
            return pages, [x for p in pages for x in p[key]]


@pytest.fixture(scope="module")
def rek():
    return client()


@pytest.fixture(scope="module")
def hamilton(rek):
    return enrol(rek, "hamilton", REFERENCE, ("lin-manuel-miranda", "alex-lacamoire"))


@pytest.fixture(scope="module")
def search_job(rek, hamilton):
    r = rek.start_face_search(
        Video=video("short_hamilton_clip.mp4"),
        CollectionId=hamilton,
        FaceMatchThreshold=80,
        JobTag="hamilton-search",
        NotificationChannel={"SNSTopicArn": TOPIC, "RoleArn": ROLE},
    )
    done = wait(rek.get_face_search, r["JobId"])
    assert done["JobStatus"] == "SUCCEEDED", done.get("StatusMessage")
    return r["JobId"]


def test_face_search_finds_both_people(rek, search_job):
    pages, persons = all_pages(rek.get_face_search, search_job, "Persons")
    meta = pages[0]["VideoMetadata"]
    assert meta["Codec"] == "h264" and meta["Format"] == "MP4"
    assert (meta["FrameWidth"], meta["FrameHeight"]) == (640, 360)
    assert abs(meta["FrameRate"] - 29.97) < 0.01 and meta["ColorRange"] == "LIMITED"
    assert 9000 <= meta["DurationMillis"] <= 10500
    assert pages[0]["JobTag"] == "hamilton-search"
    assert pages[0]["Video"]["S3Object"]["Name"] == "short_hamilton_clip.mp4"
    found = {}
    for p in persons:
        assert 0 <= p["Timestamp"] <= meta["DurationMillis"]
        assert set(p["Person"]) == {"Index", "BoundingBox", "Face"}
        for m in p.get("FaceMatches", []):
            assert m["Similarity"] >= 80
            found.setdefault(m["Face"]["ExternalImageId"], set()).add(p["Person"]["Index"])
    # Lin-Manuel Miranda is found; Alex Lacamoire, seen only in profile and
    # at 25 pixels, is below Similarity 80 with the default recogniser.
    assert "lin-manuel-miranda" in found, found
    assert set(found) <= {"lin-manuel-miranda", "alex-lacamoire"}, found
    # People the collection does not hold are there with geometry only.
    assert any("FaceMatches" not in p for p in persons)
    # Default order: by timestamp.
    assert [p["Timestamp"] for p in persons] == sorted(p["Timestamp"] for p in persons)


def test_pagination_sort_and_max_results(rek, search_job):
    _, whole = all_pages(rek.get_face_search, search_job, "Persons")
    pages, small = all_pages(rek.get_face_search, search_job, "Persons", MaxResults=7)
    assert small == whole and len(pages) == -(-len(whole) // 7) and len(pages) > 1
    assert all("VideoMetadata" in p and p["JobStatus"] == "SUCCEEDED" for p in pages)
    assert all(len(p["NextToken"]) <= 255 for p in pages[:-1])
    _, by_index = all_pages(
        rek.get_face_search, search_job, "Persons", SortBy="INDEX", MaxResults=11
    )
    keys = [(p["Person"]["Index"], p["Timestamp"]) for p in by_index]
    assert keys == sorted(keys) and len(by_index) == len(whole)
    _, by_time = all_pages(rek.get_face_search, search_job, "Persons", SortBy="TIMESTAMP")
    assert by_time == whole
    # Larger MaxResults are capped, not refused.
    assert len(rek.get_face_search(JobId=search_job, MaxResults=5000)["Persons"]) == min(
        1000, len(whole)
    )
    raw = client(validate=False)
    with pytest.raises(ClientError) as e:
        raw.get_face_search(JobId=search_job, MaxResults=0)
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        raw.get_face_search(JobId=search_job, SortBy="NAME")
    assert code(e) == "InvalidParameterException"


def test_tokens_are_tamper_proof_and_bound(rek, search_job):
    token = rek.get_face_search(JobId=search_job, MaxResults=3)["NextToken"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (forged, "not-a-token", token + "x"):
        with pytest.raises(ClientError) as e:
            rek.get_face_search(JobId=search_job, NextToken=bad)
        assert code(e) == "InvalidPaginationTokenException", bad
    with pytest.raises(ClientError) as e:
        rek.get_face_search(JobId=search_job, NextToken=token, SortBy="INDEX")
    assert code(e) == "InvalidPaginationTokenException"
    other = rek.start_face_detection(Video=video("short_hamilton_clip.mp4"))["JobId"]
    wait(rek.get_face_detection, other)
    with pytest.raises(ClientError) as e:
        rek.get_face_detection(JobId=other, NextToken=token)
    assert code(e) == "InvalidPaginationTokenException"


def test_face_detection(rek):
    r = rek.start_face_detection(
        Video=video("short_hamilton_clip.mp4"), FaceAttributes="ALL", JobTag="det"
    )
    done = wait(rek.get_face_detection, r["JobId"])
    assert done["JobStatus"] == "SUCCEEDED"
    pages, faces = all_pages(rek.get_face_detection, r["JobId"], "Faces", MaxResults=20)
    assert len(pages) > 1 and len(faces) >= 60
    assert all("VideoMetadata" in p for p in pages)
    stamps = [f["Timestamp"] for f in faces]
    assert stamps == sorted(stamps)
    # Sampled at 5 frames per second: about 46 frames over 9.2 s of video.
    assert 40 <= len(set(stamps)) <= 50
    f = faces[0]["Face"]
    assert {"BoundingBox", "Landmarks", "Pose", "Quality", "Confidence"} <= set(f)
    with pytest.raises(ClientError) as e:
        rek.get_face_search(JobId=r["JobId"])
    assert code(e) == "ResourceNotFoundException"


def test_idempotency(rek):
    token = "tok-" + uuid.uuid4().hex
    a = rek.start_face_detection(Video=video("short_hamilton_clip.mp4"), ClientRequestToken=token)
    b = rek.start_face_detection(Video=video("short_hamilton_clip.mp4"), ClientRequestToken=token)
    assert a["JobId"] == b["JobId"]
    with pytest.raises(ClientError) as e:
        rek.start_face_detection(
            Video=video("short_hamilton_clip.mp4"), ClientRequestToken=token, JobTag="other"
        )
    assert code(e) == "IdempotentParameterMismatchException"
    # The same token on the other operation is another request.
    with pytest.raises(ClientError) as e:
        rek.start_face_search(
            Video=video("short_hamilton_clip.mp4"), CollectionId="nope", ClientRequestToken=token
        )
    assert code(e) == "ResourceNotFoundException"
    wait(rek.get_face_detection, a["JobId"])


@pytest.mark.parametrize(
    "bucket,name",
    [
        ("nobucket", "short_hamilton_clip.mp4"),
        ("videos", "missing.mp4"),
        ("videos", "../outside.mp4"),
        ("videos", "sub/../../outside.mp4"),
        ("videos", "/etc/passwd"),
        ("videos", "link-outside.mp4"),
        ("videos", "sub"),
    ],
)
def test_objects_outside_the_bucket_are_refused(rek, bucket, name):
    with pytest.raises(ClientError) as e:
        rek.start_face_detection(Video=video(name, bucket))
    assert code(e) == "InvalidS3ObjectException", name


def test_start_errors(rek, hamilton):
    raw = client(validate=False)
    cases = [
        ({"Video": {}}, "InvalidParameterException"),
        ({"Video": video("short_hamilton_clip.mp4"), "FaceAttributes": "AGE"}, "InvalidParameterException"),
        ({"Video": video("short_hamilton_clip.mp4"), "JobTag": "bad tag!"}, "InvalidParameterException"),
        ({"Video": video("short_hamilton_clip.mp4"), "ClientRequestToken": "a" * 65}, "InvalidParameterException"),
        (
            {"Video": video("short_hamilton_clip.mp4"), "NotificationChannel": {"SNSTopicArn": "topic", "RoleArn": ROLE}},
            "InvalidParameterException",
        ),
        (
            {"Video": {"S3Object": {"Bucket": "videos", "Name": "short_hamilton_clip.mp4", "Version": "3"}}},
            "InvalidS3ObjectException",
        ),
        ({"Video": video("big.mp4")}, "VideoTooLargeException"),
        ({"Video": video("long.mkv")}, "VideoTooLargeException"),
        ({"Video": video("huge.y4m")}, "VideoTooLargeException"),
    ]
    for args, want in cases:
        assert error_of(raw.start_face_detection, **args) == want, args
    for args, want in [
        ({"CollectionId": "no-such-collection"}, "ResourceNotFoundException"),
        ({"CollectionId": hamilton, "FaceMatchThreshold": 101}, "InvalidParameterException"),
        ({"CollectionId": "bad id!"}, "InvalidParameterException"),
    ]:
        got = error_of(raw.start_face_search, Video=video("short_hamilton_clip.mp4"), **args)
        assert got == want, args
    for get in (rek.get_face_detection, rek.get_face_search):
        with pytest.raises(ClientError) as e:
            get(JobId="0" * 64)
        assert code(e) == "ResourceNotFoundException"
    # An unmapped topic is accepted: the client polls.
    r = rek.start_face_detection(
        Video=video("short_hamilton_clip.mp4"),
        NotificationChannel={"SNSTopicArn": UNMAPPED, "RoleArn": ROLE},
    )
    wait(rek.get_face_detection, r["JobId"])


@pytest.mark.parametrize(
    "name,why",
    [
        ("text.mp4", "not a video"),
        ("zero.mp4", "not a video"),
        ("truncated.mp4", "not a video"),
        ("truncated-faststart.mp4", "truncated"),
        ("huge-60000.y4m", "60000x60000"),
    ],
)
def test_bad_files_fail_the_job_with_a_reason(rek, name, why):
    r = rek.start_face_detection(Video=video(name))
    done = wait(rek.get_face_detection, r["JobId"], timeout=120)
    assert done["JobStatus"] == "FAILED"
    assert why in done["StatusMessage"], done["StatusMessage"]
    assert done["Faces"] == []
    assert rek.list_collections()["CollectionIds"] is not None


def test_concurrency_limit(rek):
    # The server allows 2 jobs in progress; nothing else is running now.
    ids, refused = [], None
    for i in range(3):
        try:
            ids.append(rek.start_face_detection(Video=video("street_crowd_1080p.mp4"))["JobId"])
        except ClientError as e:
            refused = (i, code_of(e))
    assert refused == (2, "LimitExceededException"), refused
    for j in ids:
        assert wait(rek.get_face_detection, j)["JobStatus"] == "SUCCEEDED"


def code_of(e):
    return e.response["Error"]["Code"]


def error_of(call, **args):
    """The error code `call(**args)` answers with, or "no error"."""
    try:
        call(**args)
    except ClientError as e:
        return code_of(e)
    return "no error"


def test_roles_and_policy(rek, hamilton):
    reviewer = client(tuple(ROLE_KEYS["reviewer"]))
    with pytest.raises(ClientError) as e:
        reviewer.start_face_search(Video=video("short_hamilton_clip.mp4"), CollectionId=hamilton)
    assert code(e) == "AccessDeniedException"
    rek.create_collection(CollectionId="no-video")
    kenning = boto3.client(
        "rekognition", endpoint_url=ENDPOINT, region_name="us-east-1",
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
    )
    put_policy(kenning, "no-video", {"AllowVideo": False})
    with pytest.raises(ClientError) as e:
        rek.start_face_search(Video=video("short_hamilton_clip.mp4"), CollectionId="no-video")
    assert code(e) == "AccessDeniedException"
    rek.create_collection(CollectionId="cases")
    put_policy(kenning, "cases", {"RequireCase": True, "MinFaceMatchThreshold": 90})
    with pytest.raises(ClientError) as e:
        rek.start_face_search(Video=video("short_hamilton_clip.mp4"), CollectionId="cases", FaceMatchThreshold=95)
    assert code(e) == "AccessDeniedException" and "case reference" in str(e.value)
    with_case = client(case="CASE-7")
    with pytest.raises(ClientError) as e:
        with_case.start_face_search(Video=video("short_hamilton_clip.mp4"), CollectionId="cases")
    assert code(e) == "InvalidParameterException" and "minimum match threshold" in str(e.value)
    r = with_case.start_face_search(
        Video=video("short_hamilton_clip.mp4"), CollectionId="cases", FaceMatchThreshold=95
    )
    assert wait(rek.get_face_search, r["JobId"])["JobStatus"] == "SUCCEEDED"


def put_policy(c, collection, policy):
    """PutCollectionPolicy over Kenning's own target, through REST."""
    req = urllib.request.Request(
        f"{ENDPOINT}/v1/collections/{collection}/policy",
        data=json.dumps({"Policy": policy}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        assert r.status == 200


def rest(method, path, key=TOKEN, body=None, headers=None):
    req = urllib.request.Request(
        f"{ENDPOINT}{path}", data=body, method=method,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_rest_twins_and_uploads(rek):
    operator = ROLE_KEYS["operator"][2]
    clip = Path(os.environ["KENNING_TEST_CLIP"]).read_bytes()
    status, v = rest("PUT", "/v1/buckets/videos/uploads/clip.mp4", operator, clip,
                     {"Content-Type": "video/mp4"})
    assert status == 200, v
    assert v["Bytes"] == len(clip) and v["Sha256"] == HAMILTON_SHA
    status, v = rest("PUT", "/v1/buckets/videos/uploads/x.mp4", ROLE_KEYS["reviewer"][2], b"x")
    assert status == 403 and v["__type"] == "AccessDeniedException"
    status, v = rest("PUT", "/v1/buckets/videos/..%2Fescape.mp4", operator, b"x")
    assert status >= 400 and v.get("__type") in ("InvalidS3ObjectException", "NotFoundException"), v
    status, v = rest("POST", "/v1/video/face-detection", operator,
                     json.dumps({"Video": video("uploads/clip.mp4")}).encode(),
                     {"Content-Type": "application/json"})
    assert status == 200, v
    job = v["JobId"]
    wait(rek.get_face_detection, job)
    status, v = rest("GET", f"/v1/video/face-detection/{job}?MaxResults=2", operator)
    assert status == 200 and len(v["Faces"]) == 2 and v["NextToken"], v
    status, v = rest("GET", f"/v1/video/face-search/{job}", operator)
    assert status == 404 and v["__type"] == "ResourceNotFoundException"


def test_video_searches_are_audited(search_job):
    auditor = ROLE_KEYS["auditor"][2]
    status, v = rest("GET", "/v1/audit/export?MaxResults=10000", auditor)
    assert status == 200
    mine = [r for r in v["Records"]
            if r["operation"] == "StartFaceSearch" and (r.get("details") or {}).get("JobId") == search_job]
    assert len(mine) == 1, mine
    r = mine[0]
    assert r["outcome"] == "ok" and r["collection"] == "hamilton"
    assert r["probe_sha256"] == HAMILTON_SHA
    assert r["details"]["Video"] == {"Bucket": "videos", "Name": "short_hamilton_clip.mp4"}
    assert "lin-manuel-miranda" in {c["external_image_id"] for c in r["candidates"]}
    assert all(c["similarity"] >= 80 for c in r["candidates"])
    refused = [r for r in v["Records"] if r["operation"] == "StartFaceSearch" and r["outcome"] != "ok"]
    assert any(r["collection"] == "no-video" for r in refused)
