//! Human review: search results of collections whose policy asks for review
//! are candidates until reviewers confirm them.
//!
//! A [`ReviewStore`] keeps the queue: [`ReviewQueue`], its own redb file
//! (`review.redb` in the data directory), or a database table. Items are
//! queued with the audit record of the search that found them, and a
//! decision is committed with its own audit record.

use std::path::Path;
use std::sync::Arc;

use kenning_audit::{Entry, Trail};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::governor::now_ms;

const ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("items");
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Waiting for reviewers.
    Pending,
    /// Confirmed by the required number of reviewers.
    Confirmed,
    /// Rejected by a reviewer.
    Rejected,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pending => "PENDING",
            Status::Confirmed => "CONFIRMED",
            Status::Rejected => "REJECTED",
        })
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "PENDING" => Ok(Status::Pending),
            "CONFIRMED" => Ok(Status::Confirmed),
            "REJECTED" => Ok(Status::Rejected),
            _ => Err(format!(
                "status {s:?} must be PENDING, CONFIRMED or REJECTED"
            )),
        }
    }
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The candidate is the person searched for.
    Confirm,
    /// It is not.
    Reject,
}

impl std::str::FromStr for Verdict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "CONFIRM" => Ok(Verdict::Confirm),
            "REJECT" => Ok(Verdict::Reject),
            _ => Err(format!("decision {s:?} must be CONFIRM or REJECT")),
        }
    }
}

/// One reviewer's decision on a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Decision {
    /// The reviewer's access key.
    pub reviewer: String,
    /// Confirm or reject.
    pub decision: Verdict,
    /// Why.
    pub comment: String,
    /// When, ms since the epoch.
    pub decided_at: u64,
}

/// A candidate from a search, as queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReviewItem {
    /// Id of this candidate's review.
    pub review_id: String,
    /// The collection searched.
    pub collection_id: String,
    /// The search operation.
    pub operation: String,
    /// Request id of the search (it is in the audit trail under this id).
    pub request_id: String,
    /// Access key that ran the search; it may not review the result.
    pub searched_by: String,
    /// Case reference of the search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// Stated purpose of the search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The candidate face (face searches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_id: Option<String>,
    /// The candidate user (user searches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The candidate face's ExternalImageId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_image_id: Option<String>,
    /// Its Similarity.
    pub similarity: f64,
    /// The threshold of the search.
    pub threshold: f64,
    /// Confirmations needed.
    pub required_reviewers: u8,
    /// Where it stands.
    pub status: Status,
    /// Decisions so far.
    pub decisions: Vec<Decision>,
    /// In a reviewer's view of an open candidate: how many decisions by
    /// other reviewers are not shown (so each verifies separately).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_decisions: usize,
    /// When it was queued, ms since the epoch.
    pub created_at: u64,
    /// Where the searched face is in the probe photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_face: Option<kenning_core::BoundingBox>,
    /// For a search of stored video: the frame the candidate was seen in,
    /// cut from the video again when a reviewer looks (never kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_frame: Option<VideoFrame>,
}

/// Where in a stored video a candidate was seen: the frame of a face search
/// job (at `timestamp` ms) whose face, at the item's `ProbeFace`, matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VideoFrame {
    /// The StartFaceSearch job.
    pub job_id: String,
    /// Milliseconds from the start of the video.
    pub timestamp: u64,
}

/// The part of a video frame shown to reviewers around a matched face at
/// `face` (fractions of the frame): the face with a face's width and height
/// of margin on every side, within the frame, so the reviewer sees the head
/// and shoulders but not the people around it (who matched nothing).
/// Returns the crop and where the face lies within it.
pub fn frame_crop(
    face: &kenning_core::BoundingBox,
) -> (kenning_core::BoundingBox, kenning_core::BoundingBox) {
    let span = |start: f32, len: f32| {
        let a = (start - len).clamp(0.0, 1.0);
        let b = (start + 2.0 * len).clamp(a, 1.0);
        (a, (b - a).max(f32::EPSILON))
    };
    let (left, width) = span(face.left, face.width);
    let (top, height) = span(face.top, face.height);
    let crop = kenning_core::BoundingBox {
        width,
        height,
        left,
        top,
    };
    let inside = kenning_core::BoundingBox {
        width: face.width / width,
        height: face.height / height,
        left: (face.left - left) / width,
        top: (face.top - top) / height,
    };
    (crop, inside)
}

