//! The accountability report: what was done with face recognition in a
//! period, counted from the audit trail alone, per collection, purpose and
//! case, with the chain head it was counted from so it can be checked later.
//!
//! It is the kind of public record RCW 43.386 asks agencies to publish and
//! the EU AI Act's logging and human-oversight articles expect a deployer to
//! be able to produce (docs/accountability.md maps both).

use std::collections::{BTreeMap, HashSet};

use kenning_audit::{AuditError, Record, RecordStream, VerifyReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Operations whose results are candidates (a stored-video search is
/// audited once, when its job completes; a stream processor once per frame
/// that brought new matches).
const SEARCHES: &[&str] = &[
    "SearchFaces",
    "SearchFacesByImage",
    "SearchUsers",
    "SearchUsersByImage",
    "StartFaceSearch",
    "StreamFaceSearch",
];

/// Operations that set up searches run later (a stream processor searches
/// its frames once started): refused by the collection's policy, they are
/// searches refused by policy, as a refused StartFaceSearch is; when they
/// succeed, the searches are counted as they run (`StreamFaceSearch`).
const SEARCH_SETUPS: &[&str] = &["CreateStreamProcessor", "StartStreamProcessor"];

/// What a report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportQuery {
    /// Start of the period (inclusive), ms since the epoch.
    pub from_ms: u64,
    /// End of the period (exclusive), ms since the epoch.
    pub to_ms: u64,
    /// Only this collection.
    pub collection: Option<String>,
    /// Only this stated purpose.
    pub purpose: Option<String>,
    /// Only this case.
    pub case: Option<String>,
}

/// Counts over one slice of the trail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tally {
    /// Searches that ran (SearchFaces, SearchFacesByImage, SearchUsers,
    /// SearchUsersByImage, StartFaceSearch jobs that completed, and stream
    /// processors' frames with new matches).
    pub searches: u64,
    /// Of those, searches that returned at least one candidate.
    pub searches_with_candidates: u64,
    /// Candidates returned, in all.
    pub candidates_returned: u64,
    /// Candidates queued for human review.
    pub candidates_queued_for_review: u64,
    /// Review items closed as CONFIRMED in the period.
    pub candidates_confirmed: u64,
    /// Review items closed as REJECTED in the period.
    pub candidates_rejected: u64,
    /// Candidates queued in the period that no review has closed yet.
    pub candidates_pending: u64,
    /// Reviewers' decisions (a two-reviewer confirmation counts two).
    pub review_decisions: u64,
    /// Searches refused because they broke the collection's policy
    /// (stream processors refused at Create or Start included).
    pub searches_refused_by_policy: u64,
    /// Searches refused for another reason (role, scope, bad request) or
    /// that failed.
    pub searches_refused_other: u64,
    /// False matches the searches that ran could be expected to return
    /// together (each search's faces x its threshold's false-match rate).
    pub expected_false_matches: f64,
    /// CompareFaces calls that ran.
    pub compare_faces: u64,
    /// Faces enrolled.
    pub faces_indexed: u64,
    /// Faces deleted by people (DeleteFaces, DeleteCollection).
    pub faces_deleted: u64,
    /// Faces deleted by the retention policy.
    pub faces_deleted_by_retention: u64,
}

/// How often one threshold was used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ThresholdUse {
    /// The Similarity threshold.
    pub threshold: f64,
    /// The false-match rate it promises.
    pub false_match_rate: f64,
    /// Searches that ran with it.
    pub searches: u64,
}

/// One collection's part of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CollectionSection {
    /// The collection.
    pub collection_id: String,
    /// Its counts.
    pub tally: Tally,
    /// Thresholds its searches used, lowest first.
    pub thresholds: Vec<ThresholdUse>,
    /// The calibrations its searches were scored with.
    pub calibrations: Vec<String>,
    /// Refused searches by the policy rule they broke.
    pub refusals_by_rule: BTreeMap<String, u64>,
    /// Times its policy was set in the period.
    pub policy_changes: u64,
    /// The last policy recorded for it up to the end of the period.
    pub policy: Option<Value>,
    /// Faces searched by its last search in the period.
    pub face_count: Option<u64>,
}

/// Counts for one purpose or case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupSection {
    /// The purpose or case reference ("(none)" when none was given).
    pub name: String,
    /// Its counts.
    pub tally: Tally,
}

/// The state of the chain the report was counted from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainState {
    /// Every record verified.
    pub valid: bool,
    /// Records in the chain (good ones, up to the first bad one).
    pub records: u64,
    /// Hash of the last good record: keep it to check the trail later.
    pub head: Option<String>,
    /// Where the chain breaks, if it does.
    pub first_bad_record: Option<String>,
}

