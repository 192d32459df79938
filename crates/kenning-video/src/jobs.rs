//! Durable video jobs: what a job is, and where jobs and their results are
//! kept. [`JobStore`] is the interface; [`RedbJobStore`] keeps everything in
//! one crash-safe file in the data directory (a shared database can
//! implement the same trait).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::analyze::StageTimes;
use crate::error::Result;
use crate::probe::VideoMetadata;

/// Which Start operation made a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Api {
    /// StartFaceDetection.
    FaceDetection,
    /// StartFaceSearch.
    FaceSearch,
}

impl Api {
    /// The Start operation's name.
    pub fn start_operation(self) -> &'static str {
        match self {
            Self::FaceDetection => "StartFaceDetection",
            Self::FaceSearch => "StartFaceSearch",
        }
    }

    /// The name completion notifications give it (as Rekognition's do).
    pub fn notification_name(self) -> &'static str {
        match self {
            Self::FaceDetection => "FACE_DETECTION",
            Self::FaceSearch => "FACE_SEARCH",
        }
    }
}

/// IN_PROGRESS, SUCCEEDED or FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Queued or running.
    InProgress,
    /// Results are ready.
    Succeeded,
    /// StatusMessage says why.
    Failed,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }
}

/// Video.S3Object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3Object {
    /// Bucket name.
    pub bucket: String,
    /// Object name: a path inside the bucket directory.
    pub name: String,
    /// Object version (local buckets have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// NotificationChannel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationChannel {
    /// The topic (mapped to a webhook with `--notify`).
    #[serde(rename = "SNSTopicArn")]
    pub sns_topic_arn: String,
    /// The role Rekognition would publish as (checked for form only).
    pub role_arn: String,
}

/// Who started a job, for its audit record when it completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Starter {
    /// Access key id.
    pub access_key: String,
    /// Role and scope, as the key had them.
    pub grant: kenning_accountability::Grant,
    /// Request id of the Start call.
    pub request_id: String,
    /// Case reference.
    pub case: Option<String>,
    /// Purpose.
    pub purpose: Option<String>,
}

impl Starter {
    /// Who `caller` is, to be kept.
    pub fn of(caller: &kenning_accountability::Caller) -> Self {
        Self {
            access_key: caller.principal.access_key.clone(),
            grant: caller.principal.grant.clone(),
            request_id: caller.request_id.clone(),
            case: caller.case.clone(),
            purpose: caller.purpose.clone(),
        }
    }

    /// The caller again, for audit records written on their behalf later.
    pub fn caller(&self) -> kenning_accountability::Caller {
        kenning_accountability::Caller {
            principal: kenning_accountability::Principal::new(&self.access_key, self.grant.clone()),
            request_id: self.request_id.clone(),
            case: self.case.clone(),
            purpose: self.purpose.clone(),
        }
    }
}

/// Size and modification time: a video that changes under a job is noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified_ns: u128,
}

impl FileStamp {
    /// The stamp of `path` now.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        let modified_ns = m
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            size: m.len(),
            modified_ns,
        })
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// JobId.
    pub job_id: String,
    /// Which operation.
    pub api: Api,
    /// The video.
    pub video: S3Object,
    /// JobTag.
    pub job_tag: Option<String>,
    /// NotificationChannel.
    pub notification_channel: Option<NotificationChannel>,
    /// FaceAttributes (DEFAULT or ALL).
    pub face_attributes: Option<String>,
    /// CollectionId (face search).
    pub collection_id: Option<String>,
    /// FaceMatchThreshold (face search).
    pub face_match_threshold: Option<f64>,
    /// `access key / operation / ClientRequestToken`, when a token was given.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request's parameters, to tell a reused token apart.
    pub request_hash: String,
    /// Who started it.
    pub starter: Starter,
    /// Status.
    pub status: JobStatus,
    /// Why it failed.
    pub status_message: Option<String>,
    /// From ffprobe.
    pub video_metadata: Option<VideoMetadata>,
    /// The file as it was when the job started.
    pub file: FileStamp,
    /// SHA-256 of the file (hex), once read.
    pub sha256: Option<String>,
    /// Frames per second analysed.
    pub fps: f64,
    /// When it was started, ms since the epoch.
    pub created_ms: u64,
    /// When it finished.
    pub finished_ms: Option<u64>,
    /// How many times it has been started (restarts count).
    pub attempts: u32,
    /// Results in each order (faces, or person sightings).
    pub results: u64,
    /// Time per stage of the run that produced the results.
    pub stage_times: Option<StageTimes>,
}

