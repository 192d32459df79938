"""The replay attack of issue 17, signed by botocore: a captured request whose
body is swapped (with or without an x-amz-content-sha256 header naming the
original body's hash) is refused and changes nothing; headers the service
acts on must be signed.

Started by crates/kenning-cli/tests/server.rs, which runs the server and
passes KENNING_ENDPOINT, KENNING_TEST_KEY_ID and KENNING_TEST_SECRET.
"""

import hashlib
import http.client
import json
import urllib.parse
import uuid

import pytest

from kenning_server import ENDPOINT, KEY, sign

if not (ENDPOINT and KEY[0]):
    pytest.fail("run through crates/kenning-cli/tests/server.rs", pytrace=False)


def send(headers, body, path="/"):
    """Sends exactly these headers and this body: (status, JSON answer)."""
    u = urllib.parse.urlsplit(ENDPOINT)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    if not any(k.lower() == "host" for k in headers):
        conn.putheader("Host", u.netloc)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    out = r.status, json.loads(r.read() or b"{}")
    conn.close()
    return out


def collections():
    status, r = send(*sign("ListCollections", b"{}"))
    assert status == 200, r
    return r["CollectionIds"]


def test_swapped_body_with_the_original_hash_header_is_refused():
    legit, evil = f"legit-{uuid.uuid4().hex[:8]}", f"evil-{uuid.uuid4().hex[:8]}"
    good = json.dumps({"CollectionId": legit}).encode()
    headers, _ = sign("CreateCollection", good)
    bad = json.dumps({"CollectionId": evil}).encode()
    digest = hashlib.sha256(good).hexdigest()
    # The attack as reported: the original body's hash added in a header
    # (unsigned). The header is checked against the body received first.
    status, r = send({**headers, "X-Amz-Content-SHA256": digest}, bad)
    assert (status, r["__type"]) == (400, "InvalidSignatureException"), r
    assert "XAmzContentSHA256Mismatch" in r["message"], r
    # A request signed with that header (as S3 clients send it), body swapped.
    with_hash, _ = sign("CreateCollection", good, {"X-Amz-Content-SHA256": digest})
    status, r = send(with_hash, bad)
    assert (status, r["__type"]) == (400, "InvalidSignatureException"), r
    assert "x-amz-content-sha256" in r["message"], r
    # Without the header, the signature simply does not cover the new body.
    status, r = send(headers, bad)
    assert (status, r["__type"]) == (403, "InvalidSignatureException"), r
    assert evil not in collections()
    # The captured request itself still works (once).
    status, r = send(headers, good)
    assert status == 200, r
    assert legit in collections()


def test_a_correct_content_hash_header_is_accepted_and_must_be_signed():
    body = b"{}"
    digest = hashlib.sha256(body).hexdigest()
    headers, _ = sign("ListCollections", body, {"X-Amz-Content-SHA256": digest})
    assert send(headers, body)[0] == 200
    # An unsigned payload is not accepted: the body is always covered.
    headers, _ = sign("ListCollections", body, {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    status, r = send(headers, body)
    assert (status, r["__type"]) == (400, "InvalidSignatureException"), r
    # Added after signing: refused as unsigned.
    headers, _ = sign("ListCollections", body)
    status, r = send({**headers, "X-Amz-Content-SHA256": digest}, body)
    assert (status, r["__type"]) == (403, "IncompleteSignatureException"), r


def test_headers_the_service_acts_on_must_be_signed():
    headers, body = sign("ListCollections", b"{}")
    auth = headers["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0]
    assert {"host", "x-amz-date", "x-amz-target"} <= set(signed.split(";"))
    # The target swapped for another operation after signing.
    swapped = {**headers, "X-Amz-Target": "RekognitionService.DeleteCollection"}
    status, r = send(swapped, body)
    assert (status, r["__type"]) == (403, "InvalidSignatureException"), r
    # A case reference added after signing would be written to the audit trail.
    status, r = send({**headers, "X-Kenning-Case": "forged"}, body)
    assert (status, r["__type"]) == (403, "IncompleteSignatureException"), r
    # SignedHeaders naming a header the request does not carry.
    for name in ("host", "x-amz-target"):
        trimmed = ";".join(h for h in signed.split(";") if h != name)
        status, r = send({**headers, "Authorization": auth.replace(signed, trimmed)}, body)
        assert (status, r["__type"]) == (403, "IncompleteSignatureException"), r
        assert name in r["message"], r
    extra = auth.replace(signed, signed + ";x-zz-absent")
    status, r = send({**headers, "Authorization": extra}, body)
    assert (status, r["__type"]) == (403, "IncompleteSignatureException"), r
    assert "x-zz-absent" in r["message"], r


def test_the_date_header_may_stand_for_x_amz_date():
    # botocore signs over Date (and sends no X-Amz-Date) when the request has one.
    headers, body = sign("ListCollections", b"{}", {"Date": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert "X-Amz-Date" not in headers and "Date" in headers
    assert send(headers, body)[0] == 200
    stale = {**headers, "Date": "Thu, 01 Jan 1970 00:00:00 GMT"}
    status, r = send(stale, body)
    assert (status, r["__type"]) == (403, "IncompleteSignatureException"), r
    assert "does not match the request date" in r["message"], r
