"""Fuzzes Kenning's AWS JSON 1.1 operations with randomly mutated bodies.

Each request starts from a body botocore accepts for a Rekognition
operation (with a real, small PNG), then gets one to three mutations: keys
dropped or added, values swapped for other types, huge or negative numbers,
long and odd strings, deep nesting, big arrays, corrupted image bytes,
broken JSON text, invalid UTF-8. It is signed with botocore's SigV4 (so it
reaches the operation, not just the signature check) and sent with a
timeout. A failure is: any 5xx, a 4xx without a JSON `__type` body, no
answer within the timeout (a hang), or the server gone.

Usage: json11_fuzz.py --seconds N [--seed S]; the endpoint and key come from
KENNING_ENDPOINT, KENNING_TEST_KEY_ID and KENNING_TEST_SECRET. Prints a JSON
summary (requests, statuses, slowest answer) on the last line; exits 1 on a
failure, naming the request that caused it.
"""

import argparse
import base64
import collections
import http.client
import json
import random
import struct
import sys
import time
import urllib.parse
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from kenning_server import ENDPOINT, sign  # noqa: E402

TIMEOUT = 60.0
FACE = "11111111-2222-4333-8444-555555555555"


def png(width, height, seed, flat=False):
    """A valid greyscale PNG with some texture (no external data needed);
    `flat` ones compress to almost nothing whatever their pixel count."""
    rng = random.Random(seed)
    row = bytes(width)
    rows = b"".join(b"\x00" + (row if flat else rng.randbytes(width)) for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


IMAGE = png(64, 48, 1)
# Odd sizes: 1x1, lines, and small files of many pixels (a decompression
# bomb in miniature: 100 MP in a few hundred kB).
ODD_IMAGES = [png(1, 1, 2), png(3000, 1, 3), png(1, 3000, 4), png(800, 800, 5), png(4000, 4000, 6, True), png(10000, 10000, 7, True)]


def image(data=IMAGE):
    return {"Bytes": base64.b64encode(data).decode()}


def valid_bodies(cid):
    """A botocore-valid body per photo operation."""
    return {
        "DetectFaces": {"Image": image(), "Attributes": ["DEFAULT"]},
        "CompareFaces": {"SourceImage": image(), "TargetImage": image(), "SimilarityThreshold": 80},
        "CreateCollection": {"CollectionId": cid},
        "DescribeCollection": {"CollectionId": cid},
        "ListCollections": {"MaxResults": 10},
        "DeleteCollection": {"CollectionId": cid + "-gone"},
        "IndexFaces": {"CollectionId": cid, "Image": image(), "ExternalImageId": "x", "MaxFaces": 2},
        "ListFaces": {"CollectionId": cid, "MaxResults": 5},
        "DeleteFaces": {"CollectionId": cid, "FaceIds": [FACE]},
        "SearchFaces": {"CollectionId": cid, "FaceId": FACE, "MaxFaces": 5, "FaceMatchThreshold": 80},
        "SearchFacesByImage": {"CollectionId": cid, "Image": image(), "MaxFaces": 5},
        "CreateUser": {"CollectionId": cid, "UserId": "u1"},
        "DeleteUser": {"CollectionId": cid, "UserId": "u2"},
        "ListUsers": {"CollectionId": cid, "MaxResults": 5},
        "AssociateFaces": {"CollectionId": cid, "UserId": "u1", "FaceIds": [FACE]},
        "DisassociateFaces": {"CollectionId": cid, "UserId": "u1", "FaceIds": [FACE]},
        "SearchUsers": {"CollectionId": cid, "UserId": "u1", "MaxUsers": 5},
        "SearchUsersByImage": {"CollectionId": cid, "Image": image(), "MaxUsers": 5},
        "GetFaceDetection": {"JobId": "a" * 64, "MaxResults": 10},
        "GetFaceSearch": {"JobId": "a" * 64, "MaxResults": 10},
        "StartFaceDetection": {"Video": {"S3Object": {"Bucket": "fuzz", "Name": "v.mp4"}}},
        "StartFaceSearch": {
            "Video": {"S3Object": {"Bucket": "fuzz", "Name": "v.mp4"}},
            "CollectionId": cid,
        },
    }


def odd_value(rng):
    """A value of a random type, often one no field expects."""
    pick = rng.randrange(14)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**63), 10**30, 4096, 101])
    if pick == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e308, 100.0001, 3.4e38])
    if pick == 4:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 64)))
    if pick == 5:
        return "a" * rng.choice([256, 4096, 100_000])
    if pick == 6:
        return rng.choice(["", " ", "../../etc/passwd", "%00", "\u0000", "\ud800x", "🙂" * 50, FACE.upper()])
    if pick == 7:
        return [odd_value(rng) for _ in range(rng.randrange(0, 5))]
    if pick == 8:
        return [FACE] * rng.choice([0, 101, 5000])
    if pick == 9:
        return {"Bytes": base64.b64encode(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 512)))).decode()}
    if pick == 10:
        return {"Bytes": "not base64 at all!!"}
    if pick == 11:
        return {"S3Object": {"Bucket": "b", "Name": "n"}}
    if pick == 12:
        deep = 0
        for _ in range(rng.choice([64, 1000, 20000])):
            deep = [deep]
        return deep
    return {"Unexpected": odd_value(rng)}


