//! Frames from video: the [`FrameSource`] trait the analysis reads from, and
//! [`FfmpegSource`], which runs `ffmpeg` as a child process and reads raw RGB
//! frames from its standard output, sampled at a fixed rate.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kenning_image::RgbImage;

use crate::error::{Result, VideoError};
use crate::probe::{missing_tool, Probe};

/// One decoded frame.
pub struct Frame {
    /// Position among the frames the source delivered (0, 1, ...).
    pub index: u64,
    /// Milliseconds from the start of the video.
    pub timestamp_ms: u64,
    /// The pixels.
    pub image: RgbImage,
}

/// Where frames come from: a stored file now, live sources later.
pub trait FrameSource: Send {
    /// The next frame, or `None` at the end. An error ends the source.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
}

/// How frames are taken from a video.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Frames analysed per second of video (a video with fewer frames per
    /// second gives every frame).
    pub fps: f64,
    /// Frames are scaled down (never up) so the longer side is at most this.
    pub max_side: u32,
    /// A source that yields no frame for this long is stopped.
    pub stall_timeout: Duration,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            fps: 5.0,
            max_side: 1920,
            stall_timeout: Duration::from_secs(120),
        }
    }
}

/// The ffmpeg `select` filter that keeps frames at most `fps` per second:
/// a frame is kept when at least one period (less half a source frame, so a
/// video of exactly `fps` keeps every frame despite timestamp jitter) has
/// passed since the last kept one (or time jumped back as far: a live
/// source that restarts its clock keeps being sampled). `None` when every
/// frame is kept.
pub fn sample_filter(source_fps: f64, fps: f64) -> Option<String> {
    if fps <= 0.0 || (source_fps > 0.0 && source_fps <= fps * 1.001) {
        return None;
    }
    let period = 1.0 / fps;
    let slack = if source_fps > 0.0 {
        (0.5 / source_fps).min(period / 2.0)
    } else {
        period / 10.0
    };
    Some(format!(
        "select='isnan(prev_selected_t)+gte(abs(t-prev_selected_t)\\,{:.6})'",
        period - slack
    ))
}

/// The size frames are delivered at: the displayed size scaled down so the
/// longer side is at most `max_side`, each side even.
pub fn output_size(width: u64, height: u64, max_side: u32) -> (u32, u32) {
    let longer = width.max(height).max(1) as f64;
    let s = (f64::from(max_side.max(16)) / longer).min(1.0);
    let even = |v: u64| (((v as f64 * s).round() as u32) / 2 * 2).max(2);
    (even(width), even(height))
}

/// A video file decoded by an `ffmpeg` child process.
pub struct FfmpegSource {
    child: Child,
    frames: Receiver<Result<Frame>>,
    reader: Option<JoinHandle<()>>,
    stall_timeout: Duration,
    done: bool,
}

/// What the stderr reader learned.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) errors: Vec<String>,
}

impl FfmpegSource {
    /// Starts decoding `path` (already probed as `probe`).
    pub fn open(path: &Path, probe: &Probe, config: &SamplingConfig) -> Result<Self> {
        let m = &probe.metadata;
        let (w, h) = output_size(m.frame_width, m.frame_height, config.max_side);
        let mut filters = Vec::new();
        if let Some(select) = sample_filter(probe.fps, config.fps) {
            filters.push(select);
        }
        filters.push(format!("scale={w}:{h}:flags=bilinear"));
        let d = Decoder::spawn(
            [OsStr::new("-i"), path.as_os_str()],
            filters,
            &["-pix_fmt", "rgb24", "-f", "rawvideo"],
        )?;
        let (tx, rx) = mpsc::sync_channel(2);
        let facts = Facts {
            path: path.to_path_buf(),
            width: w,
            height: h,
            start_secs: probe.start_secs,
            end_secs: probe.video_end_secs,
            fps: if probe.fps > 0.0 && probe.fps < config.fps {
                probe.fps
            } else {
                config.fps
            },
        };
        let (stdout, ts, log) = (d.stdout, d.timestamps, d.log);
        let reader = std::thread::spawn(move || read_frames(stdout, &ts, &tx, &facts, &log));
        Ok(Self {
            child: d.child,
            frames: rx,
            reader: Some(reader),
            stall_timeout: config.stall_timeout,
            done: false,
        })
    }
}

struct Facts {
    path: std::path::PathBuf,
    width: u32,
    height: u32,
    start_secs: f64,
    end_secs: Option<f64>,
    fps: f64,
}

