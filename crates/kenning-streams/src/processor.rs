//! One running stream processor: a thread that connects to the source
//! (reconnecting with exponential backoff when it drops, stalls or sends
//! garbage), analyses each frame as it arrives (skipping frames rather
//! than falling behind), and reports: a record per frame with faces to the
//! output, track events to the processor's feed, every new match to the
//! audit trail (and the review queue when the collection's policy asks).
//!
//! Faces are followed with the stored-video tracker; a track is embedded
//! when it first appears and again only when its face is seen markedly
//! better, each embedding searched through the collection's searcher and
//! then dropped. Frames, crops and embeddings exist only in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kenning_accountability::{Governor, Medium};
use kenning_audit::Candidate;
use kenning_collections::api::FaceMatch;
use kenning_collections::FaceSearcher;
use kenning_image::RgbImage;
use kenning_video::analyze::keep_better;
use kenning_video::live::{Interrupter, LiveFrame, LiveInput, LiveSource};
use kenning_video::track::{quality, thumbnail, Detected, Track, Tracker, TrackerConfig};
use kenning_video::VideoError;
use serde_json::{json, Map, Value};

use crate::config::StreamConfig;
use crate::output::{EventHub, Output};
use crate::store::{ProcessorDef, ProcessorStore, Status};

/// Whether an access key is still active (a processor whose starter's key
/// was revoked stops).
pub type KeyCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Counters of one processor since the service started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames the source delivered (after sampling).
    pub frames_in: AtomicU64,
    /// Frames analysed.
    pub frames_analysed: AtomicU64,
    /// Frames skipped because analysis was behind.
    pub frames_skipped: AtomicU64,
    /// Faces detected.
    pub faces: AtomicU64,
    /// New matches of a track to a collection face (each audited).
    pub matches: AtomicU64,
    /// Reconnection attempts.
    pub reconnects: AtomicU64,
    /// Records sent to the output.
    pub records: AtomicU64,
    /// How far the last analysed frame was behind live, in microseconds.
    pub lag_us: AtomicU64,
}

impl Counters {
    /// Their values now, as node `node` saves them at `at_ms`.
    pub fn snapshot(&self, node: &str, at_ms: u64) -> crate::store::CounterSnapshot {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::store::CounterSnapshot {
            frames_in: v(&self.frames_in),
            frames_analysed: v(&self.frames_analysed),
            frames_skipped: v(&self.frames_skipped),
            faces: v(&self.faces),
            matches: v(&self.matches),
            reconnects: v(&self.reconnects),
            records: v(&self.records),
            lag_us: v(&self.lag_us),
            node: node.to_owned(),
            at_ms,
            status: None,
            status_message: None,
            session_id: None,
        }
    }
}

/// A stop request a worker can wait on.
#[derive(Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set(&self) {
        *self.lock() = true;
        self.wake.notify_all();
    }

    pub(crate) fn is_set(&self) -> bool {
        *self.lock()
    }

    /// Waits `d`; `true` if a stop came first.
    pub(crate) fn wait(&self, d: Duration) -> bool {
        let g = self.lock();
        let (g, _) = self
            .wake
            .wait_timeout_while(g, d, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }
}

/// What the service and the metrics see of a running processor.
pub struct Live {
    status: Mutex<(Status, Option<String>)>,
    /// Counters.
    pub counters: Counters,
    pub(crate) stop: StopSignal,
    interrupter: Mutex<Option<Interrupter>>,
}

impl Live {
    fn new(note: Option<String>) -> Self {
        Self {
            status: Mutex::new((Status::Starting, note)),
            counters: Counters::default(),
            stop: StopSignal::default(),
            interrupter: Mutex::new(None),
        }
    }

    /// Status and StatusMessage now.
    pub fn status(&self) -> (Status, Option<String>) {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, status: Status, message: Option<String>) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = (status, message);
    }

    /// Asks the worker to stop, interrupting a wait for frames.
    pub(crate) fn request_stop(&self) {
        self.stop.set();
        if let Some(i) = self
            .interrupter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            i.interrupt();
        }
        let (status, _) = self.status();
        if matches!(status, Status::Starting | Status::Running | Status::Failed) {
            self.set_status(Status::Stopping, None);
        }
    }
}

