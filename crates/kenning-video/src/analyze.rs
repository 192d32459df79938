//! The analysis itself, as a pipeline that keeps every core busy: detection
//! workers take frames from a [`FrameSource`] as they are decoded and detect
//! them side by side; the calling thread puts the results back in frame
//! order and tracks the faces; for a face search, each track is handed to
//! embedding workers as soon as it ends (embedded on its best crops by the
//! collection's recogniser and searched) while detection goes on, and at
//! the end tracks of one person are joined into one Person.Index.
//!
//! Nothing here writes anything: crops and embeddings live in memory until
//! the function returns, and only geometry, timestamps and matches leave it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use kenning_collections::api::FaceMatch;
use kenning_collections::FaceSearcher;
use kenning_core::FaceDetail;
use kenning_image::RgbImage;
use kenning_models::{Face, Pipeline};
use serde::{Deserialize, Serialize};

use crate::error::{Result, VideoError};
use crate::source::{Frame, FrameSource};
use crate::track::{thumbnail, Detected, Sighting, Track, Tracker, TrackerConfig};

/// How an analysis runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisConfig {
    /// Frames detected side by side, and tracks embedded side by side (one
    /// worker per thread for each).
    pub threads: usize,
    /// How faces are followed.
    pub tracker: TrackerConfig,
    /// Most face sightings one job may hold (bounds its memory).
    pub max_sightings: usize,
    /// Most collection faces reported per person.
    pub max_matches: usize,
    /// Tracks that never share a frame are one person when every pair of
    /// their crops' embeddings is at least this Similar (calibrated, 0-100).
    pub merge_similarity: f64,
    /// Tracks of faces never wider than this (pixels) are not joined to
    /// others: embeddings of tiny faces resemble each other.
    pub merge_min_width: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            tracker: TrackerConfig::default(),
            max_sightings: 2_000_000,
            max_matches: kenning_collections::DEFAULT_SEARCH_FACES,
            merge_similarity: 90.0,
            merge_min_width: 48.0,
        }
    }
}

/// Where a job's time went. The stages run side by side, so each is given
/// as the CPU time of the threads doing it (comparable on a busy machine),
/// except waits, which are wall time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StageTimes {
    /// Wall time from the job's start to its first decoded frame: probing
    /// the file, starting ffmpeg, opening the collection.
    pub start_ms: u64,
    /// Wall time detection workers waited for decoded frames (ffmpeg runs
    /// alongside, in a process of its own: high when decoding is the
    /// bottleneck).
    pub decode_ms: u64,
    /// CPU time detecting faces.
    pub detect_ms: u64,
    /// CPU time following faces and cutting out crops.
    pub track_ms: u64,
    /// CPU time embedding crops.
    pub embed_ms: u64,
    /// CPU time searching the collection and joining tracks.
    pub search_ms: u64,
    /// Frames analysed.
    pub frames: u64,
    /// Timestamp of the last frame analysed.
    pub last_frame_ms: u64,
}

