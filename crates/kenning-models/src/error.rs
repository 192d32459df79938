use std::path::PathBuf;

use kenning_core::{ErrorCode, WireError};

/// What can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file is missing; the message says how to install it.
    #[error("model file {path} not found: run scripts/setup-models.sh (or set KENNING_MODELS to the folder that holds it)")]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// ONNX Runtime refused to load or run a model.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A dlib model file is malformed.
    #[error(transparent)]
    Dlib(#[from] kenning_dlib::DlibError),
    /// An ONNX file could not be rewritten.
    #[error(transparent)]
    Onnx(#[from] kenning_onnx::OnnxError),
    /// A recogniser manifest or calibration table is invalid.
    #[error("invalid manifest {name}: {reason}")]
    Manifest {
        /// Manifest file or model name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No recogniser of this name is available to this service.
    #[error("no recogniser {name} is available here (available: {known})")]
    UnknownRecogniser {
        /// The name asked for.
        name: String,
        /// The names that are available.
        known: String,
    },
    /// A model produced output of an unexpected shape.
    #[error("model {model} returned {reason}")]
    BadOutput {
        /// Which model.
        model: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        Self::Runtime(e.to_string())
    }
}

impl WireError for ModelError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownRecogniser { .. } => ErrorCode::InvalidParameterException,
            _ => ErrorCode::InternalServerError,
        }
    }
}
