"""botocore's SigV4 signer against a running server: hundreds of generated
requests (JSON 1.1 and REST, reserved characters in paths and queries,
repeated headers and runs of spaces, empty bodies, the Date header instead
of X-Amz-Date, clock skew either side of 15 minutes) are accepted exactly
when AWS would accept them, and a one-byte change of any signed part of each
is refused.

The AWS SDK for Rust's signer is checked the same way, byte by byte, in
crates/kenning-server/tests/sigv4_differential.rs.

Started by crates/kenning-cli/tests/server.rs, which runs the server and
passes KENNING_ENDPOINT, KENNING_TEST_KEY_ID and KENNING_TEST_SECRET.
"""

import datetime
import http.client
import json
import os
import random
import string
import urllib.parse
from unittest import mock

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

ENDPOINT = os.environ.get("KENNING_ENDPOINT")
KEY = (os.environ.get("KENNING_TEST_KEY_ID"), os.environ.get("KENNING_TEST_SECRET"))

if not (ENDPOINT and KEY[0]):
    pytest.fail("run through crates/kenning-cli/tests/server.rs", pytrace=False)

AUTH_ERRORS = {
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
}
# Text with reserved and non-ASCII characters (no tabs: AWS's own signers
# disagree on whether a tab in a header value is whitespace to trim).
ALPHABET = list(string.ascii_letters + string.digits + "-_.~ +%&=/?#!*'();:@$,[]") + ["é", "€", "𝄞"]


def text(rng, n):
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, n)))


def generate(rng):
    """(method, path, query, [(header, value)], body) of a request to sign."""
    headers = []
    if rng.random() < 0.4:
        method, path, query = "POST", "/", ""
        headers += [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "RekognitionService.ListCollections"),
        ]
        body = rng.choice([b"", b"{}", b'{"MaxResults": 5}'])
    else:
        method = rng.choice(["GET", "DELETE"]) if rng.random() < 0.5 else "GET"
        cid = text(rng, 10)
        path = "/v1/collections/" + urllib.parse.quote(cid, safe="")
        if method == "GET" and rng.random() < 0.5:
            path += "/faces"
        params = [(text(rng, 5), text(rng, 8)) for _ in range(rng.randint(0, 4))]
        query = percent_encode_sequence(params) if params else ""
        body = b""
    for _ in range(rng.randint(0, 3)):
        # Repeated names, runs of spaces, leading and trailing spaces.
        name = rng.choice(["X-Custom", "X-Custom", "Accept"])
        value = "".join(rng.choice(string.ascii_letters + "  ,;=") for _ in range(rng.randint(1, 12)))
        headers.append((name, rng.choice(["", " ", "  "]) + value + rng.choice(["", "  "])))
    return method, path, query, headers, body


def sign(method, path, query, headers, body, when, use_date=False):
    """The request signed by botocore at `when`: (method, target, headers, body)."""
    url = ENDPOINT + path + ("?" + query if query else "")
    req = AWSRequest(method=method, url=url, data=body)
    for k, v in headers:
        req.headers[k] = v  # HTTPHeaders keeps repeated names
    if use_date:
        req.headers["Date"] = "placeholder; botocore rewrites it"
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        SigV4Auth(Credentials(*KEY), "rekognition", "eu-north-1").add_auth(req)
    target = path + ("?" + query if query else "")
    return method, target, list(req.headers.items()), body


def send(method, target, headers, body):
    u = urllib.parse.urlsplit(ENDPOINT)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    names = {k.lower() for k, _ in headers}
    if "host" not in names:
        conn.putheader("Host", u.netloc)
    for k, v in headers:
        conn.putheader(k, v.encode("utf-8") if isinstance(v, str) else v)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    try:
        kind = json.loads(raw).get("__type")
    except (ValueError, AttributeError):
        kind = None
    return r.status, kind


def mutate(rng, method, target, headers, body):
    """One byte of one signed part changed to another letter or digit (never
    inside a %-escape, never only its case in a header name)."""
    parts = ["target", "header", "body", "method"]
    while True:
        part = rng.choice(parts)
        if part == "method":
            return ("GET" if method != "GET" else "PUT"), target, headers, body
        if part == "body":
            if not body:
                continue
            i = rng.randrange(len(body))
            b = bytearray(body)
            b[i] = ord(rng.choice([c for c in "0123456789xyz" if ord(c) != b[i]]))
            return method, target, headers, bytes(b)
        if part == "target":
            spots = [
                i
                for i, c in enumerate(target)
                if c.isalnum() and not ("%" in target[max(0, i - 2) : i])
            ]
            if not spots:
                continue
            i = rng.choice(spots)
            c = rng.choice([x for x in "0123456789qxz" if x != target[i]])
            return method, target[:i] + c + target[i + 1 :], headers, body
        signed = [
            n
            for n, (k, _) in enumerate(headers)
            if k.lower() not in ("authorization", "content-length")
            and any(ch.isalnum() for ch in headers[n][1])
        ]
        if not signed:
            continue
        n = rng.choice(signed)
        k, v = headers[n]
        spots = [i for i, ch in enumerate(v) if ch.isalnum()]
        i = rng.choice(spots)
        c = rng.choice([x for x in "0123456789qxz" if x != v[i]])
        changed = list(headers)
        changed[n] = (k, v[:i] + c + v[i + 1 :])
        return method, target, changed, body


def test_botocore_signed_requests_are_accepted_exactly_when_aws_would():
    rng = random.Random(17)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    counts = {"accepted": 0, "expired": 0, "changed_refused": 0}
    for i in range(300):
        req = generate(rng)
        skew = rng.choice([0, 0, 0, 30, -30, 14 * 60, -14 * 60, 16 * 60, -16 * 60])
        use_date = rng.random() < 0.15
        signed = sign(*req, now + datetime.timedelta(seconds=skew), use_date)
        status, kind = send(*signed)
        if abs(skew) > 15 * 60:
            assert (status, kind) == (403, "InvalidSignatureException"), (i, req, skew, status, kind)
            counts["expired"] += 1
            continue
        assert kind not in AUTH_ERRORS and status != 403, (i, req, skew, status, kind)
        counts["accepted"] += 1
        mutated = mutate(rng, *signed)
        status, kind = send(*mutated)
        # A method changed to GET on / earns the console's redirect (303),
        # which runs no operation.
        redirect = status == 303 and mutated[0] == "GET" and mutated[1].split("?")[0] == "/"
        assert redirect or status in (400, 403, 404, 405) and (kind in AUTH_ERRORS | {None, "NotFoundException"}), (
            i,
            req,
            status,
            kind,
        )
        counts["changed_refused"] += 1
    print(counts)
    assert counts["accepted"] > 150 and counts["expired"] > 30


def test_non_normalised_paths_never_reach_a_route():
    """botocore signs /a//b and /a/./b as /a/b (as AWS does); Kenning then
    answers 404 rather than routing the raw spelling."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for path in ["/v1//collections", "/v1/./collections", "/v1/x/../collections"]:
        status, kind = send(*sign("GET", path, "", [], b"", now))
        assert (status, kind) == (404, "NotFoundException"), (path, status, kind)
    status, kind = send(*sign("GET", "/v1/collections", "", [], b"", now))
    assert status == 200, kind
