//! What the deployer configures: the live sources a Kinesis video stream
//! ARN may name (`--stream-source NAME=URL`), where the records of a
//! Kinesis data stream ARN go (`--stream-output NAME=sse|URL|FILE`), and
//! how processors run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kenning_video::live::{LiveConfig, LiveInput};
use kenning_video::notify::Webhook;
use kenning_video::Buckets;

use crate::error::{Result, StreamError};

fn invalid(m: impl Into<String>) -> StreamError {
    StreamError::InvalidParameter(m.into())
}

/// Checks a stream name (`[a-zA-Z0-9_.-]`, 1-`max` characters), as Kinesis
/// names its video and data streams.
pub fn validate_stream_name(kind: &str, name: &str, max: usize) -> Result<()> {
    if (1..=max).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        Ok(())
    } else {
        Err(invalid(format!(
            "{kind} name {name:?} must be 1-{max} letters, digits, '_', '.' or '-'"
        )))
    }
}

/// The stream name of an ARN of `service` (`kinesisvideo` or `kinesis`):
/// `arn:PARTITION:SERVICE:REGION:ACCOUNT12:stream/NAME[/...]`.
fn stream_name(arn: &str, service: &str, member: &str) -> Result<String> {
    let bad = || {
        invalid(format!(
            "{member} {arn:?} is not a {service} stream ARN (arn:aws:{service}:REGION:ACCOUNT:stream/NAME{})",
            if service == "kinesisvideo" { "/CREATION-TIME" } else { "" }
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, svc, region, account, resource] = parts.as_slice() else {
        return Err(bad());
    };
    let label = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !label(partition)
        || *svc != service
        || !label(region)
        || account.len() != 12
        || !account.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let name = resource
        .strip_prefix("stream/")
        .and_then(|r| r.split('/').next())
        .ok_or_else(bad)?;
    let max = if service == "kinesisvideo" { 256 } else { 128 };
    validate_stream_name("stream", name, max)?;
    Ok(name.to_owned())
}

/// The Kinesis video stream named by `Input.KinesisVideoStream.Arn`.
pub fn video_stream_name(arn: &str) -> Result<String> {
    stream_name(arn, "kinesisvideo", "Input.KinesisVideoStream.Arn")
}

/// The Kinesis data stream named by `Output.KinesisDataStream.Arn`.
pub fn data_stream_name(arn: &str) -> Result<String> {
    stream_name(arn, "kinesis", "Output.KinesisDataStream.Arn")
}

/// `--stream-source NAME=URL`: an `rtsp://`, `rtsps://`, `http://` or
/// `https://` URL, or a video file inside a bucket directory, played at its
/// own pace, and from the start again at its end when it ends in `#loop`.
pub fn parse_source(spec: &str, buckets: &Buckets) -> Result<(String, LiveInput)> {
    let (name, url) = spec
        .split_once('=')
        .ok_or_else(|| invalid(format!("stream source {spec:?} must be NAME=URL")))?;
    let (name, url) = (name.trim(), url.trim());
    validate_stream_name("stream source", name, 256)?;
    if LiveInput::SCHEMES.iter().any(|s| url.starts_with(s)) {
        return Ok((name.to_owned(), LiveInput::Url(url.to_owned())));
    }
    if url.contains("://") {
        return Err(invalid(format!(
            "stream source {name}: {} is not rtsp://, rtsps://, http://, https:// or a file",
            kenning_video::live::redact_url(url)
        )));
    }
    let (file, looped) = match url.strip_suffix("#loop") {
        Some(f) => (f, true),
        None => (url, false),
    };
    let (bucket, object) = buckets.locate(std::path::Path::new(file))?;
    Ok((
        name.to_owned(),
        LiveInput::File {
            path: buckets.resolve(&bucket, &object)?,
            looped,
        },
    ))
}

/// Where one output's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Server-Sent Events at `GET /v1/stream-outputs/{NAME}/events`.
    Sse,
    /// An HMAC-signed POST per record.
    Webhook(Webhook),
    /// A rotating JSON-lines file.
    File(PathBuf),
}

/// `--stream-output NAME=sse|URL|FILE`.
pub fn parse_output(spec: &str) -> Result<(String, Sink)> {
    let (name, to) = spec
        .split_once('=')
        .ok_or_else(|| invalid(format!("stream output {spec:?} must be NAME=sse|URL|FILE")))?;
    let (name, to) = (name.trim(), to.trim());
    validate_stream_name("stream output", name, 128)?;
    let sink = if to == "sse" {
        Sink::Sse
    } else if to.contains("://") {
        Sink::Webhook(Webhook::parse(to)?)
    } else if to.is_empty() || to.ends_with('/') {
        return Err(invalid(format!(
            "stream output {name}: {to:?} must be sse, an http:// URL or a file"
        )));
    } else {
        Sink::File(std::path::absolute(to).map_err(|e| invalid(format!("{to}: {e}")))?)
    };
    Ok((name.to_owned(), sink))
}

/// Retry delays: doubling from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `n` (1, 2, ...).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How much each Server-Sent Events output keeps for clients that
/// reconnect: the newest events within these bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Events.
    pub events: usize,
    /// Bytes.
    pub bytes: usize,
    /// Age: older events are dropped (records may describe faces of people
    /// nobody searched for, so they are not kept longer than a reconnect needs).
    pub max_age: Duration,
}

