//! The accountable front of every operation: authorise the caller, apply the
//! collection's policy, run the operation, queue its candidates for review
//! and write the audit record as part of it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use kenning_api::{ops, ApiError, Counts};
use kenning_audit::{Candidate, Entry, Filter, Trail};
use kenning_collections::{estimate, CalibrationAction, Collections, DEFAULT_THRESHOLD};
use kenning_core::{BoundingBox, ErrorCode};
pub use kenning_store::AUDIT_FILE;
use kenning_store::{Auditor, Change, EvalDir, EvalReportStore, Expiry, OnAssociated};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::keys::{KeyError, KeyStore};
use crate::policy::{Policy, RetentionFrom, Violation};
use crate::probes::{ProbeDir, ProbeStore};
use crate::report::{accountability_report, ReportQuery};
use crate::review::{
    self, frame_crop, ReviewError, ReviewItem, ReviewQueue, ReviewStore, Status, Verdict,
    VideoFrame,
};
use crate::roles::{Grant, Principal, Role, KENNING_OPERATIONS};

/// The review queue's file, relative to the data directory.
pub const REVIEW_FILE: &str = "review.redb";

/// Where a data directory keeps its audit trail.
pub fn audit_path(data_dir: &Path) -> PathBuf {
    data_dir.join(AUDIT_FILE)
}

/// VerifyAudit's response for a verification report (`Valid`, `Records`,
/// `Head`, `FirstBadRecord` with `Line`, `Seq`, `Reason`).
pub fn audit_report(r: &kenning_audit::VerifyReport) -> Value {
    json!({
        "Valid": r.is_ok(),
        "Records": r.records,
        "Head": r.head,
        "FirstBadRecord": r.first_bad.as_ref().map(|b| json!({
            "Line": b.line, "Seq": b.seq, "Reason": b.reason,
        })),
    })
}

/// Searches: their results are candidates, audited with what came back.
const SEARCHES: &[&str] = &[
    "SearchFaces",
    "SearchFacesByImage",
    "SearchUsers",
    "SearchUsersByImage",
];

/// Operations audited even when they change nothing in the store.
const AUDITED: &[&str] = &[
    "CompareFaces",
    "CreateCollection",
    "DeleteCollection",
    "IndexFaces",
    "DeleteFaces",
    "CreateUser",
    "DeleteUser",
    "AssociateFaces",
    "DisassociateFaces",
];

/// What a search looks at, for the policy rules that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A photo (SearchFaces, SearchFacesByImage, ...).
    Photo,
    /// A stored video (StartFaceSearch): the AllowVideo rule applies.
    Video,
    /// A live stream (stream processors): the AllowStreams rule applies.
    Stream,
}

/// Who is asking, and in what context.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated key.
    pub principal: Principal,
    /// Request id (HTTP `x-amzn-RequestId`; a fresh UUID on the CLI).
    pub request_id: String,
    /// Case reference (`X-Kenning-Case`, `--case`).
    pub case: Option<String>,
    /// Stated purpose (`X-Kenning-Purpose`, `--purpose`).
    pub purpose: Option<String>,
}

impl Caller {
    /// A caller with a fresh request id and no case.
    pub fn new(principal: Principal) -> Self {
        Self {
            principal,
            request_id: uuid::Uuid::new_v4().to_string(),
            case: None,
            purpose: None,
        }
    }

    /// The service itself (scheduled retention).
    pub fn system(what: &str) -> Self {
        Self::new(Principal::new(&format!("system:{what}"), Grant::admin()))
    }

    /// The audit record of `op` by this caller, before its details.
    pub fn entry(&self, op: &str) -> Entry {
        Entry {
            request_id: Some(self.request_id.clone()),
            access_key: Some(self.principal.access_key.clone()),
            role: Some(self.principal.role().to_string()),
            operation: op.into(),
            outcome: "ok".into(),
            case: self.case.clone(),
            purpose: self.purpose.clone(),
            ..Entry::default()
        }
    }
}

/// What the operation running on this thread has recorded so far; the store
/// hook fills in the details of each change from it.
struct Active {
    entry: Entry,
    recorded: Option<u64>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Clears the thread's context even if the operation unwinds.
struct ActiveGuard;

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().take());
    }
}

/// Runs `f` with `entry` as this thread's context; returns the seq of the
/// last record the store hook wrote for it, if any.
fn with_active<T>(entry: &Entry, f: impl FnOnce() -> T) -> (T, Option<u64>) {
    ACTIVE.with(|a| {
        *a.borrow_mut() = Some(Active {
            entry: entry.clone(),
            recorded: None,
        })
    });
    let guard = ActiveGuard;
    let out = f();
    let recorded = ACTIVE.with(|a| a.borrow().as_ref().and_then(|a| a.recorded));
    drop(guard);
    (out, recorded)
}

/// Gives the audit record of every store change (the store writes it inside
/// the change's transaction).
struct AuditHook;

fn ids(v: &[uuid::Uuid]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn change_details(change: &Change<'_>) -> Value {
    match change {
        Change::CollectionCreated { collection } => json!({
            "Change": "CollectionCreated",
            "FaceModel": collection.face_model.to_string(),
            "Policy": serde_json::from_str::<Value>(&collection.policy).unwrap_or(Value::Null),
        }),
        Change::CollectionDeleted { collection } => json!({
            "Change": "CollectionDeleted",
            "FacesRemoved": collection.face_count,
            "UsersRemoved": collection.user_count,
        }),
        Change::PolicySet { collection } => json!({
            "Change": "PolicySet",
            "Policy": serde_json::from_str::<Value>(&collection.policy).unwrap_or(Value::Null),
        }),
        // The fitted tables are large; the record keeps what they were
        // fitted from and what they measured (the document's Summary).
        Change::CalibrationSet { calibration, .. } => json!({
            "Change": "CalibrationSet",
            "Calibration": calibration.map_or(json!("shipped"), |doc| {
                serde_json::from_str::<Value>(doc)
                    .ok()
                    .and_then(|v| v.get("Summary").cloned())
                    .unwrap_or(Value::Null)
            }),
        }),
        Change::FacesAdded { faces, .. } => json!({
            "Change": "FacesAdded",
            "Faces": faces.iter().map(|f| json!({
                "FaceId": f.face_id.to_string(),
                "ImageId": f.image_id.to_string(),
                "ExternalImageId": f.external_image_id,
            })).collect::<Vec<_>>(),
        }),
        Change::FacesDeleted { outcome, .. } => json!({
            "Change": "FacesDeleted",
            "FaceIds": ids(&outcome.done),
            "NotDeleted": outcome.unsuccessful.iter().map(|u| u.face_id.to_string()).collect::<Vec<_>>(),
        }),
        Change::UserCreated { user_id, .. } => {
            json!({ "Change": "UserCreated", "UserId": user_id })
        }
        Change::UserDeleted { user, .. } => json!({
            "Change": "UserDeleted",
            "UserId": user.user_id,
            "FacesDisassociated": ids(&user.face_ids),
        }),
        Change::FacesAssociated {
            user_id, outcome, ..
        } => json!({
            "Change": "FacesAssociated",
            "UserId": user_id,
            "FaceIds": ids(&outcome.done),
        }),
        Change::FacesDisassociated {
            user_id, outcome, ..
        } => json!({
            "Change": "FacesDisassociated",
            "UserId": user_id,
            "FaceIds": ids(&outcome.done),
        }),
    }
}

impl Auditor for AuditHook {
    fn entry(&self, change: &Change<'_>) -> Entry {
        let mut entry = ACTIVE
            .with(|a| a.borrow().as_ref().map(|a| a.entry.clone()))
            .unwrap_or_else(|| Entry {
                access_key: Some("internal".into()),
                operation: "StoreChange".into(),
                outcome: "ok".into(),
                ..Entry::default()
            });
        let c = change.collection();
        entry.collection = Some(c.id.clone());
        entry.face_count = Some(c.face_count);
        entry.details = Some(change_details(change));
        entry
    }

    fn recorded(&self, seq: u64) {
        ACTIVE.with(|a| {
            if let Some(a) = a.borrow_mut().as_mut() {
                a.recorded = Some(seq);
            }
        });
    }
}

/// What opening the accountability layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The review queue cannot be opened.
    #[error("{0}")]
    Review(#[from] ReviewError),
    /// The folder of probe photos under review cannot be used.
    #[error("probe photos: {0}")]
    Probes(#[from] std::io::Error),
}

/// Faces a retention pass deleted from one collection.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetentionResult {
    /// The collection.
    pub collection_id: String,
    /// Faces deleted.
    pub faces_deleted: u64,
}

/// Collections, audit trail and review queue of one data directory, behind
/// the rules: every operation from any front end goes through [`Governor::call`].
pub struct Governor {
    collections: Arc<Collections>,
    audit: Arc<dyn Trail>,
    reviews: Arc<dyn ReviewStore>,
    probes: Arc<dyn ProbeStore>,
    keys: KeyStore,
    evals: Arc<dyn EvalReportStore>,
    frames: std::sync::RwLock<Option<std::sync::Weak<dyn FrameCutter>>>,
}

/// Cuts a frame of a stored video again for its reviewers (the video
/// service does; the Governor keeps no frames).
pub trait FrameCutter: Send + Sync {
    /// The part `crop` (fractions of the frame) of `frame`'s frame, as a
    /// JPEG; never written to disk.
    fn cut(&self, frame: &VideoFrame, crop: &BoundingBox) -> Result<Vec<u8>, ApiError>;
}

/// Where a search's candidates were seen, for their reviewers.
enum Seen {
    /// Nothing is shown (a live stream).
    Nothing,
    /// A photo, kept while its candidates are pending.
    Photo(KeptProbe),
    /// Per candidate, in order: the stored video's frame and the face in it.
    Frames(Vec<Option<(VideoFrame, BoundingBox)>>),
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn denied(message: impl Into<String>) -> ApiError {
    ApiError::from_code(ErrorCode::AccessDeniedException, message)
}

fn audit_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!(
        "the audit record could not be written, so the operation's result is withheld: {e}"
    ))
}

