"""/metrics after hostile traffic, read with the Prometheus project's own
OpenMetrics parser: paths and targets with quotes, newlines and backslashes,
10,000 distinct collection names, and clients that hang up mid-request.
The exposition must parse, its series must not grow with what clients send,
and the in-flight gauge must come back down.

Run by crates/kenning-cli/tests/wire.rs with KENNING_ENDPOINT and
KENNING_TEST_TOKEN (an API token) against a server without a rate limit.
Not collected by pytest (no test_ prefix).
"""

import http.client
import os
import socket
import urllib.parse

from prometheus_client.openmetrics.parser import text_string_to_metric_families

ENDPOINT = os.environ["KENNING_ENDPOINT"]
TOKEN = os.environ["KENNING_TEST_TOKEN"]
U = urllib.parse.urlsplit(ENDPOINT)


def metrics():
    conn = http.client.HTTPConnection(U.hostname, U.port, timeout=60)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert r.status == 200
    assert r.getheader("content-type").startswith("application/openmetrics-text"), r.getheader(
        "content-type"
    )
    text = r.read().decode()
    conn.close()
    return text, list(text_string_to_metric_families(text))


def main():
    conn = http.client.HTTPConnection(U.hostname, U.port, timeout=60)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    hostile = ['a"b', "a\nb", "a\\b", 'x"} 1\n# EOF\nevil{a="', "é€\r\n"]
    for name in hostile:
        conn.request("GET", "/v1/collections/" + urllib.parse.quote(name, safe=""), headers=auth)
        conn.getresponse().read()
        conn.request(
            "POST",
            "/",
            body=b"{}",
            headers={"X-Amz-Target": "RekognitionService." + urllib.parse.quote(name), **auth},
        )
        conn.getresponse().read()
    for i in range(10_000):
        conn.request("GET", f"/v1/collections/coll-{i:05d}", headers=auth)
        r = conn.getresponse()
        r.read()
        assert r.status in (400, 404), r.status
    conn.close()
    # Clients that go away after sending part of a body.
    for _ in range(20):
        s = socket.create_connection((U.hostname, U.port))
        s.sendall(
            b"POST /v1/collections HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + TOKEN.encode() + b"\r\ncontent-length: 100000\r\n\r\n{\"Coll"
        )
        s.close()
    text, families = metrics()
    names = {f.name for f in families}
    for want in (
        "kenning_requests",
        "kenning_request_errors",
        "kenning_request_duration_seconds",
        "kenning_inference_seconds",
        "kenning_faces_detected",
        "kenning_faces_indexed",
        "kenning_requests_in_flight",
    ):
        assert want in names, (want, names)
    series = [s for f in families for s in f.samples]
    labels = {v for s in series for v in s.labels.values()}
    assert not any("coll-" in v or '"' in v or "\n" in v for v in labels), labels
    assert len(series) < 400, f"{len(series)} series after 10,000 distinct names"
    requests = {
        (s.labels["operation"], s.labels["status"]): s.value
        for f in families
        if f.name == "kenning_requests"
        for s in f.samples
        if s.name == "kenning_requests_total"
    }
    assert requests[("DescribeCollection", "4xx")] >= 10_000, requests
    # The gauge counts this /metrics request only, once the hang-ups end.
    for _ in range(50):
        _, families = metrics()
        gauge = [s.value for f in families if f.name == "kenning_requests_in_flight" for s in f.samples]
        if gauge == [1]:
            break
    assert gauge == [1], gauge
    print(f"/metrics parsed: {len(series)} samples, {len(labels)} label values after 10,000 names")


if __name__ == "__main__":
    main()
