//! Types shared by every Kenning crate: face geometry in Rekognition's shapes
//! and the stable error codes that each layer's typed errors map to.

#![forbid(unsafe_code)]

mod error;
pub mod fair;
mod geometry;
pub mod quality;

pub use error::{ErrorCode, WireError};
pub use geometry::{
    BoundingBox, FaceDetail, ImageQuality, Landmark, LandmarkType, PixelBox, Point, Pose,
};
