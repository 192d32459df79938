//! What docs/server.md promises of a running `kenning serve` beyond the
//! wire protocol: the body limit, the request timeout, --max-concurrent,
//! graceful shutdown, scheduled and requested retention, the audit export
//! over HTTP, the access log and a private data directory. No photos: faces
//! are imported into the store while the server is stopped.
//!
//! Requests are held inside an operation deterministically, not by timing:
//! the test takes the audit trail's file lock, so an audited operation
//! blocks on its audit record while holding its pipeline slot, and
//! /proc/locks shows when the server is waiting.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kenning_store::FaceStore as _;
use serde_json::{json, Value};

use crate::common;
use crate::server::{
    create_key, header, http, json, now, signed, signed_with, Server, KEY_ID, SECRET,
};

const ROOT: (&str, &str) = (KEY_ID, SECRET);

/// A fresh data directory path (not created), removed when the guard
/// drops.
fn fresh_dir(name: &str) -> common::TempDir {
    common::temp_path(&format!("service-{name}"))
}

/// `op` signed with the root key: (status, body).
fn call(server: &Server, op: &str, body: Value) -> (u16, Value) {
    let (status, _, text) = signed(&server.addr, op, &body.to_string(), ROOT, now());
    (status, json(&text))
}

/// `op` as the root key, expected to succeed.
fn ok(server: &Server, op: &str, body: Value) -> Value {
    let (status, v) = call(server, op, body);
    assert_eq!(status, 200, "{op}: {v}");
    v
}

/// Waits (up to a minute, polling) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Holds the audit trail's lock (as another writer would) until dropped.
struct AuditLock {
    file: File,
    inode: u64,
}

impl AuditLock {
    fn take(data: &Path) -> Self {
        let path = kenning_accountability::audit_path(data);
        let file = File::options().read(true).write(true).open(&path).unwrap();
        file.lock().unwrap();
        let inode = file.metadata().unwrap().ino();
        Self { file, inode }
    }

    /// Whether a thread of process `pid` is blocked waiting for this lock.
    fn waited_on_by(&self, pid: u32) -> bool {
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .filter(|l| l.contains("->"))
            .any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                // "1: -> FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF"
                w.len() >= 7
                    && w[5] == pid.to_string()
                    && w[6].rsplit(':').next() == Some(&self.inode.to_string())
            })
    }

    /// Waits until `server` is blocked on this lock.
    fn wait_for(&self, server: &Server) {
        eventually("the server to wait for the audit lock", || {
            self.waited_on_by(server.pid())
        });
    }
}

impl Drop for AuditLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Runs `op` as the root key on another thread.
fn in_background(
    server: &Server,
    op: &'static str,
    body: Value,
) -> std::thread::JoinHandle<(u16, Value)> {
    let addr = server.addr.clone();
    std::thread::spawn(move || {
        let (status, _, text) = signed(&addr, op, &body.to_string(), ROOT, now());
        (status, json(&text))
    })
}

/// Creates `collections` (id, policy) on a fresh server, stops it, and
/// returns the data directory.
fn data_with(name: &str, collections: &[(&str, Value)]) -> common::TempDir {
    let data = fresh_dir(name);
    let server = Server::start_in(data.path_buf(), &[]);
    for (id, policy) in collections {
        ok(
            &server,
            "CreateCollection",
            json!({ "CollectionId": id, "Policy": policy }),
        );
    }
    assert!(server.stop().success());
    data
}

/// Imports `n` made-up faces (seeds from `seed`) into `collection` of the
/// stopped server's `data`, indexed `days_ago` days ago.
fn import(data: &Path, collection: &str, n: u64, seed: u64, days_ago: u64) -> Vec<String> {
    // Every built-in recogniser's distance, as the service opens it.
    let distances = kenning_models::manifest::BUILTIN
        .iter()
        .map(|b| {
            let m = kenning_models::manifest::LoadedManifest::builtin(b.name).unwrap();
            (m.manifest.name.clone(), m.manifest.embedding.distance)
        })
        .collect();
    let store = kenning_store::Embedded::open(data, distances).unwrap();
    let dim = store.describe_collection(collection).unwrap().dim as usize;
    let vectors: Vec<Vec<f32>> = (seed..seed + n)
        .map(|s| common::unit_vector(dim, s))
        .collect();
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - days_ago * 86_400_000;
    common::import_faces(&store, collection, &vectors, Some(at))
}

