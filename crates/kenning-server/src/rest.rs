//! The native REST API: the same operations as resources under `/v1`.
//!
//! Bodies are Rekognition's JSON shapes without the ids that the path
//! carries, or, where an image is the input, the raw image itself
//! (`Content-Type: image/jpeg`, `image/png`, `image/webp` or
//! `application/octet-stream`) with the other parameters in the query string.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::{
    authenticate, read_and_authenticate, respond, run_op, ApiError, AppState, Authenticated,
    Payload,
};

/// Where videos are uploaded: `PUT /v1/buckets/{Bucket}/{Key}`.
pub(crate) const UPLOAD_PREFIX: &str = "/v1/buckets/";

/// The OpenAPI 3 document as written: paths, shapes and descriptions.
/// What is served ([`openapi_document`]) adds the input constraints.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Request bodies whose one identifier is known by name: (operation, field).
const BODY_IDS: &[(&str, &str)] = &[
    ("CreateCollection", "CollectionId"),
    ("CreateUser", "UserId"),
];

/// The document served at `/openapi.json`: [`OPENAPI`] with each input's
/// constraints (identifier lengths and patterns, numeric ranges) taken from
/// the rules the service checks them with ([`kenning_store::IdRule`],
/// [`kenning_api::NUMERIC_BOUNDS`]), so the document and the checks agree.
pub fn openapi_document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| match serde_json::from_str::<Value>(OPENAPI) {
        Ok(mut doc) => {
            constrain(&mut doc);
            doc.to_string()
        }
        // A unit test parses the document, so this is never taken.
        Err(_) => OPENAPI.to_owned(),
    })
}

fn constrain(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (key, v) in item.iter_mut() {
            if key == "parameters" {
                // The ids in the path: the same rule for every method.
                constrain_parameters(v, "");
                continue;
            }
            let op = v["operationId"].as_str().unwrap_or_default().to_owned();
            if let Some(ps) = v.get_mut("parameters") {
                constrain_parameters(ps, &op);
            }
            if let Some((_, field)) = BODY_IDS.iter().find(|(o, _)| *o == op) {
                let schema = &mut v["requestBody"]["content"]["application/json"]["schema"];
                constrain_schema(&mut schema["properties"][*field], &op, field);
                schema["properties"][*field]["type"] = json!("string");
                schema["required"] = json!([field]);
            }
        }
    }
}

fn constrain_parameters(ps: &mut Value, op: &str) {
    for p in ps.as_array_mut().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        constrain_schema(&mut p["schema"], op, &name);
    }
}

/// Adds to `schema` what the service requires of input `name` of `op`.
fn constrain_schema(schema: &mut Value, op: &str, name: &str) {
    let rule = match name {
        "CollectionId" => Some(kenning_store::COLLECTION_ID),
        "UserId" => Some(kenning_store::USER_ID),
        "ExternalImageId" => Some(kenning_store::EXTERNAL_IMAGE_ID),
        _ => None,
    };
    if let Some(rule) = rule {
        schema["minLength"] = json!(1);
        schema["maxLength"] = json!(rule.max);
        schema["pattern"] = json!(rule.pattern());
    }
    if let Some((lo, hi)) = kenning_api::bounds(op, name) {
        // Whole bounds as integers, so an integer parameter's are too.
        let number = |x: f64| {
            if x.fract() == 0.0 {
                json!(x as i64)
            } else {
                json!(x)
            }
        };
        schema["minimum"] = number(lo);
        schema["maximum"] = number(hi);
    }
}