fn sha256_of_image(body: &Value, field: &str) -> Option<String> {
    let b64 = body.get(field)?.get("Bytes")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_end())
        .ok()?;
    Some(hex::encode(Sha256::digest(bytes)))
}

fn str_field<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

/// The candidates in a search or CompareFaces response.
fn candidates(v: &Value) -> Vec<Candidate> {
    let face = |m: &Value| Candidate {
        face_id: m
            .pointer("/Face/FaceId")
            .and_then(Value::as_str)
            .map(Into::into),
        user_id: m
            .pointer("/Face/UserId")
            .and_then(Value::as_str)
            .map(Into::into),
        external_image_id: m
            .pointer("/Face/ExternalImageId")
            .and_then(Value::as_str)
            .map(Into::into),
        similarity: m.get("Similarity").and_then(Value::as_f64).unwrap_or(0.0),
    };
    let user = |m: &Value| Candidate {
        face_id: None,
        user_id: m
            .pointer("/User/UserId")
            .and_then(Value::as_str)
            .map(Into::into),
        external_image_id: None,
        similarity: m.get("Similarity").and_then(Value::as_f64).unwrap_or(0.0),
    };
    let list = |k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    list("FaceMatches")
        .iter()
        .map(face)
        .chain(list("UserMatches").iter().map(user))
        .collect()
}

impl Governor {
    /// Puts the collections of data directory `data_dir` behind the rules,
    /// with its review queue; every later store change is audited.
    pub fn open(data_dir: &Path, collections: Arc<Collections>) -> Result<Self, OpenError> {
        let audit = collections.store().audit();
        let reviews = ReviewQueue::open(&data_dir.join(REVIEW_FILE), audit)?;
        Self::new(
            collections,
            Arc::new(reviews),
            KeyStore::new(data_dir),
            Arc::new(ProbeDir::open(data_dir)?),
            Arc::new(EvalDir::new(data_dir)),
        )
    }

    /// Puts `collections` behind the rules, with the review queue `reviews`,
    /// access keys `keys`, probe photos under review `probes` and published
    /// evaluation reports `evals` (all kept where the collections are); every
    /// later store change is audited, in the store's own audit trail.
    pub fn new(
        collections: Arc<Collections>,
        reviews: Arc<dyn ReviewStore>,
        keys: KeyStore,
        probes: Arc<dyn ProbeStore>,
        evals: Arc<dyn EvalReportStore>,
    ) -> Result<Self, OpenError> {
        collections.store().set_auditor(Arc::new(AuditHook));
        let g = Self {
            audit: collections.store().audit(),
            collections,
            reviews,
            probes,
            keys,
            evals,
            frames: std::sync::RwLock::new(None),
        };
        g.sweep_probes().map_err(|e| match e {
            ProbeSweepError::Io(e) => OpenError::Probes(e),
            ProbeSweepError::Review(e) => OpenError::Review(e),
        })?;
        Ok(g)
    }

    /// Erases the probe photos of searches that have no pending candidate
    /// left (a crash between a closing decision and its erasure leaves one).
    fn sweep_probes(&self) -> Result<usize, ProbeSweepError> {
        let pending: std::collections::HashSet<String> = self
            .reviews
            .list(&|i| i.status == Status::Pending, None, usize::MAX)?
            .items
            .into_iter()
            .map(|i| i.request_id)
            .collect();
        Ok(self.probes.sweep(&|id| pending.contains(id))?)
    }

    /// Appends `entry`, a record of something that is not an operation (a
    /// console sign-in or sign-out), with `outcome` `ok` or the exception
    /// name and message.
    pub fn record_event(
        &self,
        mut entry: Entry,
        outcome: Result<(), &ApiError>,
    ) -> Result<(), ApiError> {
        if let Err(e) = outcome {
            entry.outcome = e.kind.to_string();
            entry.message = Some(e.message.clone());
        }
        self.record(entry)
    }

    /// The face pipeline's recogniser and the calibration its Similarity
    /// uses, e.g. `dlib-resnet-v1 (fair)`: what collections without their
    /// own calibration score with.
    pub fn calibration_in_force(&self) -> String {
        let m = self.collections.pipeline().recognizer().loaded();
        format!("{} ({})", m.manifest.name, m.selected.as_str())
    }

    /// The calibration in force for one collection: its own when
    /// CalibrateCollection fitted one, else its recogniser's shipped one
    /// (e.g. `sface-2021dec (fair)`); searches record it.
    pub fn calibration_in_force_for(&self, collection: &str) -> String {
        self.collections
            .calibration_in_force(collection)
            .map_or_else(|_| self.calibration_in_force(), |c| c.label())
    }

    /// The audit trail every operation is recorded in.
    pub fn trail(&self) -> &Arc<dyn Trail> {
        &self.audit
    }

    /// The published evaluation reports (the console's accuracy page).
    pub fn eval_reports(&self) -> &Arc<dyn EvalReportStore> {
        &self.evals
    }

    /// The collections behind the rules (for flushing at shutdown).
    pub fn collections(&self) -> &Arc<Collections> {
        &self.collections
    }

    /// Appends `entry`, mapping a failure to the error the caller reports.
    fn record(&self, entry: Entry) -> Result<(), ApiError> {
        self.audit.append(entry).map(|_| ()).map_err(audit_failed)
    }

