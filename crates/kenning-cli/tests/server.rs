//! `kenning serve`: the Rekognition wire protocol driven by boto3 and the
//! aws CLI (tests/python), SigV4 edge cases, keys, REST, OpenAPI, health,
//! metrics and graceful shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::common;

pub(crate) const KEY_ID: &str = "AKKNINTEGRATIONTEST1";
pub(crate) const SECRET: &str = "integration-test-secret-0123456789";

/// A running `kenning serve` with a temporary data directory.
pub(crate) struct Server {
    child: common::KillOnDrop,
    pub(crate) addr: String,
    pub(crate) data: PathBuf,
    /// The data directory when [`Server::start`] made it: removed after the
    /// process is killed (fields drop after `Drop::drop`).
    _owned: Option<common::TempDir>,
}

impl Server {
    /// `kenning serve EXTRA` on a fresh data directory that goes with it.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let data = common::temp_path("serve");
        let mut server = Self::start_in(data.path_buf(), extra);
        server._owned = Some(data);
        server
    }

    pub(crate) fn start_in(data: PathBuf, extra: &[&str]) -> Self {
        Self::start_with(data, extra, |_| {})
    }

    /// Starts `kenning serve --data DATA EXTRA` (on 127.0.0.1:0 unless EXTRA
    /// has --listen), with `configure` applied to the command last.
    pub(crate) fn start_with(
        data: PathBuf,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let mut cmd = Command::new(common::kenning_bin());
        cmd.args(["--models"])
            .arg(common::models())
            .args(["serve", "--data"])
            .arg(&data)
            .args(extra)
            .env("KENNING_ACCESS_KEY_ID", KEY_ID)
            .env("KENNING_SECRET_ACCESS_KEY", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("starting kenning serve");
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
        // Keep draining stdout so the server never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let mut addr: std::net::SocketAddr = first
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no URL in {first:?}"));
        // Listening on every address: reach it over loopback.
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        assert!(addr.ip().is_loopback(), "unexpected first line {first:?}");
        let addr = addr.to_string();
        Self {
            child: common::KillOnDrop(child),
            addr,
            data,
            _owned: None,
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's process id (for signals).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status; the data directory stays unless
    /// [`Server::start`] made it.
    pub(crate) fn stop(self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        self.wait()
    }

    /// Waits for the server to exit (after a signal sent elsewhere).
    pub(crate) fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// SIGTERM, then the exit status; the data directory is removed.
    pub(crate) fn terminate(self) -> std::process::ExitStatus {
        let data = self.data.clone();
        let status = self.stop();
        common::remove_tree(&data);
        status
    }
}

/// An HTTP response: status, lower-cased headers, body.
pub(crate) type Response = (u16, Vec<(String, String)>, String);

/// A raw HTTP/1.1 exchange.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Response {
    try_http(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// As [`http`], with a refused, reset or unanswered exchange as an error
/// (for clients that retry elsewhere).
pub(crate) fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("no HTTP status line in {head:?}"),
            )
        })?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, body.to_owned()))
}

pub(crate) fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

pub(crate) fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

fn amz_date(t: u64) -> String {
    kenning_server::sigv4::format_amz_date(t as i64).unwrap()
}

/// A SigV4-signed AWS JSON 1.1 request at time `t`.
pub(crate) fn signed(addr: &str, op: &str, body: &str, key: (&str, &str), t: u64) -> Response {
    signed_with(addr, op, body, key, t, &[])
}

