"""Accountability through real SigV4 clients: boto3 for Rekognition's
operations (with the case reference as a signed header), botocore's signer
for Kenning's own operations (KenningService.*): policies, the two-reviewer
rule, roles, and the audit trail with what each search returned.

Started by crates/kenning-cli/tests/server.rs, which also passes
KENNING_TEST_ROLE_KEYS: {"operator": [id, secret], "reviewer": [...],
"reviewer2": [...], "auditor": [...]}.
"""

import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
ADMIN = (os.environ.get("KENNING_TEST_KEY_ID"), os.environ.get("KENNING_TEST_SECRET"))
KEYS = json.loads(os.environ.get("KENNING_TEST_ROLE_KEYS", "{}"))
DATA = Path(os.environ.get("KENNING_TEST_DATA", "../shared/data"))
EXAMPLES = DATA / "misc/face_recognition/examples"

if not (ENDPOINT and ADMIN[0] and KEYS):
    pytest.fail(
        "KENNING_ENDPOINT, KENNING_TEST_KEY_ID and KENNING_TEST_ROLE_KEYS must be set "
        "(run through crates/kenning-cli/tests/server.rs)",
        pytrace=False,
    )

# Photos: a skip without them, a failure under CI (conftest.py).
pytestmark = pytest.mark.usefixtures("examples")


def rek(key):
    return boto3.client(
        "rekognition",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}),
    )


def with_case(client, case):
    """Sends X-Kenning-Case with every request; it is signed like any header."""

    def add(request, **_):
        request.headers["X-Kenning-Case"] = case

    client.meta.events.register("before-sign.rekognition.*", add)
    return client