/// How stream processors run.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Source name (the video stream name in an Input ARN) to its input.
    pub sources: BTreeMap<String, LiveInput>,
    /// Output name (the data stream name in an Output ARN) to its sinks.
    pub outputs: BTreeMap<String, Vec<Sink>>,
    /// Decoding and sampling.
    pub live: LiveConfig,
    /// Most processors that may exist.
    pub max_processors: usize,
    /// Delays between reconnection attempts.
    pub reconnect: Backoff,
    /// Connection time after which the delay goes back to its first value.
    pub stable_after: Duration,
    /// What Server-Sent Events outputs and track feeds keep for replay.
    pub replay: Replay,
    /// Records a webhook or file output holds while it is behind; beyond
    /// it the oldest are dropped (and counted).
    pub queue: usize,
    /// Attempts to deliver one record to a webhook.
    pub webhook_attempts: u32,
    /// Delays between a webhook's attempts.
    pub webhook_backoff: Backoff,
    /// The key webhooks are signed with.
    pub webhook_secret: Vec<u8>,
    /// A file output is rotated when it would grow past this many bytes.
    pub file_max_bytes: u64,
    /// Rotated files kept (`FILE.1` ... `FILE.N`).
    pub file_keep: usize,
    /// Collection faces reported per detected face in a record.
    pub max_matches: usize,
    /// Once a track has its few templates, a sighting is embedded only when
    /// its quality is this much better than the worst of them.
    pub reembed_gain: f32,
    /// Scheduling niceness (0-19) of processor threads and their ffmpeg, so
    /// photo requests, at normal priority, go first.
    pub niceness: i32,
    /// On a store shared by several nodes: how long a node's hold on a
    /// running processor lasts unless renewed (every third of it). A node
    /// that dies holds its processors this long before another takes them.
    pub lease: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            sources: BTreeMap::new(),
            outputs: BTreeMap::new(),
            live: LiveConfig::default(),
            max_processors: 20,
            reconnect: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
            stable_after: Duration::from_secs(10),
            replay: Replay {
                events: 1000,
                bytes: 16 << 20,
                max_age: Duration::from_secs(300),
            },
            queue: 1000,
            webhook_attempts: 5,
            webhook_backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(8),
            },
            webhook_secret: Vec::new(),
            file_max_bytes: 64 << 20,
            file_keep: 5,
            max_matches: 10,
            reembed_gain: 1.05,
            niceness: 10,
            lease: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_streams() {
        assert_eq!(
            video_stream_name(
                "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door-cam/1700000000000"
            )
            .unwrap(),
            "door-cam"
        );
        assert_eq!(
            data_stream_name("arn:aws:kinesis:eu-west-1:123456789012:stream/matches").unwrap(),
            "matches"
        );
        for bad in [
            "arn:aws:kinesis:us-east-1:123456789012:stream/x",
            "arn:aws:kinesisvideo:us-east-1:12345:stream/x/1",
            "arn:aws:kinesisvideo:us-east-1:123456789012:table/x",
            "arn:aws:kinesisvideo:us-east-1:123456789012:stream/",
            "arn:aws:kinesisvideo:US-EAST-1:123456789012:stream/x/1",
            "door-cam",
        ] {
            assert!(video_stream_name(bad).is_err(), "{bad}");
        }
        assert!(data_stream_name("arn:aws:kinesis:us-east-1:123456789012:stream/a b").is_err());
    }

    #[test]
    fn sources_and_outputs() {
        let b = Buckets::new();
        assert_eq!(
            parse_source("cam1=rtsp://u:p@10.0.0.2/s", &b).unwrap(),
            (
                "cam1".into(),
                LiveInput::Url("rtsp://u:p@10.0.0.2/s".into())
            )
        );
        let e = parse_source("cam1=ftp://u:secret@h/x", &b).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(parse_source("cam1=/not/in/a/bucket.mp4", &b).is_err());
        assert!(parse_source("bad name=http://h/x", &b).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("door.mp4"), b"x").unwrap();
        let mut b = Buckets::new();
        b.add("footage", dir.path()).unwrap();
        let file = dir.path().canonicalize().unwrap().join("door.mp4");
        let (_, input) = parse_source(&format!("door={}#loop", file.display()), &b).unwrap();
        assert_eq!(
            input,
            LiveInput::File {
                path: file.clone(),
                looped: true
            }
        );
        assert_eq!(parse_output("m=sse").unwrap(), ("m".into(), Sink::Sse));
        assert!(matches!(
            parse_output("m=http://127.0.0.1:9/hook").unwrap().1,
            Sink::Webhook(_)
        ));
        assert!(matches!(
            parse_output("m=out/records.jsonl").unwrap().1,
            Sink::File(p) if p.is_absolute()
        ));
        for bad in ["m", "m=", "m=dir/", "m=https://h/x", "n m=sse"] {
            assert!(parse_output(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        let b = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
        };
        let d: Vec<u128> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 4000, 4000]);
    }
}
