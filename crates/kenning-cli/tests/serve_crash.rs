//! Crash safety of `kenning serve`: boto3 clients index and delete faces
//! concurrently (tests/crash/boto3_writes.py) and the server is killed with
//! SIGKILL mid-stream. After a restart on the same data directory every
//! acknowledged IndexFaces is there, every acknowledged DeleteFaces is
//! gone, and the audit chain verifies.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::server::{json, now, signed, Server, KEY_ID, SECRET};

const COLLECTION: &str = "crash";
/// Acknowledged writes seen before the kill (a few rounds of each thread).
const ACKS_BEFORE_KILL: usize = 24;

/// Every FaceId in the collection, through ListFaces' pages.
fn face_ids(server: &Server) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = serde_json::json!({ "CollectionId": COLLECTION, "MaxResults": 4096 });
        if let Some(t) = &token {
            body["NextToken"] = t.clone().into();
        }
        let (status, _, text) = signed(
            &server.addr,
            "ListFaces",
            &body.to_string(),
            (KEY_ID, SECRET),
            now(),
        );
        assert_eq!(status, 200, "{text}");
        let page = json(&text);
        for f in page["Faces"].as_array().unwrap() {
            ids.insert(f["FaceId"].as_str().unwrap().to_owned());
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return ids,
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_server() {
    let Some(data) = common::data("acknowledged_writes_survive_kill_9_of_the_server") else {
        return;
    };
    let examples = data.join("misc/face_recognition/examples");
    let dir = common::temp_path("serve-crash");
    let server = Server::start_in(dir.path_buf(), &[]);

    let mut writer = Command::new(common::root().join(".cache/venv-test/bin/python"))
        .arg(common::root().join("tests/crash/boto3_writes.py"))
        .arg(COLLECTION)
        .args(["obama-240p.jpg", "biden.jpg", "obama-1080p.jpg"].map(|p| examples.join(p)))
        .env("KENNING_ENDPOINT", server.endpoint())
        .env("KENNING_TEST_KEY_ID", KEY_ID)
        .env("KENNING_TEST_SECRET", SECRET)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test venv: run scripts/setup-test-python.sh");
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    // Kill once enough writes are acknowledged (in flight all the while).
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while acks.len() < ACKS_BEFORE_KILL {
        assert!(Instant::now() < deadline, "too slow: {acks:?}");
        match lines.next() {
            Some(line) => acks.push(line.unwrap()),
            None => panic!("the writer stopped early: {:?}", writer.wait()),
        }
    }
    drop(server); // SIGKILL, then wait
    acks.extend(lines.map(Result::unwrap));
    let status = writer.wait().unwrap();
    assert!(status.success(), "the writer failed: {status}");

    let mut indexed = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for a in &acks {
        match a.split_once(' ') {
            Some(("index", id)) => indexed.insert(id.to_owned()),
            Some(("delete", id)) => deleted.insert(id.to_owned()),
            _ => panic!("unexpected line {a:?}"),
        };
    }
    assert!(!deleted.is_empty(), "no deletion acknowledged: {acks:?}");

    let server = Server::start_in(dir.path_buf(), &[]);
    let present = face_ids(&server);
    let lost: Vec<_> = indexed
        .difference(&deleted)
        .filter(|id| !present.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged faces lost: {lost:?}");
    let back: Vec<_> = deleted.intersection(&present).collect();
    assert!(back.is_empty(), "acknowledged deletions undone: {back:?}");
    eprintln!(
        "{} acknowledged writes ({} indexed, {} deleted) before and during the kill; {} faces after restart",
        acks.len(),
        indexed.len(),
        deleted.len(),
        present.len()
    );

    let verify = Command::new(common::kenning_bin())
        .args(["audit", "verify", "--data"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(server.terminate().success());
}