/// CPU seconds this process and its waited-for children (ffmpeg) have used:
/// on a shared machine, a fairer measure of a job's cost than wall time.
#[allow(unsafe_code)]
pub fn process_cpu_seconds() -> f64 {
    let used = |who| {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return 0.0;
        }
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

/// CPU time the calling thread has used (ONNX Runtime runs these models
/// on the calling thread, so it is the model's time too).
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Time per stage, added to by every thread.
#[derive(Default)]
struct Clock {
    decode: AtomicU64,
    detect: AtomicU64,
    track: AtomicU64,
    embed: AtomicU64,
    search: AtomicU64,
}

impl Clock {
    fn add(stage: &AtomicU64, d: Duration) {
        stage.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Runs `f`, adding the calling thread's CPU time to `stage`.
    fn cpu<T>(stage: &AtomicU64, f: impl FnOnce() -> T) -> T {
        let t = thread_cpu();
        let out = f();
        Self::add(stage, thread_cpu().saturating_sub(t));
        out
    }

    fn into_times(self, start: Option<Duration>, frames: u64, last_frame_ms: u64) -> StageTimes {
        let ms = |a: AtomicU64| a.into_inner() / 1000;
        StageTimes {
            start_ms: start.map_or(0, |d| d.as_millis() as u64),
            decode_ms: ms(self.decode),
            detect_ms: ms(self.detect),
            track_ms: ms(self.track),
            embed_ms: ms(self.embed),
            search_ms: ms(self.search),
            frames,
            last_frame_ms,
        }
    }
}

/// One face in one frame (GetFaceDetection's FaceDetection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceDetection {
    /// Milliseconds from the start of the video.
    pub timestamp: u64,
    /// The face.
    pub face: FaceDetail,
}

/// One person of a face search: where and when they were seen, and the
/// collection faces they match (none for someone the collection does not
/// hold: then only geometry and timestamps remain).
#[derive(Debug, Clone)]
pub struct Person {
    /// Person.Index, in order of first appearance.
    pub index: u64,
    /// Every sighting, in time order.
    pub sightings: Vec<Sighting>,
    /// Matches, best first.
    pub matches: Vec<FaceMatch>,
}

/// Called after each analysed frame with its timestamp; `false` stops the run.
pub type Progress<'a> = &'a (dyn Fn(u64) -> bool + Sync);

/// What [`detect_frames`] saw.
struct Seen {
    /// When the first frame arrived, from the start.
    first_frame: Option<Duration>,
    frames: u64,
    last_frame_ms: u64,
}

/// A frame, numbered in decoding order, with its faces.
type Numbered = (u64, Frame, Vec<Face>);

/// Detects every frame of `source` on `threads` workers (each takes the next
/// decoded frame, so decoding and detection overlap) and calls `each` on the
/// calling thread with every frame and its faces, in frame order. Stops at
/// the first error, of the source, the detector or `each`.
fn detect_frames(
    source: &mut dyn FrameSource,
    pipeline: &Pipeline,
    threads: usize,
    clock: &Clock,
    mut each: impl FnMut(&Frame, &[Face]) -> Result<()>,
) -> Result<Seen> {
    let began = Instant::now();
    let first_frame: Mutex<Option<Duration>> = Mutex::new(None);
    // The source and the number of the next frame it gives.
    let source = Mutex::new((source, 0u64));
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::sync_channel::<Result<Numbered>>(threads * 2);
    let worker = |tx: mpsc::SyncSender<Result<Numbered>>| {
        while !stop.load(Ordering::Relaxed) {
            let (n, next) = {
                let mut s = source.lock().unwrap_or_else(|e| e.into_inner());
                let t = Instant::now();
                let next = s.0.next_frame();
                Clock::add(&clock.decode, t.elapsed());
                s.1 += 1;
                (s.1 - 1, next)
            };
            let frame = match next {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            };
            first_frame
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| began.elapsed());
            let faces = Clock::cpu(&clock.detect, || pipeline.detect(&frame.image));
            let item = faces.map(|f| (n, frame, f)).map_err(VideoError::from);
            if tx.send(item).is_err() {
                break;
            }
        }
    };
    let mut seen = Seen {
        first_frame: None,
        frames: 0,
        last_frame_ms: 0,
    };
    let outcome = std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let tx = tx.clone();
            s.spawn(|| worker(tx));
        }
        drop(tx);
        // Results arrive out of order (workers finish at different times);
        // at most a few frames per worker wait here for an earlier one.
        let mut waiting: BTreeMap<u64, (Frame, Vec<Face>)> = BTreeMap::new();
        let outcome = (|| {
            for item in &rx {
                let (n, frame, faces) = item?;
                waiting.insert(n, (frame, faces));
                while let Some((frame, faces)) = waiting.remove(&seen.frames) {
                    each(&frame, &faces)?;
                    seen.frames += 1;
                    seen.last_frame_ms = frame.timestamp_ms;
                }
            }
            Ok(())
        })();
        // Workers blocked on a full channel see it closed and stop.
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        outcome
    });
    seen.first_frame = first_frame.into_inner().unwrap_or_else(|e| e.into_inner());
    outcome.map(|()| seen)
}

/// Face detection: every face of every sampled frame, in time order.
pub fn detect_faces(
    source: &mut dyn FrameSource,
    pipeline: &Pipeline,
    config: &AnalysisConfig,
    progress: Progress<'_>,
) -> Result<(Vec<FaceDetection>, StageTimes)> {
    let clock = Clock::default();
    let mut out = Vec::new();
    let seen = detect_frames(source, pipeline, config.threads, &clock, |frame, faces| {
        out.extend(faces.iter().map(|f| FaceDetection {
            timestamp: frame.timestamp_ms,
            face: f.detail.clone(),
        }));
        check_size(out.len(), config)?;
        if !progress(frame.timestamp_ms) {
            return Err(VideoError::Interrupted);
        }
        Ok(())
    })?;
    let times = clock.into_times(seen.first_frame, seen.frames, seen.last_frame_ms);
    Ok((out, times))
}

