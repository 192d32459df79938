//! Accountability on real photos: policies, review, retention with physical
//! erasure and an audit trail that is part of every operation, through the
//! library both front ends share and through the `kenning` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use kenning_accountability::{audit_path, Caller, Governor, Grant, Principal, Role};
use kenning_collections::Collections;
use kenning_models::Equalise;
use kenning_store::{Face, NewFace};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common;

fn examples(data: &Path) -> PathBuf {
    data.join("misc/face_recognition/examples")
}

fn image(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    json!({ "Bytes": base64::engine::general_purpose::STANDARD.encode(bytes) })
}

fn caller(key: &str, grant: Grant, case: Option<&str>) -> Caller {
    let mut c = Caller::new(Principal::new(key, grant));
    c.case = case.map(Into::into);
    c
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Fails if `hay` holds vector `v`: its little- or big-endian bytes, their
/// base64, or any element's text as f32 or widened to f64 (long enough that
/// a match cannot be chance: 7 or more characters).
fn assert_no_vector(hay: &[u8], v: &[f32], what: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let le = f32_bytes(v);
    let be: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
    for (form, needle) in [
        ("bytes", le.clone()),
        ("big-endian bytes", be),
        ("base64", b64.encode(&le).into_bytes()),
        ("base64 of 16 elements", b64.encode(&le[..64]).into_bytes()),
    ] {
        assert!(
            !contains(hay, &needle),
            "{what}'s vector is in the trail as {form}"
        );
    }
    let mut checked = 0;
    for x in v {
        for text in [
            format!("{x}"),
            format!("{}", f64::from(*x)),
            format!("{x:e}"),
        ] {
            if text.len() >= 7 {
                checked += 1;
                assert!(
                    !contains(hay, text.as_bytes()),
                    "{what}'s vector element {text} is in the trail"
                );
            }
        }
    }
    assert!(
        checked > v.len(),
        "{what}: only {checked} text forms were long enough to check"
    );
}

/// A copy of `v` nudged so its bytes are unique but it still matches `v`.
fn nudged(v: &[f32]) -> Vec<f32> {
    let mut out: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, x)| x + if i % 7 == 0 { 1e-3 } else { 0.0 })
        .collect();
    let n = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    out.iter_mut().for_each(|x| *x /= n);
    out
}

fn audit_records(dir: &Path) -> Vec<Value> {
    kenning_audit::records(&audit_path(dir))
        .unwrap()
        .map(|r| serde_json::to_value(r.unwrap().0).unwrap())
        .collect()
}