/// The order results are paged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By timestamp (then person index).
    Timestamp = 0,
    /// By person index (then timestamp).
    Index = 1,
}

/// What [`JobStore::insert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// The job was stored.
    New,
    /// A job with the same idempotency key exists: this one.
    Existing(Box<Job>),
}

/// Where jobs and their results live. Results are written while the job
/// is IN_PROGRESS and become visible when it is updated to SUCCEEDED; a job
/// interrupted before that has them cleared and runs again.
pub trait JobStore: Send + Sync {
    /// Stores a new job, unless a job with its idempotency key exists.
    fn insert(&self, job: &Job) -> Result<Inserted>;
    /// The job `id`.
    fn get(&self, id: &str) -> Result<Option<Job>>;
    /// The job started with idempotency key `key`, if any.
    fn by_idempotency_key(&self, key: &str) -> Result<Option<Job>>;
    /// Replaces the stored job (status, metadata, counts).
    fn update(&self, job: &Job) -> Result<()>;
    /// Every job (for recovery and expiry).
    fn all(&self) -> Result<Vec<Job>>;
    /// Appends results of `order` at positions `first..`.
    fn write_results(&self, id: &str, order: Order, first: u64, items: &[Vec<u8>]) -> Result<()>;
    /// Stores per-person data (a matched person's FaceMatches).
    fn write_persons(&self, id: &str, persons: &[(u64, Vec<u8>)]) -> Result<()>;
    /// Up to `max` results of `order` from position `from`.
    fn results(&self, id: &str, order: Order, from: u64, max: usize) -> Result<Vec<Vec<u8>>>;
    /// Person `index`'s data, if any.
    fn person(&self, id: &str, index: u64) -> Result<Option<Vec<u8>>>;
    /// Removes a job's results (before it runs again).
    fn clear_results(&self, id: &str) -> Result<()>;
    /// Removes a job, its results and its idempotency key.
    fn delete(&self, id: &str) -> Result<()>;
    /// A 32-byte secret named `name`, made on first use and kept.
    fn secret(&self, name: &str) -> Result<Vec<u8>>;

    /// Whether several nodes share this store. Then a node runs a job only
    /// while it holds the job's lease ([`JobStore::claim`]), and takes over
    /// jobs whose owner let its lease expire (it died).
    fn shared(&self) -> bool {
        false
    }
    /// Makes `owner` the job's owner until `until_ms` if the job has no
    /// owner, is `owner`'s already, or its owner's lease ended before
    /// `now_ms`; whether `owner` holds it now. A store of one node owns
    /// every job.
    fn claim(&self, _id: &str, _owner: &str, _now_ms: u64, _until_ms: u64) -> Result<bool> {
        Ok(true)
    }
    /// Extends the lease of every job `owner` holds to `until_ms`.
    fn renew(&self, _owner: &str, _until_ms: u64) -> Result<()> {
        Ok(())
    }
    /// Gives up every lease `owner` holds (a node stopping), so another
    /// node resumes its jobs at once.
    fn release(&self, _owner: &str) -> Result<()> {
        Ok(())
    }
}

/// A job for store tests, with id `id` and idempotency key `key`.
#[doc(hidden)]
pub fn sample_job(id: &str, key: Option<&str>) -> Job {
    Job {
        job_id: id.into(),
        api: Api::FaceSearch,
        video: S3Object {
            bucket: "cams".into(),
            name: "a.mp4".into(),
            version: None,
        },
        job_tag: None,
        notification_channel: None,
        face_attributes: None,
        collection_id: Some("c".into()),
        face_match_threshold: Some(80.0),
        idempotency_key: key.map(Into::into),
        request_hash: "h".into(),
        starter: Starter {
            access_key: "K".into(),
            grant: kenning_accountability::Grant::admin(),
            request_id: "r".into(),
            case: None,
            purpose: None,
        },
        status: JobStatus::InProgress,
        status_message: None,
        video_metadata: None,
        file: FileStamp {
            size: 1,
            modified_ns: 2,
        },
        sha256: None,
        fps: 5.0,
        created_ms: 0,
        finished_ms: None,
        attempts: 0,
        results: 0,
        stage_times: None,
    }
}

