//! The accountability report counts what the audit trail says, per
//! collection, purpose and case, within its period and the reader's scope.

use kenning_accountability::report::{file_report, ReportQuery};
use kenning_audit::{AuditLog, Candidate, Entry};
use serde_json::json;

fn candidate(face: &str, similarity: f64) -> Candidate {
    Candidate {
        face_id: Some(face.into()),
        user_id: None,
        external_image_id: Some(format!("{face}.jpg")),
        similarity,
    }
}

fn entry(op: &str, collection: &str, case: Option<&str>, purpose: Option<&str>) -> Entry {
    Entry {
        request_id: Some("r".into()),
        access_key: Some("K".into()),
        role: Some("operator".into()),
        operation: op.into(),
        outcome: "ok".into(),
        collection: Some(collection.into()),
        case: case.map(Into::into),
        purpose: purpose.map(Into::into),
        ..Entry::default()
    }
}

fn search(
    collection: &str,
    case: &str,
    threshold: f64,
    found: &[(&str, f64)],
    reviews: &[&str],
) -> Entry {
    let mut e = entry("SearchFacesByImage", collection, Some(case), Some("theft"));
    e.threshold = Some(threshold);
    e.false_match_rate = Some(10f64.powf((40.0 - threshold) / 10.0));
    e.face_count = Some(1000);
    e.expected_false_matches = Some(1000.0 * e.false_match_rate.unwrap());
    e.candidates = found.iter().map(|(f, s)| candidate(f, *s)).collect();
    e.details = Some(json!({ "Calibration": "dlib-resnet-v1 (fair)", "ReviewIds": reviews }));
    e
}

fn decision(collection: &str, case: &str, review: &str, status: &str) -> Entry {
    let mut e = entry("DecideReviewItem", collection, Some(case), Some("theft"));
    e.details = Some(json!({ "ReviewId": review, "Decision": "CONFIRM", "Status": status }));
    e
}

#[test]
fn counts_searches_reviews_refusals_and_deletions_per_collection_purpose_and_case() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let mut created = entry("CreateCollection", "watch", None, None);
    created.details = Some(
        json!({ "Change": "CollectionCreated", "Policy": { "RequireCase": true, "RequiredReviewers": 2 } }),
    );
    log.append(created).unwrap();
    let mut added = entry("IndexFaces", "watch", None, None);
    added.details = Some(json!({ "Change": "FacesAdded", "Faces": [{}, {}, {}] }));
    log.append(added).unwrap();
    // Before the period: counted for the pending/closed bookkeeping only.
    log.append(search("watch", "OLD", 80.0, &[("f0", 85.0)], &["r0"]))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (start, _) = log
        .append(entry("ConsoleSignIn", "watch", None, None))
        .unwrap();
    let from = start.time_ms;
    log.append(search(
        "watch",
        "C-1",
        90.0,
        &[("f1", 95.0), ("f2", 91.0)],
        &["r1", "r2"],
    ))
    .unwrap();
    log.append(search("watch", "C-2", 90.0, &[], &[])).unwrap();
    log.append(search("other", "C-2", 80.0, &[("g1", 82.0)], &[]))
        .unwrap();
    log.append(decision("watch", "C-1", "r1", "PENDING"))
        .unwrap();
    log.append(decision("watch", "C-1", "r1", "CONFIRMED"))
        .unwrap();
    log.append(decision("watch", "C-1", "r2", "REJECTED"))
        .unwrap();
    log.append(decision("watch", "OLD", "r0", "CONFIRMED"))
        .unwrap();
    let mut refused = entry("SearchFacesByImage", "watch", None, Some("theft"));
    refused.outcome = "AccessDeniedException".into();
    refused.details = Some(json!({ "PolicyRule": "RequireCase" }));
    log.append(refused).unwrap();
    let mut denied = entry("SearchFacesByImage", "watch", Some("C-1"), None);
    denied.outcome = "AccessDeniedException".into();
    log.append(denied).unwrap();
    let mut retention = entry("RunRetention", "watch", None, None);
    retention.details = Some(json!({ "Change": "FacesDeleted", "FaceIds": ["a", "b"] }));
    log.append(retention).unwrap();
    let mut deleted = entry("DeleteFaces", "watch", None, None);
    deleted.details = Some(json!({ "Change": "FacesDeleted", "FaceIds": ["c"] }));
    log.append(deleted).unwrap();
    let (last, _) = log
        .append(search("watch", "C-3", 90.0, &[("f3", 92.0)], &["r3"]))
        .unwrap();

    let q = ReportQuery {
        from_ms: from,
        to_ms: last.time_ms + 1,
        ..ReportQuery::default()
    };
    let r = file_report(&path, &q, |_| true).unwrap();
    assert!(r.chain.valid);
    assert_eq!(r.chain.records, last.seq);
    let t = &r.totals;
    assert_eq!(t.searches, 4);
    assert_eq!(t.searches_with_candidates, 3);
    assert_eq!(t.candidates_returned, 4);
    assert_eq!(t.candidates_queued_for_review, 3);
    assert_eq!(
        (t.candidates_confirmed, t.candidates_rejected),
        (2, 1),
        "r0 closed in the period counts"
    );
    assert_eq!(t.candidates_pending, 1, "r3 only: r1 and r2 are closed");
    assert_eq!(t.review_decisions, 4);
    assert_eq!(
        (t.searches_refused_by_policy, t.searches_refused_other),
        (1, 1)
    );
    assert_eq!(
        (
            t.faces_deleted_by_retention,
            t.faces_deleted,
            t.faces_indexed
        ),
        (2, 1, 0)
    );
    assert!(
        (t.expected_false_matches - (0.01 * 3.0 + 0.1)).abs() < 1e-9,
        "{}",
        t.expected_false_matches
    );
    assert_eq!(r.refusals_by_rule.get("RequireCase"), Some(&1));
    let watch = r
        .collections
        .iter()
        .find(|c| c.collection_id == "watch")
        .unwrap();
    assert_eq!(watch.tally.searches, 3);
    assert_eq!(watch.thresholds.len(), 1);
    assert_eq!(
        (watch.thresholds[0].threshold, watch.thresholds[0].searches),
        (90.0, 3)
    );
    assert_eq!(watch.calibrations, ["dlib-resnet-v1 (fair)"]);
    assert_eq!(watch.policy.as_ref().unwrap()["RequiredReviewers"], 2);
    assert_eq!(watch.policy_changes, 0, "created before the period");
    let case = |name: &str| {
        r.cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.tally.clone())
    };
    let c1 = case("C-1").unwrap();
    assert_eq!(
        (
            c1.searches,
            c1.candidates_returned,
            c1.candidates_confirmed,
            c1.candidates_rejected
        ),
        (1, 2, 1, 1)
    );
    assert_eq!(c1.searches_refused_other, 1);
    assert_eq!(case("C-2").unwrap().searches, 2);
    assert!(case("OLD").is_some_and(|t| t.candidates_confirmed == 1 && t.searches == 0));
    let theft = r.purposes.iter().find(|p| p.name == "theft").unwrap();
    assert_eq!(theft.tally.searches_refused_by_policy, 1);

    // Filters narrow every count; a scoped reader sees only its collections.
    let only = file_report(
        &path,
        &ReportQuery {
            case: Some("C-1".into()),
            ..q.clone()
        },
        |_| true,
    )
    .unwrap();
    assert_eq!(
        (only.totals.searches, only.totals.candidates_confirmed),
        (1, 1)
    );
    assert_eq!(only.cases.len(), 1);
    let scoped = file_report(&path, &q, |rec| {
        rec.entry.collection.as_deref() == Some("other")
    })
    .unwrap();
    assert_eq!(scoped.totals.searches, 1);
    assert!(scoped
        .collections
        .iter()
        .all(|c| c.collection_id == "other"));
    // Outside the period, nothing.
    let later = file_report(
        &path,
        &ReportQuery {
            from_ms: last.time_ms + 1,
            to_ms: last.time_ms + 2,
            ..ReportQuery::default()
        },
        |_| true,
    )
    .unwrap();
    assert_eq!(later.totals, Default::default());
}

