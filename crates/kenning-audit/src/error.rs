use std::path::{Path, PathBuf};

/// Why an audit log operation failed.
///
/// Tampering found by [`verify`](crate::verify) is not an error but a
/// [`VerifyReport`](crate::VerifyReport); errors are what stopped the work.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, writing, syncing or locking the log file failed.
    #[error("audit log {}: {source}", .path.display())]
    Io {
        /// The file (or directory) involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The log holds something that is not a valid record where one is
    /// needed (its last line when opening, any line when reading records).
    #[error("audit log {} is corrupt: {reason}", .path.display())]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// A time that is neither a date nor an RFC 3339 date-time, or a clock
    /// that is not after 1970.
    #[error("invalid time {0}")]
    InvalidTime(String),
    /// An entry the log refuses to record (non-finite numbers, too large).
    #[error("audit entry rejected: {0}")]
    InvalidEntry(String),
    /// Serialising a record failed.
    #[error("could not encode the audit record: {0}")]
    Encode(#[source] serde_json::Error),
    /// The database holding the trail failed (or could not be reached).
    #[error("audit trail in {location}: {message}")]
    Database {
        /// The database, without password.
        location: String,
        /// What failed.
        message: String,
    },
    /// Writing an export to its destination failed.
    #[error("writing the audit export failed: {0}")]
    Output(#[source] std::io::Error),
}

/// Shorthand for attaching the path to an I/O error with `map_err`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}
