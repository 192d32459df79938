//! One upload pump for every front end (the REST route and the console's
//! form): chunks arriving on an async connection are handed, with
//! backpressure, to [`VideoService::upload`] running on a blocking thread,
//! so a video is never held whole in memory.

use std::future::Future;
use std::sync::Arc;

use kenning_accountability::Caller;
use kenning_api::ApiError;
use serde_json::Value;

use crate::{VideoError, VideoService};

/// Chunks in flight between the connection and the writer: enough to keep
/// both busy, few enough to bound the memory an upload holds.
const IN_FLIGHT: usize = 4;

/// Where an upload's bytes come from as they arrive.
pub trait Chunks {
    /// One piece of the body.
    type Chunk: AsRef<[u8]> + Send + 'static;
    /// The next piece; `None` at the end; `Err(why)` when the transfer
    /// broke off (the upload is then refused and nothing is kept).
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Self::Chunk, String>>> + Send;
}

/// Where one upload goes and on whose behalf.
pub struct UploadTo {
    /// Who uploads (authorised and audited as UploadVideo).
    pub caller: Caller,
    /// The bucket's name.
    pub bucket: String,
    /// The file name in the bucket.
    pub name: String,
    /// The SHA-256 the client declared, checked against the bytes.
    pub expected_sha256: Option<String>,
}

/// Streams `chunks` into the bucket through [`VideoService::upload`]; its
/// answer (bucket, name, bytes, SHA-256) or the refusal.
pub async fn upload_streamed<C: Chunks>(
    video: Arc<VideoService>,
    to: UploadTo,
    mut chunks: C,
) -> Result<Value, ApiError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<C::Chunk, String>>(IN_FLIGHT);
    let task = tokio::task::spawn_blocking(move || {
        let sha = to.expected_sha256.as_deref();
        video.upload(&to.caller, &to.bucket, &to.name, sha, |write| {
            while let Some(chunk) = rx.blocking_recv() {
                let chunk = chunk.map_err(VideoError::InvalidParameter)?;
                write(chunk.as_ref())?;
            }
            Ok(())
        })
    });
    while let Some(next) = chunks.next_chunk().await {
        let failed = next.is_err();
        // The writer stops taking chunks once it refuses the upload.
        if tx.send(next).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    task.await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the upload failed: {e}"))))
}
