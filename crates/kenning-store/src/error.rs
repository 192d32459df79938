use kenning_core::{ErrorCode, WireError};

/// Everything the store can refuse or fail with. Each variant maps to the
/// Rekognition exception the wire layer reports (see [`WireError`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A collection id that breaks Rekognition's pattern `[a-zA-Z0-9_.\-]+`, 1-255 chars.
    #[error("invalid collection id {0:?}: must match [a-zA-Z0-9_.\\-]+ and be 1-255 characters")]
    InvalidCollectionId(String),
    /// A user id that breaks `[a-zA-Z0-9_.\-:]+`, 1-128 chars.
    #[error("invalid user id {0:?}: must match [a-zA-Z0-9_.\\-:]+ and be 1-128 characters")]
    InvalidUserId(String),
    /// An ExternalImageId that breaks `[a-zA-Z0-9_.\-:]+`, 1-255 chars.
    #[error(
        "invalid external image id {0:?}: must match [a-zA-Z0-9_.\\-:]+ and be 1-255 characters"
    )]
    InvalidExternalImageId(String),
    /// A FaceId that is not a UUID.
    #[error("invalid face id {0:?}: must be a UUID")]
    InvalidFaceId(String),
    /// A NextToken this store did not issue (or issued for another listing).
    #[error("invalid pagination token")]
    InvalidToken,
    /// MaxResults outside its allowed range.
    #[error("MaxResults must be between 1 and {max}, got {got}")]
    InvalidMaxResults {
        /// The largest value accepted by this listing.
        max: u32,
        /// The value given.
        got: u32,
    },
    /// Too many (or no) items in one request.
    #[error("{what}: between 1 and {max} items allowed, got {got}")]
    BadItemCount {
        /// Which list was out of bounds.
        what: &'static str,
        /// The largest number accepted.
        max: usize,
        /// The number given.
        got: usize,
    },
    /// Any other malformed argument (non-finite embedding values, zero dimension...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The vectors were made by a different recogniser than the collection's.
    #[error(
        "collection {collection} holds vectors of model {expected}; refusing vectors of {got}"
    )]
    ModelMismatch {
        /// Collection id.
        collection: String,
        /// The collection's model, `name/version`.
        expected: String,
        /// The model the caller offered, `name/version`.
        got: String,
    },
    /// An embedding whose length differs from the collection's dimension.
    #[error("embedding has {got} values, collection expects {expected}")]
    DimensionMismatch {
        /// The collection's dimension.
        expected: u32,
        /// The embedding's length.
        got: usize,
    },
    /// No collection with that id.
    #[error("collection {0} not found")]
    CollectionNotFound(String),
    /// A collection with that id exists already.
    #[error("collection {0} already exists")]
    CollectionExists(String),
    /// No face with that id in the collection.
    #[error("face {0} not found")]
    FaceNotFound(String),
    /// No user with that id in the collection.
    #[error("user {0} not found")]
    UserNotFound(String),
    /// A user with that id exists already.
    #[error("user {0} already exists")]
    UserExists(String),
    /// The association would give a user more than its limit of faces.
    #[error("user {user} would have {would_have} faces; the limit is {limit}")]
    UserFaceLimit {
        /// The user.
        user: String,
        /// Faces after the association.
        would_have: usize,
        /// The per-user limit (Rekognition: 100).
        limit: usize,
    },
    /// The data directory holds a store this version cannot read.
    #[error("store format {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// Version found on disk.
        found: u64,
        /// Version this build writes.
        supported: u64,
    },
    /// A record that does not decode or tables that disagree: a bug or tampering.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// Another process (a running `kenning serve`, say) has the data
    /// directory open; redb allows one process at a time.
    #[error(
        "the data directory {0} is in use by another process (a running `kenning serve`?): \
         stop it, or send the request to that server"
    )]
    InUse(std::path::PathBuf),
    /// A failure inside redb (I/O, disk full...).
    #[error("storage: {0}")]
    Db(#[from] redb::Error),
    /// The commit hook (the audit trail) refused or failed: nothing was written.
    #[error("the change was not made because its audit record could not be written: {0}")]
    Hook(String),
    /// A file-system failure around the database file.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The vector index failed in a way a rebuild could not fix.
    #[error("vector index: {0}")]
    Index(#[from] kenning_index::IndexError),
    /// The audit trail could not be opened or read.
    #[error("audit trail: {0}")]
    Audit(#[from] kenning_audit::AuditError),
    /// The database cannot be reached (or went away during the call); the
    /// call did not happen and can be retried.
    #[error("the database at {location} is unavailable, try again: {message}")]
    Unavailable {
        /// The database, without password.
        location: String,
        /// What failed.
        message: String,
    },
    /// The database refused or failed the call (not a connection fault).
    #[error("database {location}: {message}")]
    Database {
        /// The database, without password.
        location: String,
        /// What it said.
        message: String,
    },
}

// redb reports each phase with its own error type; funnel them into redb::Error
// so `?` works everywhere without a dozen variants.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

impl WireError for StoreError {
    fn code(&self) -> ErrorCode {
        use StoreError::*;
        match self {
            InvalidCollectionId(_)
            | InvalidUserId(_)
            | InvalidExternalImageId(_)
            | InvalidFaceId(_)
            | InvalidToken
            | InvalidMaxResults { .. }
            | BadItemCount { .. }
            | InvalidParameter(_)
            | ModelMismatch { .. }
            | DimensionMismatch { .. }
            // Rekognition says ServiceQuotaExceededException here; core has no such code yet.
            | UserFaceLimit { .. } => ErrorCode::InvalidParameterException,
            CollectionNotFound(_) | FaceNotFound(_) | UserNotFound(_) => {
                ErrorCode::ResourceNotFoundException
            }
            CollectionExists(_) => ErrorCode::ResourceAlreadyExistsException,
            UserExists(_) => ErrorCode::ConflictException,
            Unavailable { .. } => ErrorCode::ThrottlingException,
            UnsupportedFormat { .. }
            | Corrupt(_)
            | InUse(_)
            | Db(_)
            | Io(_)
            | Hook(_)
            | Index(_)
            | Audit(_)
            | Database { .. } => ErrorCode::InternalServerError,
        }
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
