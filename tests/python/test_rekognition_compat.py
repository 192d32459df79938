"""Drives `kenning serve` with boto3 and the aws CLI, unchanged but for the
endpoint URL: every implemented operation on real photos, and the error paths.

Started by the Rust integration test (crates/kenning-cli/tests/server.rs),
which runs the server and passes:
  KENNING_ENDPOINT, KENNING_TEST_KEY_ID, KENNING_TEST_SECRET,
  KENNING_TEST_DATA (../shared/data) and KENNING_REQUIRE_DATA: tests needing
  photos skip without them, or fail under CI (conftest.py).
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
KEY_ID = os.environ.get("KENNING_TEST_KEY_ID")
SECRET = os.environ.get("KENNING_TEST_SECRET")
DATA = Path(os.environ.get("KENNING_TEST_DATA", "../shared/data"))
EXAMPLES = DATA / "misc/face_recognition/examples"

if not (ENDPOINT and KEY_ID and SECRET):
    pytest.fail(
        "KENNING_ENDPOINT, KENNING_TEST_KEY_ID and KENNING_TEST_SECRET must be set "
        "(run through crates/kenning-cli/tests/server.rs)",
        pytrace=False,
    )

needs_photos = pytest.mark.usefixtures("examples")


def client(key_id=KEY_ID, secret=SECRET):
    return boto3.client(
        "rekognition",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def photo(name):
    return (EXAMPLES / name).read_bytes()


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def source_box(rek, name):
    """The box DetectFaces gives the one face of photo `name`."""
    faces = rek.detect_faces(Image={"Bytes": photo(name)})["FaceDetails"]
    assert len(faces) == 1
    return faces[0]["BoundingBox"]


@pytest.fixture(scope="module")
def rek():
    return client()


# ---------------------------------------------------------------- boto3


@needs_photos
def test_detect_faces(rek):
    r = rek.detect_faces(Image={"Bytes": photo("two_people.jpg")}, Attributes=["ALL"])
    assert len(r["FaceDetails"]) == 2
    boxes = []
    for f in r["FaceDetails"]:
        b = f["BoundingBox"]
        assert 0 < b["Width"] < 1 and 0 < b["Height"] < 1 and 0 <= b["Left"] and 0 <= b["Top"], b
        assert b["Left"] + b["Width"] <= 1.001 and b["Top"] + b["Height"] <= 1.001, b
        boxes.append(b)
        # Every landmark lies in its face's box (with a little margin).
        marks = {l["Type"]: (l["X"], l["Y"]) for l in f["Landmarks"]}
        assert set(marks) == {"eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"}
        for x, y in marks.values():
            assert b["Left"] - 0.02 <= x <= b["Left"] + b["Width"] + 0.02, (marks, b)
            assert b["Top"] - 0.02 <= y <= b["Top"] + b["Height"] + 0.02, (marks, b)
        # eyeLeft is the eye on the image's left, above the mouth.
        assert marks["eyeLeft"][0] < marks["eyeRight"][0]
        assert max(marks["eyeLeft"][1], marks["eyeRight"][1]) < min(marks["mouthLeft"][1], marks["mouthRight"][1])
        assert all(abs(f["Pose"][k]) < 45 for k in ("Roll", "Yaw", "Pitch")), f["Pose"]
        assert 0 < f["Quality"]["Brightness"] < 100 and 0 < f["Quality"]["Sharpness"] <= 100, f["Quality"]
        assert 50 < f["Confidence"] <= 100
    # Two people side by side: the boxes do not overlap.
    a, b = sorted(boxes, key=lambda b: b["Left"])
    assert a["Left"] + a["Width"] <= b["Left"], boxes
    assert len(r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]) == 36


@needs_photos
def test_detect_faces_refuses_personal_attributes(rek):
    with pytest.raises(ClientError) as e:
        rek.detect_faces(Image={"Bytes": photo("obama-240p.jpg")}, Attributes=["AGE_RANGE"])
    assert error_code(e) == "InvalidParameterException"


@needs_photos
def test_compare_faces(rek):
    r = rek.compare_faces(
        SourceImage={"Bytes": photo("obama-240p.jpg")},
        TargetImage={"Bytes": photo("obama-1080p.jpg")},
        SimilarityThreshold=80,
        QualityFilter="NONE",
    )
    assert len(r["FaceMatches"]) == 1 and r["FaceMatches"][0]["Similarity"] >= 80
    # The source face is the one DetectFaces finds.
    assert r["SourceImageFace"]["BoundingBox"] == source_box(rek, "obama-240p.jpg")
    r = rek.compare_faces(
        SourceImage={"Bytes": photo("obama-240p.jpg")},
        TargetImage={"Bytes": photo("biden.jpg")},
    )
    assert r["FaceMatches"] == [] and len(r["UnmatchedFaces"]) == 1


@needs_photos
def test_collections_faces_and_users(rek):
    cid = f"boto3-{uuid.uuid4().hex[:8]}"
    r = rek.create_collection(CollectionId=cid)
    assert r["StatusCode"] == 200
    # As AWS writes it: arn:aws:rekognition:<region>:<account>:collection/<id>.
    assert r["CollectionArn"].startswith("arn:aws:rekognition:") and r["CollectionArn"].endswith(f":collection/{cid}"), r
    model = r["FaceModelVersion"]
    with pytest.raises(ClientError) as e:
        rek.create_collection(CollectionId=cid)
    assert error_code(e) == "ResourceAlreadyExistsException"
    assert cid in rek.list_collections()["CollectionIds"]
    described = rek.describe_collection(CollectionId=cid)
    assert described["FaceCount"] == 0
    assert described["CollectionARN"] == r["CollectionArn"] and described["FaceModelVersion"] == model

    obama = rek.index_faces(
        CollectionId=cid, Image={"Bytes": photo("obama-1080p.jpg")}, ExternalImageId="obama", MaxFaces=1
    )
    assert len(obama["FaceRecords"]) == 1 and obama["FaceModelVersion"] == model
    obama_id = obama["FaceRecords"][0]["Face"]["FaceId"]
    assert obama["FaceRecords"][0]["Face"]["ExternalImageId"] == "obama"
    biden = rek.index_faces(
        CollectionId=cid, Image={"Bytes": photo("biden.jpg")}, ExternalImageId="biden", QualityFilter="NONE"
    )
    biden_id = biden["FaceRecords"][0]["Face"]["FaceId"]
    both = rek.index_faces(CollectionId=cid, Image={"Bytes": photo("two_people.jpg")}, MaxFaces=1)
    assert len(both["FaceRecords"]) == 1
    assert [u["Reasons"] for u in both["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]]

    faces = rek.list_faces(CollectionId=cid, MaxResults=10)["Faces"]
    assert len(faces) == 3
    assert rek.describe_collection(CollectionId=cid)["FaceCount"] == 3

    r = rek.search_faces_by_image(CollectionId=cid, Image={"Bytes": photo("obama-240p.jpg")}, FaceMatchThreshold=80)
    assert r["FaceMatches"][0]["Face"]["FaceId"] == obama_id
    assert r["SearchedFaceBoundingBox"] == source_box(rek, "obama-240p.jpg")
    r = rek.search_faces(CollectionId=cid, FaceId=biden_id, MaxFaces=5)
    assert r["SearchedFaceId"] == biden_id
    assert all(m["Face"]["FaceId"] != biden_id for m in r["FaceMatches"])

    rek.create_user(CollectionId=cid, UserId="barack")
    rek.create_user(CollectionId=cid, UserId="joe", ClientRequestToken="t1")
    assert {u["UserId"] for u in rek.list_users(CollectionId=cid)["Users"]} == {"barack", "joe"}
    r = rek.associate_faces(CollectionId=cid, UserId="barack", FaceIds=[obama_id])
    assert [f["FaceId"] for f in r["AssociatedFaces"]] == [obama_id]
    rek.associate_faces(CollectionId=cid, UserId="joe", FaceIds=[biden_id])
    r = rek.search_users_by_image(CollectionId=cid, Image={"Bytes": photo("obama-240p.jpg")})
    assert r["UserMatches"][0]["User"]["UserId"] == "barack"
    # By Obama's face (left out as the probe): Joe is the only other user,
    # and far below the default threshold.
    assert rek.search_users(CollectionId=cid, FaceId=obama_id)["UserMatches"] == []
    r = rek.search_users(CollectionId=cid, FaceId=obama_id, UserMatchThreshold=0)
    assert [m["User"]["UserId"] for m in r["UserMatches"]] == ["joe"]
    assert r["UserMatches"][0]["Similarity"] < 60 and r["SearchedFace"]["FaceId"] == obama_id
    r = rek.disassociate_faces(CollectionId=cid, UserId="joe", FaceIds=[biden_id])
    assert [f["FaceId"] for f in r["DisassociatedFaces"]] == [biden_id]
    rek.delete_user(CollectionId=cid, UserId="joe")
    assert {u["UserId"] for u in rek.list_users(CollectionId=cid)["Users"]} == {"barack"}

    r = rek.delete_faces(CollectionId=cid, FaceIds=[biden_id])
    assert r["DeletedFaces"] == [biden_id]
    assert rek.delete_collection(CollectionId=cid)["StatusCode"] == 200
    with pytest.raises(ClientError) as e:
        rek.describe_collection(CollectionId=cid)
    assert error_code(e) == "ResourceNotFoundException"


# --------------------------------------------------------- error paths


def test_unknown_collection(rek):
    with pytest.raises(ClientError) as e:
        rek.list_faces(CollectionId="no-such-collection")
    assert error_code(e) == "ResourceNotFoundException"


def test_bad_image(rek):
    with pytest.raises(ClientError) as e:
        rek.detect_faces(Image={"Bytes": b"this is not an image at all"})
    assert error_code(e) == "InvalidImageFormatException"


def test_too_large_image(rek):
    big = b"\xff\xd8\xff\xe0" + b"\0" * (5 * 1024 * 1024 + 100)
    with pytest.raises(ClientError) as e:
        rek.detect_faces(Image={"Bytes": big})
    assert error_code(e) == "ImageTooLargeException"


def test_s3_images_are_refused(rek):
    with pytest.raises(ClientError) as e:
        rek.detect_faces(Image={"S3Object": {"Bucket": "my-bucket", "Name": "n.jpg"}})
    assert error_code(e) == "InvalidParameterException"
    assert "S3" in e.value.response["Error"]["Message"]


def test_bad_signature():
    with pytest.raises(ClientError) as e:
        client(secret=SECRET + "x").list_collections()
    assert error_code(e) == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_wrong_key():
    with pytest.raises(ClientError) as e:
        client(key_id="AKKNNOSUCHKEY0000000").list_collections()
    assert error_code(e) == "UnrecognizedClientException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_out_of_range_max_faces(rek):
    cid = f"range-{uuid.uuid4().hex[:8]}"
    rek.create_collection(CollectionId=cid)
    try:
        with pytest.raises(ClientError) as e:
            rek.index_faces(CollectionId=cid, Image={"Bytes": b"\xff\xd8\xff"}, MaxFaces=101)
        assert error_code(e) == "InvalidParameterException"
        with pytest.raises(ClientError) as e:
            rek.search_faces(CollectionId=cid, FaceId=str(uuid.uuid4()), MaxFaces=4097)
        assert error_code(e) == "InvalidParameterException"
        with pytest.raises(ClientError) as e:
            rek.search_users(CollectionId=cid, FaceId=str(uuid.uuid4()), MaxUsers=501)
        assert error_code(e) == "InvalidParameterException"
    finally:
        rek.delete_collection(CollectionId=cid)


def test_bad_collection_id(rek):
    with pytest.raises(ClientError) as e:
        rek.create_collection(CollectionId="bad/id")
    assert error_code(e) in ("InvalidParameterException", "ValidationException")


# ------------------------------------------------------------ aws CLI


def aws(*args, check=True):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_MAX_ATTEMPTS="1",
    )
    env.pop("AWS_PROFILE", None)
    aws_bin = Path(sys.executable).parent / "aws"
    p = subprocess.run(
        [str(aws_bin), "rekognition", *args, "--endpoint-url", ENDPOINT, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if check:
        assert p.returncode == 0, f"aws rekognition {args[0]} failed: {p.stderr}"
        return json.loads(p.stdout) if p.stdout.strip() else {}
    return p


@needs_photos
def test_aws_cli_every_operation():
    ex = EXAMPLES
    cid = f"cli-{uuid.uuid4().hex[:8]}"
    r = aws("detect-faces", "--image-bytes", f"fileb://{ex / 'two_people.jpg'}", "--attributes", "DEFAULT")
    assert len(r["FaceDetails"]) == 2
    r = aws(
        "compare-faces",
        "--source-image-bytes", f"fileb://{ex / 'obama-240p.jpg'}",
        "--target-image-bytes", f"fileb://{ex / 'obama-1080p.jpg'}",
        "--similarity-threshold", "80",
    )
    assert len(r["FaceMatches"]) == 1
    assert aws("create-collection", "--collection-id", cid)["StatusCode"] == 200
    assert aws("describe-collection", "--collection-id", cid)["FaceCount"] == 0
    assert cid in aws("list-collections")["CollectionIds"]
    r = aws(
        "index-faces", "--collection-id", cid,
        "--image-bytes", f"fileb://{ex / 'obama-1080p.jpg'}",
        "--external-image-id", "obama", "--max-faces", "1", "--quality-filter", "AUTO",
    )
    face_id = r["FaceRecords"][0]["Face"]["FaceId"]
    r = aws("index-faces", "--collection-id", cid, "--image-bytes", f"fileb://{ex / 'biden.jpg'}")
    other_id = r["FaceRecords"][0]["Face"]["FaceId"]
    assert len(aws("list-faces", "--collection-id", cid)["Faces"]) == 2
    r = aws("search-faces-by-image", "--collection-id", cid, "--image-bytes", f"fileb://{ex / 'obama-240p.jpg'}")
    assert r["FaceMatches"][0]["Face"]["FaceId"] == face_id
    r = aws("search-faces", "--collection-id", cid, "--face-id", face_id, "--max-faces", "3")
    assert r["SearchedFaceId"] == face_id
    aws("create-user", "--collection-id", cid, "--user-id", "barack")
    assert aws("list-users", "--collection-id", cid)["Users"][0]["UserId"] == "barack"
    r = aws("associate-faces", "--collection-id", cid, "--user-id", "barack", "--face-ids", face_id)
    assert r["AssociatedFaces"] == [{"FaceId": face_id}]
    # The user searched for is left out, and there is no other.
    r = aws("search-users", "--collection-id", cid, "--user-id", "barack", "--user-match-threshold", "0")
    assert r["UserMatches"] == [] and r["SearchedUser"] == {"UserId": "barack"}
    r = aws("search-users-by-image", "--collection-id", cid, "--image-bytes", f"fileb://{ex / 'obama-240p.jpg'}")
    assert r["UserMatches"][0]["User"]["UserId"] == "barack"
    r = aws("disassociate-faces", "--collection-id", cid, "--user-id", "barack", "--face-ids", face_id)
    assert r["DisassociatedFaces"] == [{"FaceId": face_id}]
    aws("delete-user", "--collection-id", cid, "--user-id", "barack")
    assert aws("delete-faces", "--collection-id", cid, "--face-ids", other_id)["DeletedFaces"] == [other_id]
    assert aws("delete-collection", "--collection-id", cid)["StatusCode"] == 200


def test_aws_cli_errors(tmp_path):
    p = aws("describe-collection", "--collection-id", "no-such-collection", check=False)
    assert p.returncode != 0 and "ResourceNotFoundException" in p.stderr
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    p = aws("detect-faces", "--image-bytes", f"fileb://{bad}", check=False)
    assert p.returncode != 0 and "InvalidImageFormatException" in p.stderr
