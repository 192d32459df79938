use kenning_core::{ErrorCode, WireError};

/// What a collection operation can fail with; each maps to a Rekognition
/// exception on the wire.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    /// A request parameter is out of range or malformed.
    #[error("{0}")]
    InvalidParameter(String),
    /// The collection, face or user does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The image could not be used.
    #[error(transparent)]
    Image(#[from] kenning_image::ImageError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] kenning_store::StoreError),
    /// A model failed.
    #[error(transparent)]
    Model(#[from] kenning_models::ModelError),
}

impl WireError for CollectionError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidParameter(_) => ErrorCode::InvalidParameterException,
            Self::NotFound(_) => ErrorCode::ResourceNotFoundException,
            Self::Image(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Model(e) => e.code(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CollectionError>;
