//! The video service: Rekognition's StartFaceDetection / GetFaceDetection
//! and StartFaceSearch / GetFaceSearch as durable jobs on a bounded pool of
//! worker threads, behind the same authorisation, policy, review and audit
//! as every photo search.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kenning_accountability::review::VideoFrame;
use kenning_accountability::{Caller, FrameCutter, Governor, Medium, Principal};
use kenning_api::ApiError;
use kenning_audit::Candidate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::analyze::{self, AnalysisConfig, Person};
use crate::bucket::Buckets;
use crate::error::{Result, VideoError};
use crate::jobs::*;
use crate::notify::Notifier;
use crate::probe::{self, Limits, Probe};
use crate::source::{FfmpegSource, SamplingConfig};
use crate::token::{self, Cursor};

/// The operations this service answers: Rekognition's stored-video ones
/// ([`kenning_api::VIDEO_OPERATIONS`]) and Kenning's listings of jobs and
/// of the videos in the buckets.
pub const OPERATIONS: &[&str] = &[
    "StartFaceDetection",
    "GetFaceDetection",
    "StartFaceSearch",
    "GetFaceSearch",
    "ListVideoJobs",
    "ListVideos",
];

/// Videos ListVideos names per bucket when MaxResults is absent, and the
/// most it names.
pub const MAX_VIDEOS: u64 = 1000;

/// Results per page when MaxResults is absent, and the most per page.
pub const MAX_RESULTS: u64 = 1000;

/// How long cutting one frame for a reviewer may take.
const CUT_DEADLINE: Duration = Duration::from_secs(15);

/// The job store's file, relative to the data directory.
pub const JOBS_FILE: &str = "video/jobs.redb";

/// Where completion notifications go.
#[derive(Debug, Clone, Default)]
pub struct Notify {
    /// SNS topic ARN to webhook.
    pub routes: BTreeMap<String, crate::notify::Webhook>,
    /// The HMAC key webhooks are signed with (default: one the job store
    /// makes and keeps, see [`VideoService::notification_secret`]).
    pub secret: Option<Vec<u8>>,
}

/// How the service runs jobs.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// What videos are accepted.
    pub limits: Limits,
    /// How frames are sampled.
    pub sampling: SamplingConfig,
    /// How frames are analysed.
    pub analysis: AnalysisConfig,
    /// Jobs running at once.
    pub workers: usize,
    /// Jobs in progress (queued or running) beyond which Start is refused
    /// with LimitExceededException.
    pub max_jobs: usize,
    /// How long a job and its results are kept.
    pub retention: Duration,
    /// Scheduling niceness of the worker threads and their ffmpeg (0-19):
    /// photo requests, at the default priority, go first.
    pub niceness: i32,
    /// Run jobs an earlier process left unfinished. The service does; a
    /// command-line run, which has only its own file's bucket, leaves them
    /// for the service.
    pub resume: bool,
    /// On a store shared by several nodes: how long a node's claim on a job
    /// lasts unless renewed (every third of it). A node that dies holds its
    /// jobs this long before another node resumes them.
    pub lease: Duration,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            sampling: SamplingConfig::default(),
            analysis: AnalysisConfig::default(),
            workers: 1,
            max_jobs: 20,
            retention: Duration::from_secs(7 * 86_400),
            niceness: 10,
            resume: true,
            lease: Duration::from_secs(30),
        }
    }
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<String>,
    running: usize,
    stopping: bool,
}

/// Stored-video jobs of one data directory.
pub struct VideoService {
    governor: Arc<Governor>,
    store: Arc<dyn JobStore>,
    buckets: Buckets,
    notifier: Notifier,
    config: VideoConfig,
    token_key: Vec<u8>,
    queue: Mutex<Queue>,
    wake: Condvar,
    stopping: AtomicBool,
    progress: Mutex<HashMap<String, f64>>,
    /// What Start's probe of a job's file found, until the job runs (so the
    /// file is probed once, not twice: starting ffprobe costs a tenth of a
    /// second).
    probes: Mutex<HashMap<String, Probe>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// This process's name as a job owner in a shared store.
    node: String,
    /// Jobs queued or running here.
    mine: Mutex<HashSet<String>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `principal` may follow job `job` (see [`VideoService::jobs_of`]).
pub fn follows(principal: &Principal, job: &Job) -> bool {
    job.collection_id
        .as_deref()
        .is_none_or(|c| principal.sees(c))
        && (principal.role() == kenning_accountability::Role::Admin
            || job.starter.access_key == principal.access_key)
}

fn api_error(e: &VideoError) -> ApiError {
    ApiError::from_wire(e)
}

fn invalid(m: impl Into<String>) -> VideoError {
    VideoError::InvalidParameter(m.into())
}

/// Whether `arn` has the form of an SNS topic ARN (SNSTopicArn's pattern).
pub fn valid_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", "aws", "sns", _, account, name]
        if account.len() == 12
            && account.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.is_empty())
}

/// Whether `arn` has the form of an IAM role ARN (RoleArn's pattern).
pub fn valid_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws:iam::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role") else {
        return false;
    };
    let role = role.strip_prefix('/').unwrap_or(role);
    account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && !role.is_empty()
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/".contains(c))
}