/// What the queue can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No review with that id.
    #[error("review {0} not found")]
    NotFound(String),
    /// The candidate was already confirmed or rejected.
    #[error("review {id} is already {status}; decisions are final")]
    Closed {
        /// Review id.
        id: String,
        /// Its status.
        status: Status,
    },
    /// The reviewer ran the search.
    #[error("access key {0} ran this search and may not review its candidates")]
    OwnSearch(String),
    /// The reviewer decided on this candidate before.
    #[error("access key {0} has already decided on this candidate; the next decision must come from a different reviewer")]
    AlreadyDecided(String),
    /// A bad argument (comment, token...).
    #[error("{0}")]
    Invalid(String),
    /// The audit record could not be written, so nothing was.
    #[error("the decision was not recorded because its audit record could not be written: {0}")]
    Audit(String),
    /// The queue's database failed.
    #[error("review queue: {0}")]
    Db(String),
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn db<E: std::fmt::Display>(e: E) -> ReviewError {
    ReviewError::Db(e.to_string())
}

/// One page of the queue.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReviewPage {
    /// The items, oldest first.
    pub items: Vec<ReviewItem>,
    /// Token for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Where a node keeps its review queue.
pub trait ReviewStore: Send + Sync {
    /// Queues `items` (status, decisions and creation time are set here,
    /// by [`prepare`]) and writes `record`, the audit record of the search
    /// that found them, in the same transaction.
    fn enqueue(&self, items: &mut [ReviewItem], record: Entry) -> Result<(), ReviewError>;
    /// One item by id.
    fn get(&self, id: &str) -> Result<ReviewItem, ReviewError>;
    /// Items that `keep` accepts, oldest first, at most `max` after `token`.
    fn list(
        &self,
        keep: &dyn Fn(&ReviewItem) -> bool,
        token: Option<&str>,
        max: usize,
    ) -> Result<ReviewPage, ReviewError>;
    /// Changes item `id` under a lock with `change` and writes the audit
    /// entry `change` returns, in one transaction; if `change` fails, or the
    /// audit record cannot be written, the item stays as it was.
    fn update(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut ReviewItem) -> Result<Entry, ReviewError>,
    ) -> Result<ReviewItem, ReviewError>;
}

/// Sets what queuing sets on an item: pending, no decisions, created now.
pub fn prepare(item: &mut ReviewItem) {
    item.status = Status::Pending;
    item.decisions.clear();
    item.created_at = now_ms();
}

/// The page token after an item's position, and back.
pub fn page_token(position: u64) -> String {
    position.to_string()
}

/// The position a page token resumes after (0 without a token).
pub fn parse_page_token(token: Option<&str>) -> Result<u64, ReviewError> {
    token.map_or(Ok(0), |t| {
        t.parse::<u64>()
            .map_err(|_| ReviewError::Invalid("invalid pagination token".into()))
    })
}