/// ffmpeg's options for a child: no keyboard, banner or progress, and the
/// log level (which follows).
const QUIET: [&str; 4] = ["-nostdin", "-hide_banner", "-nostats", "-loglevel"];

/// An `ffmpeg` child decoding the first video stream of its input to its
/// standard output, with its log read on a thread.
pub(crate) struct Decoder {
    /// The process.
    pub(crate) child: Child,
    /// Where the frames come out.
    pub(crate) stdout: ChildStdout,
    /// Each frame's timestamp in seconds (from `showinfo`), in order.
    pub(crate) timestamps: Receiver<f64>,
    /// What ffmpeg said was wrong.
    pub(crate) log: Arc<Mutex<Log>>,
}

impl Decoder {
    /// Runs ffmpeg with the `input` options (ending with `-i INPUT`) on
    /// the first video stream only, through `filters` and `showinfo` (which
    /// logs the timestamps), frames written to stdout as the `output`
    /// options (codec and format) say.
    pub(crate) fn spawn<I: AsRef<OsStr>>(
        input: impl IntoIterator<Item = I>,
        mut filters: Vec<String>,
        output: &[&str],
    ) -> Result<Self> {
        filters.push("showinfo".into());
        let mut cmd = Command::new("ffmpeg");
        cmd.args(QUIET)
            .arg("level+info")
            .args(input)
            .args(["-map", "0:v:0", "-an", "-sn", "-dn", "-vf"])
            .arg(filters.join(","))
            .args(["-fps_mode", "passthrough"])
            .args(output)
            .arg("pipe:1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| missing_tool("ffmpeg", &e))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (ts_tx, timestamps) = mpsc::channel::<f64>();
        let log = Arc::new(Mutex::new(Log::default()));
        let log_writer = log.clone();
        let reading = std::thread::Builder::new()
            .name("kenning-ffmpeg-log".into())
            .spawn(move || read_log(stderr, &ts_tx, &log_writer));
        if let Err(e) = reading {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VideoError::Tool(e.to_string()));
        }
        Ok(Self {
            child,
            stdout,
            timestamps,
            log,
        })
    }
}

/// Reads ffmpeg's log: frame timestamps from `showinfo`, and error lines.
fn read_log(stderr: impl Read, ts: &mpsc::Sender<f64>, log: &Mutex<Log>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains("Parsed_showinfo") && line.contains(" n:") {
            if let Some(t) = line
                .split("pts_time:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|t| t.parse::<f64>().ok())
            {
                let _ = ts.send(t);
            }
        } else if line.contains("[error]") || line.contains("[fatal]") {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.errors.len() < 20 {
                log.errors.push(line.trim().to_owned());
            }
        }
    }
}

fn read_frames(
    mut stdout: impl Read,
    ts: &Receiver<f64>,
    tx: &SyncSender<Result<Frame>>,
    facts: &Facts,
    log: &Mutex<Log>,
) {
    let size = facts.width as usize * facts.height as usize * 3;
    let mut index = 0u64;
    let mut last_secs = None;
    loop {
        let mut buf = vec![0u8; size];
        match read_full(&mut stdout, &mut buf) {
            Ok(0) => break,
            Ok(n) if n == size => {}
            Ok(_) | Err(_) => {
                let _ = tx.send(Err(damaged(log, facts, "the last frame was cut short")));
                return;
            }
        }
        // showinfo logs each frame before ffmpeg writes it, so its timestamp
        // is normally already there; if the log is unreadable, the sampling
        // rate gives an estimate.
        let secs = ts
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| facts.start_secs + index as f64 / facts.fps);
        last_secs = Some(secs);
        let timestamp_ms = ((secs - facts.start_secs).max(0.0) * 1000.0).round() as u64;
        let Some(image) = RgbImage::from_raw(facts.width, facts.height, buf) else {
            return;
        };
        let frame = Frame {
            index,
            timestamp_ms,
            image,
        };
        if tx.send(Ok(frame)).is_err() {
            return;
        }
        index += 1;
    }
    let end = match (last_secs, facts.end_secs) {
        (None, _) => Err(damaged(log, facts, "no frame could be decoded")),
        // Decoding stopped well before the end the file declares: truncated.
        (Some(last), Some(end)) if last + (1.0f64).max(0.05 * (end - facts.start_secs)) < end => {
            Err(damaged(
                log,
                facts,
                &format!(
                    "the video stops at {:.1} s but declares {:.1} s: the file is truncated or damaged",
                    last - facts.start_secs,
                    end - facts.start_secs
                ),
            ))
        }
        _ => Ok(()),
    };
    if let Err(e) = end {
        let _ = tx.send(Err(e));
    }
}

