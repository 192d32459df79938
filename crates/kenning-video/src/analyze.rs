//! The analysis itself: frames from a [`FrameSource`] are detected in
//! parallel batches; for a face search they are then tracked, each track is
//! embedded on its best crops by the collection's recogniser and searched,
//! and tracks of one person are joined into one Person.Index.
//!
//! Nothing here writes anything: crops and embeddings live in memory until
//! the function returns, and only geometry, timestamps and matches leave it.

use std::collections::BTreeMap;
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
    /// Frames detected at once (one per thread).
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

/// Wall time spent in each stage, and how much video it covered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StageTimes {
    /// Waiting for decoded frames (ffmpeg runs alongside).
    pub decode_ms: u64,
    /// Detecting faces.
    pub detect_ms: u64,
    /// Following faces and cutting out crops.
    pub track_ms: u64,
    /// Embedding crops.
    pub embed_ms: u64,
    /// Searching the collection and joining tracks.
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

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
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

/// Reads up to `n` frames, timing the wait.
fn next_batch(
    source: &mut dyn FrameSource,
    n: usize,
    times: &mut StageTimes,
) -> Result<Vec<Frame>> {
    let t = Instant::now();
    let mut batch = Vec::with_capacity(n);
    while batch.len() < n {
        match source.next_frame()? {
            Some(f) => batch.push(f),
            None => break,
        }
    }
    times.decode_ms += ms(t.elapsed());
    Ok(batch)
}

/// Detects the faces of each frame, one thread per frame.
fn detect_batch(
    pipeline: &Pipeline,
    batch: &[Frame],
    times: &mut StageTimes,
) -> Result<Vec<Vec<Face>>> {
    let t = Instant::now();
    let found: Vec<Result<Vec<Face>>> = std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .iter()
            .map(|f| s.spawn(|| pipeline.detect(&f.image).map_err(VideoError::from)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(VideoError::Tool("face detection panicked".into())))
            })
            .collect()
    });
    times.detect_ms += ms(t.elapsed());
    times.frames += batch.len() as u64;
    if let Some(last) = batch.last() {
        times.last_frame_ms = last.timestamp_ms;
    }
    found.into_iter().collect()
}

/// Face detection: every face of every sampled frame, in time order.
pub fn detect_faces(
    source: &mut dyn FrameSource,
    pipeline: &Pipeline,
    config: &AnalysisConfig,
    progress: Progress<'_>,
) -> Result<(Vec<FaceDetection>, StageTimes)> {
    let mut times = StageTimes::default();
    let mut out = Vec::new();
    loop {
        let batch = next_batch(source, config.threads.max(1), &mut times)?;
        if batch.is_empty() {
            break;
        }
        for (frame, faces) in batch
            .iter()
            .zip(detect_batch(pipeline, &batch, &mut times)?)
        {
            out.extend(faces.into_iter().map(|f| FaceDetection {
                timestamp: frame.timestamp_ms,
                face: f.detail,
            }));
            check_size(out.len(), config)?;
            if !progress(frame.timestamp_ms) {
                return Err(VideoError::Interrupted);
            }
        }
    }
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

/// Embeds the tracks' crops (split over threads) and searches each embedding;
/// the crops are dropped here.
fn embed_and_search(
    searcher: &FaceSearcher<'_>,
    tracks: Vec<Track>,
    threshold: f64,
    config: &AnalysisConfig,
    times: &mut StageTimes,
) -> Result<Vec<Embedded>> {
    let t = Instant::now();
    let threads = config.threads.max(1);
    let mut groups: Vec<Vec<Track>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, track) in tracks.into_iter().enumerate() {
        groups[i % threads].push(track);
    }
    type Group = Vec<(Track, Vec<Vec<f32>>)>;
    let embedded: Vec<Result<Group>> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                s.spawn(move || {
                    group
                        .into_iter()
                        .map(|mut track| {
                            let crops: Vec<RgbImage> =
                                track.crops.drain(..).map(|(_, c)| c).collect();
                            let mut e = searcher.embed(&crops)?;
                            // The track's template: the mean of its crops'
                            // embeddings, steadier than any one of them.
                            if e.len() > 1 {
                                e.push(searcher.mean(&e));
                            }
                            Ok((track, e))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(VideoError::Tool("embedding panicked".into())))
            })
            .collect()
    });
    times.embed_ms += ms(t.elapsed());
    let t = Instant::now();
    let mut out = Vec::new();
    for group in embedded {
        for (track, embeddings) in group? {
            let mut best: BTreeMap<String, FaceMatch> = BTreeMap::new();
            for e in &embeddings {
                for m in searcher.search(e, threshold, config.max_matches)? {
                    keep_better(&mut best, m);
                }
            }
            out.push(Embedded {
                track,
                embeddings,
                matches: best.into_values().collect(),
            });
        }
    }
    times.search_ms += ms(t.elapsed());
    Ok(out)
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
    let mut times = StageTimes::default();
    let mut tracker = Tracker::new(config.tracker.clone());
    let mut ended: Vec<Track> = Vec::new();
    let mut done: Vec<Embedded> = Vec::new();
    let mut sightings = 0usize;
    // Embed finished tracks in batches big enough to keep every thread busy.
    let batch_tracks = 8 * config.threads.max(1);
    loop {
        let batch = next_batch(source, config.threads.max(1), &mut times)?;
        if batch.is_empty() {
            break;
        }
        let faces = detect_batch(searcher.pipeline(), &batch, &mut times)?;
        for (frame, faces) in batch.iter().zip(&faces) {
            let t = Instant::now();
            let detected: Vec<Detected<'_>> = faces
                .iter()
                .map(|f| Detected {
                    detail: &f.detail,
                    pixel_box: f.detection.bbox,
                })
                .collect();
            sightings += detected.len();
            check_size(sightings, config)?;
            ended.extend(tracker.update(
                frame.timestamp_ms,
                thumbnail(&frame.image),
                &detected,
                |i| searcher.align(&frame.image, &faces[i]),
            ));
            times.track_ms += ms(t.elapsed());
            if !progress(frame.timestamp_ms) {
                return Err(VideoError::Interrupted);
            }
        }
        if ended.len() >= batch_tracks {
            done.extend(embed_and_search(
                searcher,
                std::mem::take(&mut ended),
                threshold,
                config,
                &mut times,
            )?);
        }
    }
    ended.extend(tracker.finish());
    done.extend(embed_and_search(
        searcher, ended, threshold, config, &mut times,
    )?);
    let t = Instant::now();
    let persons = join_tracks(searcher, done, config)?;
    times.search_ms += ms(t.elapsed());
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
            for x in &a.embeddings {
                for y in &b.embeddings {
                    worst = worst.min(searcher.similarity(x, y)?);
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
