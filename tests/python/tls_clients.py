"""boto3 (verify=cert.pem) and the aws CLI (--ca-bundle) against `kenning
serve --tls-cert --tls-key`; a client that does not trust the certificate is
refused by its own TLS check.

Run by crates/kenning-cli/tests/tls.rs with KENNING_ENDPOINT (https://...),
KENNING_TEST_KEY_ID, KENNING_TEST_SECRET and KENNING_TEST_CA (cert.pem).
Not collected by pytest (no test_ prefix): it needs a TLS server.
"""

import json
import os
import subprocess
import sys
import uuid

import boto3
import botocore.exceptions
from botocore.config import Config

ENDPOINT = os.environ["KENNING_ENDPOINT"]
KEY_ID = os.environ["KENNING_TEST_KEY_ID"]
SECRET = os.environ["KENNING_TEST_SECRET"]
CA = os.environ["KENNING_TEST_CA"]


def client(verify):
    return boto3.client(
        "rekognition",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        verify=verify,
        config=Config(retries={"max_attempts": 1}),
    )


def main():
    assert ENDPOINT.startswith("https://"), ENDPOINT
    rek = client(CA)
    cid = f"tls-{uuid.uuid4().hex[:8]}"
    rek.create_collection(CollectionId=cid)
    assert cid in rek.list_collections()["CollectionIds"]
    # The system's trust store does not know a self-signed certificate.
    try:
        client(True).list_collections()
        raise AssertionError("an untrusted certificate was accepted")
    except botocore.exceptions.SSLError:
        pass
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    out = subprocess.run(
        [aws, "rekognition", "list-collections", "--endpoint-url", ENDPOINT, "--ca-bundle", CA],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert cid in json.loads(out.stdout)["CollectionIds"], out.stdout
    out = subprocess.run(
        [aws, "rekognition", "list-collections", "--endpoint-url", ENDPOINT],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "SSL" in out.stderr, out.stderr
    print("boto3 verify=cert.pem and aws --ca-bundle: ok")


if __name__ == "__main__":
    main()