#[test]
fn stream_processors_refused_by_policy_count_as_refused_searches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let refused = |op: &str, rule: Option<&str>| {
        let mut e = entry(op, "watch", None, Some("doors"));
        e.outcome = "AccessDeniedException".into();
        e.details = rule.map(|r| json!({ "PolicyRule": r, "StreamProcessor": "door" }));
        e
    };
    // Refused by the policy at Create (no case) and at Start (streams
    // forbidden since): two refused searches, by rule.
    log.append(refused("CreateStreamProcessor", Some("RequireCase")))
        .unwrap();
    log.append(refused("StartStreamProcessor", Some("AllowStreams")))
        .unwrap();
    // Refused for a role, or created and started: no search refused or run.
    log.append(refused("StartStreamProcessor", None)).unwrap();
    log.append(entry("CreateStreamProcessor", "watch", Some("C-9"), None))
        .unwrap();
    log.append(entry("StartStreamProcessor", "watch", Some("C-9"), None))
        .unwrap();
    // Its frames with matches are the searches.
    let mut frame = search("watch", "C-9", 80.0, &[("f1", 88.0)], &[]);
    frame.operation = "StreamFaceSearch".into();
    let (last, _) = log.append(frame).unwrap();
    let q = ReportQuery {
        from_ms: 0,
        to_ms: last.time_ms + 1,
        ..ReportQuery::default()
    };
    let r = file_report(&path, &q, |_| true).unwrap();
    let t = &r.totals;
    assert_eq!(
        (
            t.searches,
            t.searches_refused_by_policy,
            t.searches_refused_other
        ),
        (1, 2, 0),
        "{t:?}"
    );
    assert_eq!(r.refusals_by_rule.get("RequireCase"), Some(&1));
    assert_eq!(r.refusals_by_rule.get("AllowStreams"), Some(&1));
    let watch = &r.collections[0];
    assert_eq!(watch.tally.searches_refused_by_policy, 2);
    let doors = r.purposes.iter().find(|p| p.name == "doors").unwrap();
    assert_eq!(doors.tally.searches_refused_by_policy, 2);
}