def corrupt_image(rng, data):
    b = bytearray(data)
    for _ in range(rng.randrange(1, 8)):
        i = rng.randrange(len(b))
        b[i] = rng.randrange(256)
    if rng.random() < 0.3:
        b = b[: rng.randrange(len(b))]
    return bytes(b)


def mutate(rng, body):
    """`body` (a dict) changed at random; returns the bytes to send."""
    body = json.loads(json.dumps(body))
    for _ in range(rng.randrange(1, 4)):
        keys = list(body)
        what = rng.randrange(7)
        if what == 0 and keys:
            body.pop(rng.choice(keys))
        elif what == 1:
            body[rng.choice(["Foo", "__proto__", "collectionid", "Image ", ""])] = odd_value(rng)
        elif what in (2, 3) and keys:
            body[rng.choice(keys)] = odd_value(rng)
        elif what == 4:
            for k in keys:
                if isinstance(body[k], dict) and "Bytes" in body[k]:
                    body[k] = image(corrupt_image(rng, IMAGE))
        elif what == 5:
            big = rng.choice(ODD_IMAGES)
            for k in keys:
                if isinstance(body[k], dict) and "Bytes" in body[k]:
                    body[k] = image(big)
        else:
            body = odd_value(rng) if rng.random() < 0.3 else body
            if not isinstance(body, dict):
                break
    try:
        text = json.dumps(body).encode()
    except (RecursionError, ValueError):
        text = b"[" * 100_000
    r = rng.random()
    if r < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    elif r < 0.15:
        text = text.replace(b'"', b"\xff", 1)
    elif r < 0.2 and text:
        i = rng.randrange(len(text))
        text = text[:i] + bytes([rng.randrange(256)]) + text[i + 1 :]
    return text


def send(op, body):
    url = urllib.parse.urlsplit(ENDPOINT)
    headers, _ = sign(op, body)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cid = f"fuzz{args.seed}"
    bodies = valid_bodies(cid)
    status, _ = send("CreateCollection", json.dumps({"CollectionId": cid}).encode())
    assert status in (200, 400), status
    statuses = collections.Counter()
    slowest = (0.0, "")
    n = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        op = rng.choice(sorted(bodies))
        body = mutate(rng, bodies[op]) if rng.random() < 0.9 else json.dumps(bodies[op]).encode()
        start = time.monotonic()
        where = f"request {n} (seed {args.seed}): {op} {body[:300]!r}"
        try:
            status, answer = send(op, body)
        except (TimeoutError, OSError) as e:
            sys.exit(f"FAIL no answer ({e!r}) to {where}")
        took = time.monotonic() - start
        slowest = max(slowest, (took, op))
        statuses[status] += 1
        n += 1
        if status >= 500:
            sys.exit(f"FAIL HTTP {status} {answer[:300]!r} for {where}")
        if status >= 400:
            try:
                kind = json.loads(answer)["__type"]
            except (ValueError, KeyError, TypeError):
                sys.exit(f"FAIL HTTP {status} without a JSON __type ({answer[:300]!r}) for {where}")
            statuses[kind] += 1
    print(
        json.dumps(
            {
                "requests": n,
                "seconds": args.seconds,
                "seed": args.seed,
                "statuses": dict(sorted(statuses.items(), key=str)),
                "slowest_s": round(slowest[0], 3),
                "slowest_op": slowest[1],
            }
        )
    )


if __name__ == "__main__":
    main()