pub(crate) async fn openapi() -> Response {
    let mut r = openapi_document().into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

type Q = Query<HashMap<String, String>>;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/detect", post(detect))
        .route("/v1/compare", post(compare))
        .route(
            "/v1/collections",
            get(list_collections).post(create_collection),
        )
        .route(
            "/v1/collections/{id}",
            get(describe_collection).delete(delete_collection),
        )
        .route(
            "/v1/collections/{id}/faces",
            get(list_faces).post(index_faces),
        )
        .route("/v1/collections/{id}/faces/{face_id}", delete(delete_face))
        .route("/v1/collections/{id}/search", post(search))
        .route(
            "/v1/collections/{id}/users",
            get(list_users).post(create_user),
        )
        .route("/v1/collections/{id}/users/search", post(search_users))
        .route("/v1/collections/{id}/users/{user_id}", delete(delete_user))
        .route(
            "/v1/collections/{id}/users/{user_id}/faces",
            post(associate).delete(disassociate),
        )
        .route("/v1/collections/{id}/calibration", post(calibrate))
        .route(
            "/v1/collections/{id}/policy",
            get(get_policy).put(put_policy),
        )
        .route("/v1/review", get(list_review))
        .route("/v1/review/{review_id}", post(decide_review))
        .route("/v1/review/{review_id}/probe", get(review_probe))
        .route(
            "/v1/collections/{id}/faces/{face_id}/image",
            get(enrolment_image),
        )
        .route("/v1/report", get(report))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{key_id}", delete(revoke_key))
        .route("/v1/eval-reports", get(list_eval_reports))
        .route(
            "/v1/eval-reports/{name}",
            put(put_eval_report).delete(delete_eval_report),
        )
        .route("/v1/audit/verify", get(verify_audit))
        .route("/v1/audit/export", get(export_audit))
        .route("/v1/retention/run", post(run_retention))
        .route("/v1/video/face-detection", post(start_face_detection))
        .route("/v1/video/face-detection/{job_id}", get(get_face_detection))
        .route("/v1/video/face-search", post(start_face_search))
        .route("/v1/video/face-search/{job_id}", get(get_face_search))
        .route("/v1/video/jobs", get(list_video_jobs))
        .route("/v1/buckets", get(list_videos))
        .route("/v1/buckets/{bucket}/{*key}", put(upload_video))
}

/// Query parameters that are numbers in Rekognition's shapes.
const NUMERIC: &[&str] = &[
    "MaxFaces",
    "MaxResults",
    "MaxUsers",
    "FaceMatchThreshold",
    "SimilarityThreshold",
    "UserMatchThreshold",
];

/// Which operation a request runs, given its assembled body.
pub(crate) type Pick = fn(&Map<String, Value>) -> &'static str;

pub(crate) async fn call(
    s: Arc<AppState>,
    req: Request,
    mut query: HashMap<String, String>,
    path: &[(&str, &str)],
    pick: Pick,
) -> Response {
    let (parts, body) = req.into_parts();
    let Authenticated {
        bytes,
        caller,
        _permit,
    } = match read_and_authenticate(&s, &parts, body, true).await {
        Ok(x) => x,
        Err(e) => return respond("rest", None, Err(e), true),
    };
    let key = Some(caller.principal.access_key.clone());
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form = if ct.starts_with("multipart/form-data") {
        match multipart_parts(ct, bytes.clone()).await {
            Ok(parts) => Some(parts),
            Err(e) => return respond("rest", key, Err(e), true),
        }
    } else {
        None
    };
    let built: Result<Map<String, Value>, ApiError> = (|| {
        let mut m = if ct.starts_with("image/") || ct.starts_with("application/octet-stream") {
            let mut m = Map::new();
            m.insert(
                "Image".into(),
                json!({ "Bytes": base64::engine::general_purpose::STANDARD.encode(&bytes) }),
            );
            m
        } else if let Some(parts) = form {
            let mut m = Map::new();
            for part in parts {
                if part.file || part.name == "Image" || part.name == "image" {
                    m.insert(
                        "Image".into(),
                        json!({ "Bytes": base64::engine::general_purpose::STANDARD.encode(&part.body) }),
                    );
                } else {
                    let text = String::from_utf8(part.body.to_vec()).map_err(|_| {
                        ApiError::invalid_parameter(format!(
                            "form field {} is not UTF-8 text",
                            part.name
                        ))
                    })?;
                    query.insert(part.name, text);
                }
            }
            m
        } else if bytes.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(ApiError::invalid_parameter(
                        "the body must be a JSON object",
                    ))
                }
                Err(e) => {
                    return Err(ApiError::new(
                        400,
                        "SerializationException",
                        format!("the body is not valid JSON: {e}"),
                    ))
                }
            }
        };
        for (k, v) in query {
            let v = if NUMERIC.contains(&k.as_str()) {
                v.parse::<f64>()
                    .ok()
                    .and_then(|x| {
                        if x.fract() == 0.0 && x >= 0.0 {
                            Some(json!(x as u64))
                        } else {
                            serde_json::Number::from_f64(x).map(Value::Number)
                        }
                    })
                    .ok_or_else(|| ApiError::invalid_parameter(format!("{k} must be a number")))?
            } else {
                Value::String(v)
            };
            m.insert(k, v);
        }
        for (k, v) in path {
            m.insert((*k).into(), Value::String((*v).into()));
        }
        Ok(m)
    })();
    let m = match built {
        Ok(m) => m,
        Err(e) => return respond("rest", key, Err(e), true),
    };
    let op = pick(&m);
    let result = run_op(&s, &caller, op, Value::Object(m)).await;
    respond(op, key, result, true)
}

