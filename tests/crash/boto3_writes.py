"""Concurrent IndexFaces / DeleteFaces through boto3 until the server dies.

Started by crates/kenning-cli/tests/serve_crash.rs, which kills `kenning
serve` with SIGKILL while this runs. Each thread indexes photos into the
collection and deletes some of its own earlier faces; every write the
server acknowledged is printed (and flushed) as it is acknowledged:

    index <FaceId>
    delete <FaceId>

A request in flight at the kill is printed by no one: it may or may not
have happened. A thread stops at its first connection error (the server is
gone). Any other error is a failure (exit 1).

Usage: boto3_writes.py COLLECTION PHOTO... (KENNING_ENDPOINT,
KENNING_TEST_KEY_ID and KENNING_TEST_SECRET set).
"""

import sys
import threading
import time
from pathlib import Path

from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from kenning_server import rekognition  # noqa: E402

THREADS = 4
LOCK = threading.Lock()
FAILED = []


def client():
    return rekognition(connect_timeout=5, read_timeout=120)


def ack(line):
    with LOCK:
        print(line, flush=True)


def call(fn, **args):
    """`fn(**args)`, retried while the server throttles (its per-key limits)."""
    while True:
        try:
            return fn(**args)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("ThrottlingException", "ProvisionedThroughputExceededException"):
                raise
            time.sleep(0.2)


def worker(n, collection, photos):
    rek = client()
    mine = []
    i = n
    try:
        while True:
            if len(mine) >= 2 and i % 3 == 0:
                face = mine.pop(0)
                r = call(rek.delete_faces, CollectionId=collection, FaceIds=[face])
                assert r["DeletedFaces"] == [face], r
                ack(f"delete {face}")
            else:
                r = call(
                    rek.index_faces,
                    CollectionId=collection,
                    Image={"Bytes": photos[i % len(photos)]},
                    ExternalImageId=f"t{n}-{i}",
                    MaxFaces=1,
                )
                for rec in r["FaceRecords"]:
                    face = rec["Face"]["FaceId"]
                    mine.append(face)
                    ack(f"index {face}")
            i += 1
    except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectionError):
        return
    except Exception as e:  # noqa: BLE001 (any other failure fails the run)
        FAILED.append(f"thread {n}: {e!r}")


def main():
    collection, paths = sys.argv[1], sys.argv[2:]
    photos = [open(p, "rb").read() for p in paths]
    client().create_collection(CollectionId=collection)
    print("ready", flush=True)
    threads = [threading.Thread(target=worker, args=(n, collection, photos)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if FAILED:
        sys.exit("\n".join(FAILED))


if __name__ == "__main__":
    main()
