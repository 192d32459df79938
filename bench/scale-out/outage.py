"""Failover outage as a client sees it: CreateUser calls every 50 ms through
two `kenning serve` nodes (on a two-host URL) until told to stop; prints the
longest gap between two acknowledged writes, in seconds, as JSON.

  .cache/venv-test/bin/python bench/scale-out/outage.py --endpoints http://A,http://B \
      --key-id ... --secret ... --stop-file FILE
"""

import argparse
import json
import os
import time

import boto3
from botocore.config import Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--collection", default="outage")
    a = ap.parse_args()
    clients = [boto3.client("rekognition", endpoint_url=e, region_name="us-east-1",
                            aws_access_key_id=a.key_id, aws_secret_access_key=a.secret,
                            config=Config(retries={"max_attempts": 1}, connect_timeout=2,
                                          read_timeout=10))
               for e in a.endpoints.split(",")]
    clients[0].create_collection(CollectionId=a.collection)
    last_ack, longest, acked, failed, i = time.time(), 0.0, 0, 0, 0
    while not os.path.exists(a.stop_file):
        i += 1
        try:
            clients[i % len(clients)].create_user(CollectionId=a.collection, UserId=f"u{i}")
            now = time.time()
            longest = max(longest, now - last_ack)
            last_ack, acked = now, acked + 1
        except Exception:  # the outage being measured
            failed += 1
        time.sleep(0.05)
    print(json.dumps({"phase": "failover", "outage_s": round(longest, 2), "acknowledged": acked,
                      "failed": failed}))


if __name__ == "__main__":
    main()
