//! Stored video end to end with real ffmpeg, real models and
//! ../shared/data/video: `kenning video` in-process, the service driven by
//! boto3 (tests/video), completion webhooks, and a server killed with
//! SIGKILL in the middle of a job.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common;
use crate::server::{self, Server, KEY_ID, SECRET};

/// ../shared/data/video, or None (with a message).
fn videos(test: &str) -> Option<PathBuf> {
    common::data(test).map(|d| d.join("video"))
}

fn temp(name: &str) -> common::TempDir {
    common::temp_dir(&format!("video-{name}"))
}

/// Runs `kenning --data DATA ARGS`; (exit code, stdout, stderr).
fn kenning(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::kenning_bin())
        .arg("--models")
        .arg(common::models())
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hamilton_collection(data: &Path, video: &Path) {
    let (code, _, err) = kenning(data, &["collection", "create", "hamilton"]);
    assert_eq!(code, 0, "{err}");
    let refs = video.join("reference");
    let (code, _, err) = kenning(
        data,
        &[
            "index",
            "--collection",
            "hamilton",
            "--max-faces",
            "1",
            refs.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
}

/// Time segments (gaps over `gap` ms split them) of a sorted list.
fn segments(mut t: Vec<u64>, gap: u64) -> usize {
    t.sort_unstable();
    t.dedup();
    1 + t.windows(2).filter(|w| w[1] - w[0] > gap).count()
}

#[test]
fn cli_search_finds_both_hamilton_people_once_per_appearance() {
    let Some(video) = videos("cli_search_finds_both_hamilton_people_once_per_appearance") else {
        return;
    };
    let data = temp("cli-search");
    hamilton_collection(&data, &video);
    let clip = video.join("short_hamilton_clip.mp4");
    let (code, out, err) = kenning(
        &data,
        &[
            "--case",
            "CASE-9",
            "video",
            "search",
            "--collection",
            "hamilton",
            "--stats",
            clip.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["JobStatus"], "SUCCEEDED");
    let duration = v["VideoMetadata"]["DurationMillis"].as_u64().unwrap();
    assert!((9_000..=10_500).contains(&duration), "{duration}");
    let persons = v["Persons"].as_array().unwrap();
    // Each reference person: found at >= 80, with one Person.Index per
    // continuous appearance at most, and never two at the same moment.
    let mut by_name: std::collections::BTreeMap<String, Vec<(u64, u64)>> = Default::default();
    for p in persons {
        let t = p["Timestamp"].as_u64().unwrap();
        assert!(t <= duration);
        let index = p["Person"]["Index"].as_u64().unwrap();
        if let Some(m) = p["FaceMatches"].as_array().and_then(|m| m.first()) {
            assert!(m["Similarity"].as_f64().unwrap() >= 80.0, "{m}");
            let name = m["Face"]["ExternalImageId"].as_str().unwrap().to_owned();
            by_name.entry(name).or_default().push((index, t));
        }
    }
    // Both are found by the default recogniser (SFace). Lin-Manuel Miranda
    // is on screen at 0.8-1.5 s (small, far away) and 3.6-7.9 s (close up);
    // Alex Lacamoire is a 25-pixel face at the piano at 0.8-1.5 s and
    // otherwise seen only in profile. dlib's network gave his piano face
    // Similarity 64-68, as it gave strangers in the audience, and did not
    // find him (docs/benchmarks.md); SFace gives it about 86 under the
    // `final` pooled calibration and 80.5 under the capped mixture shipped
    // since (docs/accuracy.md, "A capped mixture": the equal mixture loses
    // him, so this is the check that bounds the mixture's power).
    assert_eq!(by_name.len(), 2, "{by_name:?}");
    let lin = &by_name["lin-manuel-miranda.png"];
    for &(_, t) in lin {
        assert!(
            (800..=1500).contains(&t) || (3600..=7900).contains(&t),
            "Lin at {t} ms"
        );
    }
    let alex = &by_name["alex-lacamoire.png"];
    assert!(alex.iter().any(|s| (800..=1500).contains(&s.1)), "{alex:?}");
    // Known false match: one dark, blurred audience face at 3.2-3.5 s scores
    // 80.2 against Alex's photo under the first SFace calibration, 82.0
    // under the refitted one and 82.6 under the pooled 60-cluster one
    // (issue 16: the fair calibration is looser than its promise on photos
    // unlike UTKFace); under the capped mixture it is below 80 and not
    // reported. It is allowed as that one person only, and only at
    // Similarity under 83; anything more is a regression.
    let elsewhere: Vec<&Value> = persons
        .iter()
        .filter(|p| !(800..=1500).contains(&p["Timestamp"].as_u64().unwrap()))
        .filter(|p| p["FaceMatches"][0]["Face"]["ExternalImageId"] == "alex-lacamoire.png")
        .collect();
    let false_persons: std::collections::BTreeSet<u64> = elsewhere
        .iter()
        .map(|p| p["Person"]["Index"].as_u64().unwrap())
        .collect();
    assert!(false_persons.len() <= 1, "{elsewhere:?}");
    for p in &elsewhere {
        let t = p["Timestamp"].as_u64().unwrap();
        let similarity = p["FaceMatches"][0]["Similarity"].as_f64().unwrap();
        assert!((3000..=3600).contains(&t) && similarity < 83.0, "{p}");
    }
    for (name, seen) in &by_name {
        let indexes: std::collections::BTreeSet<u64> = seen.iter().map(|s| s.0).collect();
        let appearances = segments(seen.iter().map(|s| s.1).collect(), 1000);
        assert!(
            indexes.len() <= appearances,
            "{name}: {} indexes for {appearances} appearances: {seen:?}",
            indexes.len()
        );
        let mut stamps: Vec<u64> = seen.iter().map(|s| s.1).collect();
        stamps.sort_unstable();
        let n = stamps.len();
        stamps.dedup();
        assert_eq!(stamps.len(), n, "{name} is two persons at one moment");
    }
    // Someone the collection does not hold keeps geometry and timestamps only.
    let strangers: Vec<&Value> = persons
        .iter()
        .filter(|p| p.get("FaceMatches").is_none())
        .collect();
    assert!(!strangers.is_empty());
    for p in strangers {
        let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["Person", "Timestamp"]);
    }
    // Stage times and a real-time factor on stderr.
    let stats: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert!(stats["RealTimeFactor"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(stats["Stages"]["Frames"].as_u64().unwrap() >= 40, "{stats}");
    // The search is in the audit trail with its video, case and matches.
    let sha = hex(&Sha256::digest(std::fs::read(&clip).unwrap()));
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    let record = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["record"].clone())
        .find(|r| r["operation"] == "StartFaceSearch")
        .expect("an audit record of the video search");
    assert_eq!(record["probe_sha256"], json!(sha));
    assert_eq!(record["case"], "CASE-9");
    assert_eq!(
        record["details"]["Video"]["Name"],
        "short_hamilton_clip.mp4"
    );
    // One candidate per matched person (track), named as in the results.
    let candidates = record["candidates"].as_array().unwrap();
    let matched: std::collections::BTreeSet<u64> = by_name
        .values()
        .flat_map(|seen| seen.iter().map(|s| s.0))
        .collect();
    assert_eq!(candidates.len(), matched.len(), "{candidates:?}");
    assert!(candidates
        .iter()
        .all(|c| by_name.contains_key(c["external_image_id"].as_str().unwrap())));
    // --tracks: one line per person.
    let (code, out, err) = kenning(
        &data,
        &[
            "video",
            "search",
            "--collection",
            "hamilton",
            "--tracks",
            clip.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<u64> = persons
        .iter()
        .map(|p| p["Person"]["Index"].as_u64().unwrap())
        .collect();
    assert_eq!(lines.len(), distinct.len());
    assert!(lines
        .iter()
        .all(|l| l["FirstSeenMillis"].as_u64().unwrap() <= l["LastSeenMillis"].as_u64().unwrap()));
    assert_eq!(
        lines.iter().filter(|l| !l["BestMatch"].is_null()).count(),
        distinct.len() - persons_without_match(persons)
    );
}

fn persons_without_match(persons: &[Value]) -> usize {
    let matched: std::collections::BTreeSet<u64> = persons
        .iter()
        .filter(|p| p.get("FaceMatches").is_some())
        .map(|p| p["Person"]["Index"].as_u64().unwrap())
        .collect();
    let all: std::collections::BTreeSet<u64> = persons
        .iter()
        .map(|p| p["Person"]["Index"].as_u64().unwrap())
        .collect();
    all.len() - matched.len()
}

fn hex(b: &[u8]) -> String {
    server::hex(b)
}

#[test]
fn cli_detects_a_street_crowd_and_tracks_it_stably() {
    let Some(video) = videos("cli_detects_a_street_crowd_and_tracks_it_stably") else {
        return;
    };
    let data = temp("cli-crowd");
    let crowd = video.join("street_crowd_1080p.mp4");
    let (code, out, err) = kenning(&data, &["video", "detect", crowd.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let faces = v["Faces"].as_array().unwrap();
    let frames: std::collections::BTreeSet<u64> = faces
        .iter()
        .map(|f| f["Timestamp"].as_u64().unwrap())
        .collect();
    // 4.2 s at 5 frames per second, several faces in each.
    assert_eq!(frames.len(), 21, "{frames:?}");
    assert!(faces.len() >= 100, "{} faces", faces.len());
    assert_eq!(v["VideoMetadata"]["FrameWidth"], 1920);
    // Tracks: against an empty collection every person is a stranger; the
    // people walking through the whole clip stay one person each.
    let (code, _, err) = kenning(&data, &["collection", "create", "empty"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = kenning(
        &data,
        &[
            "video",
            "search",
            "--collection",
            "empty",
            "--tracks",
            crowd.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let tracks: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sightings: u64 = tracks
        .iter()
        .map(|t| t["Sightings"].as_u64().unwrap())
        .sum();
    assert_eq!(sightings as usize, faces.len());
    let long = tracks
        .iter()
        .filter(|t| t["Sightings"].as_u64().unwrap() >= 15)
        .count();
    assert!(long >= 3, "{tracks:?}");
    assert!(
        tracks.len() <= 25,
        "{} persons for at most 8 faces a frame",
        tracks.len()
    );
}

/// Bad files, and a copy of the clips, in a fresh bucket directory: its
/// path, and the guard of the folder holding it and the file its symlink
/// escapes to (so both go when the test ends).
fn bucket(video: &Path) -> (PathBuf, common::TempDir) {
    let root = temp("bucket");
    let dir = root.join("bucket");
    std::fs::create_dir(&dir).unwrap();
    for f in ["short_hamilton_clip.mp4", "street_crowd_1080p.mp4"] {
        std::fs::copy(video.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("text.mp4"),
        "this is a text file, renamed\n".repeat(40),
    )
    .unwrap();
    std::fs::write(dir.join("zero.mp4"), b"").unwrap();
    let clip = std::fs::read(video.join("short_hamilton_clip.mp4")).unwrap();
    std::fs::write(dir.join("truncated.mp4"), &clip[..clip.len() / 2]).unwrap();
    let fast = dir.join("faststart.tmp.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(video.join("short_hamilton_clip.mp4"))
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&fast)
        .status()
        .unwrap();
    assert!(ok.success());
    let bytes = std::fs::read(&fast).unwrap();
    std::fs::write(
        dir.join("truncated-faststart.mp4"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    std::fs::remove_file(&fast).unwrap();
    // A 61-second video (the server allows 60) and a 3.1 MB one (it allows 3 MB).
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=32x32:r=1",
            "-t",
            "61",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .arg(dir.join("long.mkv"))
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(dir.join("big.mp4"), vec![0u8; 3_100_000]).unwrap();
    // Headers declaring 16000x16000 frames (over the service's limit) and
    // 60000x60000 (over ffmpeg's), with almost nothing after them.
    for (name, side) in [("huge.y4m", 16000), ("huge-60000.y4m", 60000)] {
        let mut y4m =
            format!("YUV4MPEG2 W{side} H{side} F25:1 Ip A1:1 C420jpeg\nFRAME\n").into_bytes();
        y4m.extend_from_slice(&[16, 16]);
        std::fs::write(dir.join(name), y4m).unwrap();
    }
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let outside = root.join("outside.mp4");
    std::fs::copy(video.join("short_hamilton_clip.mp4"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link-outside.mp4")).unwrap();
    (dir, root)
}

/// One request a webhook received: lower-cased headers and the body.
type Delivery = (Vec<(String, String)>, String);

/// A webhook receiver: every request it got.
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

fn hook() -> Hook {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/rekognition", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|h| h.0 == "content-length")
                .map_or(0, |h| h.1.parse().unwrap());
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            sink.lock()
                .unwrap()
                .push((headers, String::from_utf8(body).unwrap()));
        }
    });
    Hook { url, got }
}

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:AmazonRekognitionVideoDone";
const HOOK_SECRET: &str = "webhook-secret-for-tests";

#[test]
fn boto3_drives_video_jobs_errors_and_webhooks() {
    let Some(video) = videos("boto3_drives_video_jobs_errors_and_webhooks") else {
        return;
    };
    let root = common::root();
    let python = common::test_python();
    let (dir, _root) = bucket(&video);
    let hook = hook();
    let bucket_arg = format!("videos={}", dir.display());
    let notify_arg = format!("{TOPIC}={}", hook.url);
    let server = Server::start(&[
        "--bucket",
        &bucket_arg,
        "--notify",
        &notify_arg,
        "--notify-secret",
        HOOK_SECRET,
        "--video-max-jobs",
        "2",
        "--video-max-bytes",
        "3000000",
        "--video-max-seconds",
        "60",
    ]);
    // Each role: [access key id, secret, API token for the REST API].
    let role_keys: serde_json::Map<String, Value> = ["operator", "reviewer", "auditor"]
        .into_iter()
        .map(|role| {
            let k = server::create_key(&server.data, &["--role", role]);
            let token = server::create_token(&server.data, &k.0);
            (role.to_owned(), json!([k.0, k.1, token]))
        })
        .collect();
    let root_token = server::create_token(&server.data, KEY_ID);
    let clip = video.join("short_hamilton_clip.mp4");
    let sha = hex(&Sha256::digest(std::fs::read(&clip).unwrap()));
    let out = Command::new(&python)
        .args(["-m", "pytest", "tests/video", "-q", "-rs", "-x"])
        .current_dir(&root)
        .env("KENNING_ENDPOINT", server.endpoint())
        .env("KENNING_TEST_KEY_ID", KEY_ID)
        .env("KENNING_TEST_SECRET", SECRET)
        .env("KENNING_TEST_TOKEN", &root_token)
        .env(
            "KENNING_TEST_ROLE_KEYS",
            Value::Object(role_keys.clone()).to_string(),
        )
        .env("KENNING_TEST_REFERENCE", video.join("reference"))
        .env("KENNING_TEST_CLIP", &clip)
        .env("KENNING_TEST_HAMILTON_SHA256", &sha)
        .env("KENNING_TEST_TOPIC", TOPIC)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    server::pytest_skips(&stdout);
    assert_eq!(out.status.code(), Some(0), "pytest failed:\n{stdout}");
    // The search job's completion reached the webhook, signed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let got = hook.got.lock().unwrap().clone();
        if let Some(d) = got.into_iter().find(|(_, b)| b.contains("hamilton-search")) {
            break d;
        }
        assert!(Instant::now() < deadline, "no notification arrived");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (headers, body) = delivered;
    let h = |n: &str| headers.iter().find(|h| h.0 == n).unwrap().1.clone();
    let ts = h("x-kenning-timestamp");
    let expect = hex(&server::hmac(
        HOOK_SECRET.as_bytes(),
        format!("{ts}.{body}").as_bytes(),
    ));
    assert_eq!(h("x-kenning-signature"), format!("sha256={expect}"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Status"], "SUCCEEDED");
    assert_eq!(v["API"], "FACE_SEARCH");
    assert_eq!(v["Video"]["S3ObjectName"], "short_hamilton_clip.mp4");
    assert_eq!(v["Video"]["S3Bucket"], "videos");
    assert!(v["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    listings_go_through_the_operations(&server, &root_token, &Value::Object(role_keys));
    assert!(server.terminate().success());
}

/// ListVideoJobs and ListVideos (the console's video page lists through
/// them): an admin sees every job, an operator its own, a reviewer is
/// refused and the refusal is in the audit trail; MaxResults is bounded.
fn listings_go_through_the_operations(server: &Server, root_token: &str, roles: &Value) {
    let get = |token: &str, path: &str| {
        let (status, _, body) = server::http(
            &server.addr,
            "GET",
            path,
            &[("authorization", format!("Bearer {token}"))],
            b"",
        );
        (status, server::json(&body))
    };
    let (status, all) = get(root_token, "/v1/video/jobs");
    assert_eq!(status, 200, "{all}");
    let jobs = all["Jobs"].as_array().unwrap();
    let search = jobs
        .iter()
        .find(|j| j["Operation"] == "StartFaceSearch" && j["JobStatus"] == "SUCCEEDED")
        .unwrap_or_else(|| panic!("no finished search among {all}"));
    assert_eq!(search["Video"]["Name"], "short_hamilton_clip.mp4");
    let id = search["JobId"].as_str().unwrap();
    let (status, one) = get(root_token, &format!("/v1/video/jobs?JobId={id}"));
    assert_eq!((status, one["Jobs"].as_array().unwrap().len()), (200, 1));
    let operator = roles["operator"][0].as_str().unwrap();
    let (status, own) = get(roles["operator"][2].as_str().unwrap(), "/v1/video/jobs");
    assert_eq!(status, 200, "{own}");
    assert!(
        own["Jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["StartedBy"] == operator),
        "{own}"
    );
    if search["StartedBy"] != operator {
        let path = format!("/v1/video/jobs?JobId={id}");
        let (status, other) = get(roles["operator"][2].as_str().unwrap(), &path);
        assert_eq!((status, other["Jobs"].clone()), (200, json!([])));
    }
    let (status, listed) = get(root_token, "/v1/buckets");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["Buckets"][0]["Name"], "videos");
    let names = listed["Buckets"][0]["Videos"].as_array().unwrap();
    assert!(
        names.contains(&json!("short_hamilton_clip.mp4")),
        "{listed}"
    );
    let (status, first) = get(root_token, "/v1/buckets?MaxResults=1");
    assert_eq!(
        (
            status,
            first["Buckets"][0]["Videos"].as_array().unwrap().len()
        ),
        (200, 1)
    );
    let (status, bad) = get(root_token, "/v1/buckets?MaxResults=0");
    assert_eq!(
        (status, bad["__type"].clone()),
        (400, json!("InvalidParameterException"))
    );
    let reviewer = roles["reviewer"][0].as_str().unwrap();
    for path in ["/v1/video/jobs", "/v1/buckets"] {
        let (status, refused) = get(roles["reviewer"][2].as_str().unwrap(), path);
        assert_eq!(
            (status, refused["__type"].clone()),
            (403, json!("AccessDeniedException"))
        );
    }
    let audit = std::fs::read_to_string(server.data.join("audit/audit.jsonl")).unwrap();
    for op in ["ListVideoJobs", "ListVideos"] {
        assert!(
            audit.lines().any(|l| {
                let r = &server::json(l)["record"];
                r["operation"] == op
                    && r["access_key"] == reviewer
                    && r["outcome"] == "AccessDeniedException"
            }),
            "the reviewer's refused {op} is not in the audit trail"
        );
    }
}

#[test]
fn a_server_killed_mid_job_resumes_it_after_restart() {
    let Some(video) = videos("a_server_killed_mid_job_resumes_it_after_restart") else {
        return;
    };
    let dir = temp("kill-bucket");
    std::fs::copy(video.join("street_crowd_1080p.mp4"), dir.join("crowd.mp4")).unwrap();
    let data = temp("kill-data");
    let bucket_arg = format!("cams={}", dir.display());
    let server = Server::start_in(data.path_buf(), &["--bucket", &bucket_arg]);
    let addr = server.addr.clone();
    let auth = [
        (
            "authorization",
            format!("Bearer {}", server::create_token(&data, KEY_ID)),
        ),
        ("content-type", "application/json".to_owned()),
    ];
    let start = |addr: &str| {
        let (status, _, body) = server::http(
            addr,
            "POST",
            "/v1/video/face-detection",
            &auth,
            br#"{"Video":{"S3Object":{"Bucket":"cams","Name":"crowd.mp4"}},"ClientRequestToken":"kill-test"}"#,
        );
        assert_eq!(status, 200, "{body}");
        server::json(&body)["JobId"].as_str().unwrap().to_owned()
    };
    let job = start(&addr);
    let get = |addr: &str| {
        let (status, _, body) = server::http(
            addr,
            "GET",
            &format!("/v1/video/face-detection/{job}"),
            &auth,
            b"",
        );
        assert_eq!(status, 200, "{body}");
        server::json(&body)
    };
    assert_eq!(get(&addr)["JobStatus"], "IN_PROGRESS");
    // SIGKILL while the job runs (it takes seconds), then start again.
    std::thread::sleep(Duration::from_millis(300));
    drop(server);
    let server = Server::start_in(data.path_buf(), &["--bucket", &bucket_arg]);
    let addr = server.addr.clone();
    // The same token still names the same job.
    assert_eq!(start(&addr), job);
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let v = get(&addr);
        if v["JobStatus"] != "IN_PROGRESS" {
            break v;
        }
        assert!(Instant::now() < deadline, "job stuck IN_PROGRESS: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["JobStatus"], "SUCCEEDED", "{done}");
    // Nothing half-written: every sampled frame once, in order.
    let faces = done["Faces"].as_array().unwrap();
    let stamps: Vec<u64> = faces
        .iter()
        .map(|f| f["Timestamp"].as_u64().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_unstable();
    assert_eq!(stamps, sorted);
    let mut frames = stamps.clone();
    frames.dedup();
    assert_eq!(frames.len(), 21, "{frames:?}");
    assert!(server.terminate().success());
}
