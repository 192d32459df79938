use std::path::PathBuf;

use kenning_core::{ErrorCode, WireError};

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The encoded image is larger than [`DecodeLimits::max_bytes`](crate::DecodeLimits).
    #[error("image is {len} bytes, over the limit of {max} bytes")]
    TooManyBytes {
        /// Size of the encoded image (for files, at least this many bytes).
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The header declares more pixels, or a longer side, than the limits allow.
    #[error("image is {width}x{height} pixels, over the pixel or side limit")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The bytes are not JPEG, PNG, WebP or binary PGM/PPM.
    #[error("unsupported image format: expected JPEG, PNG, WebP or binary PGM/PPM")]
    UnsupportedFormat,
    /// The format was recognised but the data is corrupt or truncated.
    #[error("invalid {format} image: {reason}")]
    Corrupt {
        /// The sniffed format.
        format: ImageFormat,
        /// What the decoder reported.
        reason: String,
    },
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    pub(crate) fn corrupt(format: ImageFormat, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            format,
            reason: reason.into(),
        }
    }
}

impl WireError for ImageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::TooManyBytes { .. } | Self::TooManyPixels { .. } => {
                ErrorCode::ImageTooLargeException
            }
            Self::UnsupportedFormat | Self::Corrupt { .. } => {
                ErrorCode::InvalidImageFormatException
            }
            Self::Io { .. } => ErrorCode::InvalidParameterException,
        }
    }
}

/// An encoded image format recognised from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG (baseline, progressive or arithmetic-coded).
    Jpeg,
    /// PNG.
    Png,
    /// WebP (lossy, lossless or extended).
    WebP,
    /// Binary PGM (`P5`) or PPM (`P6`).
    Pnm,
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::WebP => "WebP",
            Self::Pnm => "PNM",
        })
    }
}