fn check_pattern(name: &str, v: &str, max: usize, allowed: &str) -> Result<()> {
    if v.is_empty()
        || v.len() > max
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || allowed.contains(c))
    {
        return Err(invalid(format!(
            "{name} must be 1-{max} letters, digits or any of {allowed:?}"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VideoArg {
    s3_object: Option<S3Object>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartArgs {
    video: Option<VideoArg>,
    client_request_token: Option<String>,
    notification_channel: Option<NotificationChannel>,
    face_attributes: Option<String>,
    job_tag: Option<String>,
    collection_id: Option<String>,
    face_match_threshold: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetArgs {
    job_id: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    sort_by: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListJobsArgs {
    job_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListVideosArgs {
    max_results: Option<i64>,
}

/// A job as ListVideoJobs shows it to a caller who may follow it: what was
/// asked, by whom, and how far it got (not its results: Get* reads those).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobSummary {
    /// JobId.
    pub job_id: String,
    /// The operation that started it.
    pub operation: String,
    /// The video.
    pub video: S3Object,
    /// The collection searched (StartFaceSearch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_id: Option<String>,
    /// The Similarity threshold of the search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_match_threshold: Option<f64>,
    /// The case reference it was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// The purpose it was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The access key that started it.
    pub started_by: String,
    /// IN_PROGRESS, SUCCEEDED or FAILED.
    pub job_status: JobStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// The video's metadata, once probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_metadata: Option<crate::VideoMetadata>,
    /// When it was started, ms since the epoch.
    pub created_at: u64,
    /// When it finished, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// The file's SHA-256 (hex), once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How far it has got (0-1) while a worker runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
}

impl JobSummary {
    /// Which of the two job kinds it is.
    pub fn api(&self) -> Api {
        if self.operation == Api::FaceDetection.start_operation() {
            Api::FaceDetection
        } else {
            Api::FaceSearch
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T> {
    serde_json::from_value(if body.is_null() { json!({}) } else { body })
        .map_err(|e| invalid(e.to_string()))
}

impl VideoService {
    /// Opens the video jobs of `data_dir`, recovers jobs a stop or crash
    /// interrupted, and starts the workers.
    pub fn open(
        data_dir: &Path,
        governor: Arc<Governor>,
        buckets: Buckets,
        notify: Notify,
        config: VideoConfig,
    ) -> Result<Arc<Self>> {
        let path = data_dir.join(JOBS_FILE);
        let store = RedbJobStore::open(&path).map_err(|e| match e {
            VideoError::Store(m) if m.contains("already open") => VideoError::Store(format!(
                "{} is in use by another process (a running kenning serve?)",
                path.display()
            )),
            other => other,
        })?;
        Self::with_store(Arc::new(store), governor, buckets, notify, config)
    }

    /// As [`VideoService::open`], with another job store.
    pub fn with_store(
        store: Arc<dyn JobStore>,
        governor: Arc<Governor>,
        buckets: Buckets,
        notify: Notify,
        config: VideoConfig,
    ) -> Result<Arc<Self>> {
        let token_key = store.secret("pagination")?;
        let secret = match notify.secret {
            Some(s) => s,
            None => store.secret("notification")?,
        };
        let notifier = Notifier::new(notify.routes, secret);
        let service = Arc::new(Self {
            governor,
            store,
            buckets,
            notifier,
            token_key,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            progress: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            node: uuid::Uuid::new_v4().to_string(),
            mine: Mutex::new(HashSet::new()),
            config,
        });
        service.recover()?;
        let mut threads = Vec::new();
        for i in 0..service.config.workers.max(1) {
            let s = service.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("kenning-video-{i}"))
                    .spawn(move || s.work())
                    .map_err(|e| VideoError::Tool(e.to_string()))?,
            );
        }
        let s = service.clone();
        threads.push(
            std::thread::Builder::new()
                .name("kenning-video-expiry".into())
                .spawn(move || s.expire_loop())
                .map_err(|e| VideoError::Tool(e.to_string()))?,
        );
        if service.store.shared() {
            let s = service.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("kenning-video-lease".into())
                    .spawn(move || s.lease_loop())
                    .map_err(|e| VideoError::Tool(e.to_string()))?,
            );
        }
        *service.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        let cutter: Arc<dyn FrameCutter> = service.clone();
        service.governor.set_frame_cutter(Arc::downgrade(&cutter));
        Ok(service)
    }

    /// The buckets videos are read from.
    pub fn buckets(&self) -> &Buckets {
        &self.buckets
    }

    /// The HMAC key completion webhooks are signed with.
    pub fn notification_secret(&self) -> &[u8] {
        self.notifier.secret()
    }

    /// The limits videos are held to.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// How far job `id` has got (0-1), while it runs.
    pub fn progress(&self, id: &str) -> Option<f64> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    /// The stored job `id` (for tools that report on it).
    pub fn job(&self, id: &str) -> Result<Option<Job>> {
        self.store.get(id)
    }

    /// The unexpired jobs `principal` may follow, newest first: within its
    /// key's scope, and only the ones it started unless it is an admin.
    pub fn jobs_of(&self, principal: &Principal) -> Result<Vec<Job>> {
        let now = now_ms();
        let mut jobs: Vec<Job> = self
            .store
            .all()?
            .into_iter()
            .filter(|j| !self.expired(j, now) && follows(principal, j))
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created_ms));
        Ok(jobs)
    }

    /// ListVideoJobs: the jobs the caller may follow ([`Self::jobs_of`]),
    /// or just job `JobId` (none when it may not follow it).
    fn list_jobs(&self, caller: &Caller, body: Value) -> Result<Value> {
        let a: ListJobsArgs = parse(body)?;
        let jobs = match a.job_id {
            Some(id) => {
                check_pattern("JobId", &id, 64, "-_")?;
                let now = now_ms();
                self.job(&id)?
                    .filter(|j| !self.expired(j, now) && follows(&caller.principal, j))
                    .into_iter()
                    .collect()
            }
            None => self.jobs_of(&caller.principal)?,
        };
        let jobs: Vec<JobSummary> = jobs.iter().map(|j| self.summary(j)).collect();
        Ok(json!({ "Jobs": jobs }))
    }

    fn summary(&self, j: &Job) -> JobSummary {
        JobSummary {
            job_id: j.job_id.clone(),
            operation: j.api.start_operation().to_owned(),
            video: j.video.clone(),
            collection_id: j.collection_id.clone(),
            face_match_threshold: j.face_match_threshold,
            case: j.starter.case.clone(),
            purpose: j.starter.purpose.clone(),
            started_by: j.starter.access_key.clone(),
            job_status: j.status,
            status_message: j.status_message.clone(),
            video_metadata: j.video_metadata.clone(),
            created_at: j.created_ms,
            finished_at: j.finished_ms,
            sha256: j.sha256.clone(),
            progress: self.progress(&j.job_id),
        }
    }

    /// ListVideos: each bucket's name and the first MaxResults videos in
    /// it (sorted, folders depth first).
    fn list_videos(&self, body: Value) -> Result<Value> {
        let a: ListVideosArgs = parse(body)?;
        let max = match a.max_results {
            None => MAX_VIDEOS,
            Some(n) if !(1..=MAX_VIDEOS as i64).contains(&n) => {
                return Err(invalid(format!(
                    "MaxResults must be 1-{MAX_VIDEOS}, not {n}"
                )))
            }
            Some(n) => n as u64,
        };
        let mut buckets = Vec::new();
        for b in self.buckets.names() {
            let videos = self.buckets.list(b, max as usize)?;
            buckets.push(json!({ "Name": b, "Videos": videos }));
        }
        Ok(json!({ "Buckets": buckets }))
    }

    /// Stops the workers; running jobs stay IN_PROGRESS and resume when the
    /// service opens the data directory again.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopping = true;
        self.wake.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        // Interrupted jobs go to the other nodes now, not when leases end.
        if let Err(e) = self.store.release(&self.node) {
            eprintln!("kenning: releasing this node's video jobs: {e}");
        }
    }

    /// Runs a video operation for `caller`.
    pub fn call(
        &self,
        caller: &Caller,
        op: &str,
        body: Value,
    ) -> std::result::Result<Value, ApiError> {
        match op {
            "StartFaceDetection" => self.start(caller, Api::FaceDetection, body),
            "StartFaceSearch" => self.start(caller, Api::FaceSearch, body),
            "GetFaceDetection" => self.get(caller, Api::FaceDetection, body),
            "GetFaceSearch" => self.get(caller, Api::FaceSearch, body),
            "ListVideoJobs" | "ListVideos" => {
                self.governor.authorize(caller, caller.entry(op), None)?;
                let listed = if op == "ListVideoJobs" {
                    self.list_jobs(caller, body)
                } else {
                    self.list_videos(body)
                };
                listed.map_err(|e| api_error(&e))
            }
            other => Err(ApiError::unknown_operation(other)),
        }
    }

    /// Writes an uploaded video into a bucket (operation UploadVideo),
    /// reading it from `source`; audited with its size and SHA-256.
    pub fn upload(
        &self,
        caller: &Caller,
        bucket: &str,
        name: &str,
        expected_sha256: Option<&str>,
        source: impl FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> std::result::Result<Value, ApiError> {
        let mut entry = self
            .governor
            .authorize(caller, caller.entry("UploadVideo"), None)?;
        let put = self.buckets.put(
            bucket,
            name,
            self.config.limits.max_bytes,
            expected_sha256,
            source,
        );
        entry.details = Some(json!({ "Bucket": bucket, "Name": name }));
        match put {
            Ok((bytes, sha)) => {
                entry.probe_sha256 = Some(sha.clone());
                entry.details = Some(json!({ "Bucket": bucket, "Name": name, "Bytes": bytes }));
                self.governor.audit(entry)?;
                Ok(json!({ "Bucket": bucket, "Name": name, "Bytes": bytes, "Sha256": sha }))
            }
            Err(e) => Err(self.governor.audit_failure(entry, api_error(&e))),
        }
    }

    // ---- Start -------------------------------------------------------

    fn start(
        &self,
        caller: &Caller,
        api: Api,
        body: Value,
    ) -> std::result::Result<Value, ApiError> {
        let op = api.start_operation();
        let collection = body.get("CollectionId").and_then(Value::as_str);
        let mut entry = self
            .governor
            .authorize(caller, caller.entry(op), collection)?;
        let args: StartArgs = parse(body.clone()).map_err(|e| api_error(&e))?;
        let (video, threshold) = self.validate_start(api, &args).map_err(|e| api_error(&e))?;
        if api == Api::FaceSearch {
            // The collection's policy applies exactly as to a photo search,
            // plus its rule on video; a refusal is audited.
            self.governor.check_search(
                caller,
                &mut entry,
                threshold.unwrap_or_default(),
                Medium::Video,
            )?;
            let id = args.collection_id.as_deref().unwrap_or_default();
            self.governor
                .collections()
                .searcher(id)
                .map_err(|e| api_error(&VideoError::from(e)))?;
        }
        let mut canonical = body;
        if let Some(m) = canonical.as_object_mut() {
            m.remove("ClientRequestToken");
        }
        let request_hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&sorted(&canonical)).unwrap_or_default(),
        ));
        let idempotency_key = args
            .client_request_token
            .as_ref()
            .map(|t| format!("{}/{op}/{t}", caller.principal.access_key));
        let job_id = self
            .create(
                caller,
                api,
                &args,
                video,
                threshold,
                request_hash,
                idempotency_key,
            )
            .map_err(|e| api_error(&e))?;
        Ok(json!({ "JobId": job_id }))
    }

    fn validate_start(&self, api: Api, a: &StartArgs) -> Result<(S3Object, Option<f64>)> {
        let video = a
            .video
            .as_ref()
            .and_then(|v| v.s3_object.clone())
            .ok_or_else(|| invalid("Video.S3Object (Bucket and Name) is required"))?;
        crate::bucket::validate_bucket_name(&video.bucket)?;
        if video.name.is_empty() || video.name.len() > 1024 {
            return Err(invalid("Video.S3Object.Name must be 1-1024 characters"));
        }
        if let Some(t) = &a.client_request_token {
            check_pattern("ClientRequestToken", t, 64, "-_")?;
        }
        if let Some(t) = &a.job_tag {
            check_pattern("JobTag", t, 1024, "_.-:+=/")?;
        }
        if let Some(n) = &a.notification_channel {
            if !valid_topic_arn(&n.sns_topic_arn) {
                return Err(invalid(format!(
                    "NotificationChannel.SNSTopicArn {:?} is not an SNS topic ARN",
                    n.sns_topic_arn
                )));
            }
            if !valid_role_arn(&n.role_arn) {
                return Err(invalid(format!(
                    "NotificationChannel.RoleArn {:?} is not an IAM role ARN",
                    n.role_arn
                )));
            }
        }
        match api {
            Api::FaceDetection => {
                if let Some(f) = &a.face_attributes {
                    if f != "DEFAULT" && f != "ALL" {
                        return Err(invalid(format!(
                            "FaceAttributes must be DEFAULT or ALL, not {f:?} (both give the same FaceDetail: Kenning infers no personal attributes)"
                        )));
                    }
                }
                if a.collection_id.is_some() || a.face_match_threshold.is_some() {
                    return Err(invalid(
                        "CollectionId and FaceMatchThreshold belong to StartFaceSearch",
                    ));
                }
                Ok((video, None))
            }
            Api::FaceSearch => {
                let id = a
                    .collection_id
                    .as_deref()
                    .ok_or_else(|| invalid("CollectionId is required"))?;
                check_pattern("CollectionId", id, 255, "_.-")?;
                if a.face_attributes.is_some() {
                    return Err(invalid("FaceAttributes belongs to StartFaceDetection"));
                }
                let t = a
                    .face_match_threshold
                    .unwrap_or(kenning_collections::DEFAULT_THRESHOLD);
                if !(0.0..=100.0).contains(&t) {
                    return Err(invalid(format!(
                        "FaceMatchThreshold must be between 0 and 100, not {t}"
                    )));
                }
                Ok((video, Some(t)))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        caller: &Caller,
        api: Api,
        args: &StartArgs,
        video: S3Object,
        threshold: Option<f64>,
        request_hash: String,
        idempotency_key: Option<String>,
    ) -> Result<String> {
        let same_request = |existing: &Job| {
            if existing.request_hash == request_hash {
                Ok(existing.job_id.clone())
            } else {
                Err(VideoError::IdempotentMismatch(format!(
                    "ClientRequestToken {:?} was used for job {} with other parameters",
                    args.client_request_token.as_deref().unwrap_or_default(),
                    existing.job_id
                )))
            }
        };
        if let Some(key) = &idempotency_key {
            if let Some(existing) = self.store.by_idempotency_key(key)? {
                return same_request(&existing);
            }
        }
        if video.version.is_some() {
            return Err(VideoError::InvalidObject(
                "local buckets keep no object versions; leave Video.S3Object.Version out".into(),
            ));
        }
        let path = self.buckets.resolve(&video.bucket, &video.name)?;
        let file = FileStamp::of(&path).map_err(|e| {
            VideoError::InvalidObject(format!("object {:?} cannot be read: {e}", video.name))
        })?;
        if file.size > self.config.limits.max_bytes {
            return Err(VideoError::TooLarge(format!(
                "the video is {} bytes; the limit is {} bytes",
                file.size, self.config.limits.max_bytes
            )));
        }
        // Too long or too large a picture is refused now; anything else
        // wrong with the file fails the job with the reason.
        let probed = match probe::probe(&path, &self.config.limits) {
            Ok(p) => Some(p),
            Err(e @ (VideoError::TooLarge(_) | VideoError::Tool(_))) => return Err(e),
            Err(_) => None,
        };
        let metadata = probed.as_ref().map(|p| p.metadata.clone());
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.pending.len() + queue.running >= self.config.max_jobs {
            return Err(VideoError::LimitExceeded(format!(
                "{} video jobs are in progress, the most this service runs at once; retry when one finishes",
                self.config.max_jobs
            )));
        }
        let job = Job {
            job_id: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            api,
            video,
            job_tag: args.job_tag.clone(),
            notification_channel: args.notification_channel.clone(),
            face_attributes: args.face_attributes.clone(),
            collection_id: args.collection_id.clone(),
            face_match_threshold: threshold,
            idempotency_key,
            request_hash: request_hash.clone(),
            starter: Starter::of(caller),
            status: JobStatus::InProgress,
            status_message: None,
            video_metadata: metadata,
            file,
            sha256: None,
            fps: self.config.sampling.fps,
            created_ms: now_ms(),
            finished_ms: None,
            attempts: 0,
            results: 0,
            stage_times: None,
        };
        match self.store.insert(&job)? {
            Inserted::Existing(existing) => same_request(&existing),
            Inserted::New => {
                let now = now_ms();
                self.store
                    .claim(&job.job_id, &self.node, now, now + self.lease_ms())?;
                self.mine
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.job_id.clone());
                if let Some(p) = probed {
                    self.probes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(job.job_id.clone(), p);
                }
                queue.pending.push_back(job.job_id.clone());
                drop(queue);
                // Workers and the expiry thread share the condition: wake all.
                self.wake.notify_all();
                Ok(job.job_id)
            }
        }
    }

    // ---- Get ---------------------------------------------------------

    fn get(&self, caller: &Caller, api: Api, body: Value) -> std::result::Result<Value, ApiError> {
        let op = match api {
            Api::FaceDetection => "GetFaceDetection",
            Api::FaceSearch => "GetFaceSearch",
        };
        self.governor.authorize(caller, caller.entry(op), None)?;
        self.page(caller, api, body).map_err(|e| api_error(&e))
    }

    fn page(&self, caller: &Caller, api: Api, body: Value) -> Result<Value> {
        let a: GetArgs = parse(body)?;
        let id = a.job_id.ok_or_else(|| invalid("JobId is required"))?;
        check_pattern("JobId", &id, 64, "-_")?;
        let max = match a.max_results {
            None => MAX_RESULTS,
            Some(n) if n < 1 => {
                return Err(invalid(format!("MaxResults must be at least 1, not {n}")))
            }
            Some(n) => (n as u64).min(MAX_RESULTS),
        };
        let order = match (api, a.sort_by.as_deref()) {
            (_, None | Some("TIMESTAMP")) => Order::Timestamp,
            (Api::FaceSearch, Some("INDEX")) => Order::Index,
            (Api::FaceSearch, Some(other)) => {
                return Err(invalid(format!(
                    "SortBy must be INDEX or TIMESTAMP, not {other:?}"
                )))
            }
            (Api::FaceDetection, Some(_)) => {
                return Err(invalid("SortBy belongs to GetFaceSearch"))
            }
        };
        let gone =
            || VideoError::NotFound(format!("job {id} does not exist, or its results expired"));
        let job = self.store.get(&id)?.ok_or_else(gone)?;
        if self.expired(&job, now_ms()) {
            let _ = self.store.delete(&id);
            return Err(gone());
        }
        if job.api != api {
            return Err(VideoError::NotFound(format!(
                "job {id} was started by {}; read it with Get{}",
                job.api.start_operation(),
                &job.api.start_operation()[5..]
            )));
        }
        if let Some(c) = &job.collection_id {
            if !caller.principal.sees(c) {
                return Err(VideoError::NotFound(format!(
                    "job {id} searches collection {c}, which access key {} is not scoped to",
                    caller.principal.access_key
                )));
            }
        }
        let now = now_ms() / 1000;
        let from = match &a.next_token {
            Some(t) => {
                let c = token::open(&self.token_key, &id, t, now)?;
                if c.order != order as u8 {
                    return Err(VideoError::InvalidToken(
                        "NextToken was issued for another SortBy".into(),
                    ));
                }
                c.position
            }
            None => 0,
        };
        let mut out = Map::new();
        out.insert("JobStatus".into(), json!(job.status.as_str()));
        if let Some(m) = &job.status_message {
            out.insert("StatusMessage".into(), json!(m));
        }
        if let Some(m) = &job.video_metadata {
            out.insert("VideoMetadata".into(), json!(m));
        }
        let items = if job.status == JobStatus::Succeeded {
            self.store.results(&id, order, from, max as usize)?
        } else {
            Vec::new()
        };
        let next = from + items.len() as u64;
        let list = match api {
            Api::FaceDetection => items
                .iter()
                .map(|b| serde_json::from_slice::<Value>(b))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| VideoError::Store(e.to_string()))?,
            Api::FaceSearch => self.with_matches(&id, &items)?,
        };
        out.insert(
            match api {
                Api::FaceDetection => "Faces",
                Api::FaceSearch => "Persons",
            }
            .into(),
            Value::Array(list),
        );
        if job.status == JobStatus::Succeeded && next < job.results {
            let t = token::issue(
                &self.token_key,
                &id,
                Cursor {
                    position: next,
                    order: order as u8,
                },
                now,
            );
            out.insert("NextToken".into(), json!(t));
        }
        out.insert("JobId".into(), json!(id));
        out.insert("Video".into(), json!({ "S3Object": job.video }));
        if let Some(t) = &job.job_tag {
            out.insert("JobTag".into(), json!(t));
        }
        Ok(Value::Object(out))
    }

    /// Adds each matched person's FaceMatches to their stored sightings.
    fn with_matches(&self, id: &str, items: &[Vec<u8>]) -> Result<Vec<Value>> {
        let mut cache: HashMap<u64, Option<Value>> = HashMap::new();
        let mut out = Vec::with_capacity(items.len());
        for b in items {
            let mut v: Value =
                serde_json::from_slice(b).map_err(|e| VideoError::Store(e.to_string()))?;
            let index = v
                .pointer("/Person/Index")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let matches = match cache.entry(index) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    self.store
                        .person(id, index)?
                        .map(|b| serde_json::from_slice::<Value>(&b))
                        .transpose()
                        .map_err(|e| VideoError::Store(e.to_string()))?,
                ),
            };
            if let Some(m) = matches {
                v["FaceMatches"] = m.clone();
            }
            out.push(v);
        }
        Ok(out)
    }

    fn expired(&self, job: &Job, now: u64) -> bool {
        let since = job.finished_ms.unwrap_or(job.created_ms);
        job.status != JobStatus::InProgress
            && now.saturating_sub(since) > self.config.retention.as_millis() as u64
    }

    // ---- workers -----------------------------------------------------

    /// Re-queues jobs a stop or crash interrupted (or fails those
    /// interrupted too often), and drops expired ones.
    fn recover(&self) -> Result<()> {
        let now = now_ms();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut jobs = self.store.all()?;
        jobs.sort_by_key(|j| j.created_ms);
        for mut job in jobs {
            if self.expired(&job, now) {
                self.store.delete(&job.job_id)?;
            } else if job.status == JobStatus::InProgress && self.config.resume {
                if job.attempts >= 3 {
                    self.store.clear_results(&job.job_id)?;
                    let why = VideoError::Unreadable(format!(
                        "the service stopped {} times while this job ran; it is not tried again",
                        job.attempts
                    ));
                    self.finish(&mut job, Err(why));
                } else if self.take(&job.job_id, now)? {
                    queue.pending.push_back(job.job_id.clone());
                }
            }
        }
        Ok(())
    }

    fn lease_ms(&self) -> u64 {
        self.config.lease.as_millis() as u64
    }

    /// Claims job `id` for this node unless it is queued here already or
    /// another live node holds it; whether it is to be queued here.
    fn take(&self, id: &str, now: u64) -> Result<bool> {
        let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        if mine.contains(id)
            || !self
                .store
                .claim(id, &self.node, now, now + self.lease_ms())?
        {
            return Ok(false);
        }
        mine.insert(id.to_owned());
        Ok(true)
    }

    /// On a shared store: renews this node's leases every third of a lease,
    /// and resumes jobs whose owner stopped renewing (a node that died).
    fn lease_loop(self: Arc<Self>) {
        let period = self.config.lease / 3;
        loop {
            {
                let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let (q, _) = self
                    .wake
                    .wait_timeout_while(q, period, |q| !q.stopping)
                    .unwrap_or_else(|e| e.into_inner());
                if q.stopping {
                    return;
                }
            }
            let now = now_ms();
            if let Err(e) = self.store.renew(&self.node, now + self.lease_ms()) {
                eprintln!("kenning: renewing this node's video job leases: {e}");
                continue;
            }
            // A command-line run keeps its own job's lease and leaves the
            // jobs of nodes that died to the service.
            if !self.config.resume {
                continue;
            }
            let Ok(jobs) = self.store.all() else {
                continue;
            };
            for job in jobs.iter().filter(|j| j.status == JobStatus::InProgress) {
                if let Ok(true) = self.take(&job.job_id, now) {
                    let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.pending.push_back(job.job_id.clone());
                    drop(q);
                    self.wake.notify_all();
                }
            }
        }
    }

    fn work(self: Arc<Self>) {
        set_niceness(self.config.niceness);
        loop {
            let id = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if q.stopping {
                        return;
                    }
                    if let Some(id) = q.pending.pop_front() {
                        q.running += 1;
                        break id;
                    }
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.run(&id);
            self.progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            self.mine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            self.queue.lock().unwrap_or_else(|e| e.into_inner()).running -= 1;
        }
    }

    fn expire_loop(self: Arc<Self>) {
        loop {
            {
                let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let (q, _) = self
                    .wake
                    .wait_timeout_while(q, Duration::from_secs(3600), |q| !q.stopping)
                    .unwrap_or_else(|e| e.into_inner());
                if q.stopping {
                    return;
                }
            }
            let now = now_ms();
            if let Ok(jobs) = self.store.all() {
                for j in jobs.iter().filter(|j| self.expired(j, now)) {
                    let _ = self.store.delete(&j.job_id);
                }
            }
        }
    }

    fn run(&self, id: &str) {
        let Ok(Some(mut job)) = self.store.get(id) else {
            return;
        };
        if job.status != JobStatus::InProgress {
            return;
        }
        // Another node took the job over while it waited here (this node
        // stalled past its lease).
        let now = now_ms();
        if !matches!(
            self.store.claim(id, &self.node, now, now + self.lease_ms()),
            Ok(true)
        ) {
            return;
        }
        job.attempts += 1;
        let prepared = self
            .store
            .clear_results(id)
            .and_then(|()| self.store.update(&job));
        let outcome = prepared.and_then(|()| self.analyse(&mut job));
        if matches!(outcome, Err(VideoError::Interrupted)) {
            return;
        }
        self.finish(&mut job, outcome);
    }

    /// Records the outcome (`Ok`: results are written), audits a search,
    /// and sends the completion notification.
    fn finish(&self, job: &mut Job, outcome: Result<()>) {
        job.finished_ms = Some(now_ms());
        match &outcome {
            Ok(()) => {
                job.status = JobStatus::Succeeded;
                job.status_message = None;
            }
            Err(e) => {
                job.status = JobStatus::Failed;
                job.status_message = Some(e.to_string());
                job.results = 0;
                if job.api == Api::FaceSearch {
                    // The search was audited on success; its failure is too.
                    let (_, mut entry) = self.audit_entry(job);
                    entry.details = Some(json!({ "JobId": job.job_id, "Video": job.video }));
                    let _ = self.governor.audit_failure(entry, api_error(e));
                }
            }
        }
        if let Err(e) = self.store.update(job) {
            eprintln!("kenning: video job {}: {e}", job.job_id);
        }
        if let Some(n) = &job.notification_channel {
            self.notifier.notify(
                &n.sns_topic_arn,
                &json!({
                    "JobId": job.job_id,
                    "Status": job.status.as_str(),
                    "API": job.api.notification_name(),
                    "JobTag": job.job_tag.clone().unwrap_or_default(),
                    "Message": job.status_message.clone().unwrap_or_default(),
                    "Timestamp": job.finished_ms,
                    "Video": { "S3ObjectName": job.video.name, "S3Bucket": job.video.bucket },
                }),
            );
        }
    }

    fn audit_entry(&self, job: &Job) -> (Caller, kenning_audit::Entry) {
        let caller = job.starter.caller();
        let mut entry = caller.entry(job.api.start_operation());
        entry.collection = job.collection_id.clone();
        entry.probe_sha256 = job.sha256.clone();
        entry.threshold = job.face_match_threshold;
        (caller, entry)
    }

    /// Decodes, analyses and stores one job's results.
    fn analyse(&self, job: &mut Job) -> Result<()> {
        let began = Instant::now();
        let path = self.buckets.resolve(&job.video.bucket, &job.video.name)?;
        let changed = || {
            VideoError::Unreadable(
                "the video file changed after the job started; start a new job".into(),
            )
        };
        if FileStamp::of(&path).ok() != Some(job.file) {
            return Err(changed());
        }
        let probed = self
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.job_id);
        // The file is as it was when Start probed it (its stamp is checked
        // above); a job resumed after a restart is probed again.
        let probe = match probed {
            Some(p) => p,
            None => probe::probe(&path, &self.config.limits)?,
        };
        job.video_metadata = Some(probe.metadata.clone());
        self.store.update(job)?;
        let stop = Arc::new(AtomicBool::new(false));
        let hasher = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || sha256_file(&path, &stop))
        };
        let sampling = SamplingConfig {
            fps: job.fps,
            ..self.config.sampling.clone()
        };
        let duration = probe.metadata.duration_millis.max(1) as f64;
        let id = job.job_id.clone();
        let progress = |t: u64| {
            self.progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), (t as f64 / duration).min(1.0));
            !self.stopping.load(Ordering::SeqCst)
        };
        let mut source = FfmpegSource::open(&path, &probe, &sampling)?;
        let analysed = match job.api {
            Api::FaceDetection => {
                let before = began.elapsed();
                analyze::detect_faces(
                    &mut source,
                    self.governor.collections().pipeline(),
                    &self.config.analysis,
                    &progress,
                )
                .map(|(faces, times)| (Results::Faces(faces), before, times))
            }
            Api::FaceSearch => {
                let collection = job.collection_id.clone().unwrap_or_default();
                let searcher = self.governor.collections().searcher(&collection)?;
                let before = began.elapsed();
                analyze::search_faces(
                    &mut source,
                    &searcher,
                    job.face_match_threshold
                        .unwrap_or(kenning_collections::DEFAULT_THRESHOLD),
                    &self.config.analysis,
                    &progress,
                )
                .map(|(persons, times)| (Results::Persons(persons), before, times))
            }
        };
        drop(source);
        if analysed.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        let sha = hasher.join().unwrap_or(None);
        let (results, before, mut times) = analysed?;
        // Probing, opening the collection and starting ffmpeg came first.
        times.start_ms += before.as_millis() as u64;
        if FileStamp::of(&path).ok() != Some(job.file) {
            return Err(changed());
        }
        job.sha256 = sha;
        job.stage_times = Some(times);
        match results {
            Results::Faces(faces) => {
                let items: Vec<Vec<u8>> = faces
                    .iter()
                    .map(|f| serde_json::to_vec(f).unwrap_or_default())
                    .collect();
                self.write(job, Order::Timestamp, &items)?;
                job.results = items.len() as u64;
            }
            Results::Persons(persons) => self.store_search(job, persons)?,
        }
        Ok(())
    }

    fn write(&self, job: &Job, order: Order, items: &[Vec<u8>]) -> Result<()> {
        for (i, chunk) in items.chunks(1000).enumerate() {
            self.store
                .write_results(&job.job_id, order, (i * 1000) as u64, chunk)?;
        }
        Ok(())
    }

    /// Audits the search (with the collection's policy, as at Start: review
    /// items for a collection under review), then stores sightings in both
    /// orders and each matched person's FaceMatches.
    fn store_search(&self, job: &mut Job, persons: Vec<Person>) -> Result<()> {
        let (caller, mut entry) = self.audit_entry(job);
        let threshold = job
            .face_match_threshold
            .unwrap_or(kenning_collections::DEFAULT_THRESHOLD);
        let policy = self
            .governor
            .check_search(&caller, &mut entry, threshold, Medium::Video)
            .map_err(|e| VideoError::Unreadable(format!("{}: {}", e.kind, e.message)))?;
        for p in &persons {
            for m in &p.matches {
                entry.candidates.push(Candidate {
                    face_id: Some(m.face.face_id.clone()),
                    user_id: m.face.user_id.clone(),
                    external_image_id: m.face.external_image_id.clone(),
                    similarity: f64::from(m.similarity),
                });
            }
        }
        let matched = persons.iter().filter(|p| !p.matches.is_empty()).count();
        let mut details = Map::new();
        details.insert("JobId".into(), json!(job.job_id));
        details.insert("Video".into(), json!(job.video));
        details.insert("Persons".into(), json!(persons.len()));
        details.insert("PersonsMatched".into(), json!(matched));
        // Reviewers are shown, for each candidate, the frame in which its
        // person's face was largest, cut from the video again when they look.
        let frames = persons
            .iter()
            .flat_map(|p| {
                let best = p.sightings.iter().max_by(|a, b| {
                    let area = |s: &&crate::track::Sighting| {
                        s.detail.bounding_box.width * s.detail.bounding_box.height
                    };
                    area(a).total_cmp(&area(b))
                });
                let frame = best.map(|s| {
                    (
                        VideoFrame {
                            job_id: job.job_id.clone(),
                            timestamp: s.timestamp_ms,
                        },
                        s.detail.bounding_box,
                    )
                });
                std::iter::repeat_n(frame, p.matches.len())
            })
            .collect();
        let review_ids = self
            .governor
            .complete_video_search(&caller, &policy, entry, details, frames)
            .map_err(|e| VideoError::Store(format!("{}: {}", e.kind, e.message)))?;
        let mut ids = review_ids.into_iter();
        let mut person_rows = Vec::new();
        let mut sightings = Vec::new();
        for p in &persons {
            if !p.matches.is_empty() {
                let matches: Vec<Value> = p
                    .matches
                    .iter()
                    .map(|m| {
                        let mut v = json!(m);
                        if let Some(r) = ids.next() {
                            v["ReviewId"] = json!(r);
                            v["ReviewStatus"] = json!("PENDING");
                        }
                        v
                    })
                    .collect();
                person_rows.push((p.index, serde_json::to_vec(&matches).unwrap_or_default()));
            }
            for s in &p.sightings {
                sightings.push((s.timestamp_ms, p.index, &s.detail));
            }
        }
        let encode = |(t, i, d): &(u64, u64, &kenning_core::FaceDetail)| {
            serde_json::to_vec(&json!({
                "Timestamp": t,
                "Person": { "Index": i, "BoundingBox": d.bounding_box, "Face": d },
            }))
            .unwrap_or_default()
        };
        sightings.sort_by_key(|s| (s.0, s.1));
        let by_time: Vec<Vec<u8>> = sightings.iter().map(encode).collect();
        self.write(job, Order::Timestamp, &by_time)?;
        drop(by_time);
        sightings.sort_by_key(|s| (s.1, s.0));
        let by_index: Vec<Vec<u8>> = sightings.iter().map(encode).collect();
        self.write(job, Order::Index, &by_index)?;
        self.store.write_persons(&job.job_id, &person_rows)?;
        job.results = sightings.len() as u64;
        Ok(())
    }
}

