use std::path::PathBuf;

/// Everything that can go wrong while reading evaluation inputs or computing
/// metrics from them.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of an input file is malformed.
    #[error("{source_name}:{line}: {message}")]
    Parse {
        /// File name (or "<input>" for text parsed from memory).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The inputs are well-formed but cannot be evaluated together
    /// (mismatched lengths, empty sets, unknown files, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A fitted model could not be (de)serialised.
    #[error("serialisation: {0}")]
    Json(#[from] serde_json::Error),
}

/// Shorthand for results in this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

pub(crate) fn invalid(msg: impl Into<String>) -> EvalError {
    EvalError::Invalid(msg.into())
}
