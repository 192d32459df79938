//! Live stream processors end to end: `kenning serve --enable-streams` with
//! real ffmpeg sources on loopback and real models, driven by boto3
//! (tests/streams); afterwards the data directory, the file outputs and the
//! server's log are searched for the faces that matched nothing.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common;
use crate::server::{self, Server, KEY_ID, SECRET};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kenning-streams-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

/// `kenning serve` with its log (RUST_LOG=info) going to `log`.
struct LoggedServer {
    child: Child,
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
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = first.trim().rsplit("://").next().unwrap().to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "{first:?}");
        Self { child, addr }
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

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
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
    let args: Vec<String> = [
        "--enable-streams".to_owned(),
        "--bucket".into(),
        format!("cams={}", bucket.display()),
        "--stream-source".into(),
        format!("cam=http://127.0.0.1:{port}/cam.ts"),
        "--stream-source".into(),
        format!("door={}#loop", clip.display()),
        "--stream-source".into(),
        format!("crowd={}#loop", crowd.display()),
        "--stream-output".into(),
        "matches=sse".into(),
        "--stream-output".into(),
        format!("matches={}", out.join("matches.jsonl").display()),
        "--stream-output".into(),
        "crowd-out=sse".into(),
        "--stream-output".into(),
        format!("crowd-out={}", out.join("crowd.jsonl").display()),
        "--stream-output".into(),
        "door-out=sse".into(),
    ]
    .into();
    let server = LoggedServer::start(&data, &log, &args);
    let operator = server::create_key(&data, &["--role", "operator"]);
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
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(result.status.code(), Some(0), "pytest failed:\n{stdout}");
    assert!(server.terminate(), "the server did not stop cleanly");

    // The file output holds matched faces only, in record shape.
    let lines = std::fs::read_to_string(out.join("matches.jsonl")).unwrap();
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
        .filter(|r| r["operation"] == "StreamFaceSearch")
        .collect();
    assert!(!searches.is_empty());
    for s in &searches {
        assert_eq!(s["details"]["StreamProcessor"], "cam-proc", "{s}");
        assert_eq!(s["threshold"], 80.0, "{s}");
        for c in s["candidates"].as_array().unwrap() {
            assert!(c["similarity"].as_f64().unwrap() >= 80.0, "{s}");
        }
    }
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
    for d in [bucket, out, data, scratch] {
        let _ = std::fs::remove_dir_all(d);
    }
}