/// One part of a multipart/form-data body.
struct Part {
    name: String,
    /// Sent as a file (has a filename): taken as the image.
    file: bool,
    body: Bytes,
}

/// Splits a multipart/form-data body (RFC 7578) into its parts with multer
/// (the parser behind axum's multipart extractor): an image upload with
/// `curl -F image=@photo.jpg -F MaxFaces=5` works like the JSON form. Other
/// fields become parameters, as query-string values do. The body is
/// already read within the body limit and authenticated.
async fn multipart_parts(content_type: &str, body: Bytes) -> Result<Vec<Part>, ApiError> {
    let bad =
        |e: multer::Error| ApiError::invalid_parameter(format!("malformed multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(body)));
    let mut form = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field
            .name()
            .ok_or_else(|| {
                ApiError::invalid_parameter("malformed multipart body: a part has no name")
            })?
            .to_owned();
        let file = field.file_name().is_some();
        parts.push(Part {
            name,
            file,
            body: field.bytes().await.map_err(bad)?,
        });
    }
    Ok(parts)
}

macro_rules! fixed {
    ($name:literal) => {
        (|_: &serde_json::Map<String, serde_json::Value>| $name) as $crate::rest::Pick
    };
}
pub(crate) use fixed;

async fn detect(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("DetectFaces")).await
}

async fn compare(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("CompareFaces")).await
}

async fn list_collections(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ListCollections")).await
}

async fn create_collection(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("CreateCollection")).await
}

async fn describe_collection(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id)],
        fixed!("DescribeCollection"),
    )
    .await
}

async fn delete_collection(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id)],
        fixed!("DeleteCollection"),
    )
    .await
}

async fn list_faces(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("CollectionId", &id)], fixed!("ListFaces")).await
}

async fn index_faces(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("CollectionId", &id)], fixed!("IndexFaces")).await
}

async fn delete_face(
    State(s): State<Arc<AppState>>,
    Path((id, face_id)): Path<(String, String)>,
    Query(q): Q,
    req: Request,
) -> Response {
    let pick: Pick = |_| "DeleteFaces";
    let _ = q;
    call_extra(
        s,
        req,
        &[("CollectionId", &id)],
        json!({ "FaceIds": [face_id] }),
        pick,
    )
    .await
}

async fn search(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    let pick: Pick = |m| {
        if m.contains_key("FaceId") {
            "SearchFaces"
        } else {
            "SearchFacesByImage"
        }
    };
    call(s, req, q, &[("CollectionId", &id)], pick).await
}

async fn list_users(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("CollectionId", &id)], fixed!("ListUsers")).await
}

async fn create_user(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("CollectionId", &id)], fixed!("CreateUser")).await
}

async fn search_users(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    let pick: Pick = |m| {
        if m.contains_key("Image") {
            "SearchUsersByImage"
        } else {
            "SearchUsers"
        }
    };
    call(s, req, q, &[("CollectionId", &id)], pick).await
}

async fn delete_user(
    State(s): State<Arc<AppState>>,
    Path((id, user_id)): Path<(String, String)>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id), ("UserId", &user_id)],
        fixed!("DeleteUser"),
    )
    .await
}

async fn associate(
    State(s): State<Arc<AppState>>,
    Path((id, user_id)): Path<(String, String)>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id), ("UserId", &user_id)],
        fixed!("AssociateFaces"),
    )
    .await
}

async fn disassociate(
    State(s): State<Arc<AppState>>,
    Path((id, user_id)): Path<(String, String)>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id), ("UserId", &user_id)],
        fixed!("DisassociateFaces"),
    )
    .await
}