fn face_ids(server: &Server, collection: &str) -> Vec<String> {
    let v = ok(server, "ListFaces", json!({ "CollectionId": collection }));
    let mut ids: Vec<String> = v["Faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FaceId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn an_oversized_body_is_413_and_a_stalled_request_503() {
    let server = Server::start(&["--body-limit", "4096", "--request-timeout", "1"]);
    // ListCollections' "{}" padded with spaces to the limit, and one past it.
    let padded = |len: usize| format!("{{{}}}", " ".repeat(len - 2));
    let (status, _, body) = signed(&server.addr, "ListCollections", &padded(4096), ROOT, now());
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = signed(&server.addr, "ListCollections", &padded(4097), ROOT, now());
    assert_eq!(status, 413, "{body}");
    let v = json(&body);
    assert_eq!(v["__type"], "ImageTooLargeException");
    assert!(
        v["message"].as_str().unwrap().contains("4096 bytes"),
        "{body}"
    );

    // A client that announces 100 bytes and sends 10 is answered when the
    // request timeout runs out, and the connection is not held forever.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nhost: {}\r\nx-amz-target: RekognitionService.ListCollections\r\n\
         content-type: application/x-amz-json-1.1\r\ncontent-length: 100\r\n\r\n{{\"a\": 1, ",
        server.addr
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let v = json(body);
    assert_eq!(v["__type"], "ThrottlingException", "{raw}");
    assert!(
        v["message"].as_str().unwrap().contains("within 1 s"),
        "{raw}"
    );
    // The service goes on.
    assert_eq!(call(&server, "ListCollections", json!({})).0, 200);
    let (_, _, metrics) = http(&server.addr, "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("exception=\"ThrottlingException\"")
            && metrics.contains("exception=\"ImageTooLargeException\""),
        "{metrics}"
    );
    assert!(server.terminate().success());
}

/// With --max-concurrent 1, a request waits for the one pipeline slot that
/// a blocked operation holds (and times out there); with 2, it runs beside it.
#[test]
fn max_concurrent_bounds_the_operations_running_at_once() {
    for slots in ["1", "2"] {
        let server = Server::start(&["--max-concurrent", slots, "--request-timeout", "2"]);
        ok(&server, "ListCollections", json!({}));
        let lock = AuditLock::take(&server.data);
        // CreateCollection is audited: it takes a slot, then waits for the lock.
        let blocked = in_background(
            &server,
            "CreateCollection",
            json!({ "CollectionId": "held" }),
        );
        lock.wait_for(&server);
        // ListCollections is not audited: it needs only a slot.
        let (status, v) = call(&server, "ListCollections", json!({}));
        if slots == "1" {
            assert_eq!(status, 503, "{v}");
            assert_eq!(v["__type"], "ThrottlingException", "{v}");
        } else {
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["CollectionIds"], json!([]), "{v}");
        }
        // The held request timed out too, and finishes its work once the
        // lock is free: the collection exists, and was audited.
        let (status, v) = blocked.join().unwrap();
        assert_eq!(
            (status, &v["__type"]),
            (503, &json!("ThrottlingException")),
            "{v}"
        );
        drop(lock);
        eventually("the held CreateCollection to finish", || {
            call(&server, "ListCollections", json!({})).1["CollectionIds"] == json!(["held"])
        });
        assert!(server.terminate().success());
    }
}

/// SIGTERM while an operation is in flight: the listener closes, the
/// operation finishes and is answered, then the changed index is saved.
#[test]
fn sigterm_finishes_requests_in_flight_and_saves_indexes() {
    let data = data_with("sigterm", &[("kept", json!({}))]);
    let ids = import(&data, "kept", 10, 100, 0);
    let server = Server::start_in(data.path_buf(), &[]);
    // A search loads the index (and saves it, built from the store).
    let found = ok(
        &server,
        "SearchFaces",
        json!({ "CollectionId": "kept", "FaceId": ids[0], "FaceMatchThreshold": 0 }),
    );
    assert_eq!(found["FaceMatches"].as_array().unwrap().len(), 9);
    let index_file = data.join("index/kept.kix");
    let saved = std::fs::read(&index_file).unwrap();

    let lock = AuditLock::take(&data);
    let deleting = in_background(
        &server,
        "DeleteFaces",
        json!({ "CollectionId": "kept", "FaceIds": [ids[1]] }),
    );
    lock.wait_for(&server);
    sigterm(server.pid());
    eventually("the listener to close", || {
        TcpStream::connect(&server.addr).is_err()
    });
    drop(lock);
    let (status, v) = deleting.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["DeletedFaces"], json!([ids[1]]));
    assert!(server.wait().success());

    // The index file was saved after the deletion: it matches the store.
    let store = kenning_store::Store::open(&data).unwrap();
    let c = store.describe_collection("kept").unwrap();
    assert_eq!(c.face_count, 9);
    assert_ne!(std::fs::read(&index_file).unwrap(), saved);
    let expect = kenning_index::Expect {
        dim: Some(c.dim as usize),
        metric: None,
        count: Some(9),
        generation: Some(c.generation),
    };
    let index = kenning_index::Index::load(&index_file, &expect).expect("saved at shutdown");
    assert_eq!(index.len(), 9);
    drop(store);
}