fn check_size(n: usize, config: &AnalysisConfig) -> Result<()> {
    if n > config.max_sightings {
        return Err(VideoError::TooLarge(format!(
            "the video holds more than {} face sightings, the most one job keeps",
            config.max_sightings
        )));
    }
    Ok(())
}

/// A finished track with its embeddings and matches.
struct Embedded {
    track: Track,
    embeddings: Vec<Vec<f32>>,
    matches: Vec<FaceMatch>,
}

/// Embeds a track's crops (dropping them) and searches each embedding.
fn embed_and_search(
    searcher: &FaceSearcher<'_>,
    mut track: Track,
    threshold: f64,
    config: &AnalysisConfig,
    clock: &Clock,
) -> Result<Embedded> {
    let crops: Vec<RgbImage> = track.crops.drain(..).map(|(_, c)| c).collect();
    let embeddings = Clock::cpu(&clock.embed, || -> Result<_> {
        let mut e = searcher.embed(&crops)?;
        // The track's template: the mean of its crops' embeddings, steadier
        // than any one of them.
        if e.len() > 1 {
            e.push(searcher.mean(&e));
        }
        Ok(e)
    })?;
    drop(crops);
    let matches = Clock::cpu(&clock.search, || -> Result<_> {
        let mut best: BTreeMap<String, FaceMatch> = BTreeMap::new();
        for e in &embeddings {
            let pixels = Some(track.max_side);
            for m in searcher.search(e, pixels, threshold, config.max_matches)? {
                keep_better(&mut best, m);
            }
        }
        Ok(best.into_values().collect())
    })?;
    Ok(Embedded {
        track,
        embeddings,
        matches,
    })
}

/// Keeps `m` in `best` (by FaceId) unless a match of that face at least as
/// similar is already there.
pub fn keep_better(best: &mut BTreeMap<String, FaceMatch>, m: FaceMatch) {
    match best.get(&m.face.face_id) {
        Some(old) if old.similarity >= m.similarity => {}
        _ => {
            best.insert(m.face.face_id.clone(), m);
        }
    }
}

/// Face search: persons (tracks joined by identity) with their matches.
/// Frames are detected, aligned, embedded and scored with the collection's
/// own recogniser (the searcher's), whatever the service's default.
pub fn search_faces(
    source: &mut dyn FrameSource,
    searcher: &FaceSearcher<'_>,
    threshold: f64,
    config: &AnalysisConfig,
    progress: Progress<'_>,
) -> Result<(Vec<Person>, StageTimes)> {
    let clock = Clock::default();
    let threads = config.threads.max(1);
    // Ended tracks go to the embedding workers at once: they run while
    // detection goes on, and a track's crops are dropped once embedded.
    let (ended_tx, ended_rx) = mpsc::channel::<Track>();
    let ended_rx = Mutex::new(ended_rx);
    let failed = AtomicBool::new(false);
    let embedder = || -> Result<Vec<Embedded>> {
        let mut done = Vec::new();
        loop {
            let next = ended_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(track) = next else {
                return Ok(done);
            };
            match embed_and_search(searcher, track, threshold, config, &clock) {
                Ok(e) => done.push(e),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    };
    let (detected, embedded) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(embedder)).collect();
        let mut tracker = Tracker::new(config.tracker.clone());
        let mut sightings = 0usize;
        let detected = detect_frames(
            source,
            searcher.pipeline(),
            threads,
            &clock,
            |frame, faces| {
                if failed.load(Ordering::Relaxed) {
                    // An embedding worker's error is the one reported.
                    return Err(VideoError::Interrupted);
                }
                sightings += faces.len();
                check_size(sightings, config)?;
                let ended = Clock::cpu(&clock.track, || {
                    let detected: Vec<Detected<'_>> = faces
                        .iter()
                        .map(|f| Detected {
                            detail: &f.detail,
                            pixel_box: f.detection.bbox,
                        })
                        .collect();
                    tracker.update(
                        frame.timestamp_ms,
                        thumbnail(&frame.image),
                        &detected,
                        |i| searcher.align(&frame.image, &faces[i]),
                    )
                });
                for t in ended {
                    let _ = ended_tx.send(t);
                }
                if !progress(frame.timestamp_ms) {
                    return Err(VideoError::Interrupted);
                }
                Ok(())
            },
        );
        if detected.is_ok() {
            for t in tracker.finish() {
                let _ = ended_tx.send(t);
            }
        }
        drop(ended_tx);
        let embedded: Vec<Result<Vec<Embedded>>> = workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(VideoError::Tool("embedding panicked".into())))
            })
            .collect();
        (detected, embedded)
    });
    let mut done = Vec::new();
    for e in embedded {
        done.extend(e?);
    }
    let seen = detected?;
    // Workers finish tracks in any order; join them in order of track.
    done.sort_by_key(|e| e.track.id);
    let persons = Clock::cpu(&clock.search, || join_tracks(searcher, done, config))?;
    let times = clock.into_times(seen.first_frame, seen.frames, seen.last_frame_ms);
    Ok((persons, times))
}