    /// Records a refused or failed operation and returns its error (or the
    /// audit failure, which is worse).
    fn refuse(&self, mut entry: Entry, e: ApiError) -> ApiError {
        entry.outcome = e.kind.to_string();
        entry.message = Some(e.message.clone());
        match self.record(entry) {
            Ok(()) => e,
            Err(audit) => audit,
        }
    }

    /// Runs operation `op` (Rekognition's or Kenning's own) for `caller`.
    pub fn call(
        &self,
        caller: &Caller,
        op: &str,
        body: Value,
    ) -> Result<(Value, Counts), ApiError> {
        let body = if body.is_null() { json!({}) } else { body };
        let mut entry = caller.entry(op);
        entry.probe_sha256 =
            sha256_of_image(&body, "Image").or_else(|| sha256_of_image(&body, "SourceImage"));
        let entry = self.authorize(caller, entry, str_field(&body, "CollectionId"))?;
        match op {
            _ if KENNING_OPERATIONS.contains(&op) => self
                .kenning_op(caller, op, &body, entry)
                .map(|v| (v, Counts::default())),
            _ if SEARCHES.contains(&op) => self.search(caller, op, body, entry),
            _ => self.plain(caller, op, body, entry),
        }
    }

    /// Checks that `caller` may run `entry`'s operation (on `collection`,
    /// when it names one) and that its case reference and purpose are
    /// well-formed; a refusal is recorded. Returns the entry with the
    /// collection filled in. [`Governor::call`] starts with this; front ends
    /// that run an operation elsewhere (stored video) call it themselves.
    pub fn authorize(
        &self,
        caller: &Caller,
        mut entry: Entry,
        collection: Option<&str>,
    ) -> Result<Entry, ApiError> {
        entry.collection = collection.map(str::to_owned);
        if let Err(d) = caller.principal.authorize(&entry.operation, collection) {
            return Err(self.refuse(entry, denied(d.0)));
        }
        for (name, v) in [
            ("case reference", &caller.case),
            ("purpose", &caller.purpose),
        ] {
            if v.as_ref()
                .is_some_and(|v| v.trim().is_empty() || v.len() > 256)
            {
                return Err(self.refuse(
                    entry,
                    ApiError::invalid_parameter(format!("the {name} must be 1-256 characters")),
                ));
            }
        }
        Ok(entry)
    }

    /// Appends `entry` to the audit trail.
    pub fn audit(&self, entry: Entry) -> Result<(), ApiError> {
        self.record(entry)
    }

    /// Records `entry` as refused or failed with `e`, and returns `e` (or
    /// the audit failure, which is worse).
    pub fn audit_failure(&self, entry: Entry, e: ApiError) -> ApiError {
        self.refuse(entry, e)
    }

    /// Checks a search of `entry`'s collection at `threshold` against the
    /// collection's policy, exactly as every photo search is checked, and,
    /// for video and live streams, against its AllowVideo / AllowStreams
    /// rule. Fills in the entry's face count, threshold and false-match
    /// figures; a refusal is recorded.
    pub fn check_search(
        &self,
        caller: &Caller,
        entry: &mut Entry,
        threshold: f64,
        medium: Medium,
    ) -> Result<Policy, ApiError> {
        let Some(collection) = entry.collection.clone() else {
            return Err(self.refuse(
                entry.clone(),
                ApiError::invalid_parameter("CollectionId is required"),
            ));
        };
        ops::percent("FaceMatchThreshold", Some(threshold))
            .map_err(|e| self.refuse(entry.clone(), e))?;
        let (policy, face_count) = self
            .policy_of(&collection)
            .map_err(|e| self.refuse(entry.clone(), e))?;
        let est = estimate(threshold, face_count);
        entry.face_count = Some(face_count);
        entry.threshold = Some(threshold);
        entry.false_match_rate = Some(est.false_match_rate);
        entry.expected_false_matches = Some(est.expected_false_matches);
        let broken = match medium {
            Medium::Photo => None,
            Medium::Video => policy
                .check_video(&collection, false)
                .err()
                .map(|v| ("AllowVideo", v)),
            Medium::Stream => policy
                .check_video(&collection, true)
                .err()
                .map(|v| ("AllowStreams", v)),
        }
        .or_else(|| {
            policy.search_violation(
                &collection,
                threshold,
                est.expected_false_matches,
                caller.case.as_deref(),
            )
        });
        if let Some((rule, v)) = broken {
            let e = match v {
                Violation::Parameter(m) => ApiError::invalid_parameter(m),
                Violation::Denied(m) => denied(m),
            };
            entry.details = Some(json!({ "PolicyRule": rule }));
            return Err(self.refuse(entry.clone(), e));
        }
        Ok(policy)
    }

    /// Completes a search whose candidates are in `entry`: records when the
    /// matched faces last matched (for retention), queues the candidates for
    /// review when `policy` asks for it and writes the audit record with
    /// `details` and the calibration that scored it. Returns one ReviewId per candidate, in order, when they
    /// were queued (none otherwise).
    pub fn complete_search(
        &self,
        caller: &Caller,
        policy: &Policy,
        entry: Entry,
        details: serde_json::Map<String, Value>,
    ) -> Result<Vec<String>, ApiError> {
        self.finish_search(caller, policy, entry, details, Seen::Nothing)
    }

    /// [`Governor::complete_search`] of a stored video: `frames` holds, for
    /// each candidate in order, the frame it was seen in and where its face
    /// is, which reviewers are shown (cut again by the [`FrameCutter`]).
    pub fn complete_video_search(
        &self,
        caller: &Caller,
        policy: &Policy,
        entry: Entry,
        details: serde_json::Map<String, Value>,
        frames: Vec<Option<(VideoFrame, BoundingBox)>>,
    ) -> Result<Vec<String>, ApiError> {
        self.finish_search(caller, policy, entry, details, Seen::Frames(frames))
    }

    /// Names what cuts video frames for reviewers (held weakly: the video
    /// service holds the Governor).
    pub fn set_frame_cutter(&self, cutter: std::sync::Weak<dyn FrameCutter>) {
        *self.frames.write().unwrap_or_else(|e| e.into_inner()) = Some(cutter);
    }

    /// [`Governor::complete_search`], keeping the `probe` photo for the
    /// reviewers while its candidates are pending.
    fn finish_search(
        &self,
        caller: &Caller,
        policy: &Policy,
        mut entry: Entry,
        mut details: serde_json::Map<String, Value>,
        seen: Seen,
    ) -> Result<Vec<String>, ApiError> {
        let collection = entry.collection.clone().unwrap_or_default();
        let threshold = entry.threshold.unwrap_or(DEFAULT_THRESHOLD);
        self.touch(&collection, &entry.candidates)
            .map_err(|e| self.refuse(entry.clone(), e))?;
        details.insert(
            "Calibration".into(),
            json!(self.calibration_in_force_for(&collection)),
        );
        if let Ok(Some(rule)) = self.collections.quality_rule_for(&collection) {
            // Pairs of faces of known size were scored with the small-face
            // rule on top of that calibration.
            details.insert("QualityRule".into(), json!(rule));
        }
        if let Some(e) = policy.equalise {
            // The collection's policy chose another of the shipped calibrations.
            details.insert("Equalise".into(), json!(e.as_str()));
        }
        if policy.required_reviewers > 0 && !entry.candidates.is_empty() {
            let mut items = self.review_items(
                caller,
                &entry.operation,
                &collection,
                threshold,
                policy,
                &entry,
            );
            match &seen {
                Seen::Nothing => {}
                Seen::Photo(p) => items.iter_mut().for_each(|i| i.probe_face = p.face),
                Seen::Frames(frames) => {
                    for (item, (frame, face)) in items
                        .iter_mut()
                        .zip(frames)
                        .filter_map(|(i, f)| Some((i, f.as_ref()?)))
                    {
                        item.video_frame = Some(frame.clone());
                        item.probe_face = Some(*face);
                    }
                }
            }
            let ids: Vec<String> = items.iter().map(|i| i.review_id.clone()).collect();
            if let Seen::Photo(p) = &seen {
                self.probes.put(&caller.request_id, &p.bytes).map_err(|e| {
                    self.refuse(
                        entry.clone(),
                        ApiError::internal(format!("keeping the probe for review: {e}")),
                    )
                })?;
            }
            details.insert("ReviewIds".into(), json!(ids));
            details.insert("RequiredReviewers".into(), json!(policy.required_reviewers));
            entry.details = Some(Value::Object(details));
            // The candidates are queued with the search's audit record.
            let queued = self.reviews.enqueue(&mut items, entry.clone());
            if queued.is_err() {
                let _ = self.probes.erase(&caller.request_id);
            }
            return match queued {
                Ok(()) => Ok(ids),
                Err(ReviewError::Audit(m)) => Err(audit_failed(m)),
                Err(e) => Err(self.refuse(entry, ApiError::internal(e.to_string()))),
            };
        }
        entry.details = Some(Value::Object(details));
        self.record(entry)?;
        Ok(Vec::new())
    }

