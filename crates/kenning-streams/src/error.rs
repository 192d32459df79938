use kenning_core::{ErrorCode, WireError};

/// What a stream operation can fail with; each maps to a Rekognition
/// exception on the wire.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A request parameter is missing, out of range or malformed, or names
    /// a source, output or collection that does not exist.
    #[error("{0}")]
    InvalidParameter(String),
    /// The stream processor does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The processor's state does not allow this, or its name, input or
    /// output is taken.
    #[error("{0}")]
    InUse(String),
    /// Too many stream processors.
    #[error("{0}")]
    LimitExceeded(String),
    /// A NextToken that is not one this service gave.
    #[error("{0}")]
    InvalidToken(String),
    /// The processor store failed.
    #[error("stream processor store: {0}")]
    Store(String),
    /// A video stage failed.
    #[error(transparent)]
    Video(#[from] kenning_video::VideoError),
}

impl WireError for StreamError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidParameter(_) => ErrorCode::InvalidParameterException,
            Self::NotFound(_) => ErrorCode::ResourceNotFoundException,
            Self::InUse(_) => ErrorCode::ResourceInUseException,
            Self::LimitExceeded(_) => ErrorCode::LimitExceededException,
            Self::InvalidToken(_) => ErrorCode::InvalidPaginationTokenException,
            Self::Store(_) => ErrorCode::InternalServerError,
            Self::Video(e) => e.code(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StreamError {
            fn from(e: $t) -> Self {
                Self::Store(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, StreamError>;
