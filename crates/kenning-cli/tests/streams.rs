//! Live stream processors end to end: `kenning serve --enable-streams` with
//! real ffmpeg sources on loopback and real models, driven by boto3
//! (tests/streams); then the server is killed with SIGKILL and restarted
//! (each processor comes back as it was stored), the audit trail and the
//! accountability report are checked, and the data directory, the file
//! outputs and the server's log are searched for the faces that matched
//! nothing.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common;
use crate::server::{self, Server, KEY_ID, SECRET};

fn temp(name: &str) -> common::TempDir {
    common::temp_dir(&format!("streams-{name}"))
}

#[test]
fn stream_operations_are_refused_unless_enabled() {
    let server = Server::start(&[]);
    let (status, _, body) = server::signed(
        &server.addr,
        "ListStreamProcessors",
        "{}",
        (KEY_ID, SECRET),
        server::now(),
    );
    assert_eq!(status, 403, "{body}");
    let v = server::json(&body);
    assert_eq!(v["__type"], "AccessDeniedException");
    assert!(
        v["message"].as_str().unwrap().contains("--enable-streams"),
        "{v}"
    );
    // The event feeds too.
    let token = server::create_token(&server.data, KEY_ID);
    let (status, _, body) = server::http(
        &server.addr,
        "GET",
        "/v1/stream-outputs/matches/events",
        &[("authorization", format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDeniedException"), "{body}");
    assert!(server.terminate().success());
}

/// The key stream webhooks are signed with.
const NOTIFY_SECRET: &str = "stream-webhook-test-secret";

/// Most bytes of a file output before it is rotated, in the test.
const FILE_MAX_BYTES: u64 = 20_000;

/// `kenning serve` with its log (RUST_LOG=info) going to `log`.
struct LoggedServer {
    child: common::KillOnDrop,
    addr: String,
}

impl LoggedServer {
    fn start(data: &Path, log: &Path, extra: &[String]) -> Self {
        let mut child = Command::new(common::kenning_bin())
            .arg("--models")
            .arg(common::models())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env("KENNING_ACCESS_KEY_ID", KEY_ID)
            .env("KENNING_SECRET_ACCESS_KEY", SECRET)
            .env("KENNING_NOTIFY_SECRET", NOTIFY_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = first.trim().rsplit("://").next().unwrap().to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "{first:?}");
        Self {
            child: common::KillOnDrop(child),
            addr,
        }
    }

    /// Kills it with SIGKILL, as a crash would.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn terminate(mut self) -> bool {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        ok && self.child.wait().unwrap().success()
    }
}

/// The niceness of each ffmpeg process `pid` started (Linux /proc).
fn decoder_niceness(pid: u32) -> Vec<i64> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Fields after the parenthesised name: state is the 3rd, nice the 19th.
            let nice = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(16))
                .and_then(|n| n.parse().ok());
            if let (true, Some(n)) = (comm.trim() == "ffmpeg", nice) {
                out.push(n);
            }
        }
    }
    out
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// The first of `faces` that an embedding-sized run of numbers in `bytes`
/// comes closer to (cosine) than that face's bar, with how close: runs as
/// raw little-endian f32 at every byte offset, and as decimal numbers in
/// text.
fn found(bytes: &[u8], faces: &[Vec<f32>], bars: &[f32]) -> Option<(usize, f32)> {
    let dim = faces[0].len();
    let mut hit = None;
    let mut consider = |window: &[f32]| {
        for (i, f) in faces.iter().enumerate() {
            let c = cosine(window, f);
            if c > bars[i] && hit.is_none() {
                hit = Some((i, c));
            }
        }
    };
    let plausible = |x: f32| x.is_finite() && x.abs() < 4.0 && x.abs() > 1e-7;
    let mut window = vec![0f32; dim];
    for start in 0..bytes.len().saturating_sub(dim * 4 - 1) {
        let at = |i: usize| {
            f32::from_le_bytes(bytes[start + i * 4..start + i * 4 + 4].try_into().unwrap())
        };
        if !plausible(at(0)) || !plausible(at(dim - 1)) {
            continue;
        }
        let mut ok = true;
        for (i, w) in window.iter_mut().enumerate() {
            *w = at(i);
            if !w.is_finite() || w.abs() > 4.0 {
                ok = false;
                break;
            }
        }
        if ok {
            consider(&window);
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let numbers: Vec<f32> = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .filter_map(|t| t.parse::<f32>().ok())
        .collect();
    for w in numbers.windows(dim) {
        consider(w);
    }
    hit
}

/// The embeddings of the faces in frames of `video` (at the given seconds).
fn faces_in(video: &Path, seconds: &[f64], scratch: &Path) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for s in seconds {
        let png = scratch.join(format!("frame-{s}.png"));
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-ss", &s.to_string(), "-i"])
            .arg(video)
            .args(["-frames:v", "1"])
            .arg(&png)
            .status()
            .unwrap();
        assert!(ok.success());
        let image = common::load(&png);
        std::fs::remove_file(&png).unwrap();
        for f in common::sface().analyze(&image, false).unwrap() {
            out.push(f.embedding.unwrap());
        }
    }
    out
}

#[test]
fn boto3_drives_live_stream_processors_and_nothing_of_strangers_is_kept() {
    let Some(data_root) = common::data("boto3_drives_live_stream_processors") else {
        return;
    };
    let video = data_root.join("video");
    let root = common::root();
    let python = common::test_python();
    let bucket = temp("bucket");
    let clip = bucket.join("hamilton.mp4");
    let crowd = bucket.join("crowd.mp4");
    std::fs::copy(video.join("short_hamilton_clip.mp4"), &clip).unwrap();
    std::fs::copy(video.join("street_crowd_1080p.mp4"), &crowd).unwrap();
    let out = temp("out");
    let data = temp("data");
    let log = out.join("server.log");
    let port = free_port();
    let [junk, hls, mjpeg, rtsp, hook] = [(); 5].map(|()| free_port());
    let hook_file = out.join("hooked.jsonl");
    let sources = [
        ("cam", format!("http://127.0.0.1:{port}/cam.ts")),
        ("door", format!("{}#loop", clip.display())),
        ("crowd", format!("{}#loop", crowd.display())),
        ("junk", format!("http://127.0.0.1:{junk}/junk.ts")),
        ("hls", format!("http://127.0.0.1:{hls}/live.m3u8")),
        ("mjpeg", format!("http://127.0.0.1:{mjpeg}/cam.mjpg")),
        ("rtsp", format!("rtsp://127.0.0.1:{rtsp}/cam")),
        ("hook", format!("{}#loop", clip.display())),
        ("cased", format!("{}#loop", clip.display())),
    ];
    let outputs = [
        ("matches", "sse".to_owned()),
        ("matches", out.join("matches.jsonl").display().to_string()),
        ("crowd-out", "sse".into()),
        ("crowd-out", out.join("crowd.jsonl").display().to_string()),
        ("door-out", "sse".into()),
        ("junk-out", "sse".into()),
        ("hls-out", "sse".into()),
        ("mjpeg-out", "sse".into()),
        ("rtsp-out", "sse".into()),
        (
            "hooked",
            format!("http://127.0.0.1:{hook}/hook?receiver=test"),
        ),
        ("hooked", hook_file.display().to_string()),
        ("cased-out", "sse".into()),
    ];
    let mut args: Vec<String> = [
        "--enable-streams".to_owned(),
        "--bucket".into(),
        format!("cams={}", bucket.display()),
        "--stream-queue".into(),
        "4".into(),
        "--stream-file-max-bytes".into(),
        FILE_MAX_BYTES.to_string(),
        "--stream-file-keep".into(),
        "2".into(),
    ]
    .into();
    for (flag, specs) in [
        ("--stream-source", &sources[..]),
        ("--stream-output", &outputs[..]),
    ] {
        for (name, to) in specs {
            args.extend([flag.to_owned(), format!("{name}={to}")]);
        }
    }
    let server = LoggedServer::start(&data, &log, &args);
    let operator = server::create_key(&data, &["--role", "operator"]);
    let auditor = server::create_key(&data, &["--role", "auditor"]);
    let setup = serde_json::json!({
        "junk_port": junk, "hls_port": hls, "mjpeg_port": mjpeg, "rtsp_port": rtsp,
        "hook_port": hook,
        "hook_file": hook_file, "file_max_bytes": FILE_MAX_BYTES,
        "auditor": [auditor.0, auditor.1],
    });
    let token = server::create_token(&data, KEY_ID);
    let result = Command::new(&python)
        .args(["-m", "pytest", "tests/streams", "-q", "-rs", "-x"])
        .current_dir(&root)
        .env("KENNING_ENDPOINT", format!("http://{}", server.addr))
        .env("KENNING_TEST_KEY_ID", KEY_ID)
        .env("KENNING_TEST_SECRET", SECRET)
        .env("KENNING_TEST_TOKEN", &token)
        .env(
            "KENNING_TEST_OPERATOR",
            serde_json::json!([operator.0, operator.1]).to_string(),
        )
        .env("KENNING_TEST_REFERENCE", video.join("reference"))
        .env("KENNING_TEST_CLIP", &clip)
        .env("KENNING_TEST_CAM_PORT", port.to_string())
        .env("KENNING_TEST_STREAMS", setup.to_string())
        .env("KENNING_NOTIFY_SECRET", NOTIFY_SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(result.status.code(), Some(0), "pytest failed:\n{stdout}");

    // A crash (SIGKILL) with resume-proc running, junk-proc FAILED and
    // reconnecting, crowd-proc stopped: each comes back as it was.
    server.crash();
    let server = LoggedServer::start(&data, &log, &args);
    let call = |op: &str, name: &str| {
        let (status, _, body) = server::signed(
            &server.addr,
            op,
            &serde_json::json!({ "Name": name }).to_string(),
            (KEY_ID, SECRET),
            server::now(),
        );
        assert_eq!(status, 200, "{op}: {body}");
        server::json(&body)
    };
    let describe = |name: &str| call("DescribeStreamProcessor", name);
    let records = |name: &str| {
        let (_, _, text) = server::http(&server.addr, "GET", "/metrics", &[], b"");
        let prefix = format!("kenning_stream_records_total{{processor=\"{name}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse::<f64>().ok()))
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let d = describe("resume-proc");
        if d["Status"] == "RUNNING" && records("resume-proc") > 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not resumed: {d}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let d = describe("junk-proc");
        let message = d["StatusMessage"].as_str().unwrap_or_default();
        if d["Status"] == "FAILED" && message.contains("reconnecting") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "junk-proc: {d}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(describe("crowd-proc")["Status"], "STOPPED");
    // Processors decode at lower priority than requests: their ffmpeg
    // children inherit the processor thread's niceness.
    let niceness = decoder_niceness(server.child.id());
    assert!(!niceness.is_empty(), "no ffmpeg child of the server");
    assert!(niceness.iter().all(|&n| n == 10), "{niceness:?}");
    for name in ["resume-proc", "junk-proc"] {
        call("StopStreamProcessor", name);
    }
    assert!(server.terminate(), "the server did not stop cleanly");
    let verify = Command::new(common::kenning_bin())
        .arg("--data")
        .arg(&data)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "the audit chain after the crash: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The file outputs hold matched faces only, in record shape.
    let rotated = |file: &Path| {
        let mut text = String::new();
        for n in ["", ".1", ".2"] {
            let p = PathBuf::from(format!("{}{n}", file.display()));
            text += &std::fs::read_to_string(p).unwrap_or_default();
        }
        text
    };
    let lines = rotated(&out.join("matches.jsonl")) + &rotated(&hook_file);
    let records: Vec<Value> = lines.lines().map(server::json).collect();
    assert!(!records.is_empty());
    for r in &records {
        for f in r["FaceSearchResponse"].as_array().unwrap() {
            assert!(!f["MatchedFaces"].as_array().unwrap().is_empty(), "{r}");
        }
    }
    // The crowd matched nobody: its file output never got a line.
    let crowd_file = std::fs::read_to_string(out.join("crowd.jsonl")).unwrap_or_default();
    assert_eq!(crowd_file, "");
    // Every match, and the Create/Start/Stop/Delete calls, are audited.
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    let audited: Vec<Value> = audit
        .lines()
        .map(|l| server::json(l)["record"].clone())
        .collect();
    let searches: Vec<&Value> = audited
        .iter()
        .filter(|r| r["operation"] == "StreamFaceSearch" && r["collection"] == "hamilton")
        .collect();
    assert!(!searches.is_empty());
    for s in &searches {
        let processor = s["details"]["StreamProcessor"].as_str().unwrap();
        assert!(
            [
                "cam-proc",
                "hls-proc",
                "mjpeg-proc",
                "rtsp-proc",
                "hook-proc",
                "resume-proc",
                "door-proc"
            ]
            .contains(&processor),
            "{s}"
        );
        assert_eq!(s["threshold"], 80.0, "{s}");
        for c in s["candidates"].as_array().unwrap() {
            assert!(c["similarity"].as_f64().unwrap() >= 80.0, "{s}");
        }
    }
    // The accountability report counts them as searches, as the console's
    // report does (it reads the same counts).
    let report = |collection: &str| {
        let out = Command::new(common::kenning_bin())
            .arg("--data")
            .arg(&data)
            .args(["report", "--from", "2000-01-01", "--to", "2100-01-01"])
            .args(["--format", "json", "--collection", collection])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        server::json(&String::from_utf8_lossy(&out.stdout))["Totals"].clone()
    };
    let totals = report("hamilton");
    assert_eq!(totals["Searches"], searches.len(), "{totals}");
    let candidates: usize = searches
        .iter()
        .map(|s| s["candidates"].as_array().unwrap().len())
        .sum();
    assert_eq!(totals["CandidatesReturned"], candidates, "{totals}");
    let watched = report("watch");
    assert!(watched["Searches"].as_u64().unwrap() > 0, "{watched}");
    assert!(
        watched["CandidatesQueuedForReview"].as_u64().unwrap() > 0,
        "{watched}"
    );
    for op in [
        "CreateStreamProcessor",
        "StartStreamProcessor",
        "StopStreamProcessor",
        "DeleteStreamProcessor",
    ] {
        assert!(
            audited
                .iter()
                .any(|r| r["operation"] == op && r["access_key"] == KEY_ID),
            "{op} is not audited"
        );
    }

    // Nothing of the strangers anywhere: no embedding of a crowd face in the
    // data directory, the outputs or the log. The same search finds the
    // reference faces the collection keeps, so it would find a stranger's.
    let scratch = temp("scratch");
    let strangers = faces_in(&crowd, &[0.5, 1.5, 2.5, 3.5], &scratch);
    assert!(strangers.len() >= 10, "{} crowd faces", strangers.len());
    let reference = |name: &str| {
        let image = common::load(&video.join("reference").join(name));
        common::sface().analyze(&image, true).unwrap()[0]
            .embedding
            .clone()
            .unwrap()
    };
    let refs = [
        reference("lin-manuel-miranda.png"),
        reference("alex-lacamoire.png"),
    ];
    // The collection keeps the reference faces, and some strangers are
    // close to them in the recogniser's space: a stranger's embedding is
    // one that comes clearly closer to the stranger than any reference does.
    let bars: Vec<f32> = strangers
        .iter()
        .map(|s| refs.iter().map(|r| cosine(s, r)).fold(0.9, f32::max) + 0.03)
        .collect();
    let everything: Vec<PathBuf> = files(&data).into_iter().chain(files(&out)).collect();
    let mut kept_refs = false;
    for f in &everything {
        let bytes = std::fs::read(f).unwrap();
        let hit = found(&bytes, &strangers, &bars);
        assert!(
            hit.is_none(),
            "{} holds a stranger's face: {hit:?}",
            f.display()
        );
        for magic in [&b"\xff\xd8\xff"[..], b"\x89PNG", b"P6\n"] {
            assert!(!bytes.starts_with(magic), "{} is an image", f.display());
        }
        kept_refs |= found(&bytes, &refs, &[0.99, 0.99]).is_some();
    }
    assert!(
        kept_refs,
        "the scan misses the reference faces the collection keeps"
    );
}