    fn plain(
        &self,
        caller: &Caller,
        op: &str,
        mut body: Value,
        mut entry: Entry,
    ) -> Result<(Value, Counts), ApiError> {
        if op == "CreateCollection" {
            if let Some(p) = body.get("Policy") {
                let policy = Policy::from_value(p)
                    .map_err(|m| self.refuse(entry.clone(), ApiError::invalid_parameter(m)))?;
                body["Policy"] = serde_json::to_value(&policy).unwrap_or(json!({}));
            }
        }
        if op == "CompareFaces" {
            // Read from the request before it is consumed.
            let threshold = ops::percent(
                "SimilarityThreshold",
                body.get("SimilarityThreshold").and_then(Value::as_f64),
            )
            .map_err(|e| self.refuse(entry.clone(), e))?
            .unwrap_or(kenning_models::compare::DEFAULT_SIMILARITY_THRESHOLD);
            entry.threshold = Some(threshold);
            entry.false_match_rate = Some(kenning_collections::fmr_at(threshold));
            entry.details =
                sha256_of_image(&body, "TargetImage").map(|h| json!({ "TargetSha256": h }));
        }
        let (result, recorded) = with_active(&entry, || ops::dispatch(&self.collections, op, body));
        let audited = AUDITED.contains(&op);
        match (result, recorded) {
            (Ok((mut v, counts)), recorded) => {
                if op == "ListCollections" {
                    self.filter_collections(&caller.principal, &mut v);
                }
                if recorded.is_none() && audited {
                    entry.candidates = candidates(&v);
                    self.record(entry)?;
                }
                Ok((v, counts))
            }
            (Err(e), Some(seq)) => {
                entry.details = Some(json!({ "IncompleteChangeRecord": seq }));
                Err(self.refuse(entry, e))
            }
            (Err(e), None) if audited => Err(self.refuse(entry, e)),
            (Err(e), None) => Err(e),
        }
    }

    fn filter_collections(&self, p: &Principal, v: &mut Value) {
        if p.grant.collections.is_none() {
            return;
        }
        let ids: Vec<Value> = v["CollectionIds"].as_array().cloned().unwrap_or_default();
        let models: Vec<Value> = v["FaceModelVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let keep: Vec<(Value, Value)> = ids
            .into_iter()
            .zip(models)
            .filter(|(id, _)| id.as_str().is_some_and(|id| p.sees(id)))
            .collect();
        v["CollectionIds"] = keep.iter().map(|k| k.0.clone()).collect();
        v["FaceModelVersions"] = keep.into_iter().map(|k| k.1).collect();
    }

    fn policy_of(&self, collection: &str) -> Result<(Policy, u64), ApiError> {
        let c = self
            .collections
            .store()
            .describe_collection(collection)
            .map_err(|e| ApiError::from_wire(&e))?;
        let policy = Policy::parse(&c.policy).map_err(|e| {
            ApiError::internal(format!("collection {collection}'s stored policy: {e}"))
        })?;
        Ok((policy, c.face_count))
    }

    fn search(
        &self,
        caller: &Caller,
        op: &str,
        mut body: Value,
        mut entry: Entry,
    ) -> Result<(Value, Counts), ApiError> {
        let field = if op.starts_with("SearchUsers") {
            "UserMatchThreshold"
        } else {
            "FaceMatchThreshold"
        };
        let threshold = ops::percent(field, body.get(field).and_then(Value::as_f64))
            .map_err(|e| self.refuse(entry.clone(), e))?
            .unwrap_or(DEFAULT_THRESHOLD);
        let policy = self.check_search(caller, &mut entry, threshold, Medium::Photo)?;
        if body.get(field).is_none() {
            body[field] = json!(threshold);
        }
        // What was searched for, when it is not an image (whose hash is recorded).
        let searched: serde_json::Map<String, Value> = ["FaceId", "UserId"]
            .iter()
            .filter_map(|k| body.get(*k).map(|v| (format!("Searched{k}"), v.clone())))
            .collect();
        if !searched.is_empty() {
            entry.details = Some(Value::Object(searched.clone()));
        }
        // Reviewers see the probe beside each candidate, so a search under
        // review keeps its image until the last candidate is decided.
        let probe = (policy.required_reviewers > 0)
            .then(|| image_bytes(&body, "Image"))
            .flatten();
        let (result, _) = with_active(&entry, || ops::dispatch(&self.collections, op, body));
        let (mut v, counts) = result.map_err(|e| self.refuse(entry.clone(), e))?;
        entry.candidates = candidates(&v);
        let probe = probe.map(|bytes| KeptProbe {
            bytes,
            face: v
                .get("SearchedFaceBoundingBox")
                .and_then(|b| serde_json::from_value(b.clone()).ok()),
        });
        let seen = probe.map_or(Seen::Nothing, Seen::Photo);
        let ids = self.finish_search(caller, &policy, entry, searched, seen)?;
        let mut ids_left = ids.iter();
        for key in ["FaceMatches", "UserMatches"] {
            for m in v
                .get_mut(key)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(id) = ids_left.next() {
                    m["ReviewId"] = json!(id);
                    m["ReviewStatus"] = json!("PENDING");
                }
            }
        }
        Ok((v, counts))
    }

    fn review_items(
        &self,
        caller: &Caller,
        op: &str,
        collection: &str,
        threshold: f64,
        policy: &Policy,
        entry: &Entry,
    ) -> Vec<ReviewItem> {
        entry
            .candidates
            .iter()
            .map(|c| ReviewItem {
                review_id: uuid::Uuid::new_v4().to_string(),
                collection_id: collection.into(),
                operation: op.into(),
                request_id: caller.request_id.clone(),
                searched_by: caller.principal.access_key.clone(),
                case: caller.case.clone(),
                purpose: caller.purpose.clone(),
                face_id: c.face_id.clone(),
                user_id: c.user_id.clone(),
                external_image_id: c.external_image_id.clone(),
                similarity: c.similarity,
                threshold,
                required_reviewers: policy.required_reviewers,
                status: Status::Pending,
                decisions: Vec::new(),
                other_decisions: 0,
                created_at: 0,
                probe_face: None,
                video_frame: None,
            })
            .collect()
    }

