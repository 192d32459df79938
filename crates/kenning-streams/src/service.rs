//! The stream service: Rekognition's seven stream-processor operations over
//! durable processor definitions, each processor running on its own thread
//! when started, behind the same authorisation, policy and audit as every
//! search.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use kenning_accountability::{Caller, Governor, Medium};
use kenning_api::ApiError;
use kenning_audit::Entry;
use kenning_video::jobs::Starter;
use kenning_video::live::LiveInput;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{data_stream_name, validate_stream_name, video_stream_name, StreamConfig};
use crate::error::{Result, StreamError};
use crate::output::{EventHub, Output};
use crate::processor::{now_ms, Context, KeyCheck, Live, StopSignal, Worker};
use crate::store::{
    check_new, CounterSnapshot, ProcessorDef, ProcessorStore, RedbProcessorStore, Status,
};

/// The operations this service answers.
pub const OPERATIONS: &[&str] = kenning_api::STREAM_OPERATIONS;

/// The lowest FaceMatchThreshold a stream processor applies: lower values
/// are raised to it, as Rekognition does.
pub const MIN_THRESHOLD: f64 = 80.0;

/// Most processors ListStreamProcessors returns per page.
pub const MAX_RESULTS: u64 = 1000;

fn invalid(m: impl Into<String>) -> StreamError {
    StreamError::InvalidParameter(m.into())
}

/// A processor's ARN.
pub fn processor_arn(name: &str) -> String {
    format!("arn:aws:rekognition:local:000000000000:streamprocessor/{name}")
}

/// The refusal for a processor running on another node.
fn running_elsewhere(name: &str, before: &str) -> StreamError {
    StreamError::InUse(format!(
        "stream processor {name:?} is RUNNING on another node; stop it before {before}"
    ))
}

fn check_name(name: Option<&str>) -> Result<&str> {
    let name = name.ok_or_else(|| invalid("Name is required"))?;
    validate_stream_name("stream processor", name, 128)?;
    Ok(name)
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > 200 {
        return Err(invalid("Tags holds at most 200 tags"));
    }
    let ok = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
    };
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") || !ok(k) {
            return Err(invalid(format!(
                "tag key {k:?} must be 1-128 letters, digits, spaces or _.:/=+-@ and not start with aws:"
            )));
        }
        if v.chars().count() > 256 || !ok(v) {
            return Err(invalid(format!(
                "the value of tag {k:?} must be at most 256 letters, digits, spaces or _.:/=+-@"
            )));
        }
    }
    Ok(())
}

fn label_detection_only(member: &str) -> StreamError {
    invalid(format!(
        "{member} is for label detection (ConnectedHome) stream processors, which Kenning does not \
         implement; a face search stream processor does not take it"
    ))
}

fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T> {
    serde_json::from_value(if body.is_null() {
        json!({})
    } else {
        body.clone()
    })
    .map_err(|e| invalid(e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArnArg {
    arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InputArg {
    kinesis_video_stream: Option<ArnArg>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OutputArg {
    kinesis_data_stream: Option<ArnArg>,
    s3_destination: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FaceSearchArg {
    collection_id: Option<String>,
    face_match_threshold: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SettingsArg {
    face_search: Option<FaceSearchArg>,
    connected_home: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataSharingArg {
    opt_in: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateArgs {
    input: Option<InputArg>,
    output: Option<OutputArg>,
    name: Option<String>,
    settings: Option<SettingsArg>,
    role_arn: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    notification_channel: Option<Value>,
    kms_key_id: Option<String>,
    regions_of_interest: Option<Value>,
    data_sharing_preference: Option<DataSharingArg>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartArgs {
    start_selector: Option<Value>,
    stop_selector: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SettingsForUpdateArg {
    connected_home_for_update: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateArgs {
    settings_for_update: Option<SettingsForUpdateArg>,
    regions_of_interest_for_update: Option<Value>,
    data_sharing_preference_for_update: Option<DataSharingArg>,
    parameters_to_delete: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListArgs {
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// DataSharingPreference.OptIn: `false`, as nothing is ever shared.
fn data_sharing(d: Option<DataSharingArg>, member: &str) -> Result<Option<bool>> {
    match d {
        None => Ok(None),
        Some(DataSharingArg { opt_in: None }) => {
            Err(invalid(format!("{member}.OptIn is required")))
        }
        Some(DataSharingArg { opt_in: Some(true) }) => Err(invalid(format!(
            "{member}.OptIn must be false: Kenning is self-hosted and shares no data with anyone"
        ))),
        Some(DataSharingArg {
            opt_in: Some(false),
        }) => Ok(Some(false)),
    }
}

/// Counts and status of one processor, for the metrics.
pub struct ProcessorStats {
    /// Its name.
    pub name: String,
    /// Its status now.
    pub status: Status,
    /// Its counters, when it has run since the service started.
    pub live: Option<Arc<Live>>,
}

/// Counts of one output sink, for the metrics.
pub struct SinkStats {
    /// The output's name.
    pub output: String,
    /// `sse`, `webhook` or `file`.
    pub kind: &'static str,
    /// Records delivered or written (SSE: sent to clients, each client's
    /// copy counted).
    pub delivered: u64,
    /// Clients connected now (SSE; 0 for webhooks and files).
    pub clients: u64,
    /// Records dropped because the sink was behind.
    pub dropped: u64,
    /// Records given up on.
    pub failed: u64,
}

/// Stream processors of one data directory or database.
pub struct StreamService {
    governor: Arc<Governor>,
    store: Arc<dyn ProcessorStore>,
    /// This node's name in leases (a shared store).
    node: String,
    config: Arc<StreamConfig>,
    outputs: BTreeMap<String, Arc<Output>>,
    tracks: Mutex<BTreeMap<String, Arc<EventHub>>>,
    workers: Mutex<BTreeMap<String, Worker>>,
    /// Serialises the operations that change processors.
    changing: Mutex<()>,
    key_active: KeyCheck,
    stopping: Arc<StopSignal>,
    housekeeping: Mutex<Vec<JoinHandle<()>>>,
}

impl StreamService {
    /// Opens the processors of `data_dir` and resumes those that were
    /// running when the service last stopped (or crashed). `key_active`
    /// tells whether an access key is still valid: a processor stops when
    /// the key that started it is revoked.
    pub fn open(
        data_dir: &Path,
        governor: Arc<Governor>,
        config: StreamConfig,
        key_active: KeyCheck,
    ) -> Result<Arc<Self>> {
        let store = Arc::new(RedbProcessorStore::open(data_dir)?);
        Self::with_store(store, governor, config, key_active)
    }

    /// As [`StreamService::open`], with another store. On a shared store
    /// (a database) this node runs only the processors it holds the lease
    /// of, renews those leases every third of [`StreamConfig::lease`], and
    /// takes over RUNNING processors whose node stopped renewing.
    pub fn with_store(
        store: Arc<dyn ProcessorStore>,
        governor: Arc<Governor>,
        config: StreamConfig,
        key_active: KeyCheck,
    ) -> Result<Arc<Self>> {
        let outputs = config
            .outputs
            .iter()
            .map(|(name, sinks)| (name.clone(), Arc::new(Output::new(name, sinks, &config))))
            .collect();
        let service = Arc::new(Self {
            governor,
            store,
            node: uuid::Uuid::new_v4().to_string(),
            config: Arc::new(config),
            outputs,
            tracks: Mutex::new(BTreeMap::new()),
            workers: Mutex::new(BTreeMap::new()),
            changing: Mutex::new(()),
            key_active,
            stopping: Arc::new(StopSignal::default()),
            housekeeping: Mutex::new(Vec::new()),
        });
        for def in service.store.all()? {
            service.tracks_of(&def.name);
            if def.status == Status::Running {
                service.resume(def, "resumed when the service started")?;
            }
        }
        let s = Arc::downgrade(&service);
        let stopping = service.stopping.clone();
        let mut threads = vec![std::thread::Builder::new()
            .name("kenning-stream-expiry".into())
            .spawn(move || {
                // Replay buffers forget old events even when nobody reads
                // or writes them.
                while !stopping.wait(Duration::from_secs(5)) {
                    let Some(s) = s.upgrade() else { return };
                    for o in s.outputs.values() {
                        if let Some(h) = &o.sse {
                            h.expire();
                        }
                    }
                    for h in s.tracks_lock().values() {
                        h.expire();
                    }
                }
            })
            .map_err(|e| StreamError::Store(e.to_string()))?];
        if service.store.shared() {
            let s = Arc::downgrade(&service);
            let stopping = service.stopping.clone();
            let period = service.config.lease / 3;
            threads.push(
                std::thread::Builder::new()
                    .name("kenning-stream-lease".into())
                    .spawn(move || {
                        while !stopping.wait(period) {
                            let Some(s) = s.upgrade() else { return };
                            if let Err(e) = s.tend_leases() {
                                eprintln!("kenning: stream processor leases: {e}");
                            }
                        }
                    })
                    .map_err(|e| StreamError::Store(e.to_string()))?,
            );
        }
        *service
            .housekeeping
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(service)
    }

    fn lease_until(&self, now: u64) -> u64 {
        now + self.config.lease.as_millis() as u64
    }

    /// Runs RUNNING processor `def` here if this node can hold it (on a
    /// shared store another live node may); marks it FAILED when its source
    /// or output is not configured.
    fn resume(&self, mut def: ProcessorDef, note: &str) -> Result<()> {
        let now = now_ms();
        if !self
            .store
            .claim(&def.name, &self.node, now, self.lease_until(now))?
        {
            return Ok(());
        }
        match self.connect(&def) {
            Ok((input, output)) => {
                let w = self.worker(&def, input, output, Some(note));
                self.workers_lock().insert(def.name.clone(), w);
            }
            Err(e) => {
                def.status = Status::Failed;
                def.status_message = Some(format!("not {note}: {e}"));
                def.updated_ms = now_ms();
                self.store.put(&def)?;
                self.store.release(&def.name, Some(&self.node))?;
            }
        }
        Ok(())
    }

    /// On a shared store: renews the leases of the processors running here
    /// and stops those stopped, deleted, restarted or taken over elsewhere;
    /// gives up those that ended by themselves; takes over RUNNING
    /// processors nobody holds (their node died or let them go).
    fn tend_leases(&self) -> Result<()> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let defs: BTreeMap<String, ProcessorDef> = self
            .store
            .all()?
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        let now = now_ms();
        let mine: Vec<(String, Option<String>, bool)> = self
            .workers_lock()
            .iter()
            .map(|(n, w)| (n.clone(), w.session.clone(), w.finished()))
            .collect();
        for (name, session, finished) in mine {
            let wanted = defs
                .get(&name)
                .is_some_and(|d| d.status == Status::Running && d.session_id == session);
            let held = wanted
                && !finished
                && self
                    .store
                    .claim(&name, &self.node, now, self.lease_until(now))?;
            if !held {
                self.stop_worker(&name);
                self.store.release(&name, Some(&self.node))?;
                continue;
            }
            // With the renewal, so any node describes them (with their age),
            // and the status here (a reconnecting source, say).
            let counters = self.workers_lock().get(&name).map(|w| {
                let mut c = w.live.counters.snapshot(&self.node, now);
                let (status, message) = w.live.status();
                (c.status, c.status_message) = (Some(status), message);
                c.session_id.clone_from(&w.session);
                c
            });
            if let Some(c) = counters {
                self.store.save_counters(&name, &c)?;
            }
        }
        for def in defs.into_values() {
            if def.status == Status::Running && !self.workers_lock().contains_key(&def.name) {
                self.tracks_of(&def.name);
                self.resume(
                    def,
                    "taken over from a node that stopped renewing its lease",
                )?;
            }
        }
        Ok(())
    }

    fn workers_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tracks_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<EventHub>>> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tracks_of(&self, name: &str) -> Arc<EventHub> {
        self.tracks_lock()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(EventHub::new(self.config.replay)))
            .clone()
    }

    /// The configured source and output a processor names.
    fn connect(&self, def: &ProcessorDef) -> Result<(LiveInput, Arc<Output>)> {
        let input = self.config.sources.get(&def.source).ok_or_else(|| {
            invalid(format!(
                "no stream source {:?} is configured (kenning serve --stream-source {}=URL)",
                def.source, def.source
            ))
        })?;
        let output = self.outputs.get(&def.output).ok_or_else(|| {
            invalid(format!(
                "no stream output {:?} is configured (kenning serve --stream-output {}=sse|URL|FILE)",
                def.output, def.output
            ))
        })?;
        Ok((input.clone(), output.clone()))
    }

    fn worker(
        &self,
        def: &ProcessorDef,
        input: LiveInput,
        output: Arc<Output>,
        note: Option<&str>,
    ) -> Worker {
        Worker::start(
            Context {
                governor: self.governor.clone(),
                store: self.store.clone(),
                config: self.config.clone(),
                output,
                tracks: self.tracks_of(&def.name),
                key_active: self.key_active.clone(),
            },
            def.clone(),
            input,
            note.map(str::to_owned),
        )
    }

    /// Stops every processor without changing what is stored: those
    /// running resume when the service opens the data directory again, or
    /// (on a shared store) on another node at once, as their leases are
    /// given up.
    pub fn shutdown(&self) {
        self.stopping.set();
        let threads =
            std::mem::take(&mut *self.housekeeping.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        let workers = std::mem::take(&mut *self.workers_lock());
        for (name, mut w) in workers {
            w.stop();
            if let Err(e) = self.store.release(&name, Some(&self.node)) {
                eprintln!("kenning: giving up stream processor {name}: {e}");
            }
        }
        for o in self.outputs.values() {
            o.close();
        }
    }

    /// Status and message of `def` now: live here, as the node running it
    /// saved them with its last lease renewal, or as stored.
    fn status_of(&self, def: &ProcessorDef) -> (Status, Option<String>) {
        let saved = if self.elsewhere(def) {
            self.store.counters(&def.name).ok().flatten()
        } else {
            None
        };
        self.status_given(def, saved.as_ref())
    }

    /// [`Self::status_of`] with the counters the store holds for `def`
    /// already read (`saved`), for a caller that needs them too.
    fn status_given(
        &self,
        def: &ProcessorDef,
        saved: Option<&CounterSnapshot>,
    ) -> (Status, Option<String>) {
        let live = self.workers_lock().get(&def.name).map(|w| w.live.status());
        if let Some(s) = live {
            return s;
        }
        if self.elsewhere(def) {
            if let Some(s) = saved.and_then(|c| c.status_of_session(def.session_id.as_deref())) {
                return s;
            }
        }
        (def.status, def.status_message.clone())
    }

    /// Whether `def` has a worker that is still running (reconnecting
    /// included).
    fn active(&self, name: &str) -> bool {
        self.workers_lock().get(name).is_some_and(|w| !w.finished())
    }

    /// Whether `def` should be running and another node runs it (or will
    /// take it over): only on a shared store.
    fn elsewhere(&self, def: &ProcessorDef) -> bool {
        self.store.shared()
            && def.status == Status::Running
            && !self.workers_lock().contains_key(&def.name)
    }

    /// Status, counters and sinks for the metrics.
    pub fn stats(&self) -> (Vec<ProcessorStats>, Vec<SinkStats>) {
        let defs = self.store.all().unwrap_or_default();
        let processors = defs
            .iter()
            .map(|d| {
                let live = self.workers_lock().get(&d.name).map(|w| w.live.clone());
                ProcessorStats {
                    name: d.name.clone(),
                    status: self.status_of(d).0,
                    live,
                }
            })
            .collect();
        let mut sinks = Vec::new();
        for (name, o) in &self.outputs {
            if let Some(h) = &o.sse {
                sinks.push(SinkStats {
                    output: name.clone(),
                    kind: "sse",
                    delivered: h.delivered(),
                    clients: h.subscribers() as u64,
                    dropped: 0,
                    failed: 0,
                });
            }
            for q in &o.queued {
                use std::sync::atomic::Ordering::Relaxed;
                sinks.push(SinkStats {
                    output: name.clone(),
                    kind: q.kind,
                    delivered: q.counts.delivered.load(Relaxed),
                    clients: 0,
                    dropped: q.queue.dropped(),
                    failed: q.counts.failed.load(Relaxed),
                });
            }
        }
        (processors, sinks)
    }

    /// Runs a stream operation for `caller`.
    pub fn call(
        &self,
        caller: &Caller,
        op: &str,
        body: Value,
    ) -> std::result::Result<Value, ApiError> {
        match op {
            "CreateStreamProcessor" => self.create(caller, &body),
            "StartStreamProcessor" => self.start(caller, &body),
            "StopStreamProcessor" => self.stop(caller, &body),
            "DeleteStreamProcessor" => self.delete(caller, &body),
            "UpdateStreamProcessor" => self.update(caller, &body),
            "DescribeStreamProcessor" => self.describe(caller, &body),
            "ListStreamProcessors" => self.list(caller, &body),
            other => Err(ApiError::unknown_operation(other)),
        }
    }

    /// Records `entry` (with `details`) as done, or as failed with `e`.
    fn audited(
        &self,
        mut entry: Entry,
        details: Value,
        outcome: Result<Value>,
    ) -> std::result::Result<Value, ApiError> {
        entry.details = Some(details);
        match outcome {
            Ok(v) => {
                self.governor.audit(entry)?;
                Ok(v)
            }
            Err(e) => Err(self.governor.audit_failure(entry, ApiError::from_wire(&e))),
        }
    }

    /// Records the outcome of a change to processor `name` (an empty
    /// answer, as Rekognition's Stop, Delete and Update give).
    fn changed(
        &self,
        entry: Entry,
        name: Option<&str>,
        outcome: Result<ProcessorDef>,
    ) -> std::result::Result<Value, ApiError> {
        match outcome {
            Ok(def) => self.audited(entry, Self::details(&def), Ok(json!({}))),
            Err(e) => self.audited(entry, json!({ "StreamProcessor": name }), Err(e)),
        }
    }

    /// Authorises `op` on the processor named in `body` (its collection
    /// decides the scope), and audits a refusal.
    fn lookup(
        &self,
        caller: &Caller,
        op: &str,
        name: Option<&str>,
    ) -> std::result::Result<(Entry, Result<ProcessorDef>), ApiError> {
        let found = check_name(name).and_then(|n| {
            self.store.get(n)?.ok_or_else(|| {
                StreamError::NotFound(format!("stream processor {n:?} does not exist"))
            })
        });
        let collection = found.as_ref().ok().map(|d| d.collection_id.as_str());
        let mut entry = self
            .governor
            .authorize(caller, caller.entry(op), collection)?;
        // What is done to a processor is recorded under its case reference
        // (when the caller names none), so a case's export shows it whole.
        if entry.case.is_none() {
            entry.case = found
                .as_ref()
                .ok()
                .and_then(|d| d.case().map(str::to_owned));
        }
        Ok((entry, found))
    }

    fn details(def: &ProcessorDef) -> Value {
        json!({
            "StreamProcessor": def.name,
            "StreamProcessorArn": def.arn,
            "Source": def.input_arn,
            "Output": def.output_arn,
            "CollectionId": def.collection_id,
            "FaceMatchThreshold": def.face_match_threshold,
        })
    }

    // ---- Create ------------------------------------------------------

    fn create(&self, caller: &Caller, body: &Value) -> std::result::Result<Value, ApiError> {
        let collection = body
            .pointer("/Settings/FaceSearch/CollectionId")
            .and_then(Value::as_str);
        let mut entry =
            self.governor
                .authorize(caller, caller.entry("CreateStreamProcessor"), collection)?;
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let def = match self.validate_create(caller, body) {
            Ok(def) => def,
            Err(e) => {
                let name = body.get("Name").cloned().unwrap_or(Value::Null);
                return self.audited(entry, json!({ "StreamProcessor": name }), Err(e));
            }
        };
        // The collection's policy applies as to every search, with its rule
        // on live streams; a refusal is audited.
        self.governor
            .check_search(caller, &mut entry, def.face_match_threshold, Medium::Stream)?;
        let arn = def.arn.clone();
        let outcome = self
            .store
            .insert(&def, self.config.max_processors)
            .map(|()| {
                self.tracks_of(&def.name);
                json!({ "StreamProcessorArn": arn })
            });
        self.audited(entry, Self::details(&def), outcome)
    }

    fn validate_create(&self, caller: &Caller, body: &Value) -> Result<ProcessorDef> {
        let a: CreateArgs = parse(body)?;
        let name = check_name(a.name.as_deref())?.to_owned();
        let settings = a
            .settings
            .ok_or_else(|| invalid("Settings (with FaceSearch) is required"))?;
        if settings.connected_home.is_some() {
            return Err(invalid(
                "Settings.ConnectedHome (label detection) is not supported: Kenning implements face \
                 search stream processors only; give Settings.FaceSearch",
            ));
        }
        let face = settings
            .face_search
            .ok_or_else(|| invalid("Settings.FaceSearch is required"))?;
        let collection_id = face
            .collection_id
            .ok_or_else(|| invalid("Settings.FaceSearch.CollectionId is required"))?;
        let threshold = face.face_match_threshold.unwrap_or(MIN_THRESHOLD);
        if !(0.0..=100.0).contains(&threshold) {
            return Err(invalid(format!(
                "Settings.FaceSearch.FaceMatchThreshold must be between 0 and 100, not {threshold}"
            )));
        }
        let input_arn = a
            .input
            .and_then(|i| i.kinesis_video_stream)
            .and_then(|k| k.arn)
            .ok_or_else(|| invalid("Input.KinesisVideoStream.Arn is required"))?;
        let source = video_stream_name(&input_arn)?;
        let output = a
            .output
            .ok_or_else(|| invalid("Output.KinesisDataStream.Arn is required"))?;
        if output.s3_destination.is_some() {
            return Err(label_detection_only("Output.S3Destination"));
        }
        let output_arn = output
            .kinesis_data_stream
            .and_then(|k| k.arn)
            .ok_or_else(|| invalid("Output.KinesisDataStream.Arn is required"))?;
        let output = data_stream_name(&output_arn)?;
        let role_arn = a.role_arn.ok_or_else(|| invalid("RoleArn is required"))?;
        if !kenning_video::service::valid_role_arn(&role_arn) {
            return Err(invalid(format!(
                "RoleArn {role_arn:?} is not an IAM role ARN"
            )));
        }
        if a.notification_channel.is_some() {
            return Err(label_detection_only("NotificationChannel"));
        }
        if a.kms_key_id.is_some() {
            return Err(label_detection_only("KmsKeyId"));
        }
        if a.regions_of_interest.is_some() {
            return Err(label_detection_only("RegionsOfInterest"));
        }
        let tags = a.tags.unwrap_or_default();
        check_tags(&tags)?;
        let data_sharing = data_sharing(a.data_sharing_preference, "DataSharingPreference")?;
        let def = ProcessorDef {
            arn: processor_arn(&name),
            name,
            input_arn,
            source,
            output_arn,
            output,
            collection_id,
            face_match_threshold: threshold.max(MIN_THRESHOLD),
            role_arn,
            tags,
            data_sharing_opt_in: data_sharing,
            created_ms: now_ms(),
            updated_ms: now_ms(),
            status: Status::Stopped,
            status_message: None,
            created_by: Starter::of(caller),
            started_by: None,
            session_id: None,
        };
        self.connect(&def)?;
        self.governor
            .collections()
            .searcher(&def.collection_id)
            .map_err(|e| invalid(format!("Settings.FaceSearch.CollectionId: {e}")))?;
        // Checked again with the insert, atomically: another node may be
        // creating at the same moment.
        check_new(&self.store.all()?, &def, self.config.max_processors)?;
        Ok(def)
    }

    // ---- Start / Stop ------------------------------------------------

    fn start(&self, caller: &Caller, body: &Value) -> std::result::Result<Value, ApiError> {
        let args: std::result::Result<StartArgs, _> = parse(body);
        let name = body.get("Name").and_then(Value::as_str);
        let (mut entry, found) = self.lookup(caller, "StartStreamProcessor", name)?;
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let prepared = args.and_then(|a| {
            if a.start_selector.is_some() {
                return Err(label_detection_only("StartSelector"));
            }
            if a.stop_selector.is_some() {
                return Err(label_detection_only("StopSelector"));
            }
            let def = found?;
            if self.active(&def.name) {
                let (status, _) = self.status_of(&def);
                return Err(StreamError::InUse(format!(
                    "stream processor {:?} is {}; stop it before starting it again",
                    def.name,
                    status.as_str()
                )));
            }
            if self.elsewhere(&def) {
                return Err(running_elsewhere(&def.name, "starting it again"));
            }
            let (input, output) = self.connect(&def)?;
            Ok((def, input, output))
        });
        let (mut def, input, output) = match prepared {
            Ok(p) => p,
            Err(e) => {
                return self.audited(entry, json!({ "StreamProcessor": name }), Err(e));
            }
        };
        // Matches are audited under the processor's case reference, so the
        // policy is checked with it.
        let mut as_processor = caller.clone();
        as_processor.case = def.case().map(str::to_owned);
        entry.case = as_processor.case.clone();
        entry.collection = Some(def.collection_id.clone());
        self.governor.check_search(
            &as_processor,
            &mut entry,
            def.face_match_threshold,
            Medium::Stream,
        )?;
        let session = uuid::Uuid::new_v4().to_string();
        def.status = Status::Running;
        def.status_message = None;
        def.started_by = Some(Starter::of(caller));
        def.session_id = Some(session.clone());
        def.updated_ms = now_ms();
        let mut details = Self::details(&def);
        details["SessionId"] = json!(session);
        let now = now_ms();
        let outcome = self
            .store
            .claim(&def.name, &self.node, now, self.lease_until(now))
            .and_then(|held| {
                if held {
                    Ok(())
                } else {
                    Err(running_elsewhere(&def.name, "starting it again"))
                }
            })
            .and_then(|()| self.store.put(&def))
            .map(|()| {
                let w = self.worker(&def, input, output, None);
                self.workers_lock().insert(def.name.clone(), w);
                json!({ "SessionId": session })
            });
        self.audited(entry, details, outcome)
    }

    /// Stops processor `name`'s worker, if it has one, and waits for it.
    fn stop_worker(&self, name: &str) {
        let w = self.workers_lock().remove(name);
        if let Some(mut w) = w {
            w.stop();
        }
    }

    fn stop(&self, caller: &Caller, body: &Value) -> std::result::Result<Value, ApiError> {
        let args: std::result::Result<StartArgs, _> = parse(body);
        let name = body.get("Name").and_then(Value::as_str);
        let (entry, found) = self.lookup(caller, "StopStreamProcessor", name)?;
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = args.and(found).and_then(|mut def| {
            let here = self.active(&def.name);
            if !here && !self.elsewhere(&def) {
                let (status, _) = self.status_of(&def);
                return Err(StreamError::InUse(format!(
                    "stream processor {:?} is not running (its status is {})",
                    def.name,
                    status.as_str()
                )));
            }
            self.stop_worker(&def.name);
            def.status = Status::Stopped;
            def.status_message = None;
            def.updated_ms = now_ms();
            self.store.put(&def)?;
            // Running on another node: that node stops it when it next
            // renews its leases (within a third of a lease), seeing it
            // STOPPED; the lease is freed now so a Start may follow at once.
            self.store
                .release(&def.name, here.then_some(self.node.as_str()))?;
            Ok(def)
        });
        self.changed(entry, name, outcome)
    }

    // ---- Delete / Update ---------------------------------------------

    fn delete(&self, caller: &Caller, body: &Value) -> std::result::Result<Value, ApiError> {
        let args: std::result::Result<StartArgs, _> = parse(body);
        let name = body.get("Name").and_then(Value::as_str);
        let (entry, found) = self.lookup(caller, "DeleteStreamProcessor", name)?;
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = args.and(found).and_then(|def| {
            if self.active(&def.name) {
                let (status, _) = self.status_of(&def);
                // A processor failing to reach its source may be deleted,
                // as a FAILED one may in Rekognition.
                if status != Status::Failed {
                    return Err(StreamError::InUse(format!(
                        "stream processor {:?} is {}; stop it before deleting it",
                        def.name,
                        status.as_str()
                    )));
                }
            } else if self.elsewhere(&def) {
                return Err(running_elsewhere(&def.name, "deleting it"));
            }
            self.stop_worker(&def.name);
            self.store.delete(&def.name)?;
            self.tracks_lock().remove(&def.name);
            Ok(def)
        });
        self.changed(entry, name, outcome)
    }

    fn update(&self, caller: &Caller, body: &Value) -> std::result::Result<Value, ApiError> {
        let args: std::result::Result<UpdateArgs, _> = parse(body);
        let name = body.get("Name").and_then(Value::as_str);
        let (entry, found) = self.lookup(caller, "UpdateStreamProcessor", name)?;
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = args.and_then(|a| {
            if a.settings_for_update
                .is_some_and(|s| s.connected_home_for_update.is_some())
            {
                return Err(invalid(
                    "SettingsForUpdate.ConnectedHomeForUpdate is for label detection stream \
                     processors; nothing of a face search processor's settings can be updated \
                     (delete it and create another)",
                ));
            }
            if a.regions_of_interest_for_update.is_some() {
                return Err(label_detection_only("RegionsOfInterestForUpdate"));
            }
            for p in a.parameters_to_delete.iter().flatten() {
                match p.as_str() {
                    "RegionsOfInterest" => {}
                    "ConnectedHomeMinConfidence" => {
                        return Err(label_detection_only(
                            "ParametersToDelete ConnectedHomeMinConfidence",
                        ))
                    }
                    other => {
                        return Err(invalid(format!(
                            "ParametersToDelete: {other:?} is not ConnectedHomeMinConfidence or RegionsOfInterest"
                        )))
                    }
                }
            }
            let sharing = data_sharing(
                a.data_sharing_preference_for_update,
                "DataSharingPreferenceForUpdate",
            )?;
            let mut def = found?;
            if sharing.is_some() {
                def.data_sharing_opt_in = sharing;
            }
            def.updated_ms = now_ms();
            self.store.put(&def)?;
            Ok(def)
        });
        self.changed(entry, name, outcome)
    }

    // ---- Describe / List ---------------------------------------------

    fn describe(&self, caller: &Caller, body: &Value) -> std::result::Result<Value, ApiError> {
        let args: std::result::Result<StartArgs, _> = parse(body);
        let name = body.get("Name").and_then(Value::as_str);
        let (_, found) = self.lookup(caller, "DescribeStreamProcessor", name)?;
        let def = args.and(found).map_err(|e| ApiError::from_wire(&e))?;
        // Kenning's own: the counters of the node running it, read there now
        // or saved there with its last lease renewal (AgeSeconds old), with
        // the status saved beside them.
        let now = now_ms();
        let here = self
            .workers_lock()
            .get(&def.name)
            .map(|w| w.live.counters.snapshot(&self.node, now));
        let counters = match here {
            Some(c) => Some(c),
            None => self
                .store
                .counters(&def.name)
                .map_err(|e| ApiError::from_wire(&e))?,
        };
        let (status, message) = self.status_given(&def, counters.as_ref());
        let secs = |ms: u64| ms as f64 / 1000.0;
        let mut v = json!({
            "Name": def.name,
            "StreamProcessorArn": def.arn,
            "Status": status.as_str(),
            "CreationTimestamp": secs(def.created_ms),
            "LastUpdateTimestamp": secs(def.updated_ms),
            "Input": { "KinesisVideoStream": { "Arn": def.input_arn } },
            "Output": { "KinesisDataStream": { "Arn": def.output_arn } },
            "RoleArn": def.role_arn,
            "Settings": { "FaceSearch": {
                "CollectionId": def.collection_id,
                "FaceMatchThreshold": def.face_match_threshold,
            }},
        });
        if let Some(m) = message {
            v["StatusMessage"] = json!(m);
        }
        if let Some(o) = def.data_sharing_opt_in {
            v["DataSharingPreference"] = json!({ "OptIn": o });
        }
        if let Some(c) = counters {
            let age = now.saturating_sub(c.at_ms) as f64 / 1000.0;
            let mut c = serde_json::to_value(&c).unwrap_or_default();
            if let Some(m) = c.as_object_mut() {
                for k in CounterSnapshot::NOT_COUNTERS {
                    m.remove(k);
                }
            }
            c["AgeSeconds"] = json!(age);
            v["Counters"] = c;
        }
        Ok(v)
    }

    fn list(&self, caller: &Caller, body: &Value) -> std::result::Result<Value, ApiError> {
        self.governor
            .authorize(caller, caller.entry("ListStreamProcessors"), None)?;
        let wire = |e: StreamError| ApiError::from_wire(&e);
        let a: ListArgs = parse(body).map_err(wire)?;
        let max = match a.max_results {
            None => MAX_RESULTS,
            Some(n) if n >= 1 => (n as u64).min(MAX_RESULTS),
            Some(n) => {
                return Err(wire(invalid(format!(
                    "MaxResults must be at least 1, not {n}"
                ))))
            }
        };
        let after = match &a.next_token {
            None => None,
            Some(t) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|n| t.len() <= 255 && check_name(Some(n)).is_ok())
                    .ok_or_else(|| {
                        wire(StreamError::InvalidToken(
                            "NextToken is not one ListStreamProcessors gave".into(),
                        ))
                    })?,
            ),
        };
        let mut defs: Vec<ProcessorDef> = self
            .store
            .all()
            .map_err(wire)?
            .into_iter()
            .filter(|d| caller.principal.sees(&d.collection_id))
            .filter(|d| after.as_ref().is_none_or(|a| d.name > *a))
            .collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        let more = defs.len() as u64 > max;
        defs.truncate(max as usize);
        let items: Vec<Value> = defs
            .iter()
            .map(|d| json!({ "Name": d.name, "Status": self.status_of(d).0.as_str() }))
            .collect();
        let mut v = json!({ "StreamProcessors": items });
        if more {
            if let Some(last) = defs.last() {
                v["NextToken"] =
                    json!(base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(last.name.as_bytes()));
            }
        }
        Ok(v)
    }

    // ---- Reading outputs -----------------------------------------------

    /// The Server-Sent Events hub of output `name`, for `caller` (operation
    /// ReadStreamOutput: admins and operators; a key scoped to collections
    /// reads only outputs of processors on them). The read is audited.
    pub fn output_events(
        &self,
        caller: &Caller,
        name: &str,
    ) -> std::result::Result<Arc<EventHub>, ApiError> {
        let user = self
            .store
            .all()
            .map_err(|e| ApiError::from_wire(&e))?
            .into_iter()
            .find(|d| d.output == name);
        let hub = self.outputs.get(name).and_then(|o| o.sse.clone());
        self.open_feed(caller, "Output", name, user.as_ref(), hub, || {
            format!(
                "stream output {name:?} has no Server-Sent Events sink (kenning serve --stream-output {name}=sse)"
            )
        })
    }

    /// The track feed of processor `name` (first seen, last seen, best
    /// match or none), for `caller`; as [`StreamService::output_events`].
    pub fn track_events(
        &self,
        caller: &Caller,
        name: &str,
    ) -> std::result::Result<Arc<EventHub>, ApiError> {
        let def = self.store.get(name).map_err(|e| ApiError::from_wire(&e))?;
        let hub = def.as_ref().map(|d| self.tracks_of(&d.name));
        self.open_feed(caller, "StreamProcessor", name, def.as_ref(), hub, || {
            format!("stream processor {name:?} does not exist")
        })
    }

    fn open_feed(
        &self,
        caller: &Caller,
        member: &str,
        name: &str,
        def: Option<&ProcessorDef>,
        hub: Option<Arc<EventHub>>,
        missing: impl FnOnce() -> String,
    ) -> std::result::Result<Arc<EventHub>, ApiError> {
        let collection = def.map(|d| d.collection_id.as_str());
        let mut entry =
            self.governor
                .authorize(caller, caller.entry("ReadStreamOutput"), collection)?;
        entry.details = Some(json!({ member: name }));
        if collection.is_none() && caller.principal.grant.collections.is_some() {
            let e = ApiError::from_code(
                kenning_core::ErrorCode::AccessDeniedException,
                format!(
                    "access key {} is scoped to collections and no stream processor of theirs uses {name:?}",
                    caller.principal.access_key
                ),
            );
            return Err(self.governor.audit_failure(entry, e));
        }
        match hub {
            Some(h) => {
                self.governor.audit(entry)?;
                Ok(h)
            }
            None => Err(self.governor.audit_failure(
                entry,
                ApiError::from_wire(&StreamError::NotFound(missing())),
            )),
        }
    }
}