/// What a worker needs from the service.
pub(crate) struct Context {
    pub governor: Arc<Governor>,
    pub store: Arc<dyn ProcessorStore>,
    pub config: Arc<StreamConfig>,
    pub output: Arc<Output>,
    pub tracks: Arc<EventHub>,
    pub key_active: KeyCheck,
}

/// A processor's thread.
pub(crate) struct Worker {
    pub live: Arc<Live>,
    /// The SessionId of the start it runs.
    pub session: Option<String>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts processor `def` on `input`, STARTING with `note` as its
    /// StatusMessage until frames flow.
    pub(crate) fn start(
        ctx: Context,
        def: ProcessorDef,
        input: LiveInput,
        note: Option<String>,
    ) -> Self {
        let live = Arc::new(Live::new(note));
        let l = live.clone();
        let session = def.session_id.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kenning-stream-{}", def.name))
            .spawn(move || {
                // Niceness is per thread on Linux, and the ffmpeg children
                // this thread starts inherit it.
                kenning_video::service::set_niceness(ctx.config.niceness);
                Run::new(ctx, def, input, l).run()
            })
            .expect("spawning a stream processor thread");
        Self {
            live,
            session,
            thread: Some(thread),
        }
    }

    /// Whether the thread has ended (by itself or when asked).
    pub(crate) fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the worker and waits for it.
    pub(crate) fn stop(&mut self) {
        self.live.request_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

/// How a connection ended.
enum ConnEnd {
    /// A stop was asked for.
    Stopped,
    /// The processor cannot go on (StatusMessage).
    Fatal(String),
    /// A file source that is not looped reached its end.
    FileEnded,
    /// The source dropped, stalled or failed; after running this long.
    Lost(String, Duration),
}

/// A followed face, as the processor reports it.
struct LiveTrack {
    id: u64,
    first: SystemTime,
    last: SystemTime,
    sightings: u64,
    /// The embeddings of its best sightings (quality, embedding), best
    /// first, at most [`TEMPLATES`]; in memory only.
    templates: Vec<(f32, Vec<f32>)>,
    best: BTreeMap<String, FaceMatch>,
    /// Faces whose match is audited, with the match's ReviewId if queued.
    announced: BTreeMap<String, Option<String>>,
}

/// Sightings of a track whose embeddings are kept: each new one is searched
/// alone and in the mean of all kept, a steadier template than any one
/// (as stored video does with a track's best crops).
const TEMPLATES: usize = 3;

impl LiveTrack {
    /// Whether a sighting of quality `q` is worth embedding: while the
    /// track has fewer than [`TEMPLATES`], or when it beats the worst kept
    /// by the factor `gain`.
    fn wants(&self, q: f32, gain: f32) -> bool {
        self.templates.len() < TEMPLATES || self.templates.last().is_some_and(|w| q > w.0 * gain)
    }

    /// Keeps `embedding` among the best [`TEMPLATES`].
    fn keep(&mut self, q: f32, embedding: Vec<f32>) {
        let at = self.templates.partition_point(|t| t.0 >= q);
        self.templates.insert(at, (q, embedding));
        self.templates.truncate(TEMPLATES);
    }

    /// Matches, best first, at most `max`.
    fn matches(&self, max: usize) -> Vec<&FaceMatch> {
        let mut m: Vec<&FaceMatch> = self.best.values().collect();
        m.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then_with(|| a.face.face_id.cmp(&b.face.face_id))
        });
        m.truncate(max);
        m
    }

    fn event(&self, kind: &str, processor: &str) -> String {
        json!({
            "Event": kind,
            "StreamProcessor": processor,
            "TrackId": self.id,
            "FirstSeen": unix_secs(self.first),
            "LastSeen": unix_secs(self.last),
            "Sightings": self.sightings,
            "BestMatch": self.matches(1).first(),
        })
        .to_string()
    }
}

