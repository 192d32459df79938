//! Errors as Rekognition reports them: `{"__type": ..., "message": ...}`.

use std::borrow::Cow;

use kenning_core::ErrorCode;

/// Rekognition operations Kenning deliberately does not implement.
const NOT_FACES: &[&str] = &[
    "DetectLabels",
    "DetectText",
    "DetectModerationLabels",
    "DetectProtectiveEquipment",
    "DetectCustomLabels",
    "RecognizeCelebrities",
    "GetCelebrityInfo",
    "CreateFaceLivenessSession",
];

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The exception name (`__type`).
    pub kind: Cow<'static, str>,
    /// Human-readable message.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// An error with an explicit status and name.
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: Cow::Borrowed(kind),
            message: message.into(),
        }
    }

    /// The error for a library error code. Rekognition (like every AWS JSON
    /// 1.1 service) answers client faults, ResourceNotFoundException
    /// included, with HTTP 400; ThrottlingException means "temporarily
    /// unable to process the request, try again" (the database is away, the
    /// service is overloaded) and is a 503, which SDKs retry.
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::AccessDeniedException => 403,
            ErrorCode::InternalServerError => 500,
            ErrorCode::ThrottlingException => 503,
            _ => 400,
        };
        Self::new(status, code.as_str(), message)
    }

    /// The error for a library error that knows its Rekognition code.
    pub fn from_wire<E: kenning_core::WireError>(e: &E) -> Self {
        Self::from_code(e.code(), e.to_string())
    }

    /// InvalidParameterException.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::InvalidParameterException, message)
    }

    /// InternalServerError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::InternalServerError, message)
    }

    /// UnknownOperationException naming the operation.
    pub fn unknown_operation(op: &str) -> Self {
        let message = if matches!(op, "StartPersonTracking" | "GetPersonTracking") {
            format!("{op} is not implemented: Amazon Rekognition ended People Pathing in 2025; use StartFaceSearch or StartFaceDetection")
        } else if NOT_FACES.contains(&op) {
            format!("{op} is an Amazon Rekognition operation that Kenning does not implement (Kenning implements the face operations only)")
        } else {
            format!("Kenning does not implement the operation {op:?}")
        };
        Self::new(400, "UnknownOperationException", message)
    }

    /// The status used by the REST API, which uses 404 and 409 where HTTP
    /// has a code for the fault.
    pub fn rest_status(&self) -> u16 {
        match self.kind.as_ref() {
            "ResourceNotFoundException" => 404,
            "ResourceAlreadyExistsException"
            | "ConflictException"
            | "IdempotentParameterMismatchException"
            | "ResourceInUseException" => 409,
            "LimitExceededException" => 429,
            _ => self.status,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.kind, "message": self.message })
    }
}