#[test]
fn policy_retention_erasure_and_audit_through_the_governor() {
    let Some(data) = common::data("policy_retention_erasure_and_audit_through_the_governor") else {
        return;
    };
    let ex = examples(&data);
    let dir = common::temp_path("acct-gov");
    let collections = Arc::new(Collections::open(&dir, common::pipeline().clone()).unwrap());
    let g = Governor::open(&dir, collections.clone()).unwrap();
    let admin = caller("ADMIN", Grant::admin(), None);
    let operator = caller(
        "OPERATOR",
        Grant {
            role: Role::Operator,
            collections: Some(vec!["watch".into()]),
            operations: None,
        },
        Some("CASE-1"),
    );
    let policy = json!({
        "MaxExpectedFalseMatches": 0.001,
        "Retention": { "Days": 1, "After": "LAST_MATCH" },
    });
    g.call(
        &admin,
        "CreateCollection",
        json!({ "CollectionId": "watch", "Policy": policy }),
    )
    .unwrap();
    // A misspelt rule is refused rather than silently ignored.
    let e = g
        .call(
            &admin,
            "CreateCollection",
            json!({ "CollectionId": "typo", "Policy": { "MinFaceMatchTreshold": 99 } }),
        )
        .unwrap_err();
    assert_eq!(e.kind, "InvalidParameterException", "{e}");

    let index = |file: &str, ext: &str| {
        let (v, _) = g
            .call(
                &operator,
                "IndexFaces",
                json!({ "CollectionId": "watch", "Image": image(&ex.join(file)), "ExternalImageId": ext, "MaxFaces": 1 }),
            )
            .unwrap();
        v["FaceRecords"][0]["Face"]["FaceId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let obama = index("obama-1080p.jpg", "obama");
    let biden = index("biden.jpg", "biden");

    // Faces indexed three days ago (an import straight into the store), as
    // near copies of the fresh ones; reopening rebuilds the index with them.
    let ((old_obama, old_obama_vec), (old_biden, old_biden_vec)) = {
        let store = collections.store();
        let model = store.describe_collection("watch").unwrap().face_model;
        let old = now_ms() - 3 * 86_400_000;
        let copy = |face_id: &str, ext: &str| {
            let (face, v) = store.face_embedding("watch", face_id).unwrap();
            let v = nudged(&v);
            let added = store
                .add_faces(
                    "watch",
                    &model,
                    vec![NewFace {
                        image_id: face.image_id,
                        external_image_id: Some(ext.into()),
                        bounding_box: face.bounding_box,
                        confidence: face.confidence,
                        embedding: v.clone(),
                        indexed_at_ms: Some(old),
                        pixels: None,
                    }],
                )
                .unwrap();
            (added[0].face_id.to_string(), v)
        };
        (copy(&obama, "obama-old"), copy(&biden, "biden-old"))
    };
    drop(g);
    drop(collections);
    let collections = Arc::new(Collections::open(&dir, common::pipeline().clone()).unwrap());
    let g = Governor::open(&dir, collections.clone()).unwrap();
    let store = collections.store();

    // Purpose binding: at threshold 60 four faces expect 0.04 false matches.
    let probe = ex.join("obama-240p.jpg");
    let e = g
        .call(
            &operator,
            "SearchFacesByImage",
            json!({ "CollectionId": "watch", "Image": image(&probe), "FaceMatchThreshold": 60 }),
        )
        .unwrap_err();
    assert_eq!(e.kind, "InvalidParameterException");
    assert!(
        e.message.contains("at most 0.001 expected false matches"),
        "{e}"
    );
    // Scope: the operator's key does not reach other collections.
    let e = g
        .call(
            &operator,
            "DescribeCollection",
            json!({ "CollectionId": "typo" }),
        )
        .unwrap_err();
    assert_eq!(e.kind, "AccessDeniedException");

    let (found, _) = g
        .call(
            &operator,
            "SearchFacesByImage",
            json!({ "CollectionId": "watch", "Image": image(&probe) }),
        )
        .unwrap();
    let mut matched: Vec<&str> = found["FaceMatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Face"]["ExternalImageId"].as_str().unwrap())
        .collect();
    matched.sort_unstable();
    assert_eq!(matched, ["obama", "obama-old"]);

    // Retention: the old Biden face was never matched and goes; the old Obama
    // face matched just now and stays. Its bytes leave the files.
    let (r, _) = g.call(&admin, "RunRetention", json!({})).unwrap();
    assert_eq!(
        r["Collections"],
        json!([{ "CollectionId": "watch", "FacesDeleted": 1 }])
    );
    let (listed, _) = g
        .call(&admin, "ListFaces", json!({ "CollectionId": "watch" }))
        .unwrap();
    let mut left: Vec<&str> = listed["Faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FaceId"].as_str().unwrap())
        .collect();
    left.sort_unstable();
    let mut expect = vec![obama.as_str(), biden.as_str(), old_obama.as_str()];
    expect.sort_unstable();
    assert_eq!(left, expect);
    let (by_face, _) = g
        .call(
            &operator,
            "SearchFaces",
            json!({ "CollectionId": "watch", "FaceId": biden }),
        )
        .unwrap();
    assert!(
        !by_face.to_string().contains(&old_biden),
        "a deleted face was found: {by_face}"
    );
    collections.flush().unwrap();
    let db = std::fs::read(dir.join(kenning_store::DB_FILE)).unwrap();
    let kix = std::fs::read(dir.join("index/watch.kix")).unwrap();
    assert!(
        contains(&db, &f32_bytes(&old_obama_vec)),
        "the check can find a vector"
    );
    assert!(contains(&kix, &f32_bytes(&old_obama_vec)));
    assert!(
        !contains(&db, &f32_bytes(&old_biden_vec)),
        "deleted vector still in the store file"
    );
    assert!(
        !contains(&kix, &f32_bytes(&old_biden_vec)),
        "deleted vector still in the index file"
    );

    // The trail: every change and search, in order, with what it means.
    let records = audit_records(&dir);
    let ops: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let ops: Vec<(&str, &str)> = ops.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("CreateCollection", "ok"),
            ("CreateCollection", "InvalidParameterException"),
            ("IndexFaces", "ok"),
            ("IndexFaces", "ok"),
            ("StoreChange", "ok"),
            ("StoreChange", "ok"),
            ("SearchFacesByImage", "InvalidParameterException"),
            ("DescribeCollection", "AccessDeniedException"),
            ("SearchFacesByImage", "ok"),
            ("RunRetention", "ok"),
            ("SearchFaces", "ok"),
        ]
    );
    let search = &records[8];
    assert_eq!(search["access_key"], "OPERATOR");
    assert_eq!(search["case"], "CASE-1");
    assert_eq!(search["face_count"], 4);
    assert_eq!(search["threshold"], 80.0);
    assert_eq!(
        search["probe_sha256"],
        hex_sha256(&std::fs::read(&probe).unwrap())
    );
    assert_eq!(search["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(records[9]["details"]["FaceIds"], json!([old_biden]));
    assert_eq!(records[2]["details"]["Faces"][0]["FaceId"], obama.as_str());
    assert_eq!(records[10]["details"]["SearchedFaceId"], biden.as_str());

    // Deleting a face, a user and then the collection: gone from searches at
    // once, and from the files after the next retention pass.
    let fresh_biden_vec = store.face_embedding("watch", &biden).unwrap().1;
    let obama_vec = store.face_embedding("watch", &obama).unwrap().1;
    g.call(
        &operator,
        "CreateUser",
        json!({ "CollectionId": "watch", "UserId": "u1" }),
    )
    .unwrap();
    g.call(
        &operator,
        "AssociateFaces",
        json!({ "CollectionId": "watch", "UserId": "u1", "FaceIds": [obama] }),
    )
    .unwrap();
    g.call(
        &operator,
        "DeleteUser",
        json!({ "CollectionId": "watch", "UserId": "u1" }),
    )
    .unwrap();
    assert!(store.get_user("watch", "u1").is_err());
    let (del, _) = g
        .call(
            &operator,
            "DeleteFaces",
            json!({ "CollectionId": "watch", "FaceIds": [biden] }),
        )
        .unwrap();
    assert_eq!(del["DeletedFaces"], json!([biden]));
    let e = g
        .call(
            &operator,
            "SearchFaces",
            json!({ "CollectionId": "watch", "FaceId": biden }),
        )
        .unwrap_err();
    assert_eq!(e.kind, "ResourceNotFoundException");
    g.call(&admin, "RunRetention", json!({})).unwrap();
    let db = std::fs::read(dir.join(kenning_store::DB_FILE)).unwrap();
    let kix = std::fs::read(dir.join("index/watch.kix")).unwrap();
    assert!(!contains(&db, &f32_bytes(&fresh_biden_vec)));
    assert!(!contains(&kix, &f32_bytes(&fresh_biden_vec)));
    assert!(contains(&db, &f32_bytes(&old_obama_vec)));
    g.call(
        &admin,
        "DeleteCollection",
        json!({ "CollectionId": "watch" }),
    )
    .unwrap();
    g.call(&admin, "RunRetention", json!({})).unwrap();
    let db = std::fs::read(dir.join(kenning_store::DB_FILE)).unwrap();
    assert!(
        !contains(&db, &f32_bytes(&old_obama_vec)),
        "collection's vectors outlived it"
    );
    assert!(!dir.join("index/watch.kix").exists());
    let records = audit_records(&dir);
    let changes: Vec<&str> = records
        .iter()
        .filter_map(|r| r["details"]["Change"].as_str())
        .collect();
    for change in [
        "UserCreated",
        "FacesAssociated",
        "UserDeleted",
        "FacesDeleted",
        "CollectionDeleted",
    ] {
        assert!(
            changes.contains(&change),
            "{change} not audited: {changes:?}"
        );
    }

    // The trail holds ids and hashes, never a vector: none of the stored
    // ones nor the probe's, in any form a serialiser would write.
    let trail = std::fs::read(audit_path(&dir)).unwrap();
    let probe_vec = common::pipeline()
        .analyze(&common::load(&probe), true)
        .unwrap()
        .remove(0)
        .embedding
        .unwrap();
    for (what, v) in [
        ("obama", &obama_vec),
        ("biden", &fresh_biden_vec),
        ("obama-old", &old_obama_vec),
        ("biden-old", &old_biden_vec),
        ("the probe", &probe_vec),
    ] {
        assert_no_vector(&trail, v, what);
    }
    assert!(kenning_audit::verify(&audit_path(&dir)).unwrap().is_ok());
    drop(g);

    // If the audit record cannot be written, the operation fails and changes nothing.
    drop(collections);
    let audit = audit_path(&dir);
    std::fs::remove_file(&audit).unwrap();
    std::os::unix::fs::symlink("/dev/full", &audit).unwrap();
    let collections = Arc::new(Collections::open(&dir, common::pipeline().clone()).unwrap());
    let store = collections.store();
    let g = Governor::open(&dir, collections.clone()).unwrap();
    assert!(store.describe_collection("watch").is_err());
    let e = g
        .call(
            &admin,
            "CreateCollection",
            json!({ "CollectionId": "again" }),
        )
        .unwrap_err();
    assert_eq!(e.kind, "InternalServerError", "{e}");
    assert!(
        e.message.contains("audit record could not be written"),
        "{e}"
    );
    assert!(
        store.describe_collection("again").is_err(),
        "an unaudited change was made"
    );
    let e = g
        .call(
            &operator,
            "CompareFaces",
            json!({ "SourceImage": image(&probe), "TargetImage": image(&probe) }),
        )
        .unwrap_err();
    assert!(e.message.contains("result is withheld"), "{e}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn cli_policy_review_and_a_tamper_evident_trail() {
    let Some(data) = common::data("cli_policy_review_and_a_tamper_evident_trail") else {
        return;
    };
    let ex = examples(&data);
    let dir = common::temp_path("acct-cli");
    let path = |f: &str| ex.join(f).to_string_lossy().into_owned();
    common::stdout_json(&common::kenning_data(
        &dir,
        &[
            "collection",
            "create",
            "watch",
            "--policy",
            r#"{"RequireCase":true,"RequiredReviewers":1,"MinFaceMatchThreshold":85}"#,
        ],
        &[],
    ));
    let out = common::kenning_data(
        &dir,
        &["index", "--collection", "watch", &path("obama-1080p.jpg")],
        &[],
    );
    assert!(out.status.success());

    let out = common::kenning_data(
        &dir,
        &["search", "--collection", "watch", &path("obama-240p.jpg")],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("AccessDeniedException") && err.contains("case reference"),
        "{err}"
    );
    let found = common::stdout_json(&common::kenning_data(
        &dir,
        &[
            "--case",
            "CASE-7",
            "search",
            "--collection",
            "watch",
            "--threshold",
            "90",
            &path("obama-240p.jpg"),
        ],
        &[],
    ));
    let review_id = found["FaceMatches"][0]["ReviewId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(found["FaceMatches"][0]["ReviewStatus"], "PENDING");

    // Review needs a reviewer key; the local admin cannot decide.
    let out = common::kenning_data(
        &dir,
        &["review", "confirm", &review_id, "--comment", "mine"],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("AccessDeniedException"));
    let key = common::stdout_json(&common::kenning_data(
        &dir,
        &["keys", "create", "--role", "reviewer"],
        &[],
    ));
    let (id, secret) = (
        key["AccessKeyId"].as_str().unwrap(),
        key["SecretAccessKey"].as_str().unwrap(),
    );
    let out = common::kenning_data(
        &dir,
        &[
            "review",
            "confirm",
            &review_id,
            "--comment",
            "ears",
            "--key-id",
            id,
        ],
        &[("KENNING_KEY_SECRET", "wrong")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidSignatureException"));
    let decided = common::stdout_json(&common::kenning_data(
        &dir,
        &[
            "review",
            "confirm",
            &review_id,
            "--comment",
            "same ears",
            "--key-id",
            id,
        ],
        &[("KENNING_KEY_SECRET", secret)],
    ));
    assert_eq!(decided["Status"], "CONFIRMED");
    let listed = common::stdout_json(&common::kenning_data(
        &dir,
        &["review", "list", "--status", "CONFIRMED"],
        &[],
    ));
    assert_eq!(listed["Items"][0]["Decisions"][0]["Reviewer"], id);
    let ret = common::stdout_json(&common::kenning_data(&dir, &["retention", "run"], &[]));
    assert_eq!(ret["Collections"], json!([]));

    // Verify and export.
    let verified = common::stdout_json(&common::kenning_data(&dir, &["audit", "verify"], &[]));
    assert_eq!(verified["Valid"], true);
    let n = verified["Records"].as_u64().unwrap();
    assert!(n >= 6, "{verified}");
    let out = common::kenning_data(&dir, &["--case", "CASE-7", "audit", "export"], &[]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = lines
        .iter()
        .map(|l| l["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["SearchFacesByImage", "DecideReviewItem"]);
    assert_eq!(lines[0]["details"]["ReviewIds"], json!([review_id]));
    let head = verified["Head"].as_str().unwrap();
    assert!(
        common::kenning_data(&dir, &["audit", "verify", "--expect-head", head], &[])
            .status
            .success()
    );
    // A head noted earlier still verifies after more records are appended.
    common::stdout_json(&common::kenning_data(
        &dir,
        &["collection", "create", "later"],
        &[],
    ));
    assert!(
        common::kenning_data(&dir, &["audit", "verify", "--expect-head", head], &[])
            .status
            .success()
    );
    let long_case = "C".repeat(300);
    let out = common::kenning_data(
        &dir,
        &["--case", &long_case, "collection", "delete", "later"],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1-256 characters"));
    let latest = common::stdout_json(&common::kenning_data(&dir, &["audit", "verify"], &[]))
        ["Head"]
        .as_str()
        .unwrap()
        .to_owned();

    // Tampering: each change is caught at the first record it breaks.
    let file = audit_path(&dir);
    let original = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let bad_line = |text: String| {
        std::fs::write(&file, text).unwrap();
        let out = common::kenning_data(&dir, &["audit", "verify"], &[]);
        assert_eq!(out.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["FirstBadRecord"]["Line"].as_u64().unwrap(),
            v["FirstBadRecord"]["Reason"].as_str().unwrap().to_owned(),
        )
    };
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    // Flip one byte of record 3 (a digit of its time).
    let mut flipped = lines.clone();
    let mut three = lines[2].as_bytes().to_vec();
    let at = lines[2].find("\"time_ms\":").unwrap() + "\"time_ms\":".len() + 3;
    three[at] = if three[at] == b'9' {
        b'0'
    } else {
        three[at] + 1
    };
    let three = String::from_utf8(three).unwrap();
    flipped[2] = &three;
    let (line, reason) = bad_line(join(&flipped));
    assert_eq!(line, 3, "{reason}");
    assert!(reason.contains("modified"), "{reason}");
    // Delete record 3.
    let mut deleted = lines.clone();
    deleted.remove(2);
    assert_eq!(bad_line(join(&deleted)).0, 3);
    // Reorder records 3 and 4.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert_eq!(bad_line(join(&swapped)).0, 3);
    // Dropping the newest record passes the chain but not the recorded head.
    std::fs::write(&file, join(&lines[..lines.len() - 1])).unwrap();
    assert!(common::kenning_data(&dir, &["audit", "verify"], &[])
        .status
        .success());
    assert_eq!(
        common::kenning_data(&dir, &["audit", "verify", "--expect-head", &latest], &[])
            .status
            .code(),
        Some(1)
    );
    std::fs::write(&file, &original).unwrap();
    assert!(common::kenning_data(&dir, &["audit", "verify"], &[])
        .status
        .success());
}

/// Without photos (faces imported into the store): a search that gives no
/// threshold is held to the policy's MinFaceMatchThreshold at Rekognition's
/// default of 80; search responses carry the FalseMatchEstimate; the purpose
/// is recorded; and a search whose audit record cannot be written returns
/// nothing of its result.
#[test]
fn default_threshold_estimate_purpose_and_a_withheld_search() {
    let dir = common::temp_path("acct-withheld");
    let collections = Arc::new(Collections::open(&dir, common::pipeline().clone()).unwrap());
    let g = Governor::open(&dir, collections.clone()).unwrap();
    let admin = caller("ADMIN", Grant::admin(), None);
    g.call(
        &admin,
        "CreateCollection",
        json!({ "CollectionId": "strict", "Policy": { "MinFaceMatchThreshold": 90 } }),
    )
    .unwrap();
    drop(g);
    let dim = collections
        .store()
        .describe_collection("strict")
        .unwrap()
        .dim as usize;
    let v = common::unit_vector(dim, 7);
    let ids = common::import_faces(
        collections.store(),
        "strict",
        &[v.clone(), nudged(&v), common::unit_vector(dim, 8)],
        None,
    );
    drop(collections);
    let collections = Arc::new(Collections::open(&dir, common::pipeline().clone()).unwrap());
    let g = Governor::open(&dir, collections.clone()).unwrap();
    let mut operator = caller("OPERATOR", Grant::admin(), None);
    operator.purpose = Some("find the owner of a lost passport".into());

    // No FaceMatchThreshold: Rekognition's default 80, below the policy's 90.
    let search = |threshold: Option<f64>| {
        let mut body = json!({ "CollectionId": "strict", "FaceId": ids[0] });
        if let Some(t) = threshold {
            body["FaceMatchThreshold"] = json!(t);
        }
        g.call(&operator, "SearchFaces", body)
    };
    let e = search(None).unwrap_err();
    assert_eq!(e.kind, "InvalidParameterException", "{e}");
    assert!(e.message.contains("90") && e.message.contains("80"), "{e}");
    let (found, _) = search(Some(90.0)).unwrap();
    let matches: Vec<&str> = found["FaceMatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Face"]["FaceId"].as_str().unwrap())
        .collect();
    assert_eq!(matches, [ids[1].as_str()], "{found}");
    let mut estimate = found["FalseMatchEstimate"].clone();
    // The promise names the calibration it rests on: the shipped one, as
    // this collection never fitted its own.
    let calibration = estimate["Calibration"].take();
    let calibration = calibration.as_str().unwrap_or_default();
    assert!(
        calibration.starts_with(&common::pipeline().recognizer().manifest().name)
            && !calibration.contains("collection"),
        "{found}"
    );
    estimate.as_object_mut().unwrap().remove("Calibration");
    assert_eq!(
        estimate,
        json!({
            "Threshold": 90.0,
            "FalseMatchRate": kenning_collections::fmr_at(90.0),
            "FaceCount": 3,
            "ExpectedFalseMatches": 3.0 * kenning_collections::fmr_at(90.0),
        })
    );
    let records = audit_records(&dir);
    let searches: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "SearchFaces")
        .collect();
    assert_eq!(searches.len(), 2);
    assert_eq!(
        (&searches[0]["outcome"], &searches[0]["threshold"]),
        (&json!("InvalidParameterException"), &json!(80.0))
    );
    assert_eq!(
        (&searches[1]["outcome"], &searches[1]["threshold"]),
        (&json!("ok"), &json!(90.0))
    );
    for s in &searches {
        assert_eq!(s["purpose"], "find the owner of a lost passport");
    }
    drop(g);

    // The trail cannot be written: the search runs, but its result is
    // withheld, and the error names no face. The store keeps the trail open,
    // so it is opened again on the broken file.
    drop(collections);
    let audit = audit_path(&dir);
    std::fs::remove_file(&audit).unwrap();
    std::os::unix::fs::symlink("/dev/full", &audit).unwrap();
    let collections = Arc::new(Collections::open(&dir, common::pipeline().clone()).unwrap());
    let g = Governor::open(&dir, collections.clone()).unwrap();
    let e = g
        .call(
            &operator,
            "SearchFaces",
            json!({ "CollectionId": "strict", "FaceId": ids[0], "FaceMatchThreshold": 90 }),
        )
        .unwrap_err();
    assert_eq!(e.kind, "InternalServerError", "{e}");
    assert!(e.message.contains("result is withheld"), "{e}");
    assert!(!e.message.contains(&ids[1]), "{e}");
    drop(g);
    drop(collections);
}

/// A collection's policy `Equalise` chooses the calibration its searches
/// score with: each choice gives a real pair exactly the Similarity the
/// chosen shipped table gives it, and a choice that does not exist is
/// refused.
#[test]
fn equalise_policy_scores_searches_with_the_chosen_calibration() {
    let Some(data) = common::data("equalise_policy_scores_searches_with_the_chosen_calibration")
    else {
        return;
    };
    let ex = examples(&data);
    let dir = common::temp_path("acct-equalise");
    let sface = common::sface();
    let collections = Arc::new(Collections::open(&dir, sface.clone()).unwrap());
    let g = Governor::open(&dir, collections.clone()).unwrap();
    let admin = caller("ADMIN", Grant::admin(), None);
    g.call(&admin, "CreateCollection", json!({ "CollectionId": "eq" }))
        .unwrap();
    for (file, ext) in [("obama-1080p.jpg", "obama"), ("biden.jpg", "biden")] {
        g.call(
            &admin,
            "IndexFaces",
            json!({ "CollectionId": "eq", "Image": image(&ex.join(file)), "ExternalImageId": ext, "MaxFaces": 1 }),
        )
        .unwrap();
    }
    let probe_path = ex.join("obama-240p.jpg");
    let probe_face = sface
        .analyze(&common::load(&probe_path), true)
        .unwrap()
        .remove(0);
    let probe_pixels = probe_face.pixels();
    let probe = probe_face.embedding.unwrap();
    let recogniser = sface.recognizer();
    // Similarity of each indexed face against the probe, by ExternalImageId,
    // with the stored face and its embedding.
    let search = || -> Vec<(String, f64, (Face, Vec<f32>))> {
        let (v, _) = g
            .call(
                &admin,
                "SearchFacesByImage",
                json!({ "CollectionId": "eq", "Image": image(&probe_path), "FaceMatchThreshold": 0, "MaxFaces": 10 }),
            )
            .unwrap();
        let mut out: Vec<(String, f64, (Face, Vec<f32>))> = v["FaceMatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let face_id = m["Face"]["FaceId"].as_str().unwrap();
                (
                    m["Face"]["ExternalImageId"].as_str().unwrap().to_owned(),
                    m["Similarity"].as_f64().unwrap(),
                    collections.store().face_embedding("eq", face_id).unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(out.len(), 2, "both faces at threshold 0");
        out
    };
    // Each choice's table, with the small-face rule on top as every search
    // applies it (the 240p probe is a small face).
    let expect = |choice: Option<Equalise>, (face, stored): &(Face, Vec<f32>)| {
        let c = recogniser.loaded().calibration_for(choice).unwrap();
        c.similarity_of_faces(
            &probe,
            stored,
            recogniser.distance(&probe, stored),
            recogniser.quality_bands(),
            [Some(probe_pixels), face.pixels],
        )
    };
    for (_, s, stored) in search() {
        assert!((s - expect(None, &stored)).abs() < 1e-3, "default: {s}");
    }
    let mut by_choice = Vec::new();
    for choice in Equalise::ALL {
        g.call(
            &admin,
            "PutCollectionPolicy",
            json!({ "CollectionId": "eq", "Policy": { "Equalise": choice.as_str() } }),
        )
        .unwrap();
        let found = search();
        for (ext, s, stored) in &found {
            let want = expect(Some(choice), stored);
            assert!(
                (s - want).abs() < 1e-3,
                "{}: {ext} scored {s}, the chosen table says {want}",
                choice.as_str()
            );
        }
        by_choice.push(found);
    }
    // The choice matters: equal false matches and equal misses score the
    // impostor pair differently.
    let (fm, misses) = (&by_choice[0], &by_choice[1]);
    assert!(
        fm.iter().zip(misses).any(|(a, b)| (a.1 - b.1).abs() > 0.1),
        "FalseMatches {fm:?} and Misses {misses:?} agree"
    );
    let e = g
        .call(
            &admin,
            "PutCollectionPolicy",
            json!({ "CollectionId": "eq", "Policy": { "Equalise": "Sideways" } }),
        )
        .unwrap_err();
    assert_eq!(e.kind, "InvalidParameterException", "{e}");
    assert!(
        e.message.contains("Equalise") || e.message.contains("Sideways"),
        "{e}"
    );
}
