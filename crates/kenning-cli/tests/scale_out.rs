//! `kenning serve --database`: nodes that keep nothing on local disk share one PostgreSQL database (started by scripts/postgres.sh for the run, its
//! URL in KENNING_TEST_DATABASE), answer exactly as the embedded backend
//! does, and lose no acknowledged write when a node or the primary dies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common;
use crate::server::{now, signed, try_signed, Server, KEY_ID, SECRET};

/// A database per test, as the PostgreSQL backend's own tests make them.
#[path = "../../kenning-postgres/tests/common/mod.rs"]
mod pg;

use pg::{server, sql, TestDb};

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A private directory with the master key file every node shares.
fn master_key(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("master.key");
    std::fs::write(&path, "5a".repeat(32)).unwrap();
    path
}

fn call(server: &Server, op: &str, body: &Value) -> Value {
    let (status, _, text) = signed(&server.addr, op, &body.to_string(), (KEY_ID, SECRET), now());
    assert_eq!(status, 200, "{op}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn image(path: &Path) -> Value {
    use base64::Engine as _;
    json!({ "Bytes": base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap()) })
}

/// deepface's photos, in file order.
fn photos(data: &Path) -> Vec<PathBuf> {
    let dir = data.join("identity/deepface");
    std::fs::read_to_string(dir.join("identities.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| dir.join(l.split_once(',').unwrap().0.trim()))
        .collect()
}

/// Every path under `dir`, relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.strip_prefix(root).unwrap().display().to_string());
        if path.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Replaces the ids a backend generated (faces, images) by the labels
/// `names` gives them, and drops creation times, so two backends' answers
/// to the same requests compare equal.
fn normalised(v: &Value, names: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(names.get(s).cloned().unwrap_or_else(|| s.clone())),
        Value::Array(a) => Value::Array(a.iter().map(|x| normalised(x, names)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| k.as_str() != "CreationTimestamp")
                .map(|(k, x)| (k.clone(), normalised(x, names)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The same photos through both backends: every response is the same once
/// generated ids are named alike (Similarity to the last bit, face order,
/// counts, users, errors).
#[test]
fn same_photos_same_responses_on_both_backends() {
    let test = "same_photos_same_responses_on_both_backends";
    let Some(data) = common::data(test) else {
        return;
    };
    let Some(db) = TestDb::new(test) else {
        return;
    };
    let dir = common::temp_path("same");
    let key = master_key(&dir);
    let node_data = dir.join("node-data");
    let embedded = Server::start_in(dir.join("embedded"), &[]);
    let pg = Server::start_in(
        node_data.clone(),
        &[
            "--database",
            &db.url,
            "--master-key-file",
            key.to_str().unwrap(),
        ],
    );

    let photos = photos(&data);
    let mut transcripts: Vec<Vec<Value>> = Vec::new();
    for node in [&embedded, &pg] {
        let mut names = BTreeMap::new();
        let mut out = Vec::new();
        let mut first_face = None;
        out.push(call(
            node,
            "CreateCollection",
            &json!({ "CollectionId": "same" }),
        ));
        for (i, p) in photos.iter().take(12).enumerate() {
            let r = call(
                node,
                "IndexFaces",
                &json!({ "CollectionId": "same", "Image": image(p), "ExternalImageId": format!("p{i}") }),
            );
            for (j, rec) in r["FaceRecords"].as_array().unwrap().iter().enumerate() {
                let f = &rec["Face"];
                names.insert(
                    f["FaceId"].as_str().unwrap().to_owned(),
                    format!("face-{i}-{j}"),
                );
                names.insert(
                    f["ImageId"].as_str().unwrap().to_owned(),
                    format!("image-{i}"),
                );
                first_face.get_or_insert_with(|| f["FaceId"].as_str().unwrap().to_owned());
            }
            out.push(r);
        }
        let first = first_face.expect("no face indexed");
        out.push(call(
            node,
            "CreateUser",
            &json!({ "CollectionId": "same", "UserId": "u1" }),
        ));
        out.push(call(
            node,
            "AssociateFaces",
            &json!({ "CollectionId": "same", "UserId": "u1", "FaceIds": [first] }),
        ));
        for body in [
            json!({ "CollectionId": "same", "Image": image(&photos[1]), "MaxFaces": 20, "FaceMatchThreshold": 0 }),
            json!({ "CollectionId": "same", "Image": image(&photos[photos.len() - 1]), "MaxFaces": 5 }),
        ] {
            out.push(call(node, "SearchFacesByImage", &body));
        }
        out.push(call(
            node,
            "SearchFaces",
            &json!({ "CollectionId": "same", "FaceId": first, "MaxFaces": 20, "FaceMatchThreshold": 0 }),
        ));
        out.push(call(
            node,
            "SearchUsersByImage",
            &json!({ "CollectionId": "same", "Image": image(&photos[0]) }),
        ));
        out.push(call(
            node,
            "ListFaces",
            &json!({ "CollectionId": "same", "MaxResults": 100 }),
        ));
        out.push(call(node, "ListUsers", &json!({ "CollectionId": "same" })));
        let mut described = call(
            node,
            "DescribeCollection",
            &json!({ "CollectionId": "same" }),
        );
        described
            .as_object_mut()
            .unwrap()
            .remove("CreationTimestamp");
        out.push(described);
        out.push(call(
            node,
            "DeleteFaces",
            &json!({ "CollectionId": "same", "FaceIds": [first] }),
        ));
        let (status, _, text) = signed(
            &node.addr,
            "SearchFaces",
            &json!({ "CollectionId": "same", "FaceId": first }).to_string(),
            (KEY_ID, SECRET),
            now(),
        );
        out.push(json!({ "Status": status, "Error": serde_json::from_str::<Value>(&text).unwrap()["__type"] }));
        transcripts.push(out.iter().map(|v| normalised(v, &names)).collect());
    }
    let searched = &transcripts[0][15];
    assert!(
        searched["FaceMatches"].as_array().unwrap().len() > 1,
        "the search found too little to compare: {searched}"
    );
    for (i, (e, p)) in transcripts[0].iter().zip(&transcripts[1]).enumerate() {
        assert_eq!(
            e, p,
            "response {i} differs between the embedded backend and PostgreSQL"
        );
    }
    assert_eq!(transcripts[0].len(), transcripts[1].len());
    drop(pg);
    // Nothing stays on the node (docs/scale-out.md): video jobs are in the
    // database too.
    let mut local = Vec::new();
    walk(&node_data, &node_data, &mut local);
    assert!(
        local.is_empty(),
        "a node on a database kept something on local disk: {local:?}"
    );
}

/// A primary and a synchronous standby of their own (scripts/postgres.sh
/// start DIR --standby), stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    primary: String,
    standby: String,
}

impl Cluster {
    fn script(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(common::root().join("scripts/postgres.sh"))
            .arg(args[0])
            .arg(dir)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/postgres.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn start() -> Self {
        // Under /tmp: as root the servers run as nobody, who must reach DIR.
        let dir = PathBuf::from("/tmp").join(unique("kenning-failover"));
        let out = Self::script(&dir, &["start", "--standby"]);
        let url = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {out}"))
                .to_owned()
        };
        Self {
            primary: url("primary"),
            standby: url("standby"),
            dir,
        }
    }

    /// Both servers in one URL; writes go to whichever accepts them.
    fn multi_host(&self) -> String {
        let host = |url: &str| {
            let at = url.rfind('@').unwrap();
            let slash = url[at..].find('/').unwrap() + at;
            url[at + 1..slash].to_owned()
        };
        let at = self.primary.rfind('@').unwrap();
        format!(
            "{}@{},{}/kenning?target_session_attrs=read-write",
            &self.primary[..at],
            host(&self.primary),
            host(&self.standby)
        )
    }

    /// kill -9 of the primary's postmaster.
    fn kill_primary(&self) {
        let pid = std::fs::read_to_string(self.dir.join("primary/postmaster.pid")).unwrap();
        let pid = pid.lines().next().unwrap().trim().to_owned();
        assert!(Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success());
    }
}

/// Promotes the standby of the cluster in `dir` and stops it waiting for a
/// standby of its own, which it inherited from the primary's settings
/// (docs/scale-out.md).
fn promote(dir: &Path, standby: &str) {
    Cluster::script(dir, &["promote"]);
    sql(standby, "ALTER SYSTEM SET synchronous_standby_names = ''");
    sql(standby, "SELECT pg_reload_conf()");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        Self::script(&self.dir, &["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the client knows about its writes.
#[derive(Default)]
struct Log {
    /// Faces acknowledged (FaceId to ExternalImageId).
    acked: BTreeMap<String, String>,
    /// ExternalImageIds of requests whose outcome the client never learnt.
    uncertain: BTreeSet<String>,
}

/// Indexes `photo` through the first node that acknowledges it, trying
/// the others on failures (each attempt with its own ExternalImageId), for
/// up to a minute. Returns when the write was acknowledged.
fn index_with_retries(nodes: &[&Server], start: usize, photo: &Path, name: &str, log: &mut Log) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let bytes = image(photo);
    for attempt in 0.. {
        assert!(Instant::now() < deadline, "{name}: no node acknowledged it");
        let node = nodes[(start + attempt) % nodes.len()];
        let ext = format!("{name}-{attempt}");
        let body = json!({ "CollectionId": "failover", "Image": bytes, "ExternalImageId": ext });
        match try_signed(
            &node.addr,
            "IndexFaces",
            &body.to_string(),
            (KEY_ID, SECRET),
            now(),
            &[],
        ) {
            Ok((200, _, text)) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                for r in v["FaceRecords"].as_array().unwrap() {
                    let id = r["Face"]["FaceId"].as_str().unwrap().to_owned();
                    log.acked.insert(id, ext.clone());
                }
                return;
            }
            Ok((status, _, text)) => {
                // Only the database being away may refuse a valid request.
                assert!(
                    status == 503 || status == 500,
                    "{name}: unexpected {status}: {text}"
                );
                log.uncertain.insert(ext);
            }
            Err(_) => {
                log.uncertain.insert(ext);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two nodes on a primary with a synchronous standby: one node is killed
/// (-9) in the middle of a request and the client carries on through the
/// other; then the primary is killed (-9) and the standby promoted. Every
/// acknowledged face is there afterwards, none twice, nothing appears that
/// the client did not send, and the audit chain verifies.
#[test]
fn failover_loses_no_acknowledged_write() {
    let test = "failover_loses_no_acknowledged_write";
    let Some(data) = common::data(test) else {
        return;
    };
    if server(test).is_none() {
        return;
    }
    let cluster = Cluster::start();
    let url = cluster.multi_host();
    let dir = common::temp_path("failover-nodes");
    let key = master_key(&dir);
    let args = [
        "--database",
        &url,
        "--master-key-file",
        key.to_str().unwrap(),
    ];
    let a = Server::start_in(dir.join("a"), &args);
    let b = Server::start_in(dir.join("b"), &args);
    call(
        &a,
        "CreateCollection",
        &json!({ "CollectionId": "failover" }),
    );

    let photos = photos(&data);
    let mut photos = photos.iter().cycle().take(24).enumerate();
    let mut log = Log::default();
    for (i, p) in photos.by_ref().take(6) {
        index_with_retries(&[&a, &b], i, p, &format!("p{i}"), &mut log);
    }
    // Node a dies in the middle of a request to it.
    let pid = a.pid().to_string();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    });
    let (i, p) = photos.next().unwrap();
    index_with_retries(&[&a, &b], 0, p, &format!("p{i}"), &mut log);
    killer.join().unwrap();
    for (i, p) in photos.by_ref().take(6) {
        index_with_retries(&[&a, &b], i, p, &format!("p{i}"), &mut log);
    }
    let acked_before = log.acked.len();

    // The primary dies; the standby is promoted while the client retries.
    cluster.kill_primary();
    let killed = Instant::now();
    let promoter = {
        let (dir, standby) = (cluster.dir.clone(), cluster.standby.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            promote(&dir, &standby);
        })
    };
    let (i, p) = photos.next().unwrap();
    index_with_retries(&[&a, &b], 1, p, &format!("p{i}"), &mut log);
    let outage = killed.elapsed();
    promoter.join().unwrap();
    for (i, p) in photos {
        index_with_retries(&[&a, &b], i, p, &format!("p{i}"), &mut log);
    }
    eprintln!(
        "{test}: {} faces acknowledged ({acked_before} before the primary died), {} requests \
         with unknown outcome; first write after the primary's death acknowledged {:.1} s later",
        log.acked.len(),
        log.uncertain.len(),
        outage.as_secs_f64()
    );

    // What the database holds, through the surviving node.
    let mut stored: Vec<(String, String)> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "CollectionId": "failover", "MaxResults": 100 });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = call(&b, "ListFaces", &body);
        for f in page["Faces"].as_array().unwrap() {
            stored.push((
                f["FaceId"].as_str().unwrap().to_owned(),
                f["ExternalImageId"].as_str().unwrap().to_owned(),
            ));
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let ids: BTreeSet<&String> = stored.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), stored.len(), "a face is listed twice");
    for (id, ext) in &log.acked {
        assert!(ids.contains(id), "acknowledged face {id} ({ext}) was lost");
    }
    for (id, ext) in &stored {
        assert!(
            log.acked.contains_key(id) || log.uncertain.contains(ext),
            "face {id} ({ext}) was never sent by the client"
        );
    }
    // The search path works on the promoted primary too.
    let found = call(
        &b,
        "SearchFacesByImage",
        &json!({ "CollectionId": "failover", "Image": image(p), "MaxFaces": 1 }),
    );
    assert_eq!(found["FaceMatches"].as_array().unwrap().len(), 1, "{found}");

    let out = Command::new(common::kenning_bin())
        .args(["audit", "verify", "--database", &cluster.standby])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success() && report["Valid"] == true, "{report}");
    drop((a, b));
}

/// `kenning serve --database DB` with whatever else `args` gives, expected
/// to refuse to start: its exit status and what it printed.
fn serve_refused(dir: &Path, db: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let key = master_key(dir);
    let out = Command::new(common::kenning_bin())
        .arg("--models")
        .arg(common::models())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("node"))
        .args(["--database", db, "--master-key-file", key.to_str().unwrap()])
        .args(args)
        .env("KENNING_ACCESS_KEY_ID", KEY_ID)
        .env("KENNING_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// The faults of a node on a database, as its clients and operators see
/// them: a database unreachable at start is named (without its password)
/// and the node exits non-zero; a database lost while serving answers 503
/// ThrottlingException naming it, and the node reconnects once it is back;
/// a database of a newer schema version is refused at start.
#[test]
fn database_faults_at_start_and_while_serving() {
    let test = "database_faults_at_start_and_while_serving";
    let Some(db) = TestDb::new(test) else {
        return;
    };
    let admin = server(test).unwrap();
    let dir = common::temp_path("db-faults");

    // Unreachable at start: a port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, text) = serve_refused(
        &dir,
        &format!("postgresql://kenning:hunter2secret@127.0.0.1:{port}/kenning"),
        &[],
    );
    assert!(!status.success(), "{text}");
    assert!(
        text.contains(&format!("postgresql://kenning@127.0.0.1:{port}/kenning")),
        "{text}"
    );
    assert!(!text.contains("hunter2secret"), "{text}");

    // Lost while serving: connections are cut and refused, then allowed again.
    let key = master_key(&dir);
    let node = Server::start_in(
        dir.join("node"),
        &[
            "--database",
            &db.url,
            "--master-key-file",
            key.to_str().unwrap(),
        ],
    );
    call(
        &node,
        "CreateCollection",
        &json!({ "CollectionId": "lost" }),
    );
    sql(
        &admin,
        &format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", db.name()),
    );
    sql(
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            db.name()
        ),
    );
    let describe = json!({ "CollectionId": "lost" }).to_string();
    for _ in 0..3 {
        let (status, _, text) = signed(
            &node.addr,
            "DescribeCollection",
            &describe,
            (KEY_ID, SECRET),
            now(),
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (status, v["__type"].as_str()),
            (503, Some("ThrottlingException")),
            "{text}"
        );
        let message = v["message"].as_str().or(v["Message"].as_str()).unwrap();
        assert!(message.contains("database"), "{text}");
        assert!(!message.contains(&db.password()), "{text}");
    }
    sql(
        &admin,
        &format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", db.name()),
    );
    let back = (0..20).any(|_| {
        let (status, _, _) = signed(
            &node.addr,
            "DescribeCollection",
            &describe,
            (KEY_ID, SECRET),
            now(),
        );
        status == 200 || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(back, "the node did not reconnect");
    drop(node);

    // A newer schema (as a newer Kenning would leave it) is refused.
    sql(
        &db.url,
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (1000000, 'future', 'x')",
    );
    let (status, text) = serve_refused(&dir, &db.url, &[]);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("schema version 1000000") && text.contains("upgrade Kenning"),
        "{text}"
    );
    assert!(!text.contains(&db.password()), "{text}");
}

/// Runs the kenning binary with `args` (and the models), returning its exit
/// status, standard output and standard error.
fn kenning(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(common::kenning_bin())
        .arg("--models")
        .arg(common::models())
        .args(args)
        .env_remove("KENNING_MASTER_KEY")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json_out(args: &[&str]) -> Value {
    let (status, out, err) = kenning(args);
    assert!(status.success(), "kenning {args:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `kenning migrate`: a data directory built through the service (faces,
/// a user, a collection under review with its candidates and probe photos,
/// a stored access key, the audit chain) is copied into a database; the
/// chain verifies there with the same head, a node on the database answers
/// the same searches with the same bytes and takes the stored key, a second
/// run is reported as done, and a database holding other data is refused
/// unless --replace.
#[test]
fn migrate_copies_a_data_directory_that_then_serves_the_same() {
    let test = "migrate_copies_a_data_directory_that_then_serves_the_same";
    let Some(data) = common::data(test) else {
        return;
    };
    let Some(db) = TestDb::new(test) else {
        return;
    };
    let dir = common::temp_path("migrate");
    let key = master_key(&dir);
    let key_arg = key.to_str().unwrap();
    let source = dir.join("source");
    let src = source.to_str().unwrap();
    let photos = photos(&data);

    // The data directory, built through the service and the CLI.
    let stored = json_out(&["keys", "create", "--data", src, "--role", "operator"]);
    let (stored_id, stored_secret) = (
        stored["AccessKeyId"].as_str().unwrap().to_owned(),
        stored["SecretAccessKey"].as_str().unwrap().to_owned(),
    );
    // Stream processors on a file source (defined, not started).
    let clips = data.join("video").canonicalize().unwrap();
    let bucket_arg = format!("clips={}", clips.display());
    let source_arg = format!("door={}", clips.join("short_hamilton_clip.mp4").display());
    let streams = [
        "--enable-streams",
        "--bucket",
        &bucket_arg,
        "--stream-source",
        &source_arg,
        "--stream-output",
        "door-out=sse",
    ];
    let node = Server::start_in(source.clone(), &streams);
    for c in ["plain", "watch"] {
        call(&node, "CreateCollection", &json!({ "CollectionId": c }));
    }
    call(
        &node,
        "PutCollectionPolicy",
        &json!({ "CollectionId": "watch", "Policy": { "RequiredReviewers": 1 } }),
    );
    let mut first = None;
    for (i, p) in photos.iter().take(10).enumerate() {
        for c in ["plain", "watch"] {
            let r = call(
                &node,
                "IndexFaces",
                &json!({ "CollectionId": c, "Image": image(p), "ExternalImageId": format!("p{i}") }),
            );
            if c == "plain" {
                if let Some(f) = r["FaceRecords"][0]["Face"]["FaceId"].as_str() {
                    first.get_or_insert_with(|| f.to_owned());
                }
            }
        }
    }
    let first = first.expect("no face indexed");
    call(
        &node,
        "CreateStreamProcessor",
        &json!({
            "Name": "door",
            "Input": { "KinesisVideoStream": { "Arn": "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door/1" } },
            "Output": { "KinesisDataStream": { "Arn": "arn:aws:kinesis:us-east-1:123456789012:stream/door-out" } },
            "Settings": { "FaceSearch": { "CollectionId": "plain", "FaceMatchThreshold": 85 } },
            "RoleArn": "arn:aws:iam::123456789012:role/kenning",
            "Tags": { "site": "north door" },
        }),
    );
    call(
        &node,
        "CreateUser",
        &json!({ "CollectionId": "plain", "UserId": "u1" }),
    );
    call(
        &node,
        "AssociateFaces",
        &json!({ "CollectionId": "plain", "UserId": "u1", "FaceIds": [first] }),
    );
    let queued = call(
        &node,
        "SearchFacesByImage",
        &json!({ "CollectionId": "watch", "Image": image(&photos[1]), "FaceMatchThreshold": 0 }),
    );
    assert!(
        queued["FaceMatches"].as_array().unwrap().len() > 1,
        "{queued}"
    );
    let requests = [
        (
            "SearchFacesByImage",
            json!({ "CollectionId": "plain", "Image": image(&photos[1]), "MaxFaces": 20, "FaceMatchThreshold": 0 }),
        ),
        (
            "SearchFaces",
            json!({ "CollectionId": "plain", "FaceId": first, "MaxFaces": 20, "FaceMatchThreshold": 0 }),
        ),
        (
            "SearchUsersByImage",
            json!({ "CollectionId": "plain", "Image": image(&photos[0]) }),
        ),
        (
            "ListFaces",
            json!({ "CollectionId": "plain", "MaxResults": 100 }),
        ),
        ("ListUsers", json!({ "CollectionId": "plain" })),
        ("DescribeCollection", json!({ "CollectionId": "watch" })),
        ("ListCollections", json!({})),
        ("GetCollectionPolicy", json!({ "CollectionId": "watch" })),
        ("DescribeStreamProcessor", json!({ "Name": "door" })),
        ("ListStreamProcessors", json!({})),
    ];
    // Evaluation reports: one published, one dropped in by hand as admins
    // did before reports were published.
    call(
        &node,
        "PutEvalReport",
        &json!({ "Name": "published", "Report": site_report("site-camera-1") }),
    );
    std::fs::write(
        source.join("eval/by-hand.json"),
        site_report("site-camera-2").to_string(),
    )
    .unwrap();
    let evals_before = call(&node, "ListEvalReports", &json!({}));
    assert_eq!(evals_before["EvalReports"].as_array().unwrap().len(), 2);
    let before: Vec<Value> = requests
        .iter()
        .map(|(op, body)| call(&node, op, body))
        .collect();
    assert!(node.stop().success());
    let reviews_before = json_out(&["review", "list", "--data", src]);
    let verified = json_out(&["audit", "verify", "--data", src]);
    let probes_before: BTreeSet<String> = std::fs::read_dir(source.join("probes"))
        .unwrap()
        .map(|e| {
            use sha2::Digest as _;
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.split('.').next().unwrap().to_owned();
            format!("{id}:{}", hex::encode(sha2::Sha256::digest(bytes)))
        })
        .collect();
    assert!(!probes_before.is_empty(), "no probe photo kept");

    // Migrate.
    let migrate = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "--from",
            src,
            "--to",
            url,
            "--master-key-file",
            key_arg,
        ];
        args.extend_from_slice(extra);
        kenning(&args)
    };
    let (status, out, err) = migrate(&db.url, &[]);
    assert!(status.success(), "{err}");
    assert!(!err.contains(&db.password()), "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let m = &report["Migrated"];
    assert_eq!(m["collections"], 2, "{report}");
    assert_eq!(
        m["faces"].as_u64(),
        Some(2 * (before[3]["Faces"].as_array().unwrap().len() as u64)),
        "{report}"
    );
    assert_eq!(m["users"], 1, "{report}");
    assert_eq!(m["access_keys"], 1, "{report}");
    assert_eq!(
        m["review_items"].as_u64(),
        Some(queued["FaceMatches"].as_array().unwrap().len() as u64),
        "{report}"
    );
    assert_eq!(m["probe_photos"].as_u64(), Some(probes_before.len() as u64));
    assert_eq!(m["stream_processors"], 1, "{report}");
    assert_eq!(m["eval_reports"], 2, "{report}");
    for what in ["stream", "eval"] {
        assert!(!report["NotCopied"].to_string().contains(what), "{report}");
    }
    assert_eq!(m["audit_records"], verified["Records"], "{report}");
    assert_eq!(report["AuditHead"]["Hash"], verified["Head"], "{report}");
    assert!(err.contains("copied 2 collections"), "{err}");

    // The same chain, read back from the database by `kenning audit verify`.
    let in_db = json_out(&[
        "audit",
        "verify",
        "--database",
        &db.url,
        "--master-key-file",
        key_arg,
    ]);
    assert_eq!(in_db, verified, "the chain in the database differs");
    let probes_after: BTreeSet<String> = pg::query(
        &db.url,
        "SELECT request_id || ':' || encode(sha256(bytes), 'hex') FROM review_probes",
    )
    .into_iter()
    .collect();
    assert_eq!(probes_after, probes_before);

    // A node on the database answers as the data directory's node did.
    let reviews_after = json_out(&[
        "review",
        "list",
        "--data",
        dir.join("x").to_str().unwrap(),
        "--database",
        &db.url,
        "--master-key-file",
        key_arg,
    ]);
    assert_eq!(reviews_after, reviews_before);
    let mut on_db = vec!["--database", &db.url, "--master-key-file", key_arg];
    on_db.extend(streams);
    let node = Server::start_in(dir.join("node"), &on_db);
    for ((op, body), expected) in requests.iter().zip(&before) {
        assert_eq!(
            &call(&node, op, body),
            expected,
            "{op} differs after the migration"
        );
    }
    // The same reports, byte for byte (UpdatedAt is the file's time on one
    // side and the copy's on the other).
    let sums = |v: &Value| -> Vec<(Value, Value)> {
        v["EvalReports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["Name"].clone(), r["Sha256"].clone()))
            .collect()
    };
    assert_eq!(
        sums(&call(&node, "ListEvalReports", &json!({}))),
        sums(&evals_before)
    );
    // The stored key's secret was sealed again with the master key.
    let (status, _, text) = signed(
        &node.addr,
        "DescribeCollection",
        &json!({ "CollectionId": "plain" }).to_string(),
        (&stored_id, &stored_secret),
        now(),
    );
    assert_eq!(status, 200, "{text}");
    drop(node);

    // A second run finds the chain there already and copies nothing.
    let (status, out, err) = migrate(&db.url, &[]);
    assert!(status.success(), "{err}");
    assert!(out.contains("\"AlreadyMigrated\":true"), "{out}");
    assert!(
        err.contains("migrated before") && err.contains("written since"),
        "{err}"
    );
    let faces: Vec<String> = pg::query(&db.url, "SELECT count(*)::text FROM faces");
    assert_eq!(faces, [m["faces"].to_string()]);

    // A database holding something else is refused, unless --replace.
    let Some(other) = TestDb::new(test) else {
        return;
    };
    let other_node = Server::start_in(
        dir.join("other-node"),
        &["--database", &other.url, "--master-key-file", key_arg],
    );
    call(
        &other_node,
        "CreateCollection",
        &json!({ "CollectionId": "elsewhere" }),
    );
    drop(other_node);
    let (status, _, err) = migrate(&other.url, &[]);
    assert!(!status.success());
    assert!(
        err.contains("is not empty (1 collections") && err.contains("--replace"),
        "{err}"
    );
    let (status, _, err) = migrate(&other.url, &["--replace"]);
    assert!(status.success(), "{err}");
    let ids: Vec<String> = pg::query(&other.url, "SELECT id FROM collections ORDER BY id");
    assert_eq!(ids, ["plain", "watch"]);
    let in_other = json_out(&[
        "audit",
        "verify",
        "--database",
        &other.url,
        "--master-key-file",
        key_arg,
    ]);
    assert_eq!(in_other, verified);
}

/// Waits until `check` gives `Some`, polling every 200 ms, at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The persons of a GetFaceSearch answer as (Timestamp, Person.Index, the
/// best match's ExternalImageId), all pages merged.
fn persons(node: &Server, job: &str) -> Vec<(u64, u64, Option<String>)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "JobId": job, "SortBy": "TIMESTAMP" });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = call(node, "GetFaceSearch", &body);
        assert_eq!(page["JobStatus"], "SUCCEEDED", "{page}");
        for p in page["Persons"].as_array().unwrap() {
            out.push((
                p["Timestamp"].as_u64().unwrap(),
                p["Person"]["Index"].as_u64().unwrap(),
                p["FaceMatches"][0]["Face"]["ExternalImageId"]
                    .as_str()
                    .map(str::to_owned),
            ));
        }
        token = page["NextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

/// A processor's frames analysed on `node`, from its /metrics.
fn frames_analysed(node: &Server, processor: &str) -> u64 {
    let (_, _, text) = crate::server::http(&node.addr, "GET", "/metrics", &[], b"");
    let prefix = format!("kenning_stream_frames_analysed_total{{processor=\"{processor}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Two nodes, A and B (data under `dir`), of `db` with streams on, whose
/// source `door` loops a copy of the Hamilton clip (in bucket `clips`: a
/// looped file source must be in a bucket), with `extra` arguments and
/// stream leases of `stream_lease` seconds; and the copy's path.
fn streaming_nodes(
    db: &TestDb,
    dir: &Path,
    data: &Path,
    extra: &[&str],
    stream_lease: &str,
) -> (Server, Server, PathBuf) {
    let key = master_key(dir);
    let bucket = dir.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let clip = bucket.join("clip.mp4");
    std::fs::copy(data.join("video/short_hamilton_clip.mp4"), &clip).unwrap();
    let mut args: Vec<String> = vec![
        "--database".into(),
        db.url.clone(),
        "--master-key-file".into(),
        key.to_str().unwrap().into(),
        "--bucket".into(),
        format!("clips={}", bucket.display()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend([
        "--enable-streams".into(),
        "--stream-source".into(),
        format!("door={}#loop", clip.display()),
        "--stream-output".into(),
        "door-out=sse".into(),
        "--stream-lease-seconds".into(),
        stream_lease.into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = Server::start_in(dir.join("a"), &args);
    let b = Server::start_in(dir.join("b"), &args);
    (a, b, clip)
}

/// Creates stream processor `door` (source `door`, output `door-out`) on
/// `node`, searching `collection`.
fn create_door(node: &Server, collection: &str) {
    create_processor(node, "door", "door-out", collection);
}

/// Creates stream processor `name` reading source `name` and writing to
/// `output` on `node`, searching `collection`.
fn create_processor(node: &Server, name: &str, output: &str, collection: &str) {
    call(
        node,
        "CreateStreamProcessor",
        &json!({
            "Name": name,
            "Input": { "KinesisVideoStream": { "Arn": format!("arn:aws:kinesisvideo:us-east-1:123456789012:stream/{name}/1") } },
            "Output": { "KinesisDataStream": { "Arn": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{output}") } },
            "Settings": { "FaceSearch": { "CollectionId": collection } },
            "RoleArn": "arn:aws:iam::123456789012:role/kenning",
        }),
    );
}

/// Two nodes on one database; node A takes a stored-video search and a
/// stream processor, and is killed with SIGKILL in the middle of the job.
/// Node B resumes the job once A's lease ended and answers GetFaceSearch
/// with the same persons a run on one node gives, and takes the running
/// processor over.
#[test]
fn a_killed_nodes_video_job_and_stream_processor_go_to_another_node() {
    let test = "a_killed_nodes_video_job_and_stream_processor_go_to_another_node";
    let Some(data) = common::data(test) else {
        return;
    };
    let Some(db) = TestDb::new(test) else {
        return;
    };
    let video = data.join("video");
    let dir = common::temp_dir("takeover");
    let (a, b, clip) = streaming_nodes(&db, &dir, &data, &["--video-lease-seconds", "3"], "3");
    call(
        &b,
        "CreateCollection",
        &json!({ "CollectionId": "hamilton" }),
    );
    let mut refs: Vec<PathBuf> = std::fs::read_dir(video.join("reference"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    refs.sort();
    for r in &refs {
        call(
            &b,
            "IndexFaces",
            &json!({ "CollectionId": "hamilton", "Image": image(r), "MaxFaces": 1,
                     "ExternalImageId": r.file_name().unwrap().to_str().unwrap() }),
        );
    }
    let search = |node: &Server, token: &str| {
        call(
            node,
            "StartFaceSearch",
            &json!({ "Video": { "S3Object": { "Bucket": "clips", "Name": "clip.mp4" } },
                     "CollectionId": "hamilton", "ClientRequestToken": token }),
        )["JobId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A runs the processor...
    create_door(&a, "hamilton");
    call(&a, "StartStreamProcessor", &json!({ "Name": "door" }));
    wait_for(120, "A to analyse frames of the processor", || {
        (frames_analysed(&a, "door") > 0).then_some(())
    });
    let owner = || {
        pg::query(
            &db.url,
            "SELECT coalesce(owner, '') FROM stream_processors WHERE name = 'door'",
        )
        .remove(0)
    };
    let a_node = owner();
    assert!(!a_node.is_empty());
    // ...and the video job, killed in its middle.
    let job = search(&a, "takeover");
    std::thread::sleep(Duration::from_millis(1500));
    let status = call(&b, "GetFaceSearch", &json!({ "JobId": job }));
    assert_eq!(status["JobStatus"], "IN_PROGRESS", "{status}");
    drop(a);
    let killed = Instant::now();
    let status = call(&b, "GetFaceSearch", &json!({ "JobId": job }));
    assert_eq!(
        status["JobStatus"], "IN_PROGRESS",
        "the job ended before node A was killed: the test needs a longer one"
    );
    // B describes the processor as RUNNING throughout, and takes it over
    // after A's lease.
    let described = call(&b, "DescribeStreamProcessor", &json!({ "Name": "door" }));
    assert_eq!(described["Status"], "RUNNING", "{described}");
    wait_for(120, "B to analyse frames of the processor", || {
        (frames_analysed(&b, "door") > 0).then_some(())
    });
    let b_node = owner();
    assert!(!b_node.is_empty() && b_node != a_node, "{a_node} {b_node}");
    eprintln!(
        "{test}: B runs the processor {:.1} s after A was killed",
        killed.elapsed().as_secs_f64()
    );
    // The job completes on B, run again from the start (its second attempt).
    wait_for(600, "B to finish the job", || {
        let v = call(&b, "GetFaceSearch", &json!({ "JobId": job }));
        (v["JobStatus"] != "IN_PROGRESS").then_some(())
    });
    eprintln!(
        "{test}: B finished the job {:.1} s after A was killed",
        killed.elapsed().as_secs_f64()
    );
    let attempts = pg::query(
        &db.url,
        &format!(
            "SELECT convert_from(job, 'UTF8')::json->>'attempts' FROM video_jobs \
             WHERE job_id = '{job}'"
        ),
    );
    assert_eq!(attempts, ["2"], "A's attempt and B's");
    let resumed = persons(&b, &job);
    // The same search on one node, start to end.
    let single = search(&b, "single");
    wait_for(600, "the single-node run", || {
        let v = call(&b, "GetFaceSearch", &json!({ "JobId": single }));
        (v["JobStatus"] != "IN_PROGRESS").then_some(())
    });
    let alone = persons(&b, &single);
    assert!(
        alone.iter().any(|p| p.2.is_some()),
        "the run found nobody: {alone:?}"
    );
    assert_eq!(resumed, alone);
    // `kenning video` on the database: the same persons, its job kept there.
    let key = master_key(&dir);
    let out = json_out(&[
        "--database",
        &db.url,
        "--master-key-file",
        key.to_str().unwrap(),
        "--data",
        dir.join("cli").to_str().unwrap(),
        "video",
        "search",
        "--collection",
        "hamilton",
        clip.to_str().unwrap(),
    ]);
    assert_eq!(out["JobStatus"], "SUCCEEDED", "{out}");
    let mut cli: Vec<(u64, u64, Option<String>)> = out["Persons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["Timestamp"].as_u64().unwrap(),
                p["Person"]["Index"].as_u64().unwrap(),
                p["FaceMatches"][0]["Face"]["ExternalImageId"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect();
    cli.sort();
    let mut sorted = alone.clone();
    sorted.sort();
    assert_eq!(cli, sorted);
    let jobs = pg::query(&db.url, "SELECT count(*)::text FROM video_jobs");
    assert_eq!(jobs, ["3"]);
    assert!(
        !dir.join("cli/video").exists(),
        "kenning video kept its job in the data directory"
    );
    // Stopped on B, it stays stopped.
    call(&b, "StopStreamProcessor", &json!({ "Name": "door" }));
    let described = call(&b, "DescribeStreamProcessor", &json!({ "Name": "door" }));
    assert_eq!(described["Status"], "STOPPED", "{described}");
    assert_eq!(owner(), "");
    assert!(b.terminate().success());
}

/// `kenning keys token create ID` on database `url` (the root key from the
/// environment included): the bearer token.
fn db_token(url: &str, key: &str, id: &str) -> String {
    let out = Command::new(common::kenning_bin())
        .args(["keys", "token", "create", id, "--database", url])
        .args(["--master-key-file", key])
        .env("KENNING_ACCESS_KEY_ID", KEY_ID)
        .env("KENNING_SECRET_ACCESS_KEY", SECRET)
        .env_remove("KENNING_MASTER_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Token"].as_str().unwrap().to_owned()
}

/// A shipped fairness report, relabelled as measured for recogniser
/// `recogniser`, so pages that show it can be told from the shipped ones.
fn site_report(recogniser: &str) -> Value {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../recognisers/sface-2021dec/eval/fairness-gender.json"
    );
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
    r["recogniser"] = json!(recogniser);
    r
}

/// An evaluation report published through the REST API on one node is
/// stored in the database: the other node's console shows it, lists it and
/// deletes it. Only admins publish (a reviewer's attempt is refused and
/// recorded), and what is not a report is refused with Rekognition's
/// exception names.
#[test]
fn an_eval_report_published_on_one_node_is_shown_by_another() {
    let test = "an_eval_report_published_on_one_node_is_shown_by_another";
    let Some(db) = TestDb::new(test) else {
        return;
    };
    let dir = common::temp_path("evals");
    let key = master_key(&dir);
    let key_arg = key.to_str().unwrap();
    let on_db = ["--database", &db.url, "--master-key-file", key_arg];
    let a = Server::start_in(dir.join("a"), &on_db);
    let b = Server::start_in(dir.join("b"), &on_db);
    let reviewer = call(&a, "CreateAccessKey", &json!({ "Role": "reviewer" }));
    let reviewer = reviewer["AccessKeyId"].as_str().unwrap();
    let bearer = |token: String| {
        vec![
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".to_owned()),
        ]
    };
    let admin = bearer(db_token(&db.url, key_arg, KEY_ID));
    let refused = bearer(db_token(&db.url, key_arg, reviewer));
    let report = site_report("site-camera-7").to_string();
    let put = |node: &Server, auth: &[(&str, String)], name: &str, body: &str| {
        let (status, _, text) = crate::server::http(
            &node.addr,
            "PUT",
            &format!("/v1/eval-reports/{name}"),
            auth,
            body.as_bytes(),
        );
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(json!(text)),
        )
    };

    let (status, v) = put(&a, &admin, "north-door", &report);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Replaced"], false, "{v}");
    let (status, v) = put(&a, &refused, "north-door", &report);
    assert_eq!(
        (status, v["__type"].as_str()),
        (403, Some("AccessDeniedException")),
        "{v}"
    );
    for (name, body, kind, says) in [
        ("north-door", "{not json", "SerializationException", "JSON"),
        (
            "north-door",
            r#"{"groups": ["gender"]}"#,
            "InvalidParameterException",
            "not a fairness report",
        ),
        (
            &"n".repeat(129),
            report.as_str(),
            "InvalidParameterException",
            "report name",
        ),
    ] {
        let (status, v) = put(&b, &admin, name, body);
        assert_eq!((status, v["__type"].as_str()), (400, Some(kind)), "{v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{v}");
    }
    // The admin's publication and the reviewer's refusal are both recorded.
    let lines = pg::query(
        &db.url,
        "SELECT line FROM audit_records WHERE line LIKE '%\"operation\":\"PutEvalReport\"%' ORDER BY seq",
    );
    let outcomes: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["record"]["outcome"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(outcomes[..2], ["ok", "AccessDeniedException"], "{lines:?}");

    // The other node shows and lists it.
    let (status, h) = crate::console::sign_in(&b.addr, KEY_ID, SECRET);
    assert_eq!(status, 303);
    let session = crate::console::cookie(&h, "kenning_session");
    let (status, _, page) = crate::console::get(&b.addr, "/console/accuracy", &session);
    assert_eq!(status, 200);
    assert!(page.contains("site-camera-7 (fair) by gender"), "{page}");
    assert!(page.contains("published report north-door"), "{page}");
    let listed = call(&b, "ListEvalReports", &json!({}));
    assert_eq!(listed["EvalReports"][0]["Name"], "north-door", "{listed}");
    assert_eq!(listed["EvalReports"].as_array().unwrap().len(), 1);

    // Deleted on the other node, it is gone from the first one's console.
    let (status, _, text) = crate::server::http(
        &b.addr,
        "DELETE",
        "/v1/eval-reports/north-door",
        &admin,
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let (status, h) = crate::console::sign_in(&a.addr, KEY_ID, SECRET);
    assert_eq!(status, 303);
    let session = crate::console::cookie(&h, "kenning_session");
    let (_, _, page) = crate::console::get(&a.addr, "/console/accuracy", &session);
    assert!(!page.contains("site-camera-7"), "{page}");
    assert!(
        page.contains("sface-2021dec (fair) by gender"),
        "the shipped reports stay"
    );

    // `kenning eval publish` on the database: the nodes list it at once.
    let file = dir.join("site-8.json");
    std::fs::write(&file, site_report("site-camera-8").to_string()).unwrap();
    let published = json_out(&[
        "--data",
        dir.join("cli").to_str().unwrap(),
        "--database",
        &db.url,
        "--master-key-file",
        key_arg,
        "eval",
        "publish",
        file.to_str().unwrap(),
    ]);
    assert_eq!(published["Name"], "site-8", "{published}");
    let listed = call(&a, "ListEvalReports", &json!({}));
    assert_eq!(listed["EvalReports"][0]["Name"], "site-8", "{listed}");
    assert_eq!(listed["EvalReports"][0]["Sha256"], published["Sha256"]);
    assert!(
        !dir.join("cli/eval").exists(),
        "published into the data directory"
    );
}

/// A running stream processor's counters are saved with its node's lease
/// renewals: the other node of the database describes them, with their
/// age, and they stop growing (and age) once their node is gone. The
/// status is saved with them: a processor whose source nobody serves is
/// FAILED and reconnecting on its node, and the other node says so too.
#[test]
fn a_stream_processors_counters_are_described_by_every_node() {
    let test = "a_stream_processors_counters_are_described_by_every_node";
    let Some(data) = common::data(test) else {
        return;
    };
    let Some(db) = TestDb::new(test) else {
        return;
    };
    let dir = common::temp_dir("counters");
    let gone = format!(
        "gone=http://127.0.0.1:{}/cam.ts",
        crate::streams::free_port()
    );
    let extra = ["--stream-source", &gone, "--stream-output", "gone-out=sse"];
    let (a, b, _) = streaming_nodes(&db, &dir, &data, &extra, "30");
    call(&a, "CreateCollection", &json!({ "CollectionId": "staff" }));
    create_door(&a, "staff");
    create_processor(&a, "gone", "gone-out", "staff");
    let describe =
        |node: &Server| call(node, "DescribeStreamProcessor", &json!({ "Name": "door" }));
    assert!(
        describe(&b).get("Counters").is_none(),
        "never run: no counters"
    );
    call(&a, "StartStreamProcessor", &json!({ "Name": "door" }));
    call(&a, "StartStreamProcessor", &json!({ "Name": "gone" }));
    // Reconnecting on A; B describes and lists the same status once A has
    // renewed its lease (every 10 s), not the stored RUNNING.
    let reconnecting = |d: &Value| {
        d["Status"] == "FAILED"
            && d["StatusMessage"]
                .as_str()
                .is_some_and(|m| m.contains("source gone") && m.contains("reconnecting"))
    };
    let describe_gone =
        |node: &Server| call(node, "DescribeStreamProcessor", &json!({ "Name": "gone" }));
    wait_for(60, "A to describe gone as reconnecting", || {
        reconnecting(&describe_gone(&a)).then_some(())
    });
    let on_b = wait_for(30, "B to describe gone as A does", || {
        let d = describe_gone(&b);
        reconnecting(&d).then_some(d)
    });
    assert!(
        on_b["Counters"]["Reconnects"].as_u64().unwrap() >= 1,
        "{on_b}"
    );
    for k in ["Status", "StatusMessage", "SessionId"] {
        assert!(on_b["Counters"].get(k).is_none(), "{on_b}");
    }
    let listed = call(&b, "ListStreamProcessors", &json!({}));
    assert!(
        listed["StreamProcessors"]
            .as_array()
            .unwrap()
            .contains(&json!({ "Name": "gone", "Status": "FAILED" })),
        "{listed}"
    );
    let a_node = wait_for(60, "A to hold the processor", || {
        let o = pg::query(
            &db.url,
            "SELECT coalesce(owner, '') FROM stream_processors WHERE name = 'door'",
        )
        .remove(0);
        (!o.is_empty()).then_some(o)
    });
    // B does not run it; it describes what A saved with a renewal (every
    // 10 s with 30 s leases), however many frames A analysed since.
    let first = wait_for(120, "B to describe A's counters", || {
        let d = describe(&b);
        (d["Counters"]["FramesAnalysed"].as_u64().unwrap_or(0) > 0).then_some(d)
    });
    let c = &first["Counters"];
    assert_eq!(first["Status"], "RUNNING", "{first}");
    assert_eq!(c["Node"], a_node.as_str(), "{first}");
    assert!(c["AgeSeconds"].as_f64().unwrap() <= 11.0, "{first}");
    assert!(c["FramesIn"].as_u64().unwrap() >= c["FramesAnalysed"].as_u64().unwrap());
    let on_a = describe(&a);
    assert_eq!(
        on_a["Counters"]["AgeSeconds"], 0.0,
        "A reads its own: {on_a}"
    );
    assert!(
        on_a["Counters"]["FramesAnalysed"].as_u64() >= c["FramesAnalysed"].as_u64(),
        "{on_a} {first}"
    );
    // They grow on B's view with A's next renewal.
    let analysed = c["FramesAnalysed"].as_u64().unwrap();
    wait_for(30, "B to see A's counters grow", || {
        let d = describe(&b);
        (d["Counters"]["FramesAnalysed"].as_u64().unwrap() > analysed).then_some(())
    });
    // A gone (killed), B still describes A's last counters, older now.
    drop(a);
    let last = describe(&b)["Counters"].clone();
    std::thread::sleep(Duration::from_secs(2));
    let later = describe(&b)["Counters"].clone();
    assert_eq!(later["FramesAnalysed"], last["FramesAnalysed"]);
    assert_eq!(later["Node"], a_node.as_str());
    assert!(
        later["AgeSeconds"].as_f64().unwrap() >= last["AgeSeconds"].as_f64().unwrap() + 1.5,
        "{last} {later}"
    );
    call(&b, "StopStreamProcessor", &json!({ "Name": "door" }));
    assert!(b.terminate().success());
}
