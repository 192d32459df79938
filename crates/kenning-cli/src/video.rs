//! `kenning video detect|search FILE`: a stored-video job run in-process,
//! exactly as the service runs it (same checks, policy, audit and job
//! store: the data directory's, or the database's with `--database`), with
//! a progress bar; prints the Get response with all pages
//! merged, or one line per person with `--tracks`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use kenning_accountability::Caller;
use kenning_video::{Buckets, Notify, VideoConfig, VideoService};
use serde_json::{json, Value};

use crate::commands::{wire, Context};
use crate::gallery::DataArgs;

/// The bucket a file given on the command line is read from.
const BUCKET: &str = "command-line";

/// What every video subcommand takes.
#[derive(Args)]
pub struct VideoArgs {
    /// The video file.
    file: PathBuf,
    /// Frames analysed per second of video.
    #[arg(long, default_value_t = 5.0)]
    fps: f64,
    /// Print how long each stage took (to stderr).
    #[arg(long)]
    stats: bool,
}

/// `kenning video ...`
#[derive(Subcommand)]
pub enum VideoCommand {
    /// Detect faces in a video (StartFaceDetection, then GetFaceDetection).
    Detect(VideoArgs),
    /// Search a collection for the people in a video (StartFaceSearch, then GetFaceSearch).
    Search {
        /// The collection to search.
        #[arg(long)]
        collection: String,
        /// Minimum Similarity (0-100) for a match.
        #[arg(long, default_value_t = kenning_collections::DEFAULT_THRESHOLD)]
        threshold: f64,
        /// One line per person (first seen, last seen, best match) instead of the response.
        #[arg(long)]
        tracks: bool,
        #[command(flatten)]
        video: VideoArgs,
    },
}

pub fn run(ctx: &Context, data: &DataArgs, cmd: VideoCommand) -> Result<i32> {
    let began = Instant::now();
    let (args, start, tracks) = match &cmd {
        VideoCommand::Detect(a) => (a, json!({}), false),
        VideoCommand::Search {
            collection,
            threshold,
            tracks,
            video,
        } => (
            video,
            json!({ "CollectionId": collection, "FaceMatchThreshold": threshold }),
            *tracks,
        ),
    };
    let search = matches!(cmd, VideoCommand::Search { .. });
    if !(args.fps > 0.0 && args.fps <= 60.0) {
        bail!("InvalidParameterException: --fps must be between 0 and 60");
    }
    let file = args
        .file
        .canonicalize()
        .with_context(|| format!("InvalidS3ObjectException: {}", args.file.display()))?;
    let (dir, name) = (
        file.parent().unwrap_or(Path::new("/")),
        file.file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("the file name is not UTF-8"))?,
    );
    let (governor, caller, jobs) = data.governor_and_jobs(Arc::new(ctx.pipeline()?))?;
    let governor = Arc::new(governor);
    let mut buckets = Buckets::new();
    buckets.add(BUCKET, dir).map_err(wire)?;
    let mut config = VideoConfig::default();
    config.sampling.fps = args.fps;
    config.analysis.threads = ctx.threads.max(1);
    config.analysis.tracker.best_crops = config.analysis.tracker.best_crops.max(1);
    // In the foreground nothing competes with the job; jobs the service
    // left unfinished in this data directory (or database) are the
    // service's to resume.
    config.niceness = 0;
    config.resume = false;
    let service = match jobs {
        Some(store) => {
            VideoService::with_store(store, governor, buckets, Notify::default(), config)
        }
        None => VideoService::open(&data.data, governor, buckets, Notify::default(), config),
    }
    .map_err(wire)?;
    let stats = args.stats.then(|| Startup {
        seconds: began.elapsed().as_secs_f64(),
        cpu_seconds: kenning_video::analyze::process_cpu_seconds(),
    });
    let result = run_job(&service, &caller, search, start, name, stats);
    service.shutdown();
    let merged = result?;
    let failed = merged["JobStatus"] != "SUCCEEDED";
    if tracks && !failed {
        for line in person_lines(&merged) {
            println!("{line}");
        }
    } else {
        println!("{}", serde_json::to_string(&merged)?);
    }
    Ok(i32::from(failed))
}