async fn get_policy(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id)],
        fixed!("GetCollectionPolicy"),
    )
    .await
}

async fn put_policy(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id)],
        fixed!("PutCollectionPolicy"),
    )
    .await
}

async fn calibrate(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id)],
        fixed!("CalibrateCollection"),
    )
    .await
}

async fn list_review(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ListReviewItems")).await
}

async fn decide_review(
    State(s): State<Arc<AppState>>,
    Path(review_id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("ReviewId", &review_id)],
        fixed!("DecideReviewItem"),
    )
    .await
}

async fn review_probe(
    State(s): State<Arc<AppState>>,
    Path(review_id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("ReviewId", &review_id)],
        fixed!("GetReviewProbe"),
    )
    .await
}

async fn enrolment_image(
    State(s): State<Arc<AppState>>,
    Path((id, face_id)): Path<(String, String)>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("CollectionId", &id), ("FaceId", &face_id)],
        fixed!("GetEnrolmentImage"),
    )
    .await
}

async fn report(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("GetAccountabilityReport")).await
}

async fn list_keys(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ListAccessKeys")).await
}

async fn create_key(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("CreateAccessKey")).await
}

async fn revoke_key(
    State(s): State<Arc<AppState>>,
    Path(key_id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(
        s,
        req,
        q,
        &[("AccessKeyId", &key_id)],
        fixed!("RevokeAccessKey"),
    )
    .await
}

async fn list_eval_reports(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ListEvalReports")).await
}

async fn put_eval_report(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("Name", &name)], fixed!("PutEvalReport")).await
}

async fn delete_eval_report(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("Name", &name)], fixed!("DeleteEvalReport")).await
}

async fn verify_audit(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("VerifyAudit")).await
}

async fn export_audit(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ExportAudit")).await
}

async fn run_retention(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("RunRetention")).await
}

async fn start_face_detection(
    State(s): State<Arc<AppState>>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[], fixed!("StartFaceDetection")).await
}

async fn get_face_detection(
    State(s): State<Arc<AppState>>,
    Path(job_id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("JobId", &job_id)], fixed!("GetFaceDetection")).await
}

async fn start_face_search(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("StartFaceSearch")).await
}

async fn get_face_search(
    State(s): State<Arc<AppState>>,
    Path(job_id): Path<String>,
    Query(q): Q,
    req: Request,
) -> Response {
    call(s, req, q, &[("JobId", &job_id)], fixed!("GetFaceSearch")).await
}

async fn list_video_jobs(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ListVideoJobs")).await
}

async fn list_videos(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ListVideos")).await
}

