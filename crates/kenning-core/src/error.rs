use serde::Serialize;

/// A Rekognition exception name: the stable code every layer's error maps to,
/// so the CLI and the wire report the same thing for the same fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorCode {
    /// The request is malformed or a parameter is out of range.
    InvalidParameterException,
    /// The image bytes are not a supported, decodable image.
    InvalidImageFormatException,
    /// The image is bigger than the size or pixel limit.
    ImageTooLargeException,
    /// A named resource (collection, face, user) does not exist.
    ResourceNotFoundException,
    /// A resource with that id already exists.
    ResourceAlreadyExistsException,
    /// A user with that id already exists in the collection (Rekognition's
    /// name for that fault of CreateUser).
    ConflictException,
    /// The caller may not do this.
    AccessDeniedException,
    /// Too many requests at once.
    ThrottlingException,
    /// A fault inside Kenning (model missing, storage failure).
    InternalServerError,
    /// A stored video cannot be read: unknown bucket, missing file, or a
    /// name that leaves its bucket.
    InvalidS3ObjectException,
    /// A stored video is bigger or longer than the service accepts.
    VideoTooLargeException,
    /// Too many video jobs are in progress.
    LimitExceededException,
    /// A ClientRequestToken was reused with different parameters.
    IdempotentParameterMismatchException,
    /// A NextToken is malformed, altered, expired or for another request.
    InvalidPaginationTokenException,
    /// The resource is in a state that does not allow this (a running stream
    /// processor, a stream input or output another processor uses).
    ResourceInUseException,
}

impl ErrorCode {
    /// The exception name as it appears in `__type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidParameterException => "InvalidParameterException",
            Self::InvalidImageFormatException => "InvalidImageFormatException",
            Self::ImageTooLargeException => "ImageTooLargeException",
            Self::ResourceNotFoundException => "ResourceNotFoundException",
            Self::ResourceAlreadyExistsException => "ResourceAlreadyExistsException",
            Self::ConflictException => "ConflictException",
            Self::AccessDeniedException => "AccessDeniedException",
            Self::ThrottlingException => "ThrottlingException",
            Self::InternalServerError => "InternalServerError",
            Self::InvalidS3ObjectException => "InvalidS3ObjectException",
            Self::VideoTooLargeException => "VideoTooLargeException",
            Self::LimitExceededException => "LimitExceededException",
            Self::IdempotentParameterMismatchException => "IdempotentParameterMismatchException",
            Self::InvalidPaginationTokenException => "InvalidPaginationTokenException",
            Self::ResourceInUseException => "ResourceInUseException",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every library error so callers can map it to the wire.
pub trait WireError: std::error::Error {
    /// The Rekognition exception this error is reported as.
    fn code(&self) -> ErrorCode;
}