/// The behaviour every [`JobStore`] must have, for each backend's tests:
/// idempotency keys, paged results, persons, secrets, clearing and
/// deleting, and (for a shared store) leases.
#[doc(hidden)]
pub fn conformance(s: &dyn JobStore) {
    let job = sample_job;
    assert_eq!(s.insert(&job("a", Some("K/op/t"))).unwrap(), Inserted::New);
    // The same key names the first job, whatever the second says.
    match s.insert(&job("b", Some("K/op/t"))).unwrap() {
        Inserted::Existing(j) => assert_eq!(j.job_id, "a"),
        other => panic!("{other:?}"),
    }
    assert!(s.get("b").unwrap().is_none());
    let items: Vec<Vec<u8>> = (0..2500u32).map(|i| i.to_be_bytes().to_vec()).collect();
    s.write_results("a", Order::Index, 0, &items).unwrap();
    s.write_persons("a", &[(3, b"m".to_vec())]).unwrap();
    let page = s.results("a", Order::Index, 1000, 1000).unwrap();
    assert_eq!(page.len(), 1000);
    assert_eq!(page[0], 1000u32.to_be_bytes());
    assert!(s.results("a", Order::Timestamp, 0, 10).unwrap().is_empty());
    assert_eq!(s.secret("k").unwrap(), s.secret("k").unwrap());
    assert_eq!(s.secret("k").unwrap().len(), 32);
    let mut updated = job("a", Some("K/op/t"));
    updated.status = JobStatus::Succeeded;
    updated.results = 2500;
    s.update(&updated).unwrap();
    assert_eq!(s.get("a").unwrap().unwrap(), updated);
    assert_eq!(s.all().unwrap(), vec![updated]);
    assert_eq!(s.by_idempotency_key("K/op/t").unwrap().unwrap().job_id, "a");
    assert_eq!(s.results("a", Order::Index, 2400, 1000).unwrap().len(), 100);
    assert_eq!(s.person("a", 3).unwrap().unwrap(), b"m");
    s.clear_results("a").unwrap();
    assert!(s.results("a", Order::Index, 0, 10).unwrap().is_empty());
    assert!(s.person("a", 3).unwrap().is_none());
    s.delete("a").unwrap();
    assert!(s.get("a").unwrap().is_none());
    assert!(s.by_idempotency_key("K/op/t").unwrap().is_none());
    assert_eq!(s.insert(&job("c", Some("K/op/t"))).unwrap(), Inserted::New);
    if s.shared() {
        // Node A holds the job; B cannot take it while A's lease lasts...
        assert!(s.claim("c", "A", 1_000, 2_000).unwrap());
        assert!(!s.claim("c", "B", 1_500, 2_500).unwrap());
        s.renew("A", 3_000).unwrap();
        assert!(!s.claim("c", "B", 2_500, 3_500).unwrap());
        assert!(s.claim("c", "A", 2_500, 3_500).unwrap());
        // ...and takes it over once the lease ended (A died)...
        assert!(s.claim("c", "B", 3_600, 4_600).unwrap());
        assert!(!s.claim("c", "A", 3_700, 4_700).unwrap());
        // ...or at once when B lets it go (a node stopping).
        s.release("B").unwrap();
        assert!(s.claim("c", "A", 3_800, 4_800).unwrap());
    } else {
        assert!(s.claim("c", "A", 1_000, 2_000).unwrap());
        assert!(s.claim("c", "B", 1_500, 2_500).unwrap());
    }
}

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
const RESULTS: TableDefinition<(&str, u8, u64), &[u8]> = TableDefinition::new("results");
const PERSONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("persons");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");

/// The embedded job store: one redb file.
pub struct RedbJobStore {
    db: Database,
}