    /// Records that the candidates' faces matched now (retention counted
    /// from the last match needs it).
    fn touch(&self, collection: &str, found: &[Candidate]) -> Result<(), ApiError> {
        let store = self.collections.store();
        let wire = |e: kenning_store::StoreError| ApiError::from_wire(&e);
        let mut face_ids: Vec<String> = found.iter().filter_map(|c| c.face_id.clone()).collect();
        for c in found.iter().filter(|c| c.face_id.is_none()) {
            if let Some(u) = &c.user_id {
                if let Ok(user) = store.get_user(collection, u) {
                    face_ids.extend(user.face_ids.iter().map(ToString::to_string));
                }
            }
        }
        if face_ids.is_empty() {
            return Ok(());
        }
        let seqs: Vec<u64> = store
            .get_faces(collection, &face_ids)
            .map_err(wire)?
            .into_iter()
            .flatten()
            .map(|f| f.seq)
            .collect();
        store
            .touch_faces(collection, &seqs, now_ms())
            .map_err(wire)?;
        Ok(())
    }

    fn kenning_op(
        &self,
        caller: &Caller,
        op: &str,
        body: &Value,
        mut entry: Entry,
    ) -> Result<Value, ApiError> {
        let result = match op {
            "PutCollectionPolicy" => return self.put_policy(body, entry),
            "CalibrateCollection" => return self.calibrate(body, entry),
            "DecideReviewItem" => return self.decide(caller, body, entry),
            "RunRetention" => {
                return self
                    .run_retention(caller)
                    .map(|r| json!({ "Collections": r }))
            }
            "GetCollectionPolicy" => {
                let id = str_field(body, "CollectionId")
                    .ok_or_else(|| ApiError::invalid_parameter("CollectionId is required"))?;
                let (policy, _) = self.policy_of(id)?;
                return Ok(json!({ "CollectionId": id, "Policy": policy }));
            }
            "ListReviewItems" => return self.list_reviews(&caller.principal, body),
            "UploadVideo" => return Err(ApiError::invalid_parameter(
                "videos are uploaded with PUT /v1/buckets/{Bucket}/{Key} (the body is the file)",
            )),
            "ListVideoJobs" | "ListVideos" => return Err(ApiError::new(
                400,
                "UnknownOperationException",
                format!("{op} lists what the video service holds, and this front end has not started it"),
            )),
            "ReadStreamOutput" => return Err(ApiError::invalid_parameter(
                "stream outputs are read as Server-Sent Events: GET /v1/stream-outputs/{Name}/events \
                 and GET /v1/stream-processors/{Name}/tracks",
            )),
            "CreateAccessKey" | "RevokeAccessKey" => return self.change_key(op, body, entry),
            "PutEvalReport" | "DeleteEvalReport" => return self.change_eval_report(op, body, entry),
            "ListEvalReports" => return self.list_eval_reports(),
            "ListAccessKeys" => {
                let keys = self.keys.list().map_err(key_error)?;
                return Ok(json!({ "AccessKeys": keys }));
            }
            "VerifyAudit" => self.verify_audit(),
            "ExportAudit" => self.export_audit(&caller.principal, body, &mut entry),
            "GetAccountabilityReport" => self.report(&caller.principal, body, &mut entry),
            "GetReviewProbe" => self.review_probe(&caller.principal, body, &mut entry),
            "GetEnrolmentImage" => self.enrolment_image(body, &mut entry),
            _ => Err(ApiError::unknown_operation(op)),
        };
        // Reading the audit trail is itself audited.
        match result {
            Ok(v) => {
                self.record(entry)?;
                Ok(v)
            }
            Err(e) => Err(self.refuse(entry, e)),
        }
    }

    fn put_policy(&self, body: &Value, entry: Entry) -> Result<Value, ApiError> {
        let id = str_field(body, "CollectionId")
            .ok_or_else(|| ApiError::invalid_parameter("CollectionId is required"))?;
        let policy = body
            .get("Policy")
            .ok_or_else(|| ApiError::invalid_parameter("Policy is required"))
            .and_then(|p| Policy::from_value(p).map_err(ApiError::invalid_parameter))
            .map_err(|e| self.refuse(entry.clone(), e))?;
        let (result, _) = with_active(&entry, || {
            self.collections.store().set_policy(id, &policy.to_json())
        });
        result.map_err(|e| self.refuse(entry, ApiError::from_wire(&e)))?;
        Ok(json!({ "CollectionId": id, "Policy": policy }))
    }

    /// CalibrateCollection: FIT and RESET are store changes (recorded by
    /// the store's hook in their transaction); CHECK changes nothing and is
    /// recorded here; a refusal (too small a gallery) is recorded too.
    fn calibrate(&self, body: &Value, mut entry: Entry) -> Result<Value, ApiError> {
        let id = str_field(body, "CollectionId")
            .ok_or_else(|| ApiError::invalid_parameter("CollectionId is required"))?;
        let action: CalibrationAction = str_field(body, "Action")
            .unwrap_or("FIT")
            .parse()
            .map_err(|e| self.refuse(entry.clone(), ApiError::from_wire(&e)))?;
        let (policy, face_count) = self
            .policy_of(id)
            .map_err(|e| self.refuse(entry.clone(), e))?;
        let threshold = policy.min_face_match_threshold.unwrap_or(DEFAULT_THRESHOLD);
        entry.face_count = Some(face_count);
        entry.threshold = Some(threshold);
        let (result, _) = with_active(&entry, || {
            self.collections.calibrate_collection(id, action, threshold)
        });
        let response = result.map_err(|e| self.refuse(entry.clone(), ApiError::from_wire(&e)))?;
        if action == CalibrationAction::Check {
            entry.details = Some(json!({ "Check": response.check }));
            self.record(entry)?;
        }
        serde_json::to_value(&response).map_err(|e| ApiError::internal(e.to_string()))
    }

    fn list_reviews(&self, p: &Principal, body: &Value) -> Result<Value, ApiError> {
        let collection = str_field(body, "CollectionId");
        if let Some(c) = collection {
            if !p.sees(c) {
                return Err(denied(format!(
                    "access key {} is not scoped to collection {c}",
                    p.access_key
                )));
            }
        }
        let status: Option<Status> = str_field(body, "Status")
            .map(str::parse)
            .transpose()
            .map_err(ApiError::invalid_parameter)?;
        let max = max_results(body, 100, 1000)?;
        let review_id = str_field(body, "ReviewId");
        let page = self
            .reviews
            .list(
                &|i| {
                    p.sees(&i.collection_id)
                        && collection.is_none_or(|c| c == i.collection_id)
                        && status.is_none_or(|s| s == i.status)
                        && review_id.is_none_or(|r| r == i.review_id)
                },
                str_field(body, "NextToken"),
                max as usize,
            )
            .map_err(review_error)?;
        let mut page = page;
        if p.role() == crate::roles::Role::Reviewer {
            // Each reviewer verifies separately: earlier verdicts on an open
            // candidate are not shown (the count of decisions still is).
            for item in page
                .items
                .iter_mut()
                .filter(|i| i.status == Status::Pending)
            {
                let n = item.decisions.len();
                item.decisions.retain(|d| d.reviewer == p.access_key);
                item.other_decisions = n - item.decisions.len();
            }
        }
        serde_json::to_value(&page).map_err(|e| ApiError::internal(e.to_string()))
    }

