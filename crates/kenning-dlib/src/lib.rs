//! dlib model files in Rust: the serialization reader, the 5-point shape
//! predictor, dlib-exact face chips and the ResNet-to-ONNX converter.
//!
//! Everything here reproduces dlib 20.0 (as used by `face_recognition`)
//! bit for bit on the same decoded RGB image and the same integer face
//! rectangle: the same integer landmarks, the same chip bytes, and an ONNX
//! network whose embedding is within 1e-6 of dlib's.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chip;
pub mod resnet;
pub mod serialize;
mod shape_predictor;

pub use shape_predictor::ShapePredictor;

/// ⌊v⌋ as an integer. `f64::floor` is a libm call on baseline x86-64 (no
/// SSE4.1) and was a measurable share of the predictor's and chip's time; truncation
/// corrected for negative non-integers is exact for |v| < 2^63 (casts
/// saturate beyond; callers must reject NaN themselves, which casts to 0).
#[inline]
pub(crate) fn floor_i64(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v {
        t - 1
    } else {
        t
    }
}

/// A face rectangle in dlib's convention: integer, inclusive on all four
/// edges, like `dlib.rectangle(left, top, right, bottom)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DlibRect {
    /// Leftmost column.
    pub left: i64,
    /// Top row.
    pub top: i64,
    /// Rightmost column (inclusive).
    pub right: i64,
    /// Bottom row (inclusive).
    pub bottom: i64,
}

impl DlibRect {
    /// The pixel area it covers: inclusive edges end one pixel further on.
    pub fn to_pixel_box(&self) -> kenning_core::PixelBox {
        kenning_core::PixelBox {
            left: self.left as f64,
            top: self.top as f64,
            right: self.right as f64 + 1.0,
            bottom: self.bottom as f64 + 1.0,
        }
    }
}

/// Errors from reading dlib model files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlibError {
    /// The file ends before a value is complete.
    #[error("dlib file truncated at byte {offset}: needed {needed} bytes, {available} left")]
    Truncated {
        /// Where the value starts.
        offset: usize,
        /// Bytes the value needs.
        needed: usize,
        /// Bytes left in the file.
        available: usize,
    },
    /// An integer control byte that dlib would reject.
    #[error("malformed dlib integer at byte {offset} (control byte {control:#04x})")]
    BadInteger {
        /// Offset of the control byte.
        offset: usize,
        /// The control byte.
        control: u8,
    },
    /// An element count that cannot fit in the bytes left.
    #[error("count {count} at byte {offset} exceeds the {remaining} bytes left")]
    CountTooLarge {
        /// Offset of the count.
        offset: usize,
        /// The count read.
        count: u64,
        /// Bytes left after it.
        remaining: usize,
    },
    /// A version number other than the one this reader understands.
    #[error("unexpected {what} version {found} at byte {offset} (expected {expected})")]
    UnexpectedVersion {
        /// Offset of the version.
        offset: usize,
        /// What was being read.
        what: &'static str,
        /// Supported version.
        expected: i64,
        /// Version found.
        found: i64,
    },
    /// A layer or object tag string other than the expected one.
    #[error("unexpected record {found:?} at byte {offset} (expected {expected})")]
    UnexpectedTag {
        /// Offset of the tag string.
        offset: usize,
        /// What was expected there.
        expected: String,
        /// The tag found.
        found: String,
    },
    /// A value that is well-formed but not valid for this model.
    #[error("invalid dlib model data at byte {offset}: {what}")]
    Invalid {
        /// Where the problem was found.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// Bytes left over after the model.
    #[error("{count} unexpected bytes after the model at byte {offset}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
}