/// One connection: a "fragment" in Kinesis terms.
struct Connection {
    fragment: String,
    /// When its first frame arrived.
    start: Option<SystemTime>,
    /// Source counts already added to the counters.
    counted: (u64, u64),
}

struct Run {
    ctx: Context,
    def: ProcessorDef,
    input: LiveInput,
    live: Arc<Live>,
    tracks: HashMap<u32, LiveTrack>,
    /// Added to the tracker's ids so track ids stay unique across connections.
    track_base: u64,
    connections: u64,
}

impl Run {
    fn new(ctx: Context, def: ProcessorDef, input: LiveInput, live: Arc<Live>) -> Self {
        Self {
            ctx,
            def,
            input,
            live,
            tracks: HashMap::new(),
            track_base: 0,
            connections: 0,
        }
    }

    fn run(mut self) {
        let config = self.ctx.config.clone();
        let mut attempt = 0u32;
        let (status, message) = loop {
            if self.live.stop.is_set() {
                break (Status::Stopped, None);
            }
            match self.connection() {
                ConnEnd::Stopped => break (Status::Stopped, None),
                ConnEnd::Fatal(m) => break (Status::Failed, Some(m)),
                ConnEnd::FileEnded => {
                    break (Status::Stopped, Some("the source file ended".to_owned()))
                }
                ConnEnd::Lost(why, ran) => {
                    if ran >= config.stable_after {
                        attempt = 0;
                    }
                    attempt += 1;
                    self.live
                        .counters
                        .reconnects
                        .fetch_add(1, Ordering::Relaxed);
                    let delay = config.reconnect.delay(attempt);
                    self.live.set_status(
                        Status::Failed,
                        Some(format!(
                            "source {} ({}): {why}; reconnecting (attempt {attempt}, next in {:.1} s)",
                            self.def.source,
                            self.input.describe(),
                            delay.as_secs_f64()
                        )),
                    );
                    if self.live.stop.wait(delay) {
                        break (Status::Stopped, None);
                    }
                }
            }
        };
        self.live.set_status(status, message.clone());
        if status == Status::Stopped && message.is_none() {
            // Stopped on request: the service records that.
            return;
        }
        // Ended by itself: recorded so a restart does not resume it.
        if let Ok(Some(mut d)) = self.ctx.store.get(&self.def.name) {
            if d.session_id == self.def.session_id {
                d.status = status;
                d.status_message = message;
                d.updated_ms = now_ms();
                if let Err(e) = self.ctx.store.put(&d) {
                    eprintln!("kenning: stream processor {}: {e}", d.name);
                }
            }
        }
    }

    fn governor(&self) -> &Governor {
        &self.ctx.governor
    }

