//! Stored video: Rekognition's face detection and face search jobs on
//! local video files.
//!
//! ```text
//! decode (ffmpeg child, raw frames on a pipe) -> sample (5 fps) -> detect
//!   -> track (box overlap, cuts between shots) -> embed the best crops of
//!   each track with the collection's recogniser -> search the collection
//!   (calibrated Similarity, policy, review, audit) -> join tracks of one
//!   person by embedding similarity -> durable results
//! ```
//!
//! * [`source`]: the [`FrameSource`] trait and [`FfmpegSource`];
//!   [`probe`]: ffprobe and the size limits; [`live`]: [`LiveSource`], a
//!   camera or stream URL that skips frames rather than fall behind.
//! * [`track`] and [`analyze`]: tracking, embedding and matching, reusable
//!   for live sources.
//! * [`service`]: the Start/Get operations as durable jobs on a bounded
//!   worker pool ([`jobs`] keeps them), local [`bucket`]s in place of S3 and
//!   webhooks in place of SNS ([`notify`]).
//!
//! Faces that match nothing leave no embedding, crop or frame anywhere:
//! only their geometry and timestamps are kept, and expire with the job.

#![warn(missing_docs)]
// Only two libc calls (getrusage, setpriority) are unsafe, each allowed where it is.
#![deny(unsafe_code)]

pub mod analyze;
pub mod bucket;
mod error;
pub mod jobs;
pub mod live;
pub mod notify;
pub mod probe;
pub mod service;
pub mod source;
pub mod token;
pub mod track;
pub mod upload;

pub use analyze::{AnalysisConfig, StageTimes};
pub use bucket::Buckets;
pub use error::{Result, VideoError};
pub use jobs::{JobStore, RedbJobStore};
pub use live::{Interrupter, LiveConfig, LiveFrame, LiveInput, LiveSource};
pub use notify::Notifier;
pub use probe::{Limits, VideoMetadata};
pub use service::{JobSummary, Notify, VideoConfig, VideoService, OPERATIONS};
pub use source::{FfmpegSource, Frame, FrameSource, SamplingConfig};
pub use upload::{upload_streamed, Chunks, UploadTo};
