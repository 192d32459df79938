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

/// The OpenAPI 3 document.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(crate) async fn openapi() -> Response {
    let mut r = OPENAPI.into_response();
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
        .route("/v1/audit/verify", get(verify_audit))
        .route("/v1/audit/export", get(export_audit))
        .route("/v1/retention/run", post(run_retention))
        .route("/v1/video/face-detection", post(start_face_detection))
        .route("/v1/video/face-detection/{job_id}", get(get_face_detection))
        .route("/v1/video/face-search", post(start_face_search))
        .route("/v1/video/face-search/{job_id}", get(get_face_search))
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

/// `PUT /v1/buckets/{Bucket}/{Key}`: the body is the video, streamed into
/// the bucket directory (never held in memory). A SigV4-signed upload must
/// declare its SHA-256 in `x-amz-content-sha256`, as S3 clients do; the
/// signature covers it and the bytes received are checked against it.
async fn upload_video(
    State(s): State<Arc<AppState>>,
    Path((bucket, key)): Path<(String, String)>,
    req: Request,
) -> Response {
    use http_body_util::BodyExt as _;
    let (parts, mut body) = req.into_parts();
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
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, String>>(4);
    let task = tokio::task::spawn_blocking(move || {
        video.upload(&caller, &bucket, &key, declared.as_deref(), |write| {
            while let Some(chunk) = rx.blocking_recv() {
                let chunk = chunk.map_err(kenning_video::VideoError::InvalidParameter)?;
                write(&chunk)?;
            }
            Ok(())
        })
    });
    loop {
        let next = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Ok(data),
                Err(_) => continue,
            },
            Some(Err(e)) => Err(format!("the upload was cut off: {e}")),
            None => break,
        };
        let failed = next.is_err();
        // The writer stops taking chunks once it refuses the upload.
        if tx.send(next).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    let result = task
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the upload failed: {e}"))));
    respond("UploadVideo", key_id, result, true)
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