impl FrameCutter for VideoService {
    /// Cuts the frame again from the job's video while the job's results
    /// are kept and the file is the one the job read.
    fn cut(
        &self,
        frame: &VideoFrame,
        crop: &kenning_core::BoundingBox,
    ) -> std::result::Result<Vec<u8>, ApiError> {
        let gone =
            |m: String| ApiError::from_code(kenning_core::ErrorCode::ResourceNotFoundException, m);
        let job = self
            .store
            .get(&frame.job_id)
            .map_err(|e| api_error(&e))?
            .filter(|j| !self.expired(j, now_ms()))
            .ok_or_else(|| {
                gone(format!(
                    "video job {} has expired, so its frames can no longer be shown",
                    frame.job_id
                ))
            })?;
        let path = self
            .buckets
            .resolve(&job.video.bucket, &job.video.name)
            .map_err(|e| api_error(&e))?;
        if FileStamp::of(&path).ok() != Some(job.file) {
            return Err(gone(format!(
                "{}/{} changed or was removed after the search, so its frame cannot be shown",
                job.video.bucket, job.video.name
            )));
        }
        crate::source::cut_jpeg(&path, frame.timestamp, crop, CUT_DEADLINE)
            .map_err(|e| api_error(&e))
    }
}

enum Results {
    Faces(Vec<analyze::FaceDetection>),
    Persons(Vec<Person>),
}

/// JSON with object keys sorted, so equal requests hash equally.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let s: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            json!(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// SHA-256 of a file (hex), unless `stop` is raised first.
fn sha256_file(path: &Path, stop: &AtomicBool) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            return Some(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Lowers the calling thread's scheduling priority (Linux keeps niceness
/// per thread; threads and processes it starts inherit it).
#[allow(unsafe_code)]
pub fn set_niceness(n: i32) {
    if n > 0 {
        // SAFETY: setpriority only reads its integer arguments.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_answers_rekognitions_video_operations_and_its_listings() {
        for op in kenning_api::VIDEO_OPERATIONS {
            assert!(OPERATIONS.contains(op), "{op}");
        }
        for op in &OPERATIONS[kenning_api::VIDEO_OPERATIONS.len()..] {
            assert!(
                kenning_accountability::KENNING_OPERATIONS.contains(op),
                "{op}"
            );
        }
    }
}