    fn decide(&self, caller: &Caller, body: &Value, mut entry: Entry) -> Result<Value, ApiError> {
        let p = &caller.principal;
        let parsed = (|| {
            let id = str_field(body, "ReviewId")
                .ok_or_else(|| ApiError::invalid_parameter("ReviewId is required"))?;
            let verdict: Verdict = str_field(body, "Decision")
                .ok_or_else(|| {
                    ApiError::invalid_parameter("Decision is required (CONFIRM or REJECT)")
                })?
                .parse()
                .map_err(ApiError::invalid_parameter)?;
            let item = self.reviews.get(id).map_err(review_error)?;
            if !p.sees(&item.collection_id) {
                return Err(denied(format!(
                    "access key {} is not scoped to collection {}",
                    p.access_key, item.collection_id
                )));
            }
            Ok((id, verdict, item))
        })();
        let (id, verdict, item) = parsed.map_err(|e| self.refuse(entry.clone(), e))?;
        entry.collection = Some(item.collection_id.clone());
        entry.case = caller.case.clone().or(item.case.clone());
        entry.purpose = caller.purpose.clone().or(item.purpose.clone());
        entry.candidates = vec![Candidate {
            face_id: item.face_id.clone(),
            user_id: item.user_id.clone(),
            external_image_id: item.external_image_id.clone(),
            similarity: item.similarity,
        }];
        let comment = str_field(body, "Comment").unwrap_or("");
        let decided = review::decide(
            self.reviews.as_ref(),
            id,
            &p.access_key,
            verdict,
            comment,
            |after| {
                let mut e = entry.clone();
                e.details = Some(json!({
                    "ReviewId": after.review_id,
                    "Decision": verdict,
                    "Comment": comment.trim(),
                    "Status": after.status,
                    "SearchRequestId": after.request_id,
                }));
                e
            },
        );
        match decided {
            Ok(item) => {
                if item.status != Status::Pending {
                    self.erase_probe_if_done(&item.request_id);
                }
                serde_json::to_value(&item).map_err(|e| ApiError::internal(e.to_string()))
            }
            Err(ReviewError::Audit(m)) => Err(audit_failed(m)),
            Err(e) => Err(self.refuse(entry, review_error(e))),
        }
    }

    /// Erases the probe of search `request_id` once none of its candidates
    /// is pending. A failure leaves it for the next sweep (at start and at
    /// every retention pass), so the decision itself still stands.
    fn erase_probe_if_done(&self, request_id: &str) {
        let open = self.reviews.list(
            &|i| i.request_id == request_id && i.status == Status::Pending,
            None,
            1,
        );
        if matches!(open, Ok(ref p) if p.items.is_empty()) {
            let _ = self.probes.erase(request_id);
        }
    }

    /// A review item the caller may see: in its collection scope.
    fn visible_item(&self, p: &Principal, body: &Value) -> Result<ReviewItem, ApiError> {
        let id = str_field(body, "ReviewId")
            .ok_or_else(|| ApiError::invalid_parameter("ReviewId is required"))?;
        let item = self.reviews.get(id).map_err(review_error)?;
        if !p.sees(&item.collection_id) {
            return Err(denied(format!(
                "access key {} is not scoped to collection {}",
                p.access_key, item.collection_id
            )));
        }
        Ok(item)
    }

    /// GetReviewProbe: the photo a candidate came from, while its review is
    /// open (reviewers and admins; recorded).
    fn review_probe(
        &self,
        p: &Principal,
        body: &Value,
        entry: &mut Entry,
    ) -> Result<Value, ApiError> {
        let item = self.visible_item(p, body)?;
        entry.collection = Some(item.collection_id.clone());
        entry.case = item.case.clone();
        entry.purpose = item.purpose.clone();
        entry.details = Some(match &item.video_frame {
            Some(f) => json!({ "ReviewId": item.review_id, "VideoFrame": f }),
            None => json!({ "ReviewId": item.review_id }),
        });
        let gone = || {
            ApiError::from_code(
                ErrorCode::ResourceNotFoundException,
                format!(
                    "review {} keeps no probe photo: it was erased when the review closed, or the search was not by image",
                    item.review_id
                ),
            )
        };
        if item.status != Status::Pending {
            return Err(gone());
        }
        if let Some(frame) = &item.video_frame {
            return self.review_frame(&item, frame);
        }
        let bytes = self
            .probes
            .get(&item.request_id)
            .map_err(|e| ApiError::internal(format!("reading the probe: {e}")))?
            .ok_or_else(gone)?;
        Ok(json!({
            "ReviewId": item.review_id,
            "ContentType": image_type(&bytes),
            "Image": { "Bytes": base64::engine::general_purpose::STANDARD.encode(&bytes) },
            "BoundingBox": item.probe_face,
        }))
    }

