//! Image decoding with limits, EXIF orientation, resizing, alignment warps and
//! face quality measures.
//!
//! Decoding yields the same 8-bit RGB as Python's
//! `PIL.Image.open(f).convert("RGB")` (JPEG bit for bit, through
//! libjpeg-turbo), so models fed by this crate see what their reference
//! pipelines saw.

#![warn(missing_docs)]
// Only the libjpeg FFI calls are unsafe.
#![deny(unsafe_code)]

mod decode;
mod error;
#[allow(unsafe_code)]
mod jpeg;
mod quality;
mod resize;
mod transform;

pub use decode::{decode, decode_file, sniff, DecodeLimits};
pub use error::{ImageError, ImageFormat};
pub use image::RgbImage;
pub use quality::{brightness, sharpness};
pub use resize::{resize_bilinear, to_planar_f32};
pub use transform::{align, align_with, Sampling, Similarity};