fn damaged(log: &Mutex<Log>, facts: &Facts, what: &str) -> VideoError {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.errors.is_empty() {
        return VideoError::Unreadable(what.to_owned());
    }
    let said = crate::probe::tool_errors(&log.errors.join("\n"), &facts.path);
    VideoError::Unreadable(format!("{what} (ffmpeg: {said})"))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl FrameSource for FfmpegSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.done {
            return Ok(None);
        }
        match self.frames.recv_timeout(self.stall_timeout) {
            Ok(Ok(frame)) => Ok(Some(frame)),
            Ok(Err(e)) => {
                self.done = true;
                Err(e)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                let status = self
                    .child
                    .wait()
                    .map_err(|e| VideoError::Tool(e.to_string()))?;
                if status.success() {
                    Ok(None)
                } else {
                    Err(VideoError::Unreadable(format!(
                        "ffmpeg could not decode the video ({status})"
                    )))
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                self.done = true;
                let _ = self.child.kill();
                Err(VideoError::Unreadable(format!(
                    "decoding stalled: no frame for {} s",
                    self.stall_timeout.as_secs()
                )))
            }
        }
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader ends once the pipe closes and nobody takes its frames.
        while self.frames.try_recv().is_ok() {}
        if let Some(r) = self.reader.take() {
            drop(std::mem::replace(&mut self.frames, mpsc::sync_channel(0).1));
            let _ = r.join();
        }
    }
}

/// Largest side, in pixels, of a frame cut for a reviewer.
pub const CUT_MAX_SIDE: u32 = 640;
/// Largest cut frame, in bytes (a JPEG of [`CUT_MAX_SIDE`] is far smaller).
const CUT_MAX_BYTES: usize = 4 << 20;

/// The part `crop` (fractions of the frame) of the frame at `timestamp_ms`
/// (from the start of the video, as the analysis reports it) of `path`, as
/// a JPEG at most [`CUT_MAX_SIDE`] on a side, read from ffmpeg's standard
/// output (never a file) within `deadline`.
pub fn cut_jpeg(
    path: &Path,
    timestamp_ms: u64,
    crop: &kenning_core::BoundingBox,
    deadline: Duration,
) -> Result<Vec<u8>> {
    let f = |v: f32| format!("{:.6}", v.clamp(0.0, 1.0));
    let m = CUT_MAX_SIDE;
    let filter = format!(
        "crop=w=iw*{}:h=ih*{}:x=iw*{}:y=ih*{},scale=w='min({m},iw)':h='min({m},ih)':force_original_aspect_ratio=decrease",
        f(crop.width),
        f(crop.height),
        f(crop.left),
        f(crop.top)
    );
    // A millisecond early, so rounding cannot skip to the next frame:
    // an input seek starts at the first frame at or after it.
    let at = timestamp_ms.saturating_sub(1) as f64 / 1000.0;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(QUIET)
        .args(["error", "-ss"])
        .arg(format!("{at:.3}"))
        .arg("-i")
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-frames:v",
            "1",
            "-vf",
        ])
        .arg(filter)
        .args(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "pipe:1"]);
    let (ok, jpeg, stderr) = crate::probe::run_tool(cmd, deadline)?;
    if !ok || jpeg.is_empty() {
        return Err(VideoError::Unreadable(format!(
            "the frame at {timestamp_ms} ms could not be cut: {}",
            crate::probe::tool_errors(&stderr, path)
        )));
    }
    if jpeg.len() > CUT_MAX_BYTES {
        return Err(VideoError::TooLarge(format!(
            "the frame at {timestamp_ms} ms is over {CUT_MAX_BYTES} bytes"
        )));
    }
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_every_frame_of_slow_videos() {
        assert_eq!(sample_filter(5.0, 5.0), None);
        assert_eq!(sample_filter(2.0, 5.0), None);
        assert_eq!(sample_filter(25.0, 0.0), None);
        let f = sample_filter(25.0, 5.0).unwrap();
        assert!(f.contains("0.180000"), "{f}");
        let f = sample_filter(0.0, 5.0).unwrap();
        assert!(f.contains("0.180000"), "{f}");
    }

    #[test]
    fn frames_are_scaled_down_never_up() {
        assert_eq!(output_size(640, 360, 1920), (640, 360));
        assert_eq!(output_size(3840, 2160, 1920), (1920, 1080));
        assert_eq!(output_size(1081, 1921, 1920), (1080, 1920));
    }
}
