"""Load benchmark for `kenning serve`: N concurrent boto3 clients run a mix of
DetectFaces, SearchFacesByImage and IndexFaces with ~5% malformed requests;
reports throughput, p50/p99 latency and the server's RSS over time.

  .cache/venv-test/bin/python bench/server/load.py --endpoint http://127.0.0.1:8470 \
      --key-id ... --secret ... --pid SERVER_PID --clients 1,2,4,8,16,32,64 --seconds 20
"""

import argparse
import random
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return float("nan")
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--clients", default="1,2,4,8,16,32,64")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--photos", default="../shared/data/misc/face_recognition/examples")
    a = ap.parse_args()
    photos = [p.read_bytes() for p in sorted(Path(a.photos).glob("*.jpg"))]
    if not photos:
        raise SystemExit(f"no photos in {a.photos}")

    def client():
        return boto3.client("rekognition", endpoint_url=a.endpoint, region_name="us-east-1",
                            aws_access_key_id=a.key_id, aws_secret_access_key=a.secret,
                            config=Config(retries={"max_attempts": 1}, max_pool_connections=4,
                                          read_timeout=120))

    c = client()
    cid = f"bench-{int(time.time())}"
    c.create_collection(CollectionId=cid)
    c.index_faces(CollectionId=cid, Image={"Bytes": photos[0]})

    print("| clients | requests/s | p50 ms | p99 ms | errors (expected malformed) | unexpected errors | RSS MiB start -> end (max) |")
    print("|---|---|---|---|---|---|---|")
    for n in [int(x) for x in a.clients.split(",")]:
        lat, expected, unexpected = [], [0], [0]
        lock = threading.Lock()
        stop = time.time() + a.seconds
        rss = [rss_mib(a.pid)]

        def worker(seed):
            rnd = random.Random(seed)
            cl = client()
            while time.time() < stop:
                img = rnd.choice(photos)
                bad = rnd.random() < 0.05
                if bad:
                    img = b"\xff\xd8\xff" + bytes(rnd.randrange(256) for _ in range(512))
                op = rnd.choice(["detect", "search", "index"])
                t = time.time()
                try:
                    if op == "detect":
                        cl.detect_faces(Image={"Bytes": img})
                    elif op == "search":
                        cl.search_faces_by_image(CollectionId=cid, Image={"Bytes": img})
                    else:
                        cl.index_faces(CollectionId=cid, Image={"Bytes": img}, MaxFaces=1)
                    ok = True
                except ClientError as e:
                    ok = False
                    code = e.response["Error"]["Code"]
                with lock:
                    lat.append(time.time() - t)
                    if not ok:
                        if bad or code == "InvalidParameterException":
                            expected[0] += 1
                        else:
                            unexpected[0] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            time.sleep(1)
            rss.append(rss_mib(a.pid))
        lat.sort()
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
        print(f"| {n} | {len(lat) / a.seconds:.2f} | {p(0.5):.0f} | {p(0.99):.0f} | {expected[0]} | {unexpected[0]} | {rss[0]:.0f} -> {rss[-1]:.0f} ({max(rss):.0f}) |", flush=True)
    c.delete_collection(CollectionId=cid)


if __name__ == "__main__":
    main()
