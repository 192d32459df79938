//! Rekognition operations: request shapes in, response shapes out.
//!
//! Everything here is synchronous and CPU-bound; the HTTP layer runs it on
//! the blocking pool.

use base64::Engine as _;
use kenning_collections::{
    Collections, QualityFilter, MAX_INDEX_FACES, MAX_SEARCH_FACES, MAX_SEARCH_USERS,
};
use kenning_core::{ErrorCode, WireError};
use kenning_image::DecodeLimits;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Rekognition's limit on image bytes passed in the request (the HTTP
/// service sets the collections' decode limit to it; the command line keeps
/// the larger default for local files).
pub const MAX_IMAGE_BYTES: usize = 5 << 20;

/// The operations Kenning implements, by their Rekognition names.
pub const OPERATIONS: &[&str] = &[
    "DetectFaces",
    "CompareFaces",
    "CreateCollection",
    "DescribeCollection",
    "ListCollections",
    "DeleteCollection",
    "IndexFaces",
    "ListFaces",
    "DeleteFaces",
    "SearchFaces",
    "SearchFacesByImage",
    "CreateUser",
    "DeleteUser",
    "ListUsers",
    "AssociateFaces",
    "DisassociateFaces",
    "SearchUsers",
    "SearchUsersByImage",
    "StartFaceDetection",
    "GetFaceDetection",
    "StartFaceSearch",
    "GetFaceSearch",
    "CreateStreamProcessor",
    "StartStreamProcessor",
    "StopStreamProcessor",
    "DescribeStreamProcessor",
    "ListStreamProcessors",
    "DeleteStreamProcessor",
    "UpdateStreamProcessor",
];

/// The stored-video operations among [`OPERATIONS`]: they run as jobs in
/// the video service (`kenning-video`), not through [`dispatch`].
pub const VIDEO_OPERATIONS: &[&str] = &[
    "StartFaceDetection",
    "GetFaceDetection",
    "StartFaceSearch",
    "GetFaceSearch",
];

/// The stream-processor operations among [`OPERATIONS`]: they run in the
/// stream service (`kenning-streams`), which is off unless the server is
/// started with `--enable-streams`.
pub const STREAM_OPERATIONS: &[&str] = &[
    "CreateStreamProcessor",
    "StartStreamProcessor",
    "StopStreamProcessor",
    "DescribeStreamProcessor",
    "ListStreamProcessors",
    "DeleteStreamProcessor",
    "UpdateStreamProcessor",
];

/// What an operation did besides its response, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Faces found by detection.
    pub detected: u64,
    /// Faces stored.
    pub indexed: u64,
}

fn wire<E: WireError>(e: E) -> ApiError {
    ApiError::from_wire(&e)
}

