//! Live sources: a camera or stream URL (RTSP, HTTP(S) MPEG-TS, HLS or
//! MJPEG) or a file played at its own pace, decoded by an `ffmpeg` child
//! that writes each sampled frame as a PPM image on a pipe.
//!
//! A live source never waits for its reader: a thread takes every frame
//! ffmpeg writes and keeps only the newest one, so when analysis falls
//! behind, older frames are skipped (and counted) instead of queueing.
//! Frames live in memory only. One [`LiveSource`] is one connection;
//! reconnecting is the caller's policy.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use kenning_image::RgbImage;

use crate::error::{Result, VideoError};
use crate::source::{read_full, sample_filter, Decoder, Frame, FrameSource, Log};

/// Where a live source's video comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveInput {
    /// `rtsp://`, `rtsps://`, `http://` or `https://` (MPEG-TS, HLS, MJPEG).
    Url(String),
    /// A video file, played at its frame rate as a camera would send it.
    File {
        /// The file (already checked to be inside a bucket).
        path: PathBuf,
        /// Start again at the end instead of ending.
        looped: bool,
    },
}

impl LiveInput {
    /// What messages may show of the input: a URL without its user
    /// information and query (which may hold credentials), a file's name.
    pub fn describe(&self) -> String {
        match self {
            Self::Url(u) => redact_url(u),
            Self::File { path, .. } => path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        }
    }

    /// The URL schemes a live source may have.
    pub const SCHEMES: [&'static str; 4] = ["rtsp://", "rtsps://", "http://", "https://"];
}

/// `url` without user information (`user:password@`) or query string.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split(['?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}{path}")
}

/// How a live source is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    /// Frames taken per second of video (fewer when the source sends fewer).
    pub fps: f64,
    /// Frames are scaled down (never up) so the longer side is at most this.
    pub max_side: u32,
    /// Decoded frames larger than this many pixels are refused by ffmpeg.
    pub max_pixels: u64,
    /// Longest wait for the first frame of a connection (connecting and
    /// probing the stream included).
    pub first_frame_timeout: Duration,
    /// Longest wait between frames before the connection counts as stalled.
    pub stall_timeout: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            fps: 5.0,
            max_side: 1920,
            max_pixels: crate::probe::Limits::default().max_pixels,
            first_frame_timeout: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// A frame of a live source, with when it arrived.
pub struct LiveFrame {
    /// The frame; its timestamp counts from the connection's first frame.
    pub frame: Frame,
    /// Wall-clock time the frame came out of the decoder.
    pub received: SystemTime,
    /// The same moment on the monotonic clock, for measuring delays.
    pub received_at: Instant,
}

/// What the reader thread hands over: the newest frame, counts, the end.
#[derive(Default)]
struct Slot {
    frame: Option<LiveFrame>,
    received: u64,
    skipped: u64,
    ended: Option<Result<()>>,
}

struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection to a live source.
pub struct LiveSource {
    child: Child,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    config: LiveConfig,
    got_first: bool,
    done: bool,
}