/// Records `reviewer`'s decision on review `id`. A rejection closes the
/// review; it is confirmed once `required_reviewers` different keys, none of
/// them the searcher, have confirmed it. `audit` gives the audit record of
/// the decision from the updated item; it is written with the change.
pub fn decide(
    store: &dyn ReviewStore,
    id: &str,
    reviewer: &str,
    verdict: Verdict,
    comment: &str,
    audit: impl Fn(&ReviewItem) -> Entry,
) -> Result<ReviewItem, ReviewError> {
    let comment = comment.trim();
    if comment.is_empty() || comment.chars().count() > 2000 {
        return Err(ReviewError::Invalid(
            "a decision needs a Comment of 1-2000 characters saying why".into(),
        ));
    }
    store.update(id, &mut |item| {
        if item.status != Status::Pending {
            return Err(ReviewError::Closed {
                id: id.into(),
                status: item.status,
            });
        }
        if item.searched_by == reviewer {
            return Err(ReviewError::OwnSearch(reviewer.into()));
        }
        if item.decisions.iter().any(|d| d.reviewer == reviewer) {
            return Err(ReviewError::AlreadyDecided(reviewer.into()));
        }
        item.decisions.push(Decision {
            reviewer: reviewer.into(),
            decision: verdict,
            comment: comment.into(),
            decided_at: now_ms(),
        });
        let confirmations = item
            .decisions
            .iter()
            .filter(|d| d.decision == Verdict::Confirm)
            .count();
        item.status = match verdict {
            Verdict::Reject => Status::Rejected,
            Verdict::Confirm if confirmations >= usize::from(item.required_reviewers.max(1)) => {
                Status::Confirmed
            }
            Verdict::Confirm => Status::Pending,
        };
        Ok(audit(item))
    })
}

/// The review queue of one data directory, in its own redb file; audit
/// records go to the data directory's trail before each commit.
pub struct ReviewQueue {
    db: Database,
    audit: Arc<dyn Trail>,
}

impl ReviewQueue {
    /// Opens (creating if needed) the queue at `path`, recording to `audit`.
    pub fn open(path: &Path, audit: Arc<dyn Trail>) -> Result<Self, ReviewError> {
        let database = Database::builder().create(path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(ITEMS).map_err(db)?;
        txn.open_table(IDS).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self {
            db: database,
            audit,
        })
    }

    fn record(&self, entry: Entry) -> Result<(), ReviewError> {
        self.audit
            .append(entry)
            .map(|_| ())
            .map_err(|e| ReviewError::Audit(e.to_string()))
    }
}

impl ReviewStore for ReviewQueue {
    fn enqueue(&self, items: &mut [ReviewItem], record: Entry) -> Result<(), ReviewError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut t = txn.open_table(ITEMS).map_err(db)?;
            let mut ids = txn.open_table(IDS).map_err(db)?;
            let first = t.last().map_err(db)?.map_or(1, |(k, _)| k.value() + 1);
            for (next, item) in (first..).zip(items.iter_mut()) {
                prepare(item);
                let bytes = serde_json::to_vec(item).map_err(db)?;
                t.insert(next, bytes.as_slice()).map_err(db)?;
                ids.insert(item.review_id.as_str(), next).map_err(db)?;
            }
        }
        if let Err(e) = self.record(record) {
            txn.abort().map_err(db)?;
            return Err(e);
        }
        txn.commit().map_err(db)
    }

    fn get(&self, id: &str) -> Result<ReviewItem, ReviewError> {
        let txn = self.db.begin_read().map_err(db)?;
        let ids = txn.open_table(IDS).map_err(db)?;
        let seq = ids
            .get(id)
            .map_err(db)?
            .ok_or_else(|| ReviewError::NotFound(id.into()))?
            .value();
        let t = txn.open_table(ITEMS).map_err(db)?;
        let v = t
            .get(seq)
            .map_err(db)?
            .ok_or_else(|| ReviewError::NotFound(id.into()))?;
        serde_json::from_slice(v.value()).map_err(db)
    }

    fn list(
        &self,
        keep: &dyn Fn(&ReviewItem) -> bool,
        token: Option<&str>,
        max: usize,
    ) -> Result<ReviewPage, ReviewError> {
        let after = parse_page_token(token)?;
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(ITEMS).map_err(db)?;
        let mut items = Vec::new();
        let mut next_token = None;
        for e in t.range(after + 1..).map_err(db)? {
            let (k, v) = e.map_err(db)?;
            let item: ReviewItem = serde_json::from_slice(v.value()).map_err(db)?;
            if !keep(&item) {
                continue;
            }
            if items.len() == max {
                next_token = Some(page_token(k.value() - 1));
                break;
            }
            items.push(item);
        }
        Ok(ReviewPage { items, next_token })
    }

    fn update(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut ReviewItem) -> Result<Entry, ReviewError>,
    ) -> Result<ReviewItem, ReviewError> {
        let txn = self.db.begin_write().map_err(db)?;
        let (item, entry) = {
            let ids = txn.open_table(IDS).map_err(db)?;
            let seq = ids
                .get(id)
                .map_err(db)?
                .ok_or_else(|| ReviewError::NotFound(id.into()))?
                .value();
            let mut t = txn.open_table(ITEMS).map_err(db)?;
            let mut item: ReviewItem = {
                let v = t
                    .get(seq)
                    .map_err(db)?
                    .ok_or_else(|| ReviewError::NotFound(id.into()))?;
                serde_json::from_slice(v.value()).map_err(db)?
            };
            let entry = change(&mut item)?;
            let bytes = serde_json::to_vec(&item).map_err(db)?;
            t.insert(seq, bytes.as_slice()).map_err(db)?;
            (item, entry)
        };
        if let Err(e) = self.record(entry) {
            txn.abort().map_err(db)?;
            return Err(e);
        }
        txn.commit().map_err(db)?;
        Ok(item)
    }
}

