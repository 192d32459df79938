use kenning_core::{ErrorCode, WireError};

/// What a video operation or job can fail with; each maps to a Rekognition
/// exception on the wire. A job that fails records the message as its
/// StatusMessage.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// A request parameter is missing, out of range or malformed.
    #[error("{0}")]
    InvalidParameter(String),
    /// The video cannot be reached: unknown bucket, missing file, or a name
    /// that leaves its bucket.
    #[error("{0}")]
    InvalidObject(String),
    /// The video is bigger, longer or of a higher resolution than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// Too many jobs are in progress.
    #[error("{0}")]
    LimitExceeded(String),
    /// A ClientRequestToken was reused with different parameters.
    #[error("{0}")]
    IdempotentMismatch(String),
    /// A NextToken is malformed, altered, expired or for another request.
    #[error("{0}")]
    InvalidToken(String),
    /// The job (or collection) does not exist, or its results expired.
    #[error("{0}")]
    NotFound(String),
    /// The file is not a video ffmpeg can decode, or it is truncated or damaged.
    #[error("{0}")]
    Unreadable(String),
    /// The service is stopping; the job resumes when it starts again.
    #[error("the service stopped while the job ran")]
    Interrupted,
    /// ffmpeg or ffprobe could not be run.
    #[error("{0}")]
    Tool(String),
    /// A collection operation failed.
    #[error(transparent)]
    Collection(#[from] kenning_collections::CollectionError),
    /// A model failed.
    #[error(transparent)]
    Model(#[from] kenning_models::ModelError),
    /// The job store failed.
    #[error("video job store: {0}")]
    Store(String),
}

impl WireError for VideoError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidParameter(_) | Self::Unreadable(_) => ErrorCode::InvalidParameterException,
            Self::InvalidObject(_) => ErrorCode::InvalidS3ObjectException,
            Self::TooLarge(_) => ErrorCode::VideoTooLargeException,
            Self::LimitExceeded(_) => ErrorCode::LimitExceededException,
            Self::IdempotentMismatch(_) => ErrorCode::IdempotentParameterMismatchException,
            Self::InvalidToken(_) => ErrorCode::InvalidPaginationTokenException,
            Self::NotFound(_) => ErrorCode::ResourceNotFoundException,
            Self::Interrupted => ErrorCode::ThrottlingException,
            Self::Tool(_) | Self::Store(_) => ErrorCode::InternalServerError,
            Self::Collection(e) => e.code(),
            Self::Model(e) => e.code(),
        }
    }
}

impl From<redb::Error> for VideoError {
    fn from(e: redb::Error) -> Self {
        Self::Store(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for VideoError {
            fn from(e: $t) -> Self {
                Self::Store(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, VideoError>;
