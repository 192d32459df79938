//! What a video file is, from `ffprobe`: Rekognition's VideoMetadata and the
//! facts decoding needs (display size, frame rate, where the stream starts).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, VideoError};

/// How large a video the service accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest file, in bytes (Rekognition: 10 GB).
    pub max_bytes: u64,
    /// Longest video, in milliseconds (Rekognition: 6 hours).
    pub max_duration_ms: u64,
    /// Largest declared frame side, in pixels.
    pub max_side: u64,
    /// Largest declared frame, in pixels.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 10_000_000_000,
            max_duration_ms: 6 * 3_600_000,
            max_side: 8192,
            max_pixels: 8192 * 4320,
        }
    }
}

/// Rekognition's VideoMetadata, on every Get page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VideoMetadata {
    /// Compression, e.g. `h264`.
    pub codec: String,
    /// Length in milliseconds.
    pub duration_millis: u64,
    /// Container: MP4, MOV, MKV, AVI, ...
    pub format: String,
    /// Frames per second.
    pub frame_rate: f32,
    /// Frame height in pixels (as displayed).
    pub frame_height: u64,
    /// Frame width in pixels (as displayed).
    pub frame_width: u64,
    /// LIMITED (16-235) or FULL (0-255).
    pub color_range: String,
}

/// A probed video: its metadata and what decoding it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The wire metadata.
    pub metadata: VideoMetadata,
    /// Where the container's timeline starts, in seconds (timestamps are
    /// reported from here).
    pub start_secs: f64,
    /// Where the video stream ends on that timeline, when declared.
    pub video_end_secs: Option<f64>,
    /// Frames per second (0 when unknown).
    pub fps: f64,
}