/// Joins tracks of one person: pairs of tracks that never share a frame,
/// most similar first, when every embedding of the one is at least
/// `merge_similarity` Similar to every embedding of the other (complete
/// linkage, so a chain of look-alikes never joins two people). Persons are
/// numbered by first appearance.
fn join_tracks(
    searcher: &FaceSearcher<'_>,
    tracks: Vec<Embedded>,
    config: &AnalysisConfig,
) -> Result<Vec<Person>> {
    let n = tracks.len();
    // The least Similarity between the two tracks' embeddings, for pairs
    // that may join.
    let mut least: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&tracks[i], &tracks[j]);
            if a.track.max_width < config.merge_min_width
                || b.track.max_width < config.merge_min_width
                || a.embeddings.is_empty()
                || b.embeddings.is_empty()
                // Very long videos: only tracks within ten minutes of each other.
                || (n > 2000 && a.track.first_ms().abs_diff(b.track.first_ms()) > 600_000)
            {
                continue;
            }
            let mut worst = f64::MAX;
            let pixels = [Some(a.track.max_side), Some(b.track.max_side)];
            for x in &a.embeddings {
                for y in &b.embeddings {
                    worst = worst.min(searcher.similarity(x, y, pixels)?);
                }
            }
            if worst >= config.merge_similarity {
                least.insert((i, j), worst);
            }
        }
    }
    let mut pairs: Vec<(f64, usize, usize)> = least.iter().map(|(&(i, j), &s)| (s, i, j)).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut cluster: Vec<usize> = (0..n).collect();
    let mut times: Vec<Vec<u64>> = tracks
        .iter()
        .map(|t| t.track.sightings.iter().map(|s| s.timestamp_ms).collect())
        .collect();
    for (_, i, j) in pairs {
        let (ri, rj) = (cluster[i], cluster[j]);
        if ri == rj || shares_a_frame(&times[ri], &times[rj]) {
            continue;
        }
        let linked = members[ri].iter().all(|&a| {
            members[rj]
                .iter()
                .all(|&b| least.contains_key(&(a.min(b), a.max(b))))
        });
        if !linked {
            continue;
        }
        let moved = std::mem::take(&mut members[rj]);
        for &m in &moved {
            cluster[m] = ri;
        }
        members[ri].extend(moved);
        let mut merged = std::mem::take(&mut times[ri]);
        merged.extend(std::mem::take(&mut times[rj]));
        merged.sort_unstable();
        times[ri] = merged;
    }
    let mut groups: BTreeMap<usize, Vec<Embedded>> = BTreeMap::new();
    for (i, t) in tracks.into_iter().enumerate() {
        groups.entry(cluster[i]).or_default().push(t);
    }
    let mut persons: Vec<Person> = groups
        .into_values()
        .map(|group| {
            let mut best = BTreeMap::new();
            let mut sightings = Vec::new();
            for e in group {
                for m in e.matches {
                    keep_better(&mut best, m);
                }
                sightings.extend(e.track.sightings);
            }
            sightings.sort_by_key(|s| s.timestamp_ms);
            let mut matches: Vec<FaceMatch> = best.into_values().collect();
            matches.sort_by(|a, b| {
                b.similarity
                    .total_cmp(&a.similarity)
                    .then_with(|| a.face.face_id.cmp(&b.face.face_id))
            });
            matches.truncate(config.max_matches);
            Person {
                index: 0,
                sightings,
                matches,
            }
        })
        .collect();
    persons.sort_by_key(|p| p.sightings.first().map_or(0, |s| s.timestamp_ms));
    for (i, p) in persons.iter_mut().enumerate() {
        p.index = i as u64;
    }
    Ok(persons)
}

/// Whether two sorted timestamp lists share a value.
fn shares_a_frame(a: &[u64], b: &[u64]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::shares_a_frame;

    #[test]
    fn frames_shared() {
        assert!(shares_a_frame(&[0, 200, 400], &[400, 600]));
        assert!(!shares_a_frame(&[0, 200, 400], &[100, 600]));
        assert!(!shares_a_frame(&[], &[1]));
    }
}