/// `PUT /v1/buckets/{Bucket}/{Key}`: the body is the video, streamed into
/// the bucket directory (never held in memory). A SigV4-signed upload must
/// declare its SHA-256 in `x-amz-content-sha256`, as S3 clients do; the
/// signature covers it and the bytes received are checked against it.
async fn upload_video(
    State(s): State<Arc<AppState>>,
    Path((bucket, key)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let bearer = header("authorization").is_some_and(|h| h.starts_with("Bearer "));
    let declared = header("x-amz-content-sha256")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    let signed = header("authorization").is_some() && !bearer;
    if signed && declared.is_none() {
        let e = ApiError::invalid_parameter(
            "a SigV4-signed upload must send its SHA-256 in x-amz-content-sha256 (or use Bearer authentication)",
        );
        return respond("UploadVideo", None, Err(e), true);
    }
    let payload = match &declared {
        Some(hash) if signed => Payload::Declared(hash),
        _ => Payload::Body(b""),
    };
    // The permit holds one of the key's concurrency slots for the whole upload.
    let (caller, _permit) = match authenticate(&s, &parts, payload, true) {
        Ok(c) => c,
        Err(e) => return respond("UploadVideo", None, Err(e), true),
    };
    let key_id = Some(caller.principal.access_key.clone());
    let Some(video) = s.video.clone() else {
        let e = ApiError::invalid_parameter("this service was started without video support");
        return respond("UploadVideo", key_id, Err(e), true);
    };
    let to = kenning_video::UploadTo {
        caller,
        bucket,
        name: key,
        expected_sha256: declared,
    };
    let result = kenning_video::upload_streamed(video, to, BodyChunks(body)).await;
    respond("UploadVideo", key_id, result, true)
}

/// A request body as an upload's chunks (its trailers are passed over).
struct BodyChunks(axum::body::Body);

impl kenning_video::Chunks for BodyChunks {
    type Chunk = axum::body::Bytes;
    async fn next_chunk(&mut self) -> Option<Result<axum::body::Bytes, String>> {
        use http_body_util::BodyExt as _;
        while let Some(frame) = self.0.frame().await {
            match frame.map(|f| f.into_data()) {
                Ok(Ok(data)) => return Some(Ok(data)),
                Ok(Err(_trailers)) => {}
                Err(e) => return Some(Err(format!("the upload was cut off: {e}"))),
            }
        }
        None
    }
}

/// Runs an operation whose whole input is in the path (DELETE with a face id).
async fn call_extra(
    s: Arc<AppState>,
    req: Request,
    path: &[(&str, &str)],
    extra: Value,
    pick: Pick,
) -> Response {
    let (parts, body) = req.into_parts();
    let Authenticated {
        caller, _permit, ..
    } = match read_and_authenticate(&s, &parts, body, true).await {
        Ok(x) => x,
        Err(e) => return respond("rest", None, Err(e), true),
    };
    let key = Some(caller.principal.access_key.clone());
    let mut m = Map::new();
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    for (k, v) in path {
        m.insert((*k).into(), Value::String((*v).into()));
    }
    let op = pick(&m);
    let result = run_op(&s, &caller, op, Value::Object(m)).await;
    respond(op, key, result, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_carries_every_bound_the_service_checks() {
        let doc: Value = serde_json::from_str(openapi_document()).unwrap();
        // The document as written parses (else the constraints would be lost).
        assert_ne!(openapi_document(), OPENAPI);
        let ops: Vec<(&str, &Value)> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|o| Some((o["operationId"].as_str()?, o)))
            .collect();
        for (op, name, lo, hi) in kenning_api::NUMERIC_BOUNDS {
            let Some((_, o)) = ops.iter().find(|(id, _)| id == op) else {
                continue;
            };
            let Some(p) = o["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == *name)
            else {
                continue;
            };
            assert_eq!(p["schema"]["minimum"].as_f64(), Some(*lo), "{op} {name}");
            assert_eq!(p["schema"]["maximum"].as_f64(), Some(*hi), "{op} {name}");
        }
        let create = ops
            .iter()
            .find(|(id, _)| *id == "CreateCollection")
            .unwrap()
            .1;
        let id = &create["requestBody"]["content"]["application/json"]["schema"]["properties"]
            ["CollectionId"];
        assert_eq!(id["maxLength"], 255);
        assert_eq!(id["pattern"], kenning_store::COLLECTION_ID.pattern());
    }

    #[tokio::test]
    async fn multipart_bodies_split_into_image_and_fields() {
        let ct = "multipart/form-data; boundary=XyZ";
        let body = &b"--XyZ\r\nContent-Disposition: form-data; name=\"MaxFaces\"\r\n\r\n5\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\r\n\xff\xd9\r\n--XyZ--\r\n"[..];
        let parts = multipart_parts(ct, Bytes::from_static(body)).await.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].file, &parts[0].body[..]),
            ("MaxFaces", false, &b"5"[..])
        );
        assert_eq!((parts[1].name.as_str(), parts[1].file), ("image", true));
        assert_eq!(
            &parts[1].body[..],
            b"\xff\xd8\r\n\xff\xd9",
            "CRLF inside the file is kept"
        );
        for broken in [
            &b"no boundary here"[..],
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            b"--XyZ\r\nContent-Type: text/plain\r\n\r\nno name\r\n--XyZ--\r\n",
        ] {
            let e = multipart_parts(ct, Bytes::from_static(broken))
                .await
                .err()
                .unwrap_or_else(|| panic!("{:?} was accepted", String::from_utf8_lossy(broken)));
            assert!(e.to_string().contains("malformed multipart body"), "{e}");
        }
        assert!(
            multipart_parts("multipart/form-data", Bytes::from_static(body))
                .await
                .is_err()
        );
    }
}
