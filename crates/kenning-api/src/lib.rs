//! Kenning's operations in Amazon Rekognition's JSON shapes.
//!
//! [`ops::dispatch`] takes an operation name and its request body and returns
//! the response body, or an [`ApiError`] carrying Rekognition's exception
//! name. The HTTP service and the command line both go through it, so the
//! same request means the same thing (and is checked the same way) wherever
//! it comes from.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod ops;

pub use error::ApiError;
pub use ops::{
    bounds, dispatch, Counts, MAX_IMAGE_BYTES, NUMERIC_BOUNDS, OPERATIONS, STREAM_OPERATIONS,
    VIDEO_OPERATIONS,
};