/// The accountability report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountabilityReport {
    /// Start of the period (inclusive), RFC 3339.
    pub from: String,
    /// End of the period (exclusive), RFC 3339.
    pub to: String,
    /// When the report was made, RFC 3339.
    pub generated_at: String,
    /// The collection it is limited to.
    pub collection: Option<String>,
    /// The purpose it is limited to.
    pub purpose: Option<String>,
    /// The case it is limited to.
    pub case: Option<String>,
    /// The chain it was counted from.
    pub chain: ChainState,
    /// Records of the trail in the period that the report counted.
    pub records_counted: u64,
    /// Counts over everything in the report.
    pub totals: Tally,
    /// Refused searches by the policy rule they broke.
    pub refusals_by_rule: BTreeMap<String, u64>,
    /// Per collection.
    pub collections: Vec<CollectionSection>,
    /// Per stated purpose.
    pub purposes: Vec<GroupSection>,
    /// Per case reference.
    pub cases: Vec<GroupSection>,
}

fn count(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_array).map_or(0, |a| a.len() as u64)
}

/// Adds what one record says to a tally; returns the review ids it queued.
fn tally(t: &mut Tally, r: &Record) {
    let e = &r.entry;
    let ok = e.outcome == "ok";
    let details = e.details.as_ref();
    let detail = |k: &str| details.and_then(|d| d.get(k));
    let op = e.operation.as_str();
    if SEARCHES.contains(&op) {
        if ok {
            t.searches += 1;
            t.candidates_returned += e.candidates.len() as u64;
            t.searches_with_candidates += u64::from(!e.candidates.is_empty());
            t.candidates_queued_for_review += count(detail("ReviewIds"));
            t.expected_false_matches += e.expected_false_matches.unwrap_or(0.0);
        } else if detail("PolicyRule").is_some() {
            t.searches_refused_by_policy += 1;
        } else {
            t.searches_refused_other += 1;
        }
        return;
    }
    if !ok {
        if SEARCH_SETUPS.contains(&op) && detail("PolicyRule").is_some() {
            t.searches_refused_by_policy += 1;
        }
        return;
    }
    match op {
        "CompareFaces" => t.compare_faces += 1,
        "DecideReviewItem" => {
            t.review_decisions += 1;
            match detail("Status").and_then(Value::as_str) {
                Some("CONFIRMED") => t.candidates_confirmed += 1,
                Some("REJECTED") => t.candidates_rejected += 1,
                _ => {}
            }
        }
        _ => {}
    }
    match detail("Change").and_then(Value::as_str) {
        Some("FacesAdded") => t.faces_indexed += count(detail("Faces")),
        Some("FacesDeleted") if op == "RunRetention" => {
            t.faces_deleted_by_retention += count(detail("FaceIds"));
        }
        Some("FacesDeleted") => t.faces_deleted += count(detail("FaceIds")),
        Some("CollectionDeleted") => {
            t.faces_deleted += detail("FacesRemoved").and_then(Value::as_u64).unwrap_or(0);
        }
        _ => {}
    }
}

fn review_ids(r: &Record) -> Vec<String> {
    r.entry
        .details
        .as_ref()
        .and_then(|d| d.get("ReviewIds"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(Into::into))
                .collect()
        })
        .unwrap_or_default()
}

/// A review id a decision record closed, if it closed one.
fn closed_review(r: &Record) -> Option<String> {
    let d = r.entry.details.as_ref()?;
    if r.entry.operation != "DecideReviewItem" || r.entry.outcome != "ok" {
        return None;
    }
    match d.get("Status").and_then(Value::as_str) {
        Some("CONFIRMED" | "REJECTED") => d.get("ReviewId")?.as_str().map(Into::into),
        _ => None,
    }
}

#[derive(Default)]
struct Section {
    tally: Tally,
    thresholds: BTreeMap<u64, (f64, u64)>,
    calibrations: Vec<String>,
    refusals: BTreeMap<String, u64>,
    policy_changes: u64,
    policy: Option<Value>,
    face_count: Option<u64>,
    queued: Vec<String>,
}

/// Counts the report over the audit trail file at `path` (read, never
/// opened for writing); see [`accountability_report`].
pub fn file_report(
    path: &std::path::Path,
    q: &ReportQuery,
    in_scope: impl Fn(&Record) -> bool,
) -> Result<AccountabilityReport, AuditError> {
    let records = Box::new(kenning_audit::records(path)?);
    accountability_report(kenning_audit::verify(path)?, records, q, in_scope)
}