fn args<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| ApiError::invalid_parameter(e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageArg {
    bytes: Option<String>,
    s3_object: Option<Value>,
}

impl ImageArg {
    fn bytes(&self, name: &str, max: usize) -> Result<Vec<u8>, ApiError> {
        if self.s3_object.is_some() {
            return Err(ApiError::invalid_parameter(format!(
                "{name}: S3 images are not supported; Kenning is self-hosted, pass the image as Bytes"
            )));
        }
        let b64 = self
            .bytes
            .as_deref()
            .ok_or_else(|| ApiError::invalid_parameter(format!("{name} must have Bytes")))?;
        // Base64 is 4/3 the size; refuse before decoding a huge string.
        if b64.len() > max / 3 * 4 + 8 {
            return Err(too_large(max));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim_end())
            .map_err(|e| {
                ApiError::from_code(
                    ErrorCode::InvalidImageFormatException,
                    format!("{name}.Bytes is not valid base64: {e}"),
                )
            })?;
        if bytes.len() > max {
            return Err(too_large(max));
        }
        if bytes.is_empty() {
            return Err(ApiError::invalid_parameter(format!(
                "{name}.Bytes must not be empty"
            )));
        }
        Ok(bytes)
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::from_code(
        ErrorCode::ImageTooLargeException,
        format!(
            "image bytes exceed the {max}-byte limit ({:.0} MiB)",
            max as f64 / f64::from(1u32 << 20)
        ),
    )
}

fn quality(q: Option<&str>, default: QualityFilter) -> Result<QualityFilter, ApiError> {
    q.map_or(Ok(default), |s| s.parse().map_err(wire))
}

/// The numeric request parameters the operations bound: (operation,
/// parameter, least, most). [`dispatch`] refuses a value outside them with
/// InvalidParameterException, and the OpenAPI document publishes them as
/// `minimum` and `maximum`, so the two cannot disagree.
pub const NUMERIC_BOUNDS: &[(&str, &str, f64, f64)] = &[
    ("IndexFaces", "MaxFaces", 1.0, MAX_INDEX_FACES as f64),
    ("SearchFaces", "MaxFaces", 1.0, MAX_SEARCH_FACES as f64),
    ("SearchFaces", "FaceMatchThreshold", 0.0, 100.0),
    (
        "SearchFacesByImage",
        "MaxFaces",
        1.0,
        MAX_SEARCH_FACES as f64,
    ),
    ("SearchFacesByImage", "FaceMatchThreshold", 0.0, 100.0),
    ("SearchUsers", "MaxUsers", 1.0, MAX_SEARCH_USERS as f64),
    ("SearchUsers", "UserMatchThreshold", 0.0, 100.0),
    (
        "SearchUsersByImage",
        "MaxUsers",
        1.0,
        MAX_SEARCH_USERS as f64,
    ),
    ("SearchUsersByImage", "UserMatchThreshold", 0.0, 100.0),
    ("AssociateFaces", "UserMatchThreshold", 0.0, 100.0),
    ("DisassociateFaces", "UserMatchThreshold", 0.0, 100.0),
    ("CompareFaces", "SimilarityThreshold", 0.0, 100.0),
    ("ListCollections", "MaxResults", 0.0, 4096.0),
    ("ListFaces", "MaxResults", 0.0, 4096.0),
    ("ListUsers", "MaxResults", 1.0, 500.0),
];

/// `op`'s bounds of `name` in [`NUMERIC_BOUNDS`].
pub fn bounds(op: &str, name: &str) -> Option<(f64, f64)> {
    NUMERIC_BOUNDS
        .iter()
        .find(|(o, n, ..)| *o == op && *n == name)
        .map(|&(.., lo, hi)| (lo, hi))
}

/// A count parameter of `op` within its [`NUMERIC_BOUNDS`].
fn count_in(op: &str, name: &str, v: Option<u64>) -> Result<Option<u64>, ApiError> {
    let (lo, hi) = bounds(op, name).unwrap_or((0.0, u64::MAX as f64));
    range(name, v, lo as u64, hi as u64)
}

/// A number parameter of `op` within its [`NUMERIC_BOUNDS`].
fn number_in(op: &str, name: &str, v: Option<f64>) -> Result<Option<f64>, ApiError> {
    let (lo, hi) = bounds(op, name).unwrap_or((f64::MIN, f64::MAX));
    range(name, v, lo, hi)
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: Option<T>,
    lo: T,
    hi: T,
) -> Result<Option<T>, ApiError> {
    match v {
        Some(x) if x < lo || x > hi => Err(ApiError::invalid_parameter(format!(
            "{name} must be between {lo} and {hi}, not {x}"
        ))),
        _ => Ok(v),
    }
}

/// A threshold in Rekognition's Percent range (0-100), if given: callers
/// that compute with it before the operation runs (the governor's false-match
/// estimate) check it first, so that -1e308 is a bad parameter, not an
/// infinite false-match rate.
pub fn percent(name: &str, v: Option<f64>) -> Result<Option<f64>, ApiError> {
    range(name, v, 0.0, 100.0)
}

fn usize_of(v: Option<u64>) -> Option<usize> {
    v.map(|x| usize::try_from(x).unwrap_or(usize::MAX))
}

fn u32_of(v: Option<u64>) -> Option<u32> {
    v.map(|x| u32::try_from(x).unwrap_or(u32::MAX))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

fn faces_in(v: &Value, field: &str) -> u64 {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(0, |a| a.len() as u64)
}

/// Runs operation `op` with request body `body`.
pub fn dispatch(c: &Collections, op: &str, body: Value) -> Result<(Value, Counts), ApiError> {
    let body = if body.is_null() { json!({}) } else { body };
    if !body.is_object() {
        return Err(ApiError::new(
            400,
            "SerializationException",
            "the request body must be a JSON object",
        ));
    }
    let mut counts = Counts::default();
    let limits = c.decode_limits();
    let v = match op {
        "DetectFaces" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                image: ImageArg,
                attributes: Option<Vec<String>>,
            }
            let r: R = args(body)?;
            for a in r.attributes.iter().flatten() {
                match a.as_str() {
                    "DEFAULT" | "ALL" => {}
                    "BOUNDING_BOX" | "LANDMARKS" | "POSE" | "QUALITY" | "CONFIDENCE" => {}
                    other => {
                        return Err(ApiError::invalid_parameter(format!(
                            "attribute {other} is not available: Kenning does not infer age, gender, emotion or other personal attributes (see docs/server.md); use DEFAULT or ALL"
                        )))
                    }
                }
            }
            let img = decode(&r.image.bytes("Image", limits.max_bytes)?, &limits)?;
            let mut faces = c.pipeline().detect(&img).map_err(wire)?;
            faces.truncate(100);
            counts.detected = faces.len() as u64;
            let details: Vec<_> = faces.into_iter().map(|f| f.detail).collect();
            json!({ "FaceDetails": details })
        }
        "CompareFaces" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                source_image: ImageArg,
                target_image: ImageArg,
                similarity_threshold: Option<f64>,
                quality_filter: Option<String>,
                /// Kenning's extension: compare with this recogniser
                /// (default: the service's default).
                recogniser: Option<String>,
            }
            let r: R = args(body)?;
            let pipeline = match &r.recogniser {
                Some(name) => Some(c.recognisers().get(name).map_err(wire)?),
                None => None,
            };
            let pipeline = pipeline.as_deref().unwrap_or(c.pipeline());
            let threshold = number_in(op, "SimilarityThreshold", r.similarity_threshold)?
                .unwrap_or(kenning_models::compare::DEFAULT_SIMILARITY_THRESHOLD);
            let q = quality(r.quality_filter.as_deref(), QualityFilter::None)?;
            let s = decode(
                &r.source_image.bytes("SourceImage", limits.max_bytes)?,
                &limits,
            )?;
            let t = decode(
                &r.target_image.bytes("TargetImage", limits.max_bytes)?,
                &limits,
            )?;
            let mut result =
                kenning_models::compare::compare_faces(pipeline, &s, &t, threshold, 100)
                    .map_err(wire)?;
            let (w, h) = t.dimensions();
            result
                .face_matches
                .retain(|m| q.reasons(&m.face, w, h).is_empty());
            result
                .unmatched_faces
                .retain(|f| q.reasons(f, w, h).is_empty());
            counts.detected = 1 + (result.face_matches.len() + result.unmatched_faces.len()) as u64;
            to_value(&result)?
        }
        "CreateCollection" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                /// Kenning's extension: the collection's policy document,
                /// validated by the accountability layer before it gets here.
                policy: Option<Value>,
                /// Kenning's extension: the recogniser that makes the
                /// collection's vectors, for its whole life (default: the
                /// service's default).
                recogniser: Option<String>,
            }
            let r: R = args(body)?;
            let policy = r.policy.map_or_else(|| "{}".to_owned(), |p| p.to_string());
            to_value(
                &c.create_collection_with(&r.collection_id, &policy, r.recogniser.as_deref())
                    .map_err(wire)?,
            )?
        }
        "DescribeCollection" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
            }
            let r: R = args(body)?;
            to_value(&c.describe_collection(&r.collection_id).map_err(wire)?)?
        }
        "ListCollections" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                next_token: Option<String>,
                max_results: Option<u64>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxResults", r.max_results)?;
            to_value(
                &c.list_collections(r.next_token.as_deref(), u32_of(max))
                    .map_err(wire)?,
            )?
        }
        "DeleteCollection" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
            }
            let r: R = args(body)?;
            json!({ "StatusCode": c.delete_collection(&r.collection_id).map_err(wire)? })
        }
        "IndexFaces" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                image: ImageArg,
                external_image_id: Option<String>,
                max_faces: Option<u64>,
                quality_filter: Option<String>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxFaces", r.max_faces)?;
            let q = quality(r.quality_filter.as_deref(), QualityFilter::Auto)?;
            let bytes = r.image.bytes("Image", limits.max_bytes)?;
            let resp = c
                .index_faces(
                    &r.collection_id,
                    &bytes,
                    r.external_image_id.as_deref(),
                    usize_of(max),
                    q,
                )
                .map_err(wire)?;
            let v = to_value(&resp)?;
            counts.indexed = faces_in(&v, "FaceRecords");
            counts.detected = counts.indexed + faces_in(&v, "UnindexedFaces");
            v
        }
        "ListFaces" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                next_token: Option<String>,
                max_results: Option<u64>,
                user_id: Option<String>,
                face_ids: Option<Vec<String>>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxResults", r.max_results)?;
            let mut v = to_value(
                &c.list_faces(
                    &r.collection_id,
                    r.user_id.as_deref(),
                    r.next_token.as_deref(),
                    u32_of(max),
                )
                .map_err(wire)?,
            )?;
            if let (Some(ids), Some(faces)) =
                (r.face_ids, v.get_mut("Faces").and_then(Value::as_array_mut))
            {
                faces.retain(|f| {
                    f.get("FaceId")
                        .and_then(Value::as_str)
                        .is_some_and(|id| ids.iter().any(|x| x == id))
                });
            }
            v
        }
        "DeleteFaces" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                face_ids: Vec<String>,
            }
            let r: R = args(body)?;
            count_range("FaceIds", r.face_ids.len(), 4096)?;
            to_value(
                &c.delete_faces(&r.collection_id, &r.face_ids)
                    .map_err(wire)?,
            )?
        }
        "SearchFaces" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                face_id: String,
                max_faces: Option<u64>,
                face_match_threshold: Option<f64>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxFaces", r.max_faces)?;
            let t = number_in(op, "FaceMatchThreshold", r.face_match_threshold)?;
            to_value(
                &c.search_faces(&r.collection_id, &r.face_id, t, usize_of(max))
                    .map_err(wire)?,
            )?
        }
        "SearchFacesByImage" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                image: ImageArg,
                max_faces: Option<u64>,
                face_match_threshold: Option<f64>,
                quality_filter: Option<String>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxFaces", r.max_faces)?;
            let t = number_in(op, "FaceMatchThreshold", r.face_match_threshold)?;
            let q = quality(r.quality_filter.as_deref(), QualityFilter::None)?;
            let bytes = r.image.bytes("Image", limits.max_bytes)?;
            counts.detected = 1;
            to_value(
                &c.search_faces_by_image(&r.collection_id, &bytes, t, usize_of(max), q)
                    .map_err(wire)?,
            )?
        }
        "CreateUser" | "DeleteUser" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                user_id: String,
            }
            let r: R = args(body)?;
            if op == "CreateUser" {
                c.create_user(&r.collection_id, &r.user_id).map_err(wire)?;
            } else {
                c.delete_user(&r.collection_id, &r.user_id).map_err(wire)?;
            }
            json!({})
        }
        "ListUsers" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                next_token: Option<String>,
                max_results: Option<u64>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxResults", r.max_results)?;
            to_value(
                &c.list_users(&r.collection_id, r.next_token.as_deref(), u32_of(max))
                    .map_err(wire)?,
            )?
        }
        "AssociateFaces" | "DisassociateFaces" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                user_id: String,
                face_ids: Vec<String>,
                user_match_threshold: Option<f64>,
            }
            let r: R = args(body)?;
            count_range("FaceIds", r.face_ids.len(), 100)?;
            number_in(op, "UserMatchThreshold", r.user_match_threshold)?;
            if op == "AssociateFaces" {
                to_value(
                    &c.associate_faces(&r.collection_id, &r.user_id, &r.face_ids)
                        .map_err(wire)?,
                )?
            } else {
                to_value(
                    &c.disassociate_faces(&r.collection_id, &r.user_id, &r.face_ids)
                        .map_err(wire)?,
                )?
            }
        }
        "SearchUsers" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                user_id: Option<String>,
                face_id: Option<String>,
                user_match_threshold: Option<f64>,
                max_users: Option<u64>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxUsers", r.max_users)?;
            let t = number_in(op, "UserMatchThreshold", r.user_match_threshold)?;
            to_value(
                &c.search_users(
                    &r.collection_id,
                    r.user_id.as_deref(),
                    r.face_id.as_deref(),
                    t,
                    usize_of(max),
                )
                .map_err(wire)?,
            )?
        }
        "SearchUsersByImage" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct R {
                collection_id: String,
                image: ImageArg,
                user_match_threshold: Option<f64>,
                max_users: Option<u64>,
                quality_filter: Option<String>,
            }
            let r: R = args(body)?;
            let max = count_in(op, "MaxUsers", r.max_users)?;
            let t = number_in(op, "UserMatchThreshold", r.user_match_threshold)?;
            let q = quality(r.quality_filter.as_deref(), QualityFilter::None)?;
            let bytes = r.image.bytes("Image", limits.max_bytes)?;
            counts.detected = 1;
            to_value(
                &c.search_users_by_image(&r.collection_id, &bytes, t, usize_of(max), q)
                    .map_err(wire)?,
            )?
        }
        other if VIDEO_OPERATIONS.contains(&other) => {
            return Err(ApiError::new(
                400,
                "UnknownOperationException",
                format!(
                "{other} runs as a job of the video service, which this front end has not started"
            ),
            ))
        }
        other if STREAM_OPERATIONS.contains(&other) => {
            return Err(ApiError::new(
                400,
                "UnknownOperationException",
                format!("{other} runs in the stream service, which this front end has not started"),
            ))
        }
        other => return Err(ApiError::unknown_operation(other)),
    };
    Ok((v, counts))
}

fn count_range(name: &str, n: usize, max: usize) -> Result<(), ApiError> {
    if (1..=max).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "{name} must have between 1 and {max} members, not {n}"
        )))
    }
}

fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<kenning_image::RgbImage, ApiError> {
    kenning_image::decode(bytes, limits).map_err(wire)
}
