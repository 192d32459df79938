//! Live streams: Rekognition's stream processors on cameras and stream URLs,
//! off unless the deployer enables them, keeping nothing of strangers.
//!
//! ```text
//! source (rtsp/http(s)/file, ffmpeg; reconnect with backoff; newest frame
//!   only, older ones skipped and counted) -> detect -> track -> embed a
//!   track when new or seen markedly better -> search the collection
//!   (calibrated Similarity, policy, review, audit) -> a record per frame
//!   with faces, in Kinesis face search shape -> SSE / webhook / file;
//!   track events (first seen, last seen, best match) -> the processor's feed
//! ```
//!
//! * [`config`]: sources, outputs and limits; [`store`]: durable processor
//!   definitions; [`service`]: the seven operations; [`processor`]: one
//!   processor's thread; [`output`]: replay buffers, queues and sinks.
//!
//! Frames, crops and embeddings live in memory only. A face that matches
//! nothing may go out live (its geometry, in a record) and is then gone:
//! replay buffers forget it within minutes, and file outputs take only
//! faces that matched.

#![warn(missing_docs)]

pub mod config;
mod error;
pub mod output;
pub mod processor;
pub mod service;
pub mod store;

pub use config::{Sink, StreamConfig};
pub use error::{Result, StreamError};
pub use output::EventHub;
pub use processor::KeyCheck;
pub use service::{StreamService, OPERATIONS};
pub use store::Status;