impl LiveSource {
    /// Starts ffmpeg on `input`. Connection failures show up as an error
    /// from [`LiveSource::next_live`], with what ffmpeg said.
    pub fn open(input: &LiveInput, config: &LiveConfig) -> Result<Self> {
        let mut args: Vec<OsString> = [
            // Live: hand frames on as soon as they are decoded.
            "-fflags",
            "nobuffer",
            "-flags",
            "low_delay",
            "-analyzeduration",
            "2000000",
            "-max_pixels",
        ]
        .map(OsString::from)
        .into();
        args.push(config.max_pixels.to_string().into());
        let url = match input {
            LiveInput::Url(url) => {
                if url.starts_with("rtsp") {
                    args.extend(["-rtsp_transport", "tcp"].map(OsString::from));
                }
                url.clone()
            }
            LiveInput::File { path, looped } => {
                args.push("-re".into());
                if *looped {
                    args.extend(["-stream_loop", "-1"].map(OsString::from));
                }
                path.to_string_lossy().into_owned()
            }
        };
        args.extend(["-i".into(), OsString::from(&url)]);
        let mut filters = Vec::new();
        if let Some(select) = sample_filter(0.0, config.fps) {
            filters.push(select);
        }
        let m = config.max_side.max(16);
        filters.push(format!(
            "scale='if(gte(iw,ih),min(iw,{m}),-2)':'if(gte(iw,ih),-2,min(ih,{m}))':flags=bilinear"
        ));
        let d = Decoder::spawn(
            args,
            filters,
            &["-c:v", "ppm", "-f", "image2pipe", "-flush_packets", "1"],
        )?;
        let (stdout, ts, log) = (d.stdout, d.timestamps, d.log);
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            wake: Condvar::new(),
        });
        let facts = Facts {
            url,
            described: input.describe(),
            fps: config.fps,
            max_pixels: config.max_pixels,
        };
        let writer = shared.clone();
        let reader = std::thread::Builder::new()
            .name("kenning-live-frames".into())
            .spawn(move || {
                let end = read_ppm_frames(stdout, &ts, &writer, &facts, &log);
                writer.lock().ended = Some(end);
                writer.wake.notify_all();
            })
            .map_err(|e| VideoError::Tool(e.to_string()))?;
        Ok(Self {
            child: d.child,
            shared,
            reader: Some(reader),
            config: config.clone(),
            got_first: false,
            done: false,
        })
    }

    /// The newest frame not yet taken, waiting for one. `Ok(None)`: the
    /// source ended cleanly (a file that is not looped, a stream the sender
    /// closed). An error ends the connection: it failed, stalled or sent
    /// nothing ffmpeg could decode.
    pub fn next_live(&mut self) -> Result<Option<LiveFrame>> {
        if self.done {
            return Ok(None);
        }
        let timeout = if self.got_first {
            self.config.stall_timeout
        } else {
            self.config.first_frame_timeout
        };
        let deadline = Instant::now() + timeout;
        let mut slot = self.shared.lock();
        loop {
            if let Some(f) = slot.frame.take() {
                self.got_first = true;
                return Ok(Some(f));
            }
            if let Some(end) = slot.ended.take() {
                drop(slot);
                self.done = true;
                if matches!(end, Err(VideoError::Interrupted)) {
                    let _ = self.child.kill();
                }
                let _ = self.child.wait();
                return end.map(|()| None);
            }
            let now = Instant::now();
            if now >= deadline {
                drop(slot);
                self.done = true;
                let _ = self.child.kill();
                return Err(VideoError::Unreadable(if self.got_first {
                    format!("the source stalled: no frame for {} s", timeout.as_secs())
                } else {
                    format!(
                        "no frame within {} s of connecting (unreachable, or not a video ffmpeg can decode)",
                        timeout.as_secs()
                    )
                }));
            }
            slot = self
                .shared
                .wake
                .wait_timeout(slot, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A handle that makes a [`LiveSource::next_live`] waiting on another thread
    /// return at once with [`VideoError::Interrupted`].
    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.shared.clone())
    }

    /// Frames ffmpeg has delivered on this connection, and how many of them
    /// were replaced by a newer one before [`LiveSource::next_live`] took them.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.shared.lock();
        (s.received, s.skipped)
    }
}

/// Interrupts a [`LiveSource`] (to stop it promptly).
#[derive(Clone)]
pub struct Interrupter(Arc<Shared>);

impl Interrupter {
    /// Ends the connection's wait for frames.
    pub fn interrupt(&self) {
        let mut slot = self.0.lock();
        if slot.ended.is_none() {
            slot.ended = Some(Err(VideoError::Interrupted));
        }
        drop(slot);
        self.0.wake.notify_all();
    }
}

impl FrameSource for LiveSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        Ok(self.next_live()?.map(|f| f.frame))
    }
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader ends once the pipe closes.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

struct Facts {
    url: String,
    described: String,
    fps: f64,
    max_pixels: u64,
}