fn encode(job: &Job) -> Result<Vec<u8>> {
    serde_json::to_vec(job).map_err(|e| crate::VideoError::Store(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<Job> {
    serde_json::from_slice(bytes).map_err(|e| crate::VideoError::Store(e.to_string()))
}

impl RedbJobStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| crate::VideoError::Store(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path)?;
        let w = db.begin_write()?;
        w.open_table(JOBS)?;
        w.open_table(TOKENS)?;
        w.open_table(RESULTS)?;
        w.open_table(PERSONS)?;
        w.open_table(SECRETS)?;
        w.commit()?;
        Ok(Self { db })
    }

    fn clear_in(w: &redb::WriteTransaction, id: &str) -> Result<()> {
        let mut results = w.open_table(RESULTS)?;
        for order in [0u8, 1] {
            results.retain_in((id, order, 0)..=(id, order, u64::MAX), |_, _| false)?;
        }
        let mut persons = w.open_table(PERSONS)?;
        persons.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
        Ok(())
    }
}

impl JobStore for RedbJobStore {
    fn insert(&self, job: &Job) -> Result<Inserted> {
        let w = self.db.begin_write()?;
        {
            let mut tokens = w.open_table(TOKENS)?;
            let mut jobs = w.open_table(JOBS)?;
            if let Some(key) = &job.idempotency_key {
                let existing = tokens.get(key.as_str())?.map(|v| v.value().to_owned());
                if let Some(id) = existing {
                    if let Some(j) = jobs.get(id.as_str())? {
                        return Ok(Inserted::Existing(Box::new(decode(j.value())?)));
                    }
                }
                tokens.insert(key.as_str(), job.job_id.as_str())?;
            }
            jobs.insert(job.job_id.as_str(), encode(job)?.as_slice())?;
        }
        w.commit()?;
        Ok(Inserted::New)
    }

    fn get(&self, id: &str) -> Result<Option<Job>> {
        let r = self.db.begin_read()?;
        let jobs = r.open_table(JOBS)?;
        let found = jobs.get(id)?;
        found.map(|v| decode(v.value())).transpose()
    }

    fn by_idempotency_key(&self, key: &str) -> Result<Option<Job>> {
        let id = {
            let r = self.db.begin_read()?;
            let t = r.open_table(TOKENS)?;
            let found = t.get(key)?;
            found.map(|v| v.value().to_owned())
        };
        match id {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    fn update(&self, job: &Job) -> Result<()> {
        let w = self.db.begin_write()?;
        w.open_table(JOBS)?
            .insert(job.job_id.as_str(), encode(job)?.as_slice())?;
        w.commit()?;
        Ok(())
    }

    fn all(&self) -> Result<Vec<Job>> {
        let r = self.db.begin_read()?;
        let jobs = r.open_table(JOBS)?;
        let mut out = Vec::new();
        for item in jobs.iter()? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn write_results(&self, id: &str, order: Order, first: u64, items: &[Vec<u8>]) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(RESULTS)?;
            for (i, item) in items.iter().enumerate() {
                t.insert((id, order as u8, first + i as u64), item.as_slice())?;
            }
        }
        w.commit()?;
        Ok(())
    }

    fn write_persons(&self, id: &str, persons: &[(u64, Vec<u8>)]) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(PERSONS)?;
            for (index, data) in persons {
                t.insert((id, *index), data.as_slice())?;
            }
        }
        w.commit()?;
        Ok(())
    }

    fn results(&self, id: &str, order: Order, from: u64, max: usize) -> Result<Vec<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(RESULTS)?;
        let mut out = Vec::new();
        for item in t.range((id, order as u8, from)..=(id, order as u8, u64::MAX))? {
            if out.len() == max {
                break;
            }
            out.push(item?.1.value().to_vec());
        }
        Ok(out)
    }

    fn person(&self, id: &str, index: u64) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PERSONS)?;
        let found = t.get((id, index))?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    fn clear_results(&self, id: &str) -> Result<()> {
        let w = self.db.begin_write()?;
        Self::clear_in(&w, id)?;
        w.commit()?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<()> {
        let w = self.db.begin_write()?;
        Self::clear_in(&w, id)?;
        {
            let mut jobs = w.open_table(JOBS)?;
            let key = jobs
                .remove(id)?
                .map(|v| decode(v.value()))
                .transpose()?
                .and_then(|j| j.idempotency_key);
            if let Some(key) = key {
                w.open_table(TOKENS)?.remove(key.as_str())?;
            }
        }
        w.commit()?;
        Ok(())
    }

    fn secret(&self, name: &str) -> Result<Vec<u8>> {
        {
            let r = self.db.begin_read()?;
            let t = r.open_table(SECRETS)?;
            if let Some(v) = t.get(name)? {
                return Ok(v.value().to_vec());
            }
        }
        let w = self.db.begin_write()?;
        let secret = {
            let mut t = w.open_table(SECRETS)?;
            let existing = t.get(name)?.map(|v| v.value().to_vec());
            match existing {
                Some(v) => v,
                None => {
                    let mut fresh = Vec::with_capacity(32);
                    fresh.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                    fresh.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                    t.insert(name, fresh.as_slice())?;
                    fresh
                }
            }
        };
        w.commit()?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_results_tokens_and_secrets_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("video/jobs.redb");
        {
            let s = RedbJobStore::open(&path).unwrap();
            s.insert(&sample_job("x", Some("X/op/t"))).unwrap();
            s.write_results("x", Order::Index, 0, &[b"r".to_vec()])
                .unwrap();
        }
        // Reopened: everything is there.
        let s = RedbJobStore::open(&path).unwrap();
        assert_eq!(s.by_idempotency_key("X/op/t").unwrap().unwrap().job_id, "x");
        assert_eq!(
            s.results("x", Order::Index, 0, 10).unwrap(),
            [b"r".to_vec()]
        );
        s.delete("x").unwrap();
        conformance(&s);
    }
}