/// [`signed`] with more headers (lower-case names), signed like the rest.
pub(crate) fn signed_with(
    addr: &str,
    op: &str,
    body: &str,
    key: (&str, &str),
    t: u64,
    extra: &[(&str, String)],
) -> Response {
    try_signed(addr, op, body, key, t, extra).unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// As [`signed_with`], with a failed exchange as an error.
pub(crate) fn try_signed(
    addr: &str,
    op: &str,
    body: &str,
    key: (&str, &str),
    t: u64,
    extra: &[(&str, String)],
) -> std::io::Result<Response> {
    let date = amz_date(t);
    let service = if kenning_accountability::KENNING_OPERATIONS.contains(&op) {
        "KenningService"
    } else {
        "RekognitionService"
    };
    let target = format!("{service}.{op}");
    // Canonical headers are sorted by name; every header sent is signed.
    let mut headers: Vec<(&str, String)> = vec![
        ("content-type", "application/x-amz-json-1.1".into()),
        ("host", addr.to_owned()),
        ("x-amz-date", date.clone()),
        ("x-amz-target", target),
    ];
    headers.extend(extra.iter().cloned());
    headers.sort();
    let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let names = names.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{names}\n{}",
        hex(&Sha256::digest(body.as_bytes()))
    );
    let scope = format!("{}/eu-north-1/rekognition/aws4_request", &date[..8]);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{}", key.1).as_bytes(), &date.as_bytes()[..8]);
    for part in ["eu-north-1", "rekognition", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let sig = hex(&hmac(&k, sts.as_bytes()));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={sig}",
        key.0
    );
    // try_http() sends host itself.
    headers.retain(|(k, _)| *k != "host");
    headers.push(("authorization", auth));
    try_http(addr, "POST", "/", &headers, body.as_bytes())
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Counts each skip pytest reported (run with -rs: "SKIPPED [n] place:
/// reason") as a skip of the suite, which fails it under CI.
pub(crate) fn pytest_skips(stdout: &str) {
    for line in stdout.lines() {
        let Some((count, place, why)) = line
            .strip_prefix("SKIPPED [")
            .and_then(|rest| rest.split_once("] "))
            .and_then(|(count, rest)| Some((count, rest.split_once(": ")?)))
            .map(|(count, (place, why))| (count, place, why))
        else {
            continue;
        };
        for _ in 0..count.parse().unwrap_or(1) {
            kenning_testdata::skip(&format!("pytest {place}"), why);
        }
    }
}

/// `kenning keys create ARGS` on `data`: (access key id, secret).
pub(crate) fn create_key(data: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(common::kenning_bin())
        .args(["keys", "create", "--data"])
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k = json(&String::from_utf8_lossy(&out.stdout));
    (
        k["AccessKeyId"].as_str().unwrap().to_owned(),
        k["SecretAccessKey"].as_str().unwrap().to_owned(),
    )
}

/// `kenning keys token create KEY_ID` on `data` (the root key from the
/// environment included): the token.
pub(crate) fn create_token(data: &Path, access_key_id: &str) -> String {
    let out = Command::new(common::kenning_bin())
        .args(["keys", "token", "create", access_key_id, "--data"])
        .arg(data)
        .env("KENNING_ACCESS_KEY_ID", KEY_ID)
        .env("KENNING_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))["Token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A request body for `op` that names collection `coll` and is valid enough
/// to pass authorisation; it never changes anything that exists.
fn harmless_body(op: &str, coll: &str, role: &str) -> String {
    let fake_face = "11111111-2222-4333-8444-555555555555";
    let image = serde_json::json!({ "Bytes": "bm90IGFuIGltYWdl" });
    let video = serde_json::json!({ "S3Object": { "Bucket": "nobucket", "Name": "v.mp4" } });
    let v = match op {
        "DetectFaces" => serde_json::json!({ "Image": image }),
        "CompareFaces" => serde_json::json!({ "SourceImage": image, "TargetImage": image }),
        "CreateCollection" => serde_json::json!({ "CollectionId": format!("new-{role}") }),
        "DeleteCollection" => serde_json::json!({ "CollectionId": format!("gone-{role}") }),
        "ListCollections" | "VerifyAudit" | "RunRetention" | "ListVideoJobs" | "ListVideos" => {
            serde_json::json!({})
        }
        "ExportAudit" => serde_json::json!({ "MaxResults": 1 }),
        "ListReviewItems" => serde_json::json!({ "CollectionId": coll }),
        "DecideReviewItem" => {
            serde_json::json!({ "ReviewId": fake_face, "Decision": "REJECT", "Comment": "x" })
        }
        "IndexFaces" | "SearchFacesByImage" | "SearchUsersByImage" => {
            serde_json::json!({ "CollectionId": coll, "Image": image })
        }
        "DeleteFaces" => serde_json::json!({ "CollectionId": coll, "FaceIds": [fake_face] }),
        "SearchFaces" => serde_json::json!({ "CollectionId": coll, "FaceId": fake_face }),
        "SearchUsers" => serde_json::json!({ "CollectionId": coll, "UserId": "nobody" }),
        "CreateUser" => serde_json::json!({ "CollectionId": coll, "UserId": format!("u-{role}") }),
        "DeleteUser" => serde_json::json!({ "CollectionId": coll, "UserId": "nobody" }),
        "AssociateFaces" | "DisassociateFaces" => {
            serde_json::json!({ "CollectionId": coll, "UserId": "nobody", "FaceIds": [fake_face] })
        }
        "PutCollectionPolicy" => serde_json::json!({ "CollectionId": coll, "Policy": {} }),
        "StartFaceDetection" => serde_json::json!({ "Video": video }),
        "StartFaceSearch" => serde_json::json!({ "Video": video, "CollectionId": coll }),
        "GetFaceDetection" | "GetFaceSearch" => serde_json::json!({ "JobId": "nojob" }),
        "GetReviewProbe" => serde_json::json!({ "ReviewId": fake_face }),
        "GetEnrolmentImage" => serde_json::json!({ "CollectionId": coll, "FaceId": fake_face }),
        "RevokeAccessKey" => serde_json::json!({ "AccessKeyId": "AKNOBODYNOBODY000000" }),
        "PutEvalReport" | "DeleteEvalReport" => serde_json::json!({ "Name": "nothing" }),
        _ => serde_json::json!({ "CollectionId": coll }),
    };
    v.to_string()
}

/// What a role allowed to run `op` gets for [`harmless_body`]: (status,
/// __type, empty on success). Made-up images are not images, made-up ids
/// name nothing, and the server has no buckets for videos.
fn role_answer(op: &str) -> (u16, &'static str) {
    match op {
        "DetectFaces" | "CompareFaces" | "IndexFaces" | "SearchFacesByImage"
        | "SearchUsersByImage" => (400, "InvalidImageFormatException"),
        "DeleteCollection" | "DecideReviewItem" | "SearchFaces" | "SearchUsers" | "DeleteUser"
        | "AssociateFaces" | "DisassociateFaces" | "GetFaceDetection" | "GetFaceSearch"
        | "GetReviewProbe" | "GetEnrolmentImage" | "RevokeAccessKey" | "DeleteEvalReport" => {
            (400, "ResourceNotFoundException")
        }
        // Without From/To, and without the Role a new key needs; a collection
        // without faces is too small to calibrate on itself.
        // PutEvalReport without a report.
        "GetAccountabilityReport" | "CreateAccessKey" | "CalibrateCollection" | "PutEvalReport" => {
            (400, "InvalidParameterException")
        }
        "StartFaceDetection" | "StartFaceSearch" => (400, "InvalidS3ObjectException"),
        // Over JSON it only says where videos go: PUT /v1/buckets/...
        "UploadVideo" => (400, "InvalidParameterException"),
        // Without a Name; stream outputs are read with GET (SSE).
        "CreateStreamProcessor"
        | "StartStreamProcessor"
        | "StopStreamProcessor"
        | "DescribeStreamProcessor"
        | "DeleteStreamProcessor"
        | "UpdateStreamProcessor"
        | "ReadStreamOutput" => (400, "InvalidParameterException"),
        _ => (200, ""),
    }
}

#[test]
fn role_matrix_over_every_operation() {
    use kenning_accountability::{Role, MATRIX};
    // Streams on, so their operations answer by role too.
    let server = Server::start(&["--enable-streams"]);
    let addr = server.addr.clone();
    let root = (KEY_ID, SECRET);
    for c in ["mine", "theirs"] {
        let body = format!(r#"{{"CollectionId":"{c}"}}"#);
        assert_eq!(signed(&addr, "CreateCollection", &body, root, now()).0, 200);
    }
    let keys: Vec<(Role, (String, String))> = Role::ALL
        .into_iter()
        .map(|r| (r, create_key(&server.data, &["--role", r.as_str()])))
        .collect();
    // Every operation the service has is in the matrix, and every cell holds.
    let served: Vec<&str> = kenning_api::OPERATIONS
        .iter()
        .chain(kenning_accountability::KENNING_OPERATIONS)
        .copied()
        .collect();
    assert_eq!(served.len(), MATRIX.len());
    for op in &served {
        let allowed = MATRIX.iter().find(|(o, _)| o == op).unwrap().1;
        for (role, key) in &keys {
            let body = harmless_body(op, "mine", role.as_str());
            let (status, _, text) = signed(&addr, op, &body, (&key.0, &key.1), now());
            let kind = json(&text)["__type"].as_str().unwrap_or("").to_owned();
            if allowed.contains(role) {
                // Allowed: exactly what the harmless request earns.
                assert_eq!(
                    (status, kind.as_str()),
                    role_answer(op),
                    "{op} as {role}: {text}"
                );
            } else {
                assert_eq!(
                    (status, kind.as_str()),
                    (403, "AccessDeniedException"),
                    "{op} as {role}: {text}"
                );
                assert!(text.contains(&format!("{role} role")), "{text}");
            }
        }
    }
    // Scope: an operator key for `mine` neither sees nor touches `theirs`,
    // and a key scoped to one operation runs only that one.
    let scoped = create_key(
        &server.data,
        &["--role", "operator", "--collections", "mine"],
    );
    let scoped = (scoped.0.as_str(), scoped.1.as_str());
    let (_, _, text) = signed(&addr, "ListCollections", "{}", scoped, now());
    assert_eq!(json(&text)["CollectionIds"], serde_json::json!(["mine"]));
    let (status, _, text) = signed(
        &addr,
        "DescribeCollection",
        r#"{"CollectionId":"theirs"}"#,
        scoped,
        now(),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not scoped to collection theirs"), "{text}");
    let one_op = create_key(
        &server.data,
        &["--role", "operator", "--operations", "SearchFaces"],
    );
    let (_, _, text) = signed(
        &addr,
        "DescribeCollection",
        r#"{"CollectionId":"mine"}"#,
        (&one_op.0, &one_op.1),
        now(),
    );
    assert!(
        text.contains("not scoped to run DescribeCollection"),
        "{text}"
    );
    // A key cannot be scoped beyond its role.
    let out = Command::new(common::kenning_bin())
        .args([
            "keys",
            "create",
            "--role",
            "auditor",
            "--operations",
            "SearchFaces",
            "--data",
        ])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Every refusal is in the audit trail, with the key and role that asked.
    let auditor = &keys.iter().find(|k| k.0 == Role::Auditor).unwrap().1;
    let (_, _, text) = signed(&addr, "ExportAudit", "{}", (&auditor.0, &auditor.1), now());
    let records = json(&text)["Records"].as_array().unwrap().clone();
    let refused = |op: &str, role: &str| {
        records.iter().any(|r| {
            r["operation"] == op && r["role"] == role && r["outcome"] == "AccessDeniedException"
        })
    };
    assert!(refused("SearchFacesByImage", "auditor"));
    assert!(refused("PutCollectionPolicy", "operator"));
    assert!(refused("ExportAudit", "admin"));
    // A scoped auditor reads only its collections' records.
    let narrow = create_key(
        &server.data,
        &["--role", "auditor", "--collections", "theirs"],
    );
    let (_, _, text) = signed(&addr, "ExportAudit", "{}", (&narrow.0, &narrow.1), now());
    let seen = json(&text)["Records"].as_array().unwrap().clone();
    assert!(!seen.is_empty(), "{text}");
    assert!(seen.iter().all(|r| r["collection"] == "theirs"), "{text}");
    let (_, _, text) = signed(&addr, "VerifyAudit", "{}", (&auditor.0, &auditor.1), now());
    assert_eq!(json(&text)["Valid"], true, "{text}");
    assert!(server.terminate().success());
}

#[test]
fn boto3_and_aws_cli_drive_every_operation() {
    let root = common::root();
    let python = common::test_python();
    let server = Server::start(&[]);
    let role_keys: serde_json::Map<String, serde_json::Value> = [
        ("operator", "operator"),
        ("reviewer", "reviewer"),
        ("reviewer2", "reviewer"),
        ("auditor", "auditor"),
    ]
    .into_iter()
    .map(|(name, role)| {
        let k = create_key(&server.data, &["--role", role]);
        (name.to_owned(), serde_json::json!([k.0, k.1]))
    })
    .collect();
    let out = Command::new(&python)
        .args(["-m", "pytest", "tests/python", "-q", "-rs"])
        .current_dir(&root)
        .env("KENNING_ENDPOINT", server.endpoint())
        .env("KENNING_TEST_KEY_ID", KEY_ID)
        .env("KENNING_TEST_SECRET", SECRET)
        .env("KENNING_TEST_DATA", kenning_testdata::data_dir())
        // The Rust side's rule, so pytest fails where a Rust test would.
        .env(
            "KENNING_REQUIRE_DATA",
            if kenning_testdata::required() {
                "1"
            } else {
                "0"
            },
        )
        .env(
            "KENNING_TEST_ROLE_KEYS",
            serde_json::Value::Object(role_keys).to_string(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    pytest_skips(&stdout);
    // Exit 5 (no tests collected) is a failure too.
    assert_eq!(out.status.code(), Some(0), "pytest failed:\n{stdout}");
    assert!(server.terminate().success());
}

#[test]
fn sigv4_edges_keys_health_metrics_and_shutdown() {
    let server = Server::start(&[]);
    let addr = server.addr.clone();
    let key = (KEY_ID, SECRET);

    let (status, h, body) = http(&addr, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200, "{body}");
    assert!(header(&h, "x-amzn-requestid").is_some());

    let (status, h, body) = signed(&addr, "ListCollections", "{}", key, now());
    assert_eq!(status, 200, "{body}");
    assert!(header(&h, "x-amzn-requestid").is_some());
    assert_eq!(json(&body)["CollectionIds"], serde_json::json!([]));

    // The CLI cannot open the store the server holds, and says why.
    let out = Command::new(common::kenning_bin())
        .arg("--models")
        .arg(common::models())
        .arg("--data")
        .arg(&server.data)
        .args(["collection", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("in use by another process"),
        "{stderr}"
    );

    // Unknown and unimplemented operations name themselves.
    let (status, _, body) = signed(&addr, "DetectLabels", "{}", key, now());
    assert_eq!(status, 400);
    let v = json(&body);
    assert_eq!(v["__type"], "UnknownOperationException");
    assert!(v["message"].as_str().unwrap().contains("DetectLabels"));

    // 16 minutes old, and 16 minutes in the future.
    for t in [now() - 16 * 60, now() + 16 * 60] {
        let (status, _, body) = signed(&addr, "ListCollections", "{}", key, t);
        assert_eq!(status, 403, "{body}");
        let v = json(&body);
        assert_eq!(v["__type"], "InvalidSignatureException");
        assert!(v["message"].as_str().unwrap().contains("expired"), "{body}");
    }
    // 10 minutes of skew is accepted.
    assert_eq!(
        signed(&addr, "ListCollections", "{}", key, now() - 600).0,
        200
    );

    // Unsigned requests are refused.
    let (status, _, body) = http(
        &addr,
        "POST",
        "/",
        &[("x-amz-target", "RekognitionService.ListCollections".into())],
        b"{}",
    );
    assert_eq!(status, 403);
    assert_eq!(json(&body)["__type"], "MissingAuthenticationTokenException");

    // Keys issued by `kenning keys create` work at once and stop on revoke.
    let created = Command::new(common::kenning_bin())
        .args(["keys", "create", "--data"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(created.status.success());
    let k = json(&String::from_utf8_lossy(&created.stdout));
    let (id, secret) = (
        k["AccessKeyId"].as_str().unwrap(),
        k["SecretAccessKey"].as_str().unwrap(),
    );
    assert_eq!(
        signed(&addr, "ListCollections", "{}", (id, secret), now()).0,
        200
    );
    let listed = Command::new(common::kenning_bin())
        .args(["keys", "list", "--data"])
        .arg(&server.data)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(id) && !listed.contains(secret));
    let keyfile = std::fs::read_to_string(server.data.join("keys.json")).unwrap();
    assert!(!keyfile.contains(secret), "secret stored in clear");
    // Bearer auth on the REST API takes an API token, never the secret.
    let bearer = |t: &str| {
        http(
            &addr,
            "GET",
            "/v1/collections",
            &[("authorization", format!("Bearer {t}"))],
            b"",
        )
    };
    let (status, _, body) = bearer(secret);
    assert_eq!(status, 403, "{body}");
    let token = create_token(&server.data, id);
    let (status, _, body) = bearer(&token);
    assert_eq!(status, 200, "{body}");
    let revoked = Command::new(common::kenning_bin())
        .args(["keys", "revoke", id, "--data"])
        .arg(&server.data)
        .status()
        .unwrap();
    assert!(revoked.success());
    let (status, _, body) = signed(&addr, "ListCollections", "{}", (id, secret), now());
    assert_eq!(status, 403);
    assert_eq!(json(&body)["__type"], "UnrecognizedClientException");
    assert_eq!(bearer(&token).0, 403, "a revoked key's tokens stop too");

    // Malformed JSON and out-of-range parameters.
    let (status, _, body) = signed(&addr, "ListCollections", "{not json", key, now());
    assert_eq!(
        (status, json(&body)["__type"].as_str().unwrap()),
        (400, "SerializationException")
    );
    let (status, _, body) = signed(
        &addr,
        "ListCollections",
        r#"{"MaxResults": 5000}"#,
        key,
        now(),
    );
    assert_eq!(
        (status, json(&body)["__type"].as_str().unwrap()),
        (400, "InvalidParameterException")
    );

    let (status, _, metrics) = http(&addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    for m in [
        "kenning_requests_total{operation=\"ListCollections\",status=\"2xx\"}",
        "kenning_request_errors_total{operation=\"unknown\",exception=\"UnknownOperationException\"}",
        "kenning_request_duration_seconds_bucket",
        "kenning_faces_detected_total",
        "kenning_faces_indexed_total",
        "kenning_inference_seconds",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics:\n{metrics}");
    }
    assert!(
        server.terminate().success(),
        "SIGTERM should end the server cleanly"
    );
}

/// What an admin's bearer token gets from each REST route with an empty
/// body ({} for POST) and made-up ids: (status, __type, empty on success).
fn rest_answer(method: &str, path: &str) -> (u16, &'static str) {
    const BAD: (u16, &str) = (400, "InvalidParameterException");
    const MISSING: (u16, &str) = (404, "ResourceNotFoundException");
    const DENIED: (u16, &str) = (403, "AccessDeniedException");
    match (method, path) {
        // Parameters are checked before anything is looked up.
        (_, p) if p.ends_with("/users/nobody/faces") => BAD,
        ("DELETE", p) if p.ends_with("/users/nobody") => MISSING,
        ("GET", "/v1/video/jobs") => (200, ""),
        ("GET", p) if p.starts_with("/v1/video/") => MISSING,
        // No such review, and a collection without an image source.
        ("GET", p) if p.ends_with("/probe") || p.ends_with("/image") => MISSING,
        ("DELETE", p) if p.starts_with("/v1/keys/") || p.starts_with("/v1/eval-reports/") => {
            MISSING
        }
        // A report needs its period.
        ("GET", "/v1/report") => BAD,
        // The server has no buckets to upload a video into.
        ("PUT", p) if p.starts_with("/v1/buckets/") => (400, "InvalidS3ObjectException"),
        // Reviewers decide and auditors read the trail; an admin does neither.
        (_, "/v1/audit/verify" | "/v1/audit/export") => DENIED,
        // Stream processors are off unless --enable-streams.
        (_, p) if p.starts_with("/v1/stream-") => DENIED,
        ("POST", p) if p.starts_with("/v1/review/") => DENIED,
        ("GET" | "DELETE", _) | ("POST", "/v1/retention/run") => (200, ""),
        _ => BAD,
    }
}

/// Which of `candidates` match `pattern` whole (Python's `re`, as a client
/// validating against the schema would).
fn full_matches(pattern: &str, candidates: &[String]) -> Vec<bool> {
    let out = Command::new(common::test_python())
        .args([
            "-c",
            "import json, re, sys; p, c = json.loads(sys.argv[1]); \
             print(json.dumps([re.fullmatch(p, s) is not None for s in c]))",
        ])
        .arg(serde_json::json!([pattern, candidates]).to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The input constraints /openapi.json publishes are the ones the server
/// enforces: what the schema forbids is refused with
/// InvalidParameterException, what it allows is accepted.
#[test]
fn openapi_constraints_are_what_the_server_enforces() {
    use base64::Engine as _;
    let Some(data) = common::data("openapi_constraints_are_what_the_server_enforces") else {
        return;
    };
    let server = Server::start(&[]);
    let auth = vec![
        (
            "authorization",
            format!("Bearer {}", create_token(&server.data, KEY_ID)),
        ),
        ("content-type", "application/json".to_owned()),
    ];
    let (status, _, doc) = http(&server.addr, "GET", "/openapi.json", &[], b"");
    assert_eq!(status, 200);
    let doc = json(&doc);
    let post = |path: &str, body: &serde_json::Value| {
        let (status, _, text) = http(
            &server.addr,
            "POST",
            path,
            &auth,
            body.to_string().as_bytes(),
        );
        (
            status,
            json(&text)["__type"].as_str().unwrap_or("").to_owned(),
        )
    };
    let refused = (400, "InvalidParameterException".to_owned());

    // CollectionId: length and characters.
    let id = &doc["paths"]["/v1/collections"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["CollectionId"];
    let (min, max) = (
        id["minLength"].as_u64().unwrap() as usize,
        id["maxLength"].as_u64().unwrap() as usize,
    );
    let ids: Vec<String> = vec![
        "a".repeat(max),
        "b".repeat(max + 1),
        "c".repeat(min),
        String::new(),
        "ok_id.1-x".into(),
        "not ok".into(),
        "not:ok".into(),
        "nöt".into(),
    ];
    let fits = full_matches(id["pattern"].as_str().unwrap(), &ids);
    for (c, fits) in ids.iter().zip(fits) {
        let allowed = fits && (min..=max).contains(&c.chars().count());
        let got = post("/v1/collections", &serde_json::json!({ "CollectionId": c }));
        if allowed {
            assert_eq!(got, (200, String::new()), "{c:?} is allowed");
        } else {
            assert_eq!(got, refused, "{c:?} is forbidden");
        }
    }

    // Numeric ranges: every bound and just past it.
    let photo = std::fs::read(data.join("misc/face_recognition/examples/obama-240p.jpg")).unwrap();
    let image = serde_json::json!({ "Image": { "Bytes": base64::engine::general_purpose::STANDARD.encode(photo) } });
    let coll = "ok_id.1-x";
    for (path, name) in [
        ("/v1/collections/{CollectionId}/faces", "MaxFaces"),
        ("/v1/collections/{CollectionId}/search", "MaxFaces"),
        (
            "/v1/collections/{CollectionId}/search",
            "FaceMatchThreshold",
        ),
    ] {
        let p = doc["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no {name}"));
        let (lo, hi) = (
            p["schema"]["minimum"]
                .as_f64()
                .unwrap_or_else(|| panic!("{path} {name}: {p}")),
            p["schema"]["maximum"].as_f64().unwrap(),
        );
        let step = if p["schema"]["type"] == "integer" {
            1.0
        } else {
            0.5
        };
        for (v, allowed) in [
            (lo - step, false),
            (lo, true),
            (hi, true),
            (hi + step, false),
        ] {
            let url = format!("{}?{name}={v}", path.replace("{CollectionId}", coll));
            let got = post(&url, &image);
            if allowed {
                assert_eq!(got.0, 200, "{path} {name}={v}: {got:?}");
            } else {
                assert_eq!(got, refused, "{path} {name}={v}");
            }
        }
    }
    assert!(server.terminate().success());
}

#[test]
fn every_openapi_path_answers() {
    let server = Server::start(&[]);
    let addr = server.addr.clone();
    let (status, _, doc) = http(&addr, "GET", "/openapi.json", &[], b"");
    assert_eq!(status, 200);
    let doc = json(&doc);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let token = create_token(&server.data, KEY_ID);
    let auth = [
        ("authorization", format!("Bearer {token}")),
        ("content-type", "application/json".into()),
    ];
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/collections",
        &auth,
        br#"{"CollectionId":"rest"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (mut checked, mut wrong) = (0, Vec::new());
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path
            .replace("{CollectionId}", "rest")
            .replace("{FaceId}", "00000000-0000-4000-8000-000000000000")
            .replace("{UserId}", "nobody")
            .replace("{ReviewId}", "00000000-0000-4000-8000-000000000000")
            .replace("{JobId}", "nojob")
            .replace("{Bucket}", "nobucket")
            .replace("{Key}", "clip.mp4")
            .replace("{AccessKeyId}", "AKNOSUCHKEY0000000000");
        for method in item.as_object().unwrap().keys() {
            if method == "parameters" {
                continue;
            }
            if method == "delete" && path == "/v1/collections/rest" {
                continue;
            }
            let method = method.to_ascii_uppercase();
            let body: &[u8] = if method == "POST" { b"{}" } else { b"" };
            let (status, _, text) = http(&addr, &method, &path, &auth, body);
            // Routed and handled as the operation it documents: what an
            // admin gets with an empty body and made-up ids.
            let v = json(&text);
            let got = (status, v["__type"].as_str().unwrap_or(""));
            if got != rest_answer(&method, &path) {
                wrong.push(format!("{method} {path}: {text}"));
            }
            checked += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    assert_eq!(checked, 48, "operations documented in /openapi.json");

    // A multipart upload, as `curl -F image=@photo.jpg -F MaxFaces=1` sends it.
    if let Some(data) = common::data("every_openapi_path_answers (multipart)") {
        let photo =
            std::fs::read(data.join("misc/face_recognition/examples/two_people.jpg")).unwrap();
        let mut body =
            b"--kb\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n\r\n"
                .to_vec();
        body.extend_from_slice(&photo);
        body.extend_from_slice(b"\r\n--kb\r\nContent-Disposition: form-data; name=\"ExternalImageId\"\r\n\r\ntwo\r\n--kb--\r\n");
        let auth = [
            ("authorization", format!("Bearer {token}")),
            ("content-type", "multipart/form-data; boundary=kb".into()),
        ];
        let (status, _, text) = http(&addr, "POST", "/v1/collections/rest/faces", &auth, &body);
        assert_eq!(status, 200, "{text}");
        let v = json(&text);
        assert_eq!(v["FaceRecords"].as_array().unwrap().len(), 2, "{text}");
        assert_eq!(v["FaceRecords"][0]["Face"]["ExternalImageId"], "two");
    }
    let (status, _, body) = http(&addr, "GET", "/v1/collections", &[], b"");
    assert_eq!(status, 403, "{body}");
    drop(server);
}

#[test]
fn anonymous_access_needs_loopback_or_an_explicit_flag() {
    let out = Command::new(common::kenning_bin())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--allow-anonymous",
            "--data",
        ])
        .arg(&*common::temp_dir("anon-refused"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-anonymous-remote"));
    let server = Server::start(&["--allow-anonymous"]);
    let (status, _, body) = http(
        &server.addr,
        "POST",
        "/",
        &[("x-amz-target", "RekognitionService.ListCollections".into())],
        b"{}",
    );
    assert_eq!(status, 200, "{body}");
    // Signed requests are still verified: a wrong secret or an unknown key
    // is refused, not let through as anonymous.
    let (status, _, body) = signed(
        &server.addr,
        "ListCollections",
        "{}",
        (KEY_ID, "wrong-secret"),
        now(),
    );
    assert_eq!(
        (status, json(&body)["__type"].clone()),
        (403, serde_json::json!("InvalidSignatureException")),
        "{body}"
    );
    let (status, _, body) = signed(
        &server.addr,
        "ListCollections",
        "{}",
        ("AKKNNOSUCHKEY0000000", SECRET),
        now(),
    );
    assert_eq!(
        (status, json(&body)["__type"].clone()),
        (403, serde_json::json!("UnrecognizedClientException")),
        "{body}"
    );
    assert!(server.terminate().success());
    // With --allow-anonymous-remote it serves unsigned requests on every
    // address.
    let server = Server::start(&[
        "--listen",
        "0.0.0.0:0",
        "--allow-anonymous",
        "--allow-anonymous-remote",
    ]);
    let (status, _, body) = http(
        &server.addr,
        "POST",
        "/",
        &[("x-amz-target", "RekognitionService.CreateCollection".into())],
        br#"{"CollectionId":"open"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(server.terminate().success());
}
