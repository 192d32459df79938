"""The server under test, as the Rust integration tests describe it in the
environment (KENNING_ENDPOINT, KENNING_TEST_KEY_ID, KENNING_TEST_SECRET): a
boto3 client for it and botocore's SigV4 signature of a raw JSON 1.1 request.
Scripts outside this folder put it on sys.path to share these."""

import os

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
KEY = (os.environ.get("KENNING_TEST_KEY_ID"), os.environ.get("KENNING_TEST_SECRET"))


def rekognition(**config):
    """A boto3 Rekognition client of the test key; `config` goes to botocore's
    Config (retries default to a single attempt)."""
    config.setdefault("retries", {"max_attempts": 1})
    return boto3.client(
        "rekognition",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=KEY[0],
        aws_secret_access_key=KEY[1],
        config=Config(**config),
    )


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
