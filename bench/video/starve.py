"""Does a running video job starve photo requests? DetectFaces latency on a
photo, sequentially, first with the service idle and then while video jobs
run back to back; one JSON line with the percentiles of both."""

import argparse
import json
import statistics
import time

import boto3
from botocore.config import Config


def percentiles(xs):
    xs = sorted(xs)
    return {
        "n": len(xs),
        "p50_ms": round(1000 * xs[len(xs) // 2], 1),
        "p95_ms": round(1000 * xs[int(len(xs) * 0.95) - 1], 1),
        "mean_ms": round(1000 * statistics.mean(xs), 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--requests", type=int, default=60)
    a = ap.parse_args()
    rek = boto3.client(
        "rekognition", endpoint_url=a.endpoint, region_name="us-east-1",
        aws_access_key_id=a.key, aws_secret_access_key=a.secret,
        config=Config(retries={"max_attempts": 1}),
    )
    photo = open(a.photo, "rb").read()

    def run(n):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            rek.detect_faces(Image={"Bytes": photo})
            out.append(time.perf_counter() - t)
        return out

    run(5)
    idle = run(a.requests)
    video = {"S3Object": {"Bucket": a.bucket, "Name": a.video}}
    jobs = [rek.start_face_detection(Video=video)["JobId"]]
    busy = []
    while len(busy) < a.requests:
        if rek.get_face_detection(JobId=jobs[-1], MaxResults=1)["JobStatus"] != "IN_PROGRESS":
            jobs.append(rek.start_face_detection(Video=video)["JobId"])
        busy += run(5)
    done = sum(
        rek.get_face_detection(JobId=j, MaxResults=1)["JobStatus"] == "SUCCEEDED" for j in jobs[:-1]
    )
    print(json.dumps({"idle": percentiles(idle), "during_video": percentiles(busy),
                      "video_jobs_finished_meanwhile": done}))


if __name__ == "__main__":
    main()
