use std::path::PathBuf;

/// Everything that can go wrong in the index.
///
/// The load errors (`NotAnIndex` to `Stale`) all mean "this file cannot be
/// trusted": the caller should rebuild the index from its own records.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The configuration is unusable (e.g. zero dimension).
    #[error("invalid index configuration: {0}")]
    InvalidConfig(String),
    /// A vector or query has the wrong number of components.
    #[error("vector has {got} dimensions, the index expects {expected}")]
    DimensionMismatch {
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A vector holds NaN or infinity.
    #[error("vector contains a non-finite value")]
    NonFinite,
    /// A cosine-metric vector has zero length and cannot be normalised.
    #[error("vector has zero length and cannot be normalised")]
    ZeroVector,
    /// The id is already present.
    #[error("id {0} is already in the index")]
    DuplicateId(u64),
    /// The index holds as many nodes as it can address.
    #[error("index is full")]
    Full,
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the index magic bytes.
    #[error("{0} is not a kenning index file")]
    NotAnIndex(PathBuf),
    /// The file was written by an incompatible format version.
    #[error("index file format version {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// Version this build reads.
        expected: u32,
        /// Version in the file.
        found: u32,
    },
    /// The file is shorter than its header says.
    #[error("index file is truncated: {found} bytes, expected {expected}")]
    Truncated {
        /// Length the header declares.
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// A checksum or a structural check failed.
    #[error("index file is corrupt: {0}")]
    Corrupt(String),
    /// The file is intact but does not match what the caller expects
    /// (dimension, metric, face count or generation).
    #[error("index file is stale: {what} is {found}, expected {expected}")]
    Stale {
        /// Which property differs.
        what: &'static str,
        /// The caller's value.
        expected: String,
        /// The file's value.
        found: String,
    },
}

impl IndexError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
