"""Search throughput of one or more `kenning serve` nodes sharing a database:
CLIENTS concurrent boto3 clients run SearchFaces by FaceId (FaceIds from
bench_scale_out's face-ids.txt), each client on one node in turn, for SECONDS.

  .cache/venv-test/bin/python bench/scale-out/load.py --endpoints http://A,http://B \
      --key-id ... --secret ... --face-ids D/face-ids.txt --clients 8 --seconds 20
"""

import argparse
import json
import random
import threading
import time

import boto3
from botocore.config import Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--face-ids", required=True)
    ap.add_argument("--collection", default="bench")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    if not a.seconds > 0:
        ap.error(f"--seconds must be more than 0 (got {a.seconds}): a rate needs a duration")
    endpoints = a.endpoints.split(",")
    ids = open(a.face_ids).read().split()

    def client(endpoint):
        return boto3.client("rekognition", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=a.key_id, aws_secret_access_key=a.secret,
                            config=Config(retries={"max_attempts": 1}, read_timeout=120))

    lat, errors = [], [0]
    lock = threading.Lock()
    stop = time.time() + a.seconds

    def run(i):
        c = client(endpoints[i % len(endpoints)])
        rng = random.Random(i)
        while time.time() < stop:
            t = time.perf_counter()
            try:
                c.search_faces(CollectionId=a.collection, FaceId=rng.choice(ids), MaxFaces=10,
                               FaceMatchThreshold=0)
                with lock:
                    lat.append((time.perf_counter() - t) * 1e3)
            except Exception:  # counted, not hidden: the report shows it
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] if lat else float("nan")
    print(json.dumps({"phase": "api", "nodes": len(endpoints), "clients": a.clients,
                      "requests_per_s": len(lat) / a.seconds, "p50_ms": pct(0.5),
                      "p99_ms": pct(0.99), "errors": errors[0]}))


if __name__ == "__main__":
    main()