    /// Connects once and analyses frames until the connection ends.
    fn connection(&mut self) -> ConnEnd {
        let starter = self
            .def
            .started_by
            .clone()
            .unwrap_or_else(|| self.def.created_by.clone());
        if !(self.ctx.key_active)(&starter.access_key) {
            return ConnEnd::Fatal(format!(
                "access key {} that started the processor is no longer active",
                starter.access_key
            ));
        }
        let collections = self.ctx.governor.collections().clone();
        let searcher = match collections.searcher(&self.def.collection_id) {
            Ok(s) => s,
            Err(e) => return ConnEnd::Fatal(format!("collection {}: {e}", self.def.collection_id)),
        };
        let mut source = match LiveSource::open(&self.input, &self.ctx.config.live) {
            Ok(s) => s,
            Err(e @ VideoError::Tool(_)) => return ConnEnd::Fatal(e.to_string()),
            Err(e) => return ConnEnd::Lost(e.to_string(), Duration::ZERO),
        };
        *self
            .live
            .interrupter
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(source.interrupter());
        if self.live.stop.is_set() {
            return ConnEnd::Stopped;
        }
        self.connections += 1;
        let started_at = Instant::now();
        let mut conn = Connection {
            fragment: String::new(),
            start: None,
            counted: (0, 0),
        };
        let mut tracker = Tracker::new(TrackerConfig {
            best_crops: TEMPLATES,
            ..TrackerConfig::default()
        });
        let end = loop {
            if self.live.stop.is_set() {
                break ConnEnd::Stopped;
            }
            let next = source.next_live();
            self.count_source(&source, &mut conn);
            match next {
                Ok(Some(frame)) => {
                    if conn.start.is_none() {
                        let at = frame.received;
                        conn.start = Some(at);
                        let ms = at
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        // Kinesis fragment numbers are increasing decimal strings.
                        conn.fragment = format!("{ms}{:03}", self.connections % 1000);
                        let was_failed = self.live.status().0 == Status::Failed;
                        self.live.set_status(
                            Status::Running,
                            was_failed.then(|| {
                                format!(
                                    "reconnected to source {} at {}",
                                    self.def.source,
                                    kenning_audit::format_time(ms)
                                )
                            }),
                        );
                    }
                    if let Err(m) = self.analyse(&searcher, &mut tracker, &conn, &frame, &starter) {
                        break ConnEnd::Fatal(m);
                    }
                }
                Ok(None) => match self.input {
                    LiveInput::File { looped: false, .. } => break ConnEnd::FileEnded,
                    _ => {
                        break ConnEnd::Lost(
                            "the source closed the stream".into(),
                            started_at.elapsed(),
                        )
                    }
                },
                Err(VideoError::Interrupted) => break ConnEnd::Stopped,
                Err(e @ VideoError::Tool(_)) => break ConnEnd::Fatal(e.to_string()),
                Err(e) => break ConnEnd::Lost(e.to_string(), started_at.elapsed()),
            }
        };
        *self
            .live
            .interrupter
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        drop(source);
        // A new connection starts new tracks.
        for t in tracker.finish() {
            self.end_track(&t);
        }
        self.track_base += self
            .tracks
            .keys()
            .map(|&k| u64::from(k) + 1)
            .max()
            .unwrap_or(0);
        self.tracks.clear();
        end
    }

    fn count_source(&self, source: &LiveSource, conn: &mut Connection) {
        let (received, skipped) = source.counts();
        let c = &self.live.counters;
        c.frames_in
            .fetch_add(received - conn.counted.0, Ordering::Relaxed);
        c.frames_skipped
            .fetch_add(skipped - conn.counted.1, Ordering::Relaxed);
        conn.counted = (received, skipped);
    }

    fn end_track(&mut self, t: &Track) {
        if let Some(lt) = self.tracks.get(&t.id) {
            self.ctx
                .tracks
                .publish(lt.event("TrackEnded", &self.def.name));
        }
    }