    /// GetReviewProbe of a candidate found in stored video: the part of its
    /// frame around the matched face, cut from the video again (nothing is
    /// kept), with the face's box within it.
    fn review_frame(&self, item: &ReviewItem, frame: &VideoFrame) -> Result<Value, ApiError> {
        let face = item.probe_face.unwrap_or(BoundingBox {
            width: 1.0 / 3.0,
            height: 1.0 / 3.0,
            left: 1.0 / 3.0,
            top: 1.0 / 3.0,
        });
        let (crop, inside) = frame_crop(&face);
        let cutter = self
            .frames
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| {
                ApiError::from_code(
                    ErrorCode::ResourceNotFoundException,
                    "this service does not analyse stored video, so it cannot show the frame",
                )
            })?;
        let bytes = cutter.cut(frame, &crop)?;
        Ok(json!({
            "ReviewId": item.review_id,
            "ContentType": image_type(&bytes),
            "Image": { "Bytes": base64::engine::general_purpose::STANDARD.encode(&bytes) },
            "BoundingBox": inside,
            "VideoFrame": frame,
        }))
    }

    /// GetEnrolmentImage: the photo a face was enrolled from, read from the
    /// collection's image source (reviewers and admins; recorded).
    fn enrolment_image(&self, body: &Value, entry: &mut Entry) -> Result<Value, ApiError> {
        let collection = str_field(body, "CollectionId")
            .ok_or_else(|| ApiError::invalid_parameter("CollectionId is required"))?;
        let face_id = str_field(body, "FaceId")
            .ok_or_else(|| ApiError::invalid_parameter("FaceId is required"))?;
        entry.details = Some(json!({ "FaceId": face_id }));
        let not_found = |m: String| ApiError::from_code(ErrorCode::ResourceNotFoundException, m);
        let (policy, _) = self.policy_of(collection)?;
        let source = policy.image_source.ok_or_else(|| {
            not_found(format!(
                "collection {collection} names no image source (an admin can set ImageSource in its policy)"
            ))
        })?;
        let face = self
            .collections
            .store()
            .get_faces(collection, &[face_id.to_owned()])
            .map_err(|e| ApiError::from_wire(&e))?
            .pop()
            .flatten()
            .ok_or_else(|| not_found(format!("face {face_id} not found in {collection}")))?;
        let name = face.external_image_id.clone().ok_or_else(|| {
            not_found(format!(
                "face {face_id} has no ExternalImageId to find its photo by"
            ))
        })?;
        entry.details = Some(json!({ "FaceId": face_id, "ExternalImageId": name }));
        let bytes = read_enrolment_photo(&source.directory, &name)?;
        Ok(json!({
            "FaceId": face_id,
            "ExternalImageId": name,
            "ContentType": image_type(&bytes),
            "Image": { "Bytes": base64::engine::general_purpose::STANDARD.encode(&bytes) },
            "BoundingBox": face.bounding_box,
        }))
    }

    /// GetAccountabilityReport over the caller's collection scope.
    fn report(&self, p: &Principal, body: &Value, entry: &mut Entry) -> Result<Value, ApiError> {
        let time = |k: &str| {
            str_field(body, k)
                .map(kenning_audit::parse_time)
                .transpose()
                .map_err(|e| ApiError::invalid_parameter(format!("{k}: {e}")))?
                .ok_or_else(|| ApiError::invalid_parameter(format!("{k} is required")))
        };
        let q = ReportQuery {
            from_ms: time("From")?,
            to_ms: time("To")?,
            collection: str_field(body, "CollectionId").map(Into::into),
            purpose: str_field(body, "Purpose").map(Into::into),
            case: str_field(body, "Case").map(Into::into),
        };
        if q.to_ms <= q.from_ms {
            return Err(ApiError::invalid_parameter("To must be after From"));
        }
        let scoped = p.grant.collections.is_some();
        let report = (|| {
            accountability_report(
                self.audit.verify()?,
                self.audit.records()?,
                &q,
                |r| match &r.entry.collection {
                    Some(c) => p.sees(c),
                    None => !scoped,
                },
            )
        })()
        .map_err(|e| ApiError::internal(e.to_string()))?;
        entry.details = Some(json!({
            "From": str_field(body, "From"),
            "To": str_field(body, "To"),
            "Case": q.case,
            "Purpose": q.purpose,
            "Head": report.chain.head,
        }));
        serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// CreateAccessKey and RevokeAccessKey (admins), recorded with the key
    /// store's change (both or neither), as `kenning keys` does.
    fn change_key(&self, op: &str, body: &Value, entry: Entry) -> Result<Value, ApiError> {
        let refuse = |e: ApiError| self.refuse(entry.clone(), e);
        // The key vault writes the record with the change, in one step.
        let record = |details: Value| {
            let mut e = entry.clone();
            e.details = Some(details);
            e
        };
        if op == "RevokeAccessKey" {
            let id = str_field(body, "AccessKeyId")
                .ok_or_else(|| refuse(ApiError::invalid_parameter("AccessKeyId is required")))?;
            self.keys
                .revoke(id, record(json!({ "AccessKeyId": id })))
                .map_err(|e| match e {
                    KeyError::Audit(m) => audit_failed(m),
                    e => refuse(key_error(e)),
                })?;
            return Ok(json!({ "Revoked": id }));
        }
        let list = |k: &str| -> Result<Option<Vec<String>>, ApiError> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
                    ApiError::invalid_parameter(format!("{k} must be a list of strings"))
                }),
            }
        };
        let grant = (|| {
            let role: Role = str_field(body, "Role")
                .ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "Role is required: admin, operator, reviewer or auditor",
                    )
                })?
                .parse()
                .map_err(ApiError::invalid_parameter)?;
            Ok(Grant {
                role,
                collections: list("Collections")?,
                operations: list("Operations")?,
            })
        })()
        .map_err(refuse)?;
        let k = self
            .keys
            .create(false, &grant, |info| {
                record(serde_json::to_value(info).unwrap_or_default())
            })
            .map_err(|e| match e {
                KeyError::Audit(m) => audit_failed(m),
                e => refuse(key_error(e)),
            })?;
        let mut v = k.reveal();
        v["Role"] = json!(grant.role);
        v["Collections"] = json!(grant.collections);
        v["Operations"] = json!(grant.operations);
        Ok(v)
    }

    /// PutEvalReport and DeleteEvalReport (admins): a report is checked to
    /// be a `kenning eval fairness --json` report before it is stored, and
    /// the store writes the change with its audit record (one transaction
    /// in a database; record first, then the change, in a data directory).
    fn change_eval_report(&self, op: &str, body: &Value, entry: Entry) -> Result<Value, ApiError> {
        let refuse = |e: ApiError| self.refuse(entry.clone(), e);
        // A record that could not be written is not recorded again.
        let store = |e: kenning_store::StoreError| match e {
            kenning_store::StoreError::Hook(m) => audit_failed(m),
            e => refuse(ApiError::from_wire(&e)),
        };
        let record = |details: Value| {
            let mut e = entry.clone();
            e.details = Some(details);
            e
        };
        let name = str_field(body, "Name")
            .ok_or_else(|| refuse(ApiError::invalid_parameter("Name is required")))?
            .to_owned();
        if op == "DeleteEvalReport" {
            let deleted = self
                .evals
                .delete(&name, record(json!({ "Name": name })))
                .map_err(store)?;
            if !deleted {
                return Err(refuse(ApiError::from_code(
                    ErrorCode::ResourceNotFoundException,
                    format!("no evaluation report named {name:?}"),
                )));
            }
            return Ok(json!({ "Name": name, "Deleted": true }));
        }
        // The REST form may send the report itself as the body.
        let report = match body.get("Report") {
            Some(r) => r.clone(),
            None => {
                let mut r = body.clone();
                if let Some(m) = r.as_object_mut() {
                    m.remove("Name");
                }
                r
            }
        };
        let text = match &report {
            Value::String(s) => s.clone(),
            Value::Object(_) => report.to_string(),
            _ => {
                return Err(refuse(ApiError::invalid_parameter(
                    "Report must be a `kenning eval fairness --json` report (a JSON object)",
                )))
            }
        };
        kenning_store::evals::validate_report(&name, &text).map_err(store)?;
        kenning_eval::published::EvalReport::parse("Report", &text)
            .map_err(|e| refuse(ApiError::invalid_parameter(e)))?;
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        let replaced = self
            .evals
            .put(&name, &text, now_ms(), &|replaced| {
                record(json!({
                    "Name": name, "Replaced": replaced, "Bytes": text.len(), "Sha256": sha,
                }))
            })
            .map_err(store)?;
        Ok(json!({ "Name": name, "Replaced": replaced, "Sha256": sha }))
    }

    fn list_eval_reports(&self) -> Result<Value, ApiError> {
        let reports = self
            .evals
            .list()
            .map_err(|e| ApiError::from_wire(&e))?
            .into_iter()
            .map(|r| {
                json!({
                    "Name": r.name,
                    "UpdatedAt": r.updated_ms,
                    "Bytes": r.json.len(),
                    "Sha256": hex::encode(Sha256::digest(r.json.as_bytes())),
                })
            })
            .collect::<Vec<_>>();
        Ok(json!({ "EvalReports": reports }))
    }

    fn verify_audit(&self) -> Result<Value, ApiError> {
        self.audit
            .verify()
            .map(|r| audit_report(&r))
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Records in the caller's collection scope (a scoped key sees no
    /// records that name no collection).
    fn export_audit(
        &self,
        p: &Principal,
        body: &Value,
        entry: &mut Entry,
    ) -> Result<Value, ApiError> {
        let time = |k: &str| {
            str_field(body, k)
                .map(kenning_audit::parse_time)
                .transpose()
                .map_err(|e| ApiError::invalid_parameter(format!("{k}: {e}")))
        };
        let text = |k: &str| str_field(body, k).map(Into::into);
        let filter = Filter {
            from_ms: time("From")?,
            to_ms: time("To")?,
            case: text("Case"),
            purpose: text("Purpose"),
            collection: text("CollectionId"),
            access_key: text("AccessKey"),
            operation: text("Operation"),
            outcome: text("Outcome"),
        };
        let max = max_results(body, 1000, 10_000)?;
        let after: u64 = match str_field(body, "NextToken") {
            Some(t) => t
                .parse()
                .map_err(|_| ApiError::invalid_parameter("invalid pagination token"))?,
            None => 0,
        };
        let mut out = Vec::new();
        let mut next = None;
        for r in self
            .audit
            .records()
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            let (record, hash) = r.map_err(|e| ApiError::internal(e.to_string()))?;
            let in_scope = match &record.entry.collection {
                Some(c) => p.sees(c),
                None => p.grant.collections.is_none(),
            };
            if record.seq <= after || !filter.matches(&record) || !in_scope {
                continue;
            }
            if out.len() as u64 == max {
                next = Some((record.seq - 1).to_string());
                break;
            }
            let mut v =
                serde_json::to_value(&record).map_err(|e| ApiError::internal(e.to_string()))?;
            v["hash"] = json!(hash);
            out.push(v);
        }
        entry.details = Some(json!({
            "From": str_field(body, "From"),
            "To": str_field(body, "To"),
            "Case": str_field(body, "Case"),
            "Purpose": str_field(body, "Purpose"),
            "AccessKey": str_field(body, "AccessKey"),
            "Operation": str_field(body, "Operation"),
            "Outcome": str_field(body, "Outcome"),
            "RecordsExported": out.len(),
        }));
        Ok(json!({ "Records": out, "NextToken": next }))
    }

    /// Deletes every face its collection's retention policy says is due,
    /// then, if anything was deleted since the last pass, erases the bytes
    /// (what that takes is the backend's business: see [`FaceStore::erase`]).
    ///
    /// [`FaceStore::erase`]: kenning_store::FaceStore::erase Each deletion is audited as
    /// part of the `RunRetention` operation of `caller`.
    pub fn run_retention(&self, caller: &Caller) -> Result<Vec<RetentionResult>, ApiError> {
        let wire = |e: kenning_collections::CollectionError| ApiError::from_wire(&e);
        let store = self.collections.store();
        let entry = caller.entry("RunRetention");
        let mut results = Vec::new();
        let mut token = None;
        let now = now_ms();
        loop {
            let page = store
                .list_collections(token.as_deref(), None)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            for c in &page.items {
                let Ok(policy) = Policy::parse(&c.policy) else {
                    continue;
                };
                let Some(r) = policy.retention else { continue };
                let cutoff = now.saturating_sub(u64::from(r.days) * 86_400_000);
                let expiry = match r.after {
                    RetentionFrom::Indexed => Expiry::IndexedBefore(cutoff),
                    RetentionFrom::LastMatch => Expiry::LastMatchedBefore(cutoff),
                };
                let mut deleted = 0;
                loop {
                    let due = store
                        .expired_faces(&c.id, expiry, kenning_store::MAX_DELETE_IDS)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    if due.is_empty() {
                        break;
                    }
                    let ids: Vec<String> = due.iter().map(|f| f.face_id.to_string()).collect();
                    let (r, _) = with_active(&entry, || {
                        self.collections
                            .delete_faces_with(&c.id, &ids, OnAssociated::Disassociate)
                    });
                    let r = r.map_err(wire)?;
                    if r.deleted_faces.is_empty() {
                        break;
                    }
                    deleted += r.deleted_faces.len() as u64;
                }
                if deleted > 0 {
                    results.push(RetentionResult {
                        collection_id: c.id.clone(),
                        faces_deleted: deleted,
                    });
                }
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        self.sweep_probes()
            .map_err(|e| ApiError::internal(format!("erasing probe photos: {e}")))?;
        // The store erases only when a deletion left bytes behind.
        self.collections.erase().map_err(wire)?;
        Ok(results)
    }
}

/// A request's MaxResults: `default` when absent, else 1-`most`.
fn max_results(body: &Value, default: u64, most: u64) -> Result<u64, ApiError> {
    let max = body
        .get("MaxResults")
        .and_then(Value::as_u64)
        .unwrap_or(default);
    if (1..=most).contains(&max) {
        Ok(max)
    } else {
        Err(ApiError::invalid_parameter(format!(
            "MaxResults must be between 1 and {most}, not {max}"
        )))
    }
}

fn key_error(e: KeyError) -> ApiError {
    let code = match e {
        KeyError::Invalid(_) => ErrorCode::InvalidParameterException,
        KeyError::NotFound(_) => ErrorCode::ResourceNotFoundException,
        _ => ErrorCode::InternalServerError,
    };
    ApiError::from_code(code, e.to_string())
}

/// Why sweeping the probe photos failed.
#[derive(Debug)]
enum ProbeSweepError {
    Io(std::io::Error),
    Review(ReviewError),
}

impl From<std::io::Error> for ProbeSweepError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ReviewError> for ProbeSweepError {
    fn from(e: ReviewError) -> Self {
        Self::Review(e)
    }
}

impl std::fmt::Display for ProbeSweepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Review(e) => e.fmt(f),
        }
    }
}

