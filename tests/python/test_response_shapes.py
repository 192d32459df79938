"""Every operation Kenning implements, answered on botocore's model: each
response of this run is checked field by field against the operation's
output shape (or its declared errors) by conftest.py's hook
(botocore_shapes.py); this file makes sure every operation is called, in
success and in error, and that the check itself catches what it should.

The stored-video operations are covered the same way by tests/video (their
server needs a bucket), whose conftest.py installs the same hook.
"""

import json
import re
import uuid
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError

import botocore_shapes
from kenning_server import rekognition

OPS_RS = Path(__file__).resolve().parents[2] / "crates/kenning-api/src/ops.rs"
MODEL = botocore.session.get_session().get_service_model("rekognition")


def implemented(const):
    """The operation names in one of ops.rs's constant lists."""
    text = OPS_RS.read_text()
    body = re.search(rf"pub const {const}: &\[&str\] = &\[(.*?)\];", text, re.S).group(1)
    return set(re.findall(r'"(\w+)"', body))


def fails(call, **args):
    with pytest.raises(ClientError) as e:
        call(**args)
    return e.value.response["Error"]["Code"]


def test_the_check_catches_responses_off_the_model():
    detect = MODEL.operation_model("DetectFaces")
    face = {"BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.1, "Top": 0.1}, "Confidence": 99.9}
    assert botocore_shapes.check(detect, 200, json.dumps({"FaceDetails": [face]}).encode()) == []
    wrong = {
        "an unknown field": {"FaceDetails": [], "Faces": []},
        "a number as a string": {"FaceDetails": [{**face, "Confidence": "99.9"}]},
        "a value out of range": {"FaceDetails": [{**face, "Confidence": 100.5}]},
        "a bad enum value": {"FaceDetails": [], "OrientationCorrection": "ROTATE_45"},
        "a list where a structure belongs": {"FaceDetails": [[face]]},
    }
    for why, body in wrong.items():
        assert botocore_shapes.check(detect, 200, json.dumps(body).encode()), why
    create = MODEL.operation_model("CreateCollection")
    assert botocore_shapes.check(create, 200, b'{"StatusCode": 200, "CollectionArn": "a", "FaceModelVersion": "6.0"}') == []
    assert botocore_shapes.check(create, 200, b'{"StatusCode": true}')
    search = MODEL.operation_model("SearchFaces")
    assert botocore_shapes.check(search, 200, b'{"SearchedFaceId": "not-a-uuid"}'), "the FaceId pattern"
    # Errors: a declared one passes; one the operation never raises does not.
    ok = b'{"__type": "ResourceNotFoundException", "message": "no such collection"}'
    assert botocore_shapes.check(search, 400, ok) == []
    assert botocore_shapes.check(search, 400, b'{"__type": "ImageTooLargeException", "message": "x"}')
    assert botocore_shapes.check(search, 400, b'{"__type": "ResourceNotFoundException"}'), "no message"
    assert botocore_shapes.check(search, 500, b"Internal Server Error"), "not JSON"


@pytest.mark.usefixtures("examples")
def test_every_operation_answers_on_the_model(examples):
    photo = lambda name: {"Bytes": (examples / name).read_bytes()}  # noqa: E731
    rek, raw = rekognition(), rekognition(parameter_validation=False)
    botocore_shapes.CHECKED.clear()
    cid = f"shapes-{uuid.uuid4().hex[:8]}"

    rek.detect_faces(Image=photo("two_people.jpg"), Attributes=["ALL"])
    rek.detect_faces(Image=photo("two_people.jpg"))
    rek.compare_faces(SourceImage=photo("obama-240p.jpg"), TargetImage=photo("two_people.jpg"), SimilarityThreshold=0)
    rek.compare_faces(SourceImage=photo("obama-240p.jpg"), TargetImage=photo("biden.jpg"), QualityFilter="HIGH")
    rek.create_collection(CollectionId=cid, Tags={"team": "shapes"})
    rek.describe_collection(CollectionId=cid)
    rek.list_collections(MaxResults=1)
    r = rek.index_faces(
        CollectionId=cid, Image=photo("obama-1080p.jpg"), ExternalImageId="obama",
        DetectionAttributes=["ALL"], MaxFaces=1, QualityFilter="AUTO",
    )
    obama = r["FaceRecords"][0]["Face"]["FaceId"]
    r = rek.index_faces(CollectionId=cid, Image=photo("two_people.jpg"), MaxFaces=1)
    assert r["UnindexedFaces"], "the second face is reported unindexed"
    biden = rek.index_faces(CollectionId=cid, Image=photo("biden.jpg"))["FaceRecords"][0]["Face"]["FaceId"]
    r = rek.list_faces(CollectionId=cid, MaxResults=1)
    rek.list_faces(CollectionId=cid, NextToken=r["NextToken"])
    rek.search_faces(CollectionId=cid, FaceId=obama, FaceMatchThreshold=0)
    rek.search_faces_by_image(CollectionId=cid, Image=photo("obama-240p.jpg"), FaceMatchThreshold=0)
    rek.create_user(CollectionId=cid, UserId="barack")
    rek.list_users(CollectionId=cid)
    rek.associate_faces(CollectionId=cid, UserId="barack", FaceIds=[obama, str(uuid.uuid4())])
    rek.search_users(CollectionId=cid, UserId="barack", UserMatchThreshold=0)
    rek.search_users(CollectionId=cid, FaceId=biden, UserMatchThreshold=0)
    rek.search_users_by_image(CollectionId=cid, Image=photo("obama-240p.jpg"), UserMatchThreshold=0)
    rek.disassociate_faces(CollectionId=cid, UserId="barack", FaceIds=[obama, str(uuid.uuid4())])
    rek.delete_faces(CollectionId=cid, FaceIds=[biden, str(uuid.uuid4())])

    # Errors, each of which the operation declares.
    missing = "no-such-collection"
    assert fails(rek.describe_collection, CollectionId=missing) == "ResourceNotFoundException"
    assert fails(rek.create_collection, CollectionId=cid) == "ResourceAlreadyExistsException"
    assert fails(rek.create_user, CollectionId=cid, UserId="barack") == "ConflictException"
    assert fails(raw.detect_faces, Image={"Bytes": b"not an image"}) == "InvalidImageFormatException"
    assert fails(raw.search_faces, CollectionId=cid, FaceId="nope") == "InvalidParameterException"
    assert fails(raw.list_faces, CollectionId=cid, MaxResults=0) == "InvalidParameterException"
    # Thresholds out of 0-100 are bad parameters, not a false-match rate of
    # infinity the audit trail cannot record (found by tests/fuzz).
    assert fails(raw.search_faces, CollectionId=cid, FaceId=obama, FaceMatchThreshold=-1e308) == "InvalidParameterException"
    assert fails(raw.search_users, CollectionId=cid, UserId="barack", UserMatchThreshold=101) == "InvalidParameterException"
    assert fails(raw.compare_faces, SourceImage=photo("biden.jpg"), TargetImage=photo("biden.jpg"), SimilarityThreshold=-1e308) == "InvalidParameterException"
    fails(rek.index_faces, CollectionId=missing, Image=photo("biden.jpg"))
    fails(rek.search_faces_by_image, CollectionId=missing, Image=photo("biden.jpg"))
    fails(rek.search_users_by_image, CollectionId=missing, Image=photo("biden.jpg"))
    fails(rek.search_users, CollectionId=cid, UserId="nobody")
    fails(rek.associate_faces, CollectionId=cid, UserId="nobody", FaceIds=[obama])
    fails(rek.disassociate_faces, CollectionId=missing, UserId="barack", FaceIds=[obama])
    fails(rek.delete_user, CollectionId=missing, UserId="barack")
    fails(rek.list_users, CollectionId=missing)
    fails(rek.delete_faces, CollectionId=missing, FaceIds=[obama])
    fails(raw.compare_faces, SourceImage={"Bytes": b"x"}, TargetImage={"Bytes": b"y"})

    rek.delete_user(CollectionId=cid, UserId="barack")
    rek.delete_collection(CollectionId=cid)
    fails(rek.delete_collection, CollectionId=cid)

    # Video operations are checked by tests/video (its conftest installs the
    # same hook); stream processors need --enable-streams and a live source
    # (tests/streams), where the hook is not installed yet.
    photo_ops = implemented("OPERATIONS") - implemented("VIDEO_OPERATIONS") - implemented("STREAM_OPERATIONS")
    assert photo_ops <= set(MODEL.operation_names), "every implemented operation is in botocore's model"
    assert botocore_shapes.CHECKED >= photo_ops, f"not called: {sorted(photo_ops - botocore_shapes.CHECKED)}"