/// `kill -TERM`, as a service manager stops a service.
fn sigterm(pid: u32) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// RunRetention over HTTP deletes exactly what the policy says is due, and
/// the scheduled pass (which runs at start, then every
/// --retention-interval minutes) does the same on its own.
#[test]
fn retention_runs_when_asked_and_on_schedule() {
    let data = data_with(
        "retention",
        &[
            (
                "brief",
                json!({ "Retention": { "Days": 1, "After": "INDEXED" } }),
            ),
            ("forever", json!({})),
        ],
    );
    let old = import(&data, "brief", 2, 200, 3);
    let fresh = import(&data, "brief", 1, 300, 0);
    let kept = import(&data, "forever", 1, 400, 3);

    // No schedule: only the request deletes.
    let server = Server::start_in(data.path_buf(), &["--retention-interval", "0"]);
    let mut all = old.clone();
    all.extend(fresh.iter().cloned());
    assert_eq!(face_ids(&server, "brief"), sorted(all));
    let done = ok(&server, "RunRetention", json!({}));
    assert_eq!(
        done["Collections"],
        json!([{ "CollectionId": "brief", "FacesDeleted": 2 }])
    );
    assert_eq!(face_ids(&server, "brief"), fresh);
    assert_eq!(face_ids(&server, "forever"), kept);
    // Only an admin may run it.
    let (id, secret) = create_key(&data, &["--role", "operator"]);
    let (status, _, body) = signed(&server.addr, "RunRetention", "{}", (&id, &secret), now());
    assert_eq!(status, 403, "{body}");
    assert!(server.stop().success());

    // The scheduled pass, at start.
    let due = import(&data, "brief", 1, 500, 2);
    let auditor = create_key(&data, &["--role", "auditor"]);
    let server = Server::start_in(data.path_buf(), &[]);
    eventually("the scheduled retention pass", || {
        face_ids(&server, "brief") == fresh
    });
    assert_eq!(face_ids(&server, "forever"), kept);
    let (_, _, text) = signed(
        &server.addr,
        "ExportAudit",
        "{}",
        (&auditor.0, &auditor.1),
        now(),
    );
    let passes: Vec<Value> = json(&text)["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "RunRetention" && r["outcome"] == "ok")
        .cloned()
        .collect();
    assert_eq!(passes.len(), 2, "{passes:?}");
    assert_eq!(passes[0]["access_key"], KEY_ID);
    assert_eq!(sorted_ids(&passes[0]["details"]["FaceIds"]), sorted(old));
    assert_eq!(passes[1]["access_key"], "system:retention");
    assert_eq!(passes[1]["details"]["FaceIds"], json!(due));
    assert!(server.terminate().success());
}

fn sorted_ids(v: &Value) -> Vec<String> {
    sorted(
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect(),
    )
}

/// ExportAudit over HTTP: pages that add up to the whole trail, time bounds
/// (From inclusive, To exclusive), the case filter, and a search's case and
/// purpose (X-Kenning-Case, X-Kenning-Purpose) in its record.
#[test]
fn audit_export_pages_filters_and_records_case_and_purpose() {
    let data = data_with("export", &[("seen", json!({}))]);
    let ids = import(&data, "seen", 3, 600, 0);
    let auditor = create_key(&data, &["--role", "auditor"]);
    let auditor = (auditor.0.as_str(), auditor.1.as_str());
    let server = Server::start_in(data.path_buf(), &[]);
    for i in 0..5 {
        ok(
            &server,
            "CreateCollection",
            json!({ "CollectionId": format!("c{i}") }),
        );
    }
    let (status, _, body) = signed_with(
        &server.addr,
        "SearchFaces",
        &json!({ "CollectionId": "seen", "FaceId": ids[0], "FaceMatchThreshold": 0 }).to_string(),
        ROOT,
        now(),
        &[
            ("x-kenning-case", "CASE-42".into()),
            ("x-kenning-purpose", "locate a missing person".into()),
        ],
    );
    assert_eq!(status, 200, "{body}");
    // A purpose longer than 256 characters is refused, and that is audited.
    let (status, _, body) = signed_with(
        &server.addr,
        "SearchFaces",
        &json!({ "CollectionId": "seen", "FaceId": ids[0] }).to_string(),
        ROOT,
        now(),
        &[("x-kenning-purpose", "p".repeat(257))],
    );
    assert_eq!(status, 400, "{body}");

    let export = |body: Value| {
        let (status, _, text) = signed(
            &server.addr,
            "ExportAudit",
            &body.to_string(),
            auditor,
            now(),
        );
        assert_eq!(status, 200, "{text}");
        json(&text)
    };
    let all = export(json!({}));
    let all = all["Records"].as_array().unwrap().clone();
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order, none missing"
    );
    let search = all
        .iter()
        .find(|r| r["operation"] == "SearchFaces" && r["outcome"] == "ok")
        .unwrap();
    assert_eq!(search["case"], "CASE-42");
    assert_eq!(search["purpose"], "locate a missing person");
    assert_eq!(search["details"]["SearchedFaceId"], ids[0].as_str());
    let refused = all
        .iter()
        .find(|r| r["operation"] == "SearchFaces" && r["outcome"] != "ok")
        .unwrap();
    assert_eq!(refused["outcome"], "InvalidParameterException");

    // Pages of 3: each export is audited too, so the trail grows as it is
    // read; the pages hold every record up to the last, once, in order.
    let (mut paged, mut token, mut sizes) = (Vec::new(), None::<String>, Vec::new());
    loop {
        let mut body = json!({ "MaxResults": 3 });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = export(body);
        let records = page["Records"].as_array().unwrap();
        paged.extend(records.iter().cloned());
        sizes.push(records.len());
        token = page["NextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let last = sizes.pop().unwrap();
    assert!(
        sizes.iter().all(|n| *n == 3) && (1..=3).contains(&last),
        "page sizes {sizes:?} {last}"
    );
    assert_eq!(
        &paged[..all.len()],
        &all[..],
        "pages differ from the whole export"
    );
    let paged_seqs: Vec<u64> = paged.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(paged_seqs, (1..=paged.len() as u64).collect::<Vec<_>>());
    assert!(
        paged[all.len()..]
            .iter()
            .all(|r| r["operation"] == "ExportAudit"),
        "only the exports themselves were added"
    );

    // Time bounds, taken from the records themselves: From includes its
    // instant, To excludes it.
    let (from, to) = (&all[2], &all[6]);
    let expected: Vec<u64> = all
        .iter()
        .filter(|r| {
            r["time_ms"].as_u64() >= from["time_ms"].as_u64()
                && r["time_ms"].as_u64() < to["time_ms"].as_u64()
        })
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert!(!expected.is_empty());
    let got: Vec<u64> =
        export(json!({ "From": from["time"], "To": to["time"], "MaxResults": 1000 }))["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .filter(|s| *s <= all.len() as u64)
            .collect();
    assert_eq!(got, expected);
    let cased = export(json!({ "Case": "CASE-42" }));
    let cased: Vec<&str> = cased["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert_eq!(cased, ["SearchFaces"]);
    let (status, _, text) = signed(
        &server.addr,
        "ExportAudit",
        r#"{"From":"yesterday"}"#,
        auditor,
        now(),
    );
    assert_eq!(
        (status, json(&text)["__type"].clone()),
        (400, json!("InvalidParameterException"))
    );
    assert!(server.terminate().success());
}

/// One access-log line per request with its id, operation, status, latency,
/// exception and caller, as text and as JSON (--log-format json); the data
/// directory the server creates is its user's alone.
#[test]
fn access_log_and_a_private_data_directory() {
    for format in ["text", "json"] {
        let data = fresh_dir(&format!("log-{format}"));
        let logs = common::temp_dir(&format!("service-log-{format}"));
        let log_path = logs.join("server.log");
        let log = File::create(&log_path).unwrap();
        let server = Server::start_with(data.path_buf(), &["--log-format", format], |cmd| {
            cmd.env("RUST_LOG", "info").stderr(Stdio::from(log));
        });
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "data directory");
        assert_eq!(mode(&kenning_accountability::audit_path(&data)), 0o600);
        create_key(&data, &["--role", "auditor"]);
        for file in ["keys.json", "keys.key"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }

        let (_, h, _) = signed(&server.addr, "ListCollections", "{}", ROOT, now());
        let good = header(&h, "x-amzn-requestid").unwrap().to_owned();
        let (_, h, _) = signed(&server.addr, "DetectLabels", "{}", ROOT, now());
        let bad = header(&h, "x-amzn-requestid").unwrap().to_owned();
        assert!(server.terminate().success());
        let text = std::fs::read_to_string(&log_path).unwrap();
        let line = |id: &str| -> Value {
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(id)).collect();
            assert_eq!(lines.len(), 1, "one line for request {id}:\n{text}");
            if format == "json" {
                let v: Value = serde_json::from_str(lines[0]).unwrap();
                assert_eq!(v["level"], "INFO", "{v}");
                v["fields"].clone()
            } else {
                // key=value pairs after the message.
                let mut v = serde_json::Map::new();
                for (key, value) in lines[0]
                    .split_whitespace()
                    .filter_map(|w| w.split_once('='))
                {
                    let value = value.trim_matches('"');
                    let value = value.parse::<f64>().map_or(json!(value), |n| json!(n));
                    v.insert(key.to_owned(), value);
                }
                Value::Object(v)
            }
        };
        let g = line(&good);
        assert_eq!(g["request_id"], good.as_str());
        assert_eq!(g["method"], "POST");
        assert_eq!(g["path"], "/");
        assert_eq!(g["operation"], "ListCollections");
        assert_eq!(g["status"].as_f64(), Some(200.0), "{g}");
        assert!(g["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{g}");
        assert_eq!(g["caller"], KEY_ID);
        assert!(g["error"].as_str().is_none_or(str::is_empty), "{g}");
        let b = line(&bad);
        assert_eq!(b["status"].as_f64(), Some(400.0), "{b}");
        assert_eq!(b["error"], "UnknownOperationException");
        assert_eq!(b["operation"], "unknown");
        let _ = std::fs::remove_file(&log_path);
    }
}