#[cfg(any(test, feature = "testing"))]
impl ReviewItem {
    /// A pending candidate (face "f" of collection "c", Similarity 97.5 at
    /// threshold 90) that needs `required_reviewers`: the one item the
    /// review-store tests of every backend queue and decide.
    pub fn fixture(review_id: &str, required_reviewers: u8) -> Self {
        ReviewItem {
            review_id: review_id.into(),
            collection_id: "c".into(),
            operation: "SearchFacesByImage".into(),
            request_id: "r".into(),
            searched_by: "OPERATOR".into(),
            case: Some("CASE-1".into()),
            purpose: None,
            face_id: Some("f".into()),
            user_id: None,
            external_image_id: None,
            similarity: 97.5,
            threshold: 90.0,
            required_reviewers,
            status: Status::Pending,
            decisions: Vec::new(),
            other_decisions: 0,
            created_at: 0,
            probe_face: None,
            video_frame: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, required: u8) -> ReviewItem {
        ReviewItem::fixture(id, required)
    }

    #[test]
    fn a_frame_is_cut_around_its_face_within_the_frame() {
        let b = |left, top, width, height| kenning_core::BoundingBox {
            width,
            height,
            left,
            top,
        };
        let near = |a: kenning_core::BoundingBox, e: kenning_core::BoundingBox| {
            for (x, y) in [
                (a.left, e.left),
                (a.top, e.top),
                (a.width, e.width),
                (a.height, e.height),
            ] {
                assert!((x - y).abs() < 1e-5, "{a:?} != {e:?}");
            }
        };
        // In the middle: three faces wide and high, the face in the centre.
        let (crop, inside) = frame_crop(&b(0.4, 0.3, 0.1, 0.2));
        near(crop, b(0.3, 0.1, 0.3, 0.6));
        near(inside, b(1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0));
        // At the top-left corner the margin stops at the frame's edge.
        let (crop, inside) = frame_crop(&b(0.0, 0.05, 0.2, 0.1));
        near(crop, b(0.0, 0.0, 0.4, 0.25));
        near(inside, b(0.0, 0.2, 0.5, 0.4));
        // A face filling the frame: the whole frame.
        near(frame_crop(&b(0.0, 0.0, 1.0, 1.0)).0, b(0.0, 0.0, 1.0, 1.0));
    }

    fn ok(item: &ReviewItem) -> Entry {
        Entry {
            operation: "DecideReviewItem".into(),
            outcome: "ok".into(),
            details: Some(serde_json::json!({ "ReviewId": item.review_id })),
            ..Entry::default()
        }
    }

    #[test]
    fn two_reviewer_rule() {
        let dir = tempfile::tempdir().unwrap();
        let trail = dir.path().join("audit.jsonl");
        let open = || {
            let log = kenning_audit::AuditLog::open(&trail).unwrap();
            ReviewQueue::open(&dir.path().join("review.redb"), Arc::new(log)).unwrap()
        };
        let queue = open();
        let search = Entry {
            operation: "SearchFacesByImage".into(),
            outcome: "ok".into(),
            ..Entry::default()
        };
        queue
            .enqueue(&mut [item("a", 2), item("b", 1), item("c", 2)], search)
            .unwrap();
        let q = &queue as &dyn ReviewStore;
        let decide = |id, who, verdict, comment| decide(q, id, who, verdict, comment, ok);
        // The searcher cannot review, a reviewer cannot count twice.
        assert!(matches!(
            decide("a", "OPERATOR", Verdict::Confirm, "same face"),
            Err(ReviewError::OwnSearch(_))
        ));
        let a = decide("a", "R1", Verdict::Confirm, "same scar").unwrap();
        assert_eq!(a.status, Status::Pending);
        assert!(matches!(
            decide("a", "R1", Verdict::Confirm, "again"),
            Err(ReviewError::AlreadyDecided(_))
        ));
        // A failed audit write (the trail's last record was tampered with,
        // so nothing can be chained onto it) leaves the item as it was.
        let good = std::fs::read(&trail).unwrap();
        let mut bad = good.clone();
        bad.extend_from_slice(b"{\"hash\":\"x\"}\n");
        std::fs::write(&trail, &bad).unwrap();
        assert!(matches!(
            decide("a", "R2", Verdict::Confirm, "agree"),
            Err(ReviewError::Audit(_))
        ));
        assert_eq!(q.get("a").unwrap().decisions.len(), 1);
        std::fs::write(&trail, &good).unwrap();
        let a = decide("a", "R2", Verdict::Confirm, "agree").unwrap();
        assert_eq!(a.status, Status::Confirmed);
        assert!(matches!(
            decide("a", "R3", Verdict::Reject, "late"),
            Err(ReviewError::Closed { .. })
        ));
        // One reviewer suffices when the policy says 1; a rejection closes.
        assert_eq!(
            decide("b", "R1", Verdict::Confirm, "yes").unwrap().status,
            Status::Confirmed
        );
        assert_eq!(
            decide("c", "R2", Verdict::Reject, "different ears")
                .unwrap()
                .status,
            Status::Rejected
        );
        assert!(matches!(
            decide("c", "R1", Verdict::Confirm, ""),
            Err(ReviewError::Invalid(_))
        ));
        assert!(matches!(
            decide("zz", "R1", Verdict::Confirm, "x"),
            Err(ReviewError::NotFound(_))
        ));
        // Paging, filtered.
        let p = q.list(&|_| true, None, 2).unwrap();
        assert_eq!(p.items.len(), 2);
        let rest = q.list(&|_| true, p.next_token.as_deref(), 2).unwrap();
        assert_eq!(rest.items.len(), 1);
        assert_eq!(rest.items[0].review_id, "c");
        assert!(rest.next_token.is_none());
        let pending = q.list(&|i| i.status == Status::Pending, None, 10).unwrap();
        assert!(pending.items.is_empty());
        let records = kenning_audit::verify(&trail).unwrap();
        assert!(records.is_ok());
        assert_eq!(records.records, 5, "the search and four decisions");
        drop(queue);
        let q = open();
        assert_eq!(q.get("a").unwrap().decisions.len(), 2, "durable");
    }
}
