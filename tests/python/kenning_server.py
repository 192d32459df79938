"""The server under test, as the Rust integration tests describe it in the
environment (KENNING_ENDPOINT, KENNING_TEST_KEY_ID, KENNING_TEST_SECRET): a
boto3 client for it, botocore's SigV4 signature of a raw JSON 1.1 request,
a collection of reference people, and waiting for something to happen.
Scripts outside this folder put it on sys.path to share these."""

import os
import time

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
KEY = (os.environ.get("KENNING_TEST_KEY_ID"), os.environ.get("KENNING_TEST_SECRET"))


def rekognition(key=KEY, case=None, **config):
    """A boto3 Rekognition client of `key` (id, secret; the test key by
    default) that sends `case` as X-Kenning-Case when given; `config` goes
    to botocore's Config (retries default to a single attempt)."""
    config.setdefault("retries", {"max_attempts": 1})
    c = boto3.client(
        "rekognition",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(**config),
    )
    if case:
        c.meta.events.register(
            "before-sign.rekognition.*",
            lambda request, **_: request.headers.__setitem__("X-Kenning-Case", case),
        )
    return c


def error_code(excinfo):
    """The Rekognition error code of a pytest.raises(ClientError) result."""
    return excinfo.value.response["Error"]["Code"]


def enrol(rek, collection, reference, people):
    """Creates `collection` with one face of each of `people` (the files
    REFERENCE/<name>.png, ExternalImageId <name>)."""
    rek.create_collection(CollectionId=collection)
    for who in people:
        r = rek.index_faces(
            CollectionId=collection,
            Image={"Bytes": (reference / f"{who}.png").read_bytes()},
            ExternalImageId=who,
            MaxFaces=1,
        )
        assert len(r["FaceRecords"]) == 1, who
    return collection


def until(check, timeout, what, every=0.2):
    """Calls `check` every `every` s until it returns something true, and
    returns that; fails after `timeout` s saying `what` (a string, or a
    function of the last result) did not happen."""
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() >= deadline:
            said = what(got) if callable(what) else what
            raise AssertionError(f"not within {timeout} s: {said}")
        time.sleep(every)


def sign(op, body, headers=None):
    """(headers, body) of a botocore-signed JSON 1.1 request for `op`."""
    req = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"RekognitionService.{op}",
            **(headers or {}),
        },
    )
    SigV4Auth(Credentials(*KEY), "rekognition", "us-east-1").add_auth(req)
    return dict(req.headers.items()), body