/// Reads PPM frames (`P6 <w> <h> 255`, then RGB bytes) from ffmpeg until
/// the pipe ends, keeping only the newest in the slot.
fn read_ppm_frames(
    stdout: impl Read,
    ts: &Receiver<f64>,
    shared: &Shared,
    facts: &Facts,
    log: &Mutex<Log>,
) -> Result<()> {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut index = 0u64;
    let mut first_pts: Option<f64> = None;
    let mut last_ms = 0u64;
    loop {
        let (w, h) = match read_ppm_header(&mut r) {
            Ok(Some(size)) => size,
            Ok(None) if index > 0 => return Ok(()),
            Ok(None) => return Err(failed(log, facts, "the source delivered no frame")),
            Err(why) => return Err(failed(log, facts, &why)),
        };
        if u64::from(w) * u64::from(h) > facts.max_pixels {
            return Err(failed(
                log,
                facts,
                &format!("a {w}x{h} frame is larger than the limit"),
            ));
        }
        let mut buf = vec![0u8; w as usize * h as usize * 3];
        match read_full(&mut r, &mut buf) {
            Ok(n) if n == buf.len() => {}
            _ => return Err(failed(log, facts, "the stream ended inside a frame")),
        }
        let received = SystemTime::now();
        let received_at = Instant::now();
        // showinfo logs each frame before ffmpeg writes it.
        let pts = ts.recv_timeout(Duration::from_secs(2)).ok();
        let offset_ms = match (pts, first_pts) {
            (Some(p), None) => {
                first_pts = Some(p);
                0
            }
            (Some(p), Some(first)) => {
                let ms = ((p - first) * 1000.0).round();
                if ms >= last_ms as f64 {
                    ms as u64
                } else {
                    // The source's clock went back (it restarted): carry on
                    // from here instead of going back in time.
                    let next = last_ms + (1000.0 / facts.fps) as u64;
                    first_pts = Some(p - next as f64 / 1000.0);
                    next
                }
            }
            (None, _) => last_ms + (1000.0 / facts.fps) as u64,
        };
        last_ms = offset_ms;
        let Some(image) = RgbImage::from_raw(w, h, buf) else {
            return Err(failed(log, facts, "a frame could not be read"));
        };
        let frame = LiveFrame {
            frame: Frame {
                index,
                timestamp_ms: offset_ms,
                image,
            },
            received,
            received_at,
        };
        index += 1;
        let mut slot = shared.lock();
        slot.received += 1;
        if slot.frame.replace(frame).is_some() {
            slot.skipped += 1;
        }
        drop(slot);
        shared.wake.notify_all();
    }
}

/// The next PPM header's size; `None` at a clean end of the stream.
fn read_ppm_header(r: &mut impl BufRead) -> std::result::Result<Option<(u32, u32)>, String> {
    let mut fields: Vec<u32> = Vec::with_capacity(3);
    let mut magic = [0u8; 2];
    match read_full(r, &mut magic) {
        Ok(0) => return Ok(None),
        Ok(2) if &magic == b"P6" => {}
        _ => return Err("ffmpeg wrote something that is not a frame".into()),
    }
    let mut token = String::new();
    while fields.len() < 3 {
        let mut byte = [0u8; 1];
        if read_full(r, &mut byte).map_err(|e| e.to_string())? == 0 {
            return Err("the stream ended inside a frame header".into());
        }
        let c = byte[0];
        if c.is_ascii_digit() && token.len() < 9 {
            token.push(c as char);
        } else if c.is_ascii_whitespace() && !token.is_empty() {
            fields.push(token.parse().map_err(|_| "a bad frame header")?);
            token.clear();
        } else if !c.is_ascii_whitespace() {
            return Err("a bad frame header".into());
        }
    }
    match fields.as_slice() {
        [w, h, 255] if *w > 0 && *h > 0 => Ok(Some((*w, *h))),
        _ => Err("a frame header with an unexpected size or depth".into()),
    }
}

/// The error of a connection that ended, with what ffmpeg said (the URL,
/// which may carry credentials, replaced by its redacted form).
fn failed(log: &Mutex<Log>, facts: &Facts, what: &str) -> VideoError {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.errors.is_empty() {
        return VideoError::Unreadable(what.to_owned());
    }
    let said = crate::probe::tool_errors(&log.errors.join("\n"), std::path::Path::new(""));
    let said = said.replace(&facts.url, &facts.described);
    let said = match facts
        .url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
    {
        Some((userinfo, _)) if !userinfo.contains('/') => said.replace(userinfo, "***"),
        _ => said,
    };
    VideoError::Unreadable(format!("{what} (ffmpeg: {said})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact_url("rtsp://admin:hunter2@10.0.0.7:554/stream1?token=abc"),
            "rtsp://10.0.0.7:554/stream1"
        );
        assert_eq!(redact_url("http://cam/live.m3u8"), "http://cam/live.m3u8");
        assert_eq!(
            LiveInput::File {
                path: "/srv/a/door.mp4".into(),
                looped: true
            }
            .describe(),
            "door.mp4"
        );
    }

    #[test]
    fn ppm_headers() {
        let mut ok = &b"P6\n640 360\n255\nxyz"[..];
        assert_eq!(read_ppm_header(&mut ok).unwrap(), Some((640, 360)));
        let mut end = &b""[..];
        assert_eq!(read_ppm_header(&mut end).unwrap(), None);
        for bad in [
            &b"P5\n1 1\n255\n"[..],
            b"P6\n640 360\n65535\n",
            b"P6\n0 360\n255\n",
            b"P6\n9999999999 1\n255\n",
            b"P6\n640",
        ] {
            let mut r = bad;
            assert!(read_ppm_header(&mut r).is_err(), "{bad:?}");
        }
    }
}
