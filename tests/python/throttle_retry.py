"""botocore's retry modes against per-key throttling: with `kenning serve
--key-rate 0.5 --key-burst 2`, a burst of calls is answered with
ThrottlingException and Retry-After, and boto3's standard and adaptive retry
modes back off until every call succeeds.

Run by crates/kenning-cli/tests/wire.rs with KENNING_ENDPOINT,
KENNING_TEST_KEY_ID and KENNING_TEST_SECRET. Not collected by pytest (no
test_ prefix): it needs a server started with those limits.
"""

from botocore.exceptions import ClientError

from kenning_server import rekognition


def client(mode, attempts):
    return rekognition(retries={"mode": mode, "max_attempts": attempts})


def main():
    plain = client("standard", 1)
    refused = None
    for _ in range(10):
        try:
            plain.list_collections()
        except ClientError as e:
            refused = e.response
            break
    assert refused is not None, "ten calls at once were not throttled"
    assert refused["Error"]["Code"] == "ThrottlingException", refused
    assert int(refused["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1, refused
    for mode in ("standard", "adaptive"):
        rek = client(mode, 10)
        retries = 0
        for _ in range(6):
            r = rek.list_collections()
            retries += r["ResponseMetadata"]["RetryAttempts"]
        assert retries > 0, f"{mode}: no call was retried"
        print(f"{mode}: 6 calls succeeded after {retries} retries")


if __name__ == "__main__":
    main()