    /// Analyses one frame; `Err` is a reason to stop the processor.
    fn analyse(
        &mut self,
        searcher: &FaceSearcher<'_>,
        tracker: &mut Tracker,
        conn: &Connection,
        frame: &LiveFrame,
        starter: &kenning_video::jobs::Starter,
    ) -> Result<(), String> {
        let image = &frame.frame.image;
        let pipeline = self.ctx.governor.collections().pipeline();
        let mut faces = pipeline
            .detect(image)
            .map_err(|e| format!("face detection: {e}"))?;
        faces.truncate(100);
        let detected: Vec<Detected<'_>> = faces
            .iter()
            .map(|f| Detected {
                detail: &f.detail,
                pixel_box: f.detection.bbox,
            })
            .collect();
        let mut crops: Vec<(usize, RgbImage)> = Vec::new();
        let ended = tracker.update(frame.frame.timestamp_ms, thumbnail(image), &detected, |i| {
            let c = searcher.align(image, &faces[i]);
            crops.push((i, c.clone()));
            c
        });
        for t in &ended {
            self.end_track(t);
            self.tracks.remove(&t.id);
        }
        let ids = tracker.last_ids().to_vec();
        for &id in &ids {
            let base = self.track_base;
            let name = &self.def.name;
            let hub = &self.ctx.tracks;
            let t = self.tracks.entry(id).or_insert_with(|| {
                let t = LiveTrack {
                    id: base + u64::from(id),
                    first: frame.received,
                    last: frame.received,
                    sightings: 0,
                    templates: Vec::new(),
                    best: BTreeMap::new(),
                    announced: BTreeMap::new(),
                };
                hub.publish(t.event("TrackStarted", name));
                t
            });
            t.last = frame.received;
            t.sightings += 1;
        }
        // Embed a face while its track has few templates or when it is seen
        // markedly better than the worst of them.
        let gain = self.ctx.config.reembed_gain;
        let mut wanted: Vec<(usize, f32, RgbImage)> = Vec::new();
        for (i, crop) in crops {
            let q = quality(&faces[i].detail, &faces[i].detection.bbox);
            if self.tracks.get(&ids[i]).is_some_and(|t| t.wants(q, gain)) {
                wanted.push((i, q, crop));
            }
        }
        let threshold = self.def.face_match_threshold;
        let max = self.ctx.config.max_matches;
        if !wanted.is_empty() {
            let images: Vec<RgbImage> = wanted.iter().map(|w| w.2.clone()).collect();
            let embeddings = searcher
                .embed(&images)
                .map_err(|e| format!("embedding: {e}"))?;
            for ((i, q, _), e) in wanted.iter().zip(embeddings) {
                let Some(t) = self.tracks.get_mut(&ids[*i]) else {
                    continue;
                };
                let mut probes = vec![e.clone()];
                t.keep(*q, e);
                if t.templates.len() > 1 {
                    let kept: Vec<Vec<f32>> = t.templates.iter().map(|k| k.1.clone()).collect();
                    probes.push(searcher.mean(&kept));
                }
                // The face as seen now: its template is mostly as large.
                let pixels = Some(faces[*i].pixels());
                for probe in &probes {
                    let found = searcher
                        .search(probe, pixels, threshold, max)
                        .map_err(|e| {
                            format!("searching collection {}: {e}", self.def.collection_id)
                        })?;
                    for m in found {
                        keep_better(&mut t.best, m);
                    }
                }
            }
        }
        let offset = frame.frame.timestamp_ms as f64 / 1000.0;
        self.announce(conn, &ids, offset, starter)?;
        let c = &self.live.counters;
        c.frames_analysed.fetch_add(1, Ordering::Relaxed);
        c.faces.fetch_add(faces.len() as u64, Ordering::Relaxed);
        if !faces.is_empty() {
            let start = conn.start.unwrap_or(frame.received);
            let responses: Vec<(bool, Value)> = faces
                .iter()
                .zip(&ids)
                .map(|(f, id)| {
                    let matched: Vec<Value> = self
                        .tracks
                        .get(id)
                        .map(|t| {
                            t.matches(max)
                                .into_iter()
                                .map(|m| {
                                    let mut v = json!(m);
                                    if let Some(Some(r)) = t.announced.get(&m.face.face_id) {
                                        v["ReviewId"] = json!(r);
                                        v["ReviewStatus"] = json!("PENDING");
                                    }
                                    v
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        !matched.is_empty(),
                        json!({ "DetectedFace": f.detail, "MatchedFaces": matched }),
                    )
                })
                .collect();
            let record = |responses: Vec<&Value>| {
                json!({
                    "InputInformation": { "KinesisVideo": {
                        "StreamArn": self.def.input_arn,
                        "FragmentNumber": conn.fragment,
                        "ServerTimestamp": unix_secs(start),
                        "ProducerTimestamp": unix_secs(start),
                        "FrameOffsetInSeconds": offset,
                    }},
                    "StreamProcessorInformation": { "Status": Status::Running.as_str() },
                    "FaceSearchResponse": responses,
                })
                .to_string()
            };
            let full = record(responses.iter().map(|r| &r.1).collect());
            let matched: Vec<&Value> = responses.iter().filter(|r| r.0).map(|r| &r.1).collect();
            let matched = (!matched.is_empty()).then(|| record(matched));
            self.ctx.output.publish(&full, matched.as_deref());
            c.records.fetch_add(1, Ordering::Relaxed);
        }
        // Behind live: how long ago, on the source's clock, this frame was sent.
        let start = conn.start.unwrap_or(frame.received);
        let due = start + Duration::from_millis(frame.frame.timestamp_ms);
        let lag = SystemTime::now()
            .duration_since(due)
            .unwrap_or(Duration::ZERO)
            .max(frame.received_at.elapsed().min(Duration::from_secs(3600)));
        c.lag_us.store(lag.as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Audits the matches of this frame's tracks not audited before, as
    /// one search by the processor's starter under its case reference, and
    /// queues them for review when the collection's policy asks; reports
    /// them on the track feed. The record goes out only after this.
    fn announce(
        &mut self,
        conn: &Connection,
        ids: &[u32],
        offset: f64,
        starter: &kenning_video::jobs::Starter,
    ) -> Result<(), String> {
        let mut new: Vec<(u32, FaceMatch)> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for id in ids {
            if !seen.insert(*id) {
                continue;
            }
            if let Some(t) = self.tracks.get(id) {
                for m in t.best.values() {
                    if !t.announced.contains_key(&m.face.face_id) {
                        new.push((*id, m.clone()));
                    }
                }
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        if !(self.ctx.key_active)(&starter.access_key) {
            return Err(format!(
                "access key {} that started the processor is no longer active",
                starter.access_key
            ));
        }
        let mut caller = starter.caller();
        caller.case = self.def.case().map(str::to_owned);
        caller.purpose = self.def.created_by.purpose.clone();
        let mut entry = caller.entry("StreamFaceSearch");
        entry.collection = Some(self.def.collection_id.clone());
        let threshold = self.def.face_match_threshold;
        let policy = self
            .governor()
            .check_search(&caller, &mut entry, threshold, Medium::Stream)
            .map_err(|e| format!("{}: {}", e.kind, e.message))?;
        entry.candidates = new
            .iter()
            .map(|(_, m)| Candidate {
                face_id: Some(m.face.face_id.clone()),
                user_id: m.face.user_id.clone(),
                external_image_id: m.face.external_image_id.clone(),
                similarity: f64::from(m.similarity),
            })
            .collect();
        let frame_time = conn
            .start
            .map(|s| unix_secs(s) + offset)
            .unwrap_or_default();
        let mut details = Map::new();
        details.insert("StreamProcessor".into(), json!(self.def.name));
        details.insert("StreamProcessorArn".into(), json!(self.def.arn));
        details.insert("SessionId".into(), json!(self.def.session_id));
        details.insert("Source".into(), json!(self.def.input_arn));
        details.insert("Output".into(), json!(self.def.output_arn));
        details.insert("FrameTime".into(), json!(frame_time));
        details.insert("FragmentNumber".into(), json!(conn.fragment));
        details.insert("FrameOffsetInSeconds".into(), json!(offset));
        details.insert(
            "TrackIds".into(),
            json!(new
                .iter()
                .filter_map(|(id, _)| self.tracks.get(id).map(|t| t.id))
                .collect::<Vec<_>>()),
        );
        let reviews = self
            .governor()
            .complete_search(&caller, &policy, entry, details)
            .map_err(|e| format!("{}: {}", e.kind, e.message))?;
        let mut reviews = reviews.into_iter();
        let mut matched_tracks = Vec::new();
        for (id, m) in &new {
            if let Some(t) = self.tracks.get_mut(id) {
                t.announced.insert(m.face.face_id.clone(), reviews.next());
                if !matched_tracks.contains(id) {
                    matched_tracks.push(*id);
                }
            }
        }
        self.live
            .counters
            .matches
            .fetch_add(new.len() as u64, Ordering::Relaxed);
        for id in matched_tracks {
            if let Some(t) = self.tracks.get(&id) {
                self.ctx
                    .tracks
                    .publish(t.event("TrackMatched", &self.def.name));
            }
        }
        Ok(())
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