fn call(service: &VideoService, caller: &Caller, op: &str, body: Value) -> Result<Value> {
    service
        .call(caller, op, body)
        .map_err(|e| anyhow!("{}: {}", e.kind, e.message))
}

/// What it took before the job started: loading the models, opening the
/// data directory.
struct Startup {
    seconds: f64,
    cpu_seconds: f64,
}

fn run_job(
    service: &VideoService,
    caller: &Caller,
    search: bool,
    mut start: Value,
    name: &str,
    stats: Option<Startup>,
) -> Result<Value> {
    let (start_op, get_op, list) = if search {
        ("StartFaceSearch", "GetFaceSearch", "Persons")
    } else {
        ("StartFaceDetection", "GetFaceDetection", "Faces")
    };
    start["Video"] = json!({ "S3Object": { "Bucket": BUCKET, "Name": name } });
    let began = Instant::now();
    let cpu = kenning_video::analyze::process_cpu_seconds();
    let job_id = call(service, caller, start_op, start)?["JobId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {percent}% ({elapsed}, about {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(name.to_owned());
    loop {
        let job = service
            .job(&job_id)
            .map_err(wire)?
            .ok_or_else(|| anyhow!("job {job_id} vanished"))?;
        if job.status != kenning_video::jobs::JobStatus::InProgress {
            break;
        }
        if let Some(p) = service.progress(&job_id) {
            bar.set_position((p * 1000.0) as u64);
        }
        // Short: the wait adds to the job's wall time (and the benchmark's).
        std::thread::sleep(Duration::from_millis(10));
    }
    bar.finish_and_clear();
    let wall = began.elapsed();
    let cpu = kenning_video::analyze::process_cpu_seconds() - cpu;
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut merged = loop {
        let mut body = json!({ "JobId": job_id });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let mut page = call(service, caller, get_op, body)?;
        if let Some(a) = page.get_mut(list).and_then(Value::as_array_mut) {
            items.append(a);
        }
        token = page
            .get("NextToken")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if token.is_none() {
            break page;
        }
    };
    if let Some(m) = merged.as_object_mut() {
        m.remove("NextToken");
    }
    merged[list] = Value::Array(items);
    if let Some(startup) = stats {
        let job = service.job(&job_id).map_err(wire)?;
        let video_s = merged["VideoMetadata"]["DurationMillis"]
            .as_f64()
            .unwrap_or(0.0)
            / 1000.0;
        let secs = wall.as_secs_f64();
        eprintln!(
            "{}",
            json!({
                "File": name,
                "VideoSeconds": video_s,
                "WallSeconds": secs,
                "RealTimeFactor": if secs > 0.0 { video_s / secs } else { 0.0 },
                "CpuSeconds": cpu,
                "StartupSeconds": startup.seconds,
                "StartupCpuSeconds": startup.cpu_seconds,
                "Stages": job.and_then(|j| j.stage_times),
            })
        );
    }
    Ok(merged)
}

/// One line per person: first and last sighting and best match.
fn person_lines(merged: &Value) -> Vec<String> {
    let mut persons: std::collections::BTreeMap<u64, (u64, u64, usize, Value)> =
        std::collections::BTreeMap::new();
    for p in merged["Persons"].as_array().into_iter().flatten() {
        let index = p["Person"]["Index"].as_u64().unwrap_or(0);
        let t = p["Timestamp"].as_u64().unwrap_or(0);
        let best = p["FaceMatches"]
            .as_array()
            .and_then(|m| m.first())
            .map(|m| {
                json!({
                    "FaceId": m["Face"]["FaceId"],
                    "ExternalImageId": m["Face"]["ExternalImageId"],
                    "UserId": m["Face"]["UserId"],
                    "Similarity": m["Similarity"],
                })
            })
            .unwrap_or(Value::Null);
        let e = persons.entry(index).or_insert((t, t, 0, best));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
        e.2 += 1;
    }
    persons
        .into_iter()
        .map(|(index, (first, last, n, best))| {
            json!({
                "Index": index,
                "FirstSeenMillis": first,
                "LastSeenMillis": last,
                "Sightings": n,
                "BestMatch": best,
            })
            .to_string()
        })
        .collect()
}