/// Runs a tool with a deadline; returns (success, stdout, stderr).
pub(crate) fn run_tool(mut cmd: Command, deadline: Duration) -> Result<(bool, Vec<u8>, String)> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(&name, &e))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.by_ref().take(64 << 20).read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.by_ref().take(1 << 20).read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .map_err(|e| VideoError::Tool(e.to_string()))?
        {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VideoError::Unreadable(format!(
                "{name} did not finish within {} s",
                deadline.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok((status.success(), stdout, stderr))
}

pub(crate) fn missing_tool(name: &str, e: &std::io::Error) -> VideoError {
    VideoError::Tool(format!(
        "cannot run {name} ({e}); install ffmpeg (scripts/setup-ffmpeg.sh does)"
    ))
}

/// What a tool's error output says: its distinct lines, without ffmpeg's
/// `[component @ 0x...]` prefixes, and with `path` (a server path the client
/// need not see) shortened to the file's name.
pub(crate) fn tool_errors(stderr: &str, path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let full = path.to_string_lossy();
    let mut lines: Vec<String> = Vec::new();
    for line in stderr.lines() {
        let mut l = line.trim();
        while l.starts_with('[') {
            match l.find("] ") {
                Some(i) => l = l[i + 2..].trim_start(),
                None => break,
            }
        }
        let l = l.replace(full.as_ref(), &name);
        if !l.is_empty() && !lines.contains(&l) {
            lines.push(l);
        }
    }
    let mut text = lines.join("; ");
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    if text.is_empty() {
        "no message".into()
    } else {
        text
    }
}

/// Probes `path` with ffprobe and checks it against `limits`.
///
/// A file that is not a video ffprobe can read is [`VideoError::Unreadable`];
/// one longer or of a larger declared resolution than allowed is
/// [`VideoError::TooLarge`].
pub fn probe(path: &Path, limits: &Limits) -> Result<Probe> {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-hide_banner",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-select_streams",
        "v:0",
    ])
    .arg(path);
    let (ok, stdout, stderr) = run_tool(cmd, Duration::from_secs(30))?;
    if !ok {
        return Err(VideoError::Unreadable(format!(
            "the file is not a video ffmpeg can read: {}",
            tool_errors(&stderr, path)
        )));
    }
    let v: Value = serde_json::from_slice(&stdout)
        .map_err(|e| VideoError::Unreadable(format!("ffprobe gave unreadable output: {e}")))?;
    parse(&v, limits)
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn rate(v: Option<&Value>) -> Option<f64> {
    let s = v?.as_str()?;
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

/// Formats that hold still images, not video.
fn still_image(format: &str) -> bool {
    format == "image2" || format.ends_with("_pipe")
}

/// Parses ffprobe's JSON for the first video stream.
pub(crate) fn parse(v: &Value, limits: &Limits) -> Result<Probe> {
    let stream = v
        .get("streams")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .ok_or_else(|| VideoError::Unreadable("the file has no video stream".into()))?;
    let format = v.get("format").cloned().unwrap_or(Value::Null);
    let format_name = format
        .get("format_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if still_image(format_name) {
        return Err(VideoError::Unreadable(format!(
            "the file is a still image ({format_name}), not a video"
        )));
    }
    let codec = stream
        .get("codec_name")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let coded_w = stream.get("width").and_then(Value::as_u64).unwrap_or(0);
    let coded_h = stream.get("height").and_then(Value::as_u64).unwrap_or(0);
    if coded_w == 0 || coded_h == 0 {
        return Err(VideoError::Unreadable(
            "the video stream declares no frame size".into(),
        ));
    }
    if coded_w.max(coded_h) > limits.max_side || coded_w.saturating_mul(coded_h) > limits.max_pixels
    {
        return Err(VideoError::TooLarge(format!(
            "the video declares {coded_w}x{coded_h} frames; the limit is {} pixels a side and {:.1} megapixels",
            limits.max_side,
            limits.max_pixels as f64 / 1e6
        )));
    }
    let rotation = stream
        .get("side_data_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|d| d.get("rotation").and_then(num))
        .or_else(|| stream.pointer("/tags/rotate").and_then(num))
        .unwrap_or(0.0);
    let quarter = ((rotation / 90.0).round() as i64).rem_euclid(2) == 1;
    let (w, h) = if quarter {
        (coded_h, coded_w)
    } else {
        (coded_w, coded_h)
    };
    let fps = rate(stream.get("avg_frame_rate"))
        .or_else(|| rate(stream.get("r_frame_rate")))
        .unwrap_or(0.0);
    let start_secs = format
        .get("start_time")
        .and_then(num)
        .or_else(|| stream.get("start_time").and_then(num))
        .unwrap_or(0.0);
    let stream_start = stream.get("start_time").and_then(num).unwrap_or(start_secs);
    let stream_duration = stream.get("duration").and_then(num).or_else(|| {
        let frames = stream.get("nb_frames").and_then(num)?;
        (fps > 0.0).then(|| frames / fps)
    });
    let duration = format
        .get("duration")
        .and_then(num)
        .or(stream_duration)
        .unwrap_or(0.0)
        .max(0.0);
    let duration_millis = (duration * 1000.0).round() as u64;
    if duration_millis > limits.max_duration_ms {
        return Err(VideoError::TooLarge(format!(
            "the video lasts {:.1} hours; the limit is {:.1} hours",
            duration / 3600.0,
            limits.max_duration_ms as f64 / 3.6e6
        )));
    }
    let pix_fmt = stream.get("pix_fmt").and_then(Value::as_str).unwrap_or("");
    let color_range = match stream.get("color_range").and_then(Value::as_str) {
        Some("pc" | "jpeg") => "FULL",
        Some("tv" | "mpeg") => "LIMITED",
        _ if pix_fmt.starts_with("yuvj")
            || pix_fmt.starts_with("rgb")
            || pix_fmt.starts_with("bgr")
            || pix_fmt.starts_with("gbr") =>
        {
            "FULL"
        }
        _ => "LIMITED",
    };
    let brand = format
        .pointer("/tags/major_brand")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let container = match format_name.split(',').next().unwrap_or("") {
        "mov" if brand == "qt" => "MOV".to_owned(),
        "mov" => "MP4".to_owned(),
        "matroska" => "MKV".to_owned(),
        "avi" => "AVI".to_owned(),
        "mpegts" => "TS".to_owned(),
        other => other.to_ascii_uppercase(),
    };
    Ok(Probe {
        metadata: VideoMetadata {
            codec,
            duration_millis,
            format: container,
            frame_rate: fps as f32,
            frame_height: h,
            frame_width: w,
            color_range: color_range.into(),
        },
        start_secs,
        video_end_secs: stream_duration.map(|d| stream_start + d),
        fps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe_of(stream: Value, format: Value) -> Result<Probe> {
        parse(
            &json!({ "streams": [stream], "format": format }),
            &Limits::default(),
        )
    }

    #[test]
    fn metadata_from_ffprobe_json() {
        let p = probe_of(
            json!({"codec_name": "h264", "width": 640, "height": 360, "avg_frame_rate": "2997/100",
                   "color_range": "tv", "pix_fmt": "yuv420p", "start_time": "0.852019", "duration": "9.175843"}),
            json!({"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "10.020000", "start_time": "0.000000",
                   "tags": {"major_brand": "isom"}}),
        )
        .unwrap();
        assert_eq!(
            p.metadata,
            VideoMetadata {
                codec: "h264".into(),
                duration_millis: 10_020,
                format: "MP4".into(),
                frame_rate: 29.97,
                frame_height: 360,
                frame_width: 640,
                color_range: "LIMITED".into(),
            }
        );
        assert!((p.video_end_secs.unwrap() - 10.027862).abs() < 1e-6);
        // A phone video recorded upright: displayed sizes swap.
        let p = probe_of(
            json!({"codec_name": "hevc", "width": 1920, "height": 1080, "r_frame_rate": "30/1",
                   "pix_fmt": "yuvj420p", "side_data_list": [{"rotation": -90}]}),
            json!({"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "3", "tags": {"major_brand": "qt  "}}),
        )
        .unwrap();
        assert_eq!(
            (
                p.metadata.frame_width,
                p.metadata.frame_height,
                p.metadata.format.as_str()
            ),
            (1080, 1920, "MOV")
        );
        assert_eq!(p.metadata.color_range, "FULL");
    }

    #[test]
    fn tool_errors_are_short_and_name_no_server_path() {
        let stderr = "[IMGUTILS @ 0x7ffc] Picture size 60000x60000 is invalid\n/srv/cams/huge.y4m: Device or resource busy\n/srv/cams/huge.y4m: Device or resource busy\n";
        assert_eq!(
            tool_errors(stderr, Path::new("/srv/cams/huge.y4m")),
            "Picture size 60000x60000 is invalid; huge.y4m: Device or resource busy"
        );
        assert_eq!(tool_errors("", Path::new("/x")), "no message");
    }

    #[test]
    fn limits_and_non_videos_are_refused() {
        let huge = probe_of(
            json!({"codec_name": "rawvideo", "width": 60000, "height": 60000}),
            json!({"format_name": "yuv4mpegpipe"}),
        );
        assert!(matches!(huge, Err(VideoError::TooLarge(m)) if m.contains("60000x60000")));
        let long = probe_of(
            json!({"codec_name": "h264", "width": 64, "height": 64}),
            json!({"format_name": "matroska,webm", "duration": "36000"}),
        );
        assert!(matches!(long, Err(VideoError::TooLarge(m)) if m.contains("10.0 hours")));
        let still = probe_of(
            json!({"codec_name": "png", "width": 64, "height": 64}),
            json!({"format_name": "png_pipe"}),
        );
        assert!(matches!(still, Err(VideoError::Unreadable(m)) if m.contains("still image")));
        assert!(matches!(
            parse(&json!({"streams": []}), &Limits::default()),
            Err(VideoError::Unreadable(_))
        ));
    }
}