/// The decoded bytes of a request's image field.
/// A search's photo, kept for its reviewers, and where its face is.
struct KeptProbe {
    bytes: Vec<u8>,
    face: Option<kenning_core::BoundingBox>,
}

fn image_bytes(body: &Value, field: &str) -> Option<Vec<u8>> {
    let b64 = body.get(field)?.get("Bytes")?.as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim_end())
        .ok()
}

/// The media type of an image, from its first bytes.
pub fn image_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

/// Reads enrolment photo `name` from `dir`: a plain file name (no path),
/// inside the folder after links are resolved, at most the API's image
/// size, and a JPEG, PNG or WebP image.
fn read_enrolment_photo(dir: &Path, name: &str) -> Result<Vec<u8>, ApiError> {
    let not_found = |m: String| ApiError::from_code(ErrorCode::ResourceNotFoundException, m);
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(not_found(format!(
            "ExternalImageId {name:?} is not a file name in the image source"
        )));
    }
    let missing = |e: std::io::Error| not_found(format!("enrolment photo {name:?}: {e}"));
    let root = dir.canonicalize().map_err(missing)?;
    let path = root.join(name).canonicalize().map_err(missing)?;
    if path.parent() != Some(root.as_path()) {
        return Err(not_found(format!(
            "enrolment photo {name:?} leads outside the image source"
        )));
    }
    let file = std::fs::File::open(&path).map_err(missing)?;
    let mut bytes = Vec::new();
    use std::io::Read as _;
    file.take(ops::MAX_IMAGE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(missing)?;
    if bytes.len() > ops::MAX_IMAGE_BYTES {
        return Err(ApiError::from_code(
            ErrorCode::ImageTooLargeException,
            format!(
                "enrolment photo {name:?} is larger than {} bytes",
                ops::MAX_IMAGE_BYTES
            ),
        ));
    }
    if image_type(&bytes) == "application/octet-stream" {
        return Err(ApiError::invalid_parameter(format!(
            "enrolment photo {name:?} is not a JPEG, PNG or WebP image"
        )));
    }
    Ok(bytes)
}

fn review_error(e: ReviewError) -> ApiError {
    let code = match e {
        ReviewError::NotFound(_) => ErrorCode::ResourceNotFoundException,
        ReviewError::OwnSearch(_) | ReviewError::AlreadyDecided(_) => {
            ErrorCode::AccessDeniedException
        }
        ReviewError::Closed { .. } | ReviewError::Invalid(_) => {
            ErrorCode::InvalidParameterException
        }
        ReviewError::Audit(_) | ReviewError::Db(_) => ErrorCode::InternalServerError,
    };
    ApiError::from_code(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_photos_are_read_only_from_inside_the_image_source() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let src = root.join("photos");
        std::fs::create_dir_all(&src).unwrap();
        let png = b"\x89PNG\r\n\x1a\n rest of a png";
        std::fs::write(src.join("a.png"), png).unwrap();
        std::fs::write(src.join("notes.txt"), b"not an image").unwrap();
        std::fs::write(root.join("secret.png"), png).unwrap();
        assert_eq!(read_enrolment_photo(&src, "a.png").unwrap(), png);
        assert_eq!(image_type(png), "image/png");
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("secret.png"), src.join("link.png")).unwrap();
        for (name, kind) in [
            ("../secret.png", "ResourceNotFoundException"),
            ("..", "ResourceNotFoundException"),
            ("", "ResourceNotFoundException"),
            ("missing.png", "ResourceNotFoundException"),
            ("notes.txt", "InvalidParameterException"),
            #[cfg(unix)]
            ("link.png", "ResourceNotFoundException"),
        ] {
            let e = read_enrolment_photo(&src, name).unwrap_err();
            assert_eq!(e.kind, kind, "{name}: {e}");
        }
    }
}