def kenning(key, op, body):
    """A KenningService operation, signed by botocore's SigV4 signer."""
    req = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"KenningService.{op}",
        },
    )
    SigV4Auth(Credentials(key[0], key[1]), "rekognition", "us-east-1").add_auth(req)
    prepared = urllib.request.Request(
        req.url, data=req.body, headers=dict(req.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(prepared) as r:
            return 200, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def photo(name):
    return (EXAMPLES / name).read_bytes()


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_policy_review_roles_and_audit():
    admin, operator, auditor = rek(ADMIN), rek(KEYS["operator"]), rek(KEYS["auditor"])
    coll = f"acct-{uuid.uuid4().hex[:8]}"
    case = f"CASE-{uuid.uuid4().hex[:6]}"
    admin.create_collection(CollectionId=coll)
    status, r = kenning(
        ADMIN,
        "PutCollectionPolicy",
        {
            "CollectionId": coll,
            "Policy": {"MinFaceMatchThreshold": 85, "RequireCase": True, "RequiredReviewers": 2},
        },
    )
    assert status == 200, r
    # An operator cannot change the policy.
    status, r = kenning(KEYS["operator"], "PutCollectionPolicy", {"CollectionId": coll, "Policy": {}})
    assert (status, r["__type"]) == (403, "AccessDeniedException"), r

    operator.index_faces(CollectionId=coll, Image={"Bytes": photo("obama-1080p.jpg")}, ExternalImageId="obama")
    operator.index_faces(CollectionId=coll, Image={"Bytes": photo("biden.jpg")}, ExternalImageId="biden")

    probe = photo("obama-240p.jpg")
    with pytest.raises(ClientError) as e:
        operator.search_faces_by_image(CollectionId=coll, Image={"Bytes": probe}, FaceMatchThreshold=90)
    assert error_code(e) == "AccessDeniedException"
    assert "case reference" in str(e.value)

    cased = with_case(rek(KEYS["operator"]), case)
    with pytest.raises(ClientError) as e:
        cased.search_faces_by_image(CollectionId=coll, Image={"Bytes": probe}, FaceMatchThreshold=80)
    assert error_code(e) == "InvalidParameterException"
    assert "minimum match threshold to 85" in str(e.value)

    found = cased.search_faces_by_image(CollectionId=coll, Image={"Bytes": probe}, FaceMatchThreshold=90)
    matches = found["FaceMatches"]
    assert [m["Face"]["ExternalImageId"] for m in matches] == ["obama"], matches

    # The auditor cannot search.
    with pytest.raises(ClientError) as e:
        with_case(auditor, case).search_faces_by_image(CollectionId=coll, Image={"Bytes": probe})
    assert error_code(e) == "AccessDeniedException"

    # Two different reviewers confirm; the same one cannot count twice.
    status, items = kenning(KEYS["reviewer"], "ListReviewItems", {"CollectionId": coll, "Status": "PENDING"})
    assert status == 200, items
    assert len(items["Items"]) == 1, items
    item = items["Items"][0]
    assert item["FaceId"] == matches[0]["Face"]["FaceId"] and item["Case"] == case
    rid = item["ReviewId"]
    status, r = kenning(KEYS["reviewer"], "DecideReviewItem", {"ReviewId": rid, "Decision": "CONFIRM", "Comment": "same ears"})
    assert (status, r["Status"]) == (200, "PENDING"), r
    status, r = kenning(KEYS["reviewer"], "DecideReviewItem", {"ReviewId": rid, "Decision": "CONFIRM", "Comment": "again"})
    assert (status, r["__type"]) == (403, "AccessDeniedException"), r
    status, r = kenning(KEYS["operator"], "DecideReviewItem", {"ReviewId": rid, "Decision": "CONFIRM", "Comment": "mine"})
    assert (status, r["__type"]) == (403, "AccessDeniedException"), r
    # The second reviewer verifies separately: the first verdict is not shown.
    status, view = kenning(KEYS["reviewer2"], "ListReviewItems", {"CollectionId": coll})
    assert status == 200, view
    assert view["Items"][0]["Decisions"] == [] and view["Items"][0]["OtherDecisions"] == 1, view
    status, r = kenning(KEYS["reviewer2"], "DecideReviewItem", {"ReviewId": rid, "Decision": "CONFIRM", "Comment": "agree"})
    assert (status, r["Status"]) == (200, "CONFIRMED"), r

    # The audit trail: intact, and it says who searched for whom, why, and what came back.
    status, v = kenning(KEYS["auditor"], "VerifyAudit", {})
    assert status == 200 and v["Valid"], v
    status, exported = kenning(KEYS["auditor"], "ExportAudit", {"Case": case})
    assert status == 200, exported
    records = exported["Records"]
    ops = [(r["operation"], r["outcome"]) for r in records]
    assert ops == [
        ("SearchFacesByImage", "InvalidParameterException"),
        ("SearchFacesByImage", "ok"),
        ("SearchFacesByImage", "AccessDeniedException"),
        ("DecideReviewItem", "ok"),
        ("DecideReviewItem", "AccessDeniedException"),
        ("DecideReviewItem", "ok"),
    ], ops
    search = records[1]
    assert search["access_key"] == KEYS["operator"][0] and search["role"] == "operator"
    assert search["probe_sha256"] == hashlib.sha256(probe).hexdigest()
    assert search["threshold"] == 90 and search["face_count"] == 2
    assert search["expected_false_matches"] == pytest.approx(2 * 10 ** ((40 - 90) / 10))
    assert [c["external_image_id"] for c in search["candidates"]] == ["obama"]
    assert records[-1]["details"]["Status"] == "CONFIRMED"
    # Records chain: each names the hash of the one before it in the log.
    assert all(len(r["hash"]) == 64 and len(r["prev"]) == 64 for r in records)
    # The uncased, refused search is in the trail too (no case to filter by).
    status, everything = kenning(KEYS["auditor"], "ExportAudit", {})
    refused = [
        r for r in everything["Records"]
        if r.get("collection") == coll and r["operation"] == "SearchFacesByImage" and "case" not in r
    ]
    assert [r["outcome"] for r in refused] == ["AccessDeniedException"], refused
    # Operators cannot read the audit trail.
    status, r = kenning(KEYS["operator"], "ExportAudit", {})
    assert (status, r["__type"]) == (403, "AccessDeniedException"), r