/// Counts the report over an audit trail's `records`, whose verification
/// is `verified`. `in_scope` limits it
/// to the records the reader may see (a collection-scoped auditor's).
pub fn accountability_report(
    verified: VerifyReport,
    records: RecordStream<'_>,
    q: &ReportQuery,
    in_scope: impl Fn(&Record) -> bool,
) -> Result<AccountabilityReport, AuditError> {
    let same = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    let mut totals = Section::default();
    let mut collections: BTreeMap<String, Section> = BTreeMap::new();
    let mut purposes: BTreeMap<String, Section> = BTreeMap::new();
    let mut cases: BTreeMap<String, Section> = BTreeMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut counted = 0;
    for r in records {
        let (r, _) = r?;
        let e = &r.entry;
        if !in_scope(&r) || !same(&q.collection, &e.collection) {
            continue;
        }
        if let Some(id) = closed_review(&r) {
            closed.insert(id);
        }
        // The last policy set before the period ends is the one in force.
        let change = e.details.as_ref().and_then(|d| d.get("Change"));
        let policy_set = matches!(
            change.and_then(Value::as_str),
            Some("PolicySet" | "CollectionCreated")
        ) && e.outcome == "ok";
        if policy_set && r.time_ms < q.to_ms {
            if let Some(c) = &e.collection {
                let s = collections.entry(c.clone()).or_default();
                s.policy = e.details.as_ref().and_then(|d| d.get("Policy")).cloned();
                if r.time_ms >= q.from_ms {
                    s.policy_changes += 1;
                }
            }
        }
        if r.time_ms < q.from_ms
            || r.time_ms >= q.to_ms
            || !same(&q.purpose, &e.purpose)
            || !same(&q.case, &e.case)
        {
            continue;
        }
        counted += 1;
        let ok_search = SEARCHES.contains(&e.operation.as_str()) && e.outcome == "ok";
        let rule = e
            .details
            .as_ref()
            .and_then(|d| d.get("PolicyRule"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let calibration = e
            .details
            .as_ref()
            .and_then(|d| d.get("Calibration"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let none = || "(none)".to_owned();
        let mut sections: Vec<&mut Section> = vec![
            &mut totals,
            purposes
                .entry(e.purpose.clone().unwrap_or_else(none))
                .or_default(),
            cases
                .entry(e.case.clone().unwrap_or_else(none))
                .or_default(),
        ];
        if let Some(c) = &e.collection {
            sections.push(collections.entry(c.clone()).or_default());
        }
        for s in sections {
            tally(&mut s.tally, &r);
            if let Some(rule) = &rule {
                *s.refusals.entry(rule.clone()).or_default() += 1;
            }
            if ok_search {
                s.queued.extend(review_ids(&r));
                if let Some(t) = e.threshold {
                    let u = s
                        .thresholds
                        .entry((t * 1000.0).round() as u64)
                        .or_insert((t, 0));
                    u.1 += 1;
                }
                if let Some(c) = &calibration {
                    if !s.calibrations.contains(c) {
                        s.calibrations.push(c.clone());
                    }
                }
                s.face_count = e.face_count.or(s.face_count);
            }
        }
    }
    let finish = |mut s: Section| {
        s.tally.candidates_pending =
            s.queued.iter().filter(|id| !closed.contains(*id)).count() as u64;
        s
    };
    let thresholds = |s: &Section| {
        s.thresholds
            .values()
            .map(|&(threshold, searches)| ThresholdUse {
                threshold,
                false_match_rate: kenning_collections::fmr_at(threshold),
                searches,
            })
            .collect()
    };
    let groups = |m: BTreeMap<String, Section>| {
        m.into_iter()
            .map(|(name, s)| GroupSection {
                name,
                tally: finish(s).tally,
            })
            .filter(|g| g.tally != Tally::default())
            .collect()
    };
    let totals = finish(totals);
    Ok(AccountabilityReport {
        from: kenning_audit::format_time(q.from_ms),
        to: kenning_audit::format_time(q.to_ms),
        generated_at: kenning_audit::format_time(crate::governor::now_ms()),
        collection: q.collection.clone(),
        purpose: q.purpose.clone(),
        case: q.case.clone(),
        chain: ChainState {
            valid: verified.is_ok(),
            records: verified.records,
            head: verified.head,
            first_bad_record: verified
                .first_bad
                .map(|b| format!("line {}: {}", b.line, b.reason)),
        },
        records_counted: counted,
        refusals_by_rule: totals.refusals.clone(),
        totals: totals.tally,
        collections: collections
            .into_iter()
            .map(|(collection_id, s)| {
                let s = finish(s);
                CollectionSection {
                    collection_id,
                    thresholds: thresholds(&s),
                    tally: s.tally,
                    calibrations: s.calibrations,
                    refusals_by_rule: s.refusals,
                    policy_changes: s.policy_changes,
                    policy: s.policy,
                    face_count: s.face_count,
                }
            })
            .collect(),
        purposes: groups(purposes),
        cases: groups(cases),
    })
}
