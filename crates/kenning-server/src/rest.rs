//! The native REST API: the same operations as resources under `/v1`.
//!
//! Bodies are Rekognition's JSON shapes without the ids that the path
//! carries, or, where an image is the input, the raw image itself
//! (`Content-Type: image/jpeg`, `image/png`, `image/webp` or
//! `application/octet-stream`) with the other parameters in the query string.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::{read_and_authenticate, respond, run_op, ApiError, AppState};

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
type Pick = fn(&Map<String, Value>) -> &'static str;

async fn call(
    s: Arc<AppState>,
    req: Request,
    query: HashMap<String, String>,
    path: &[(&str, &str)],
    pick: Pick,
) -> Response {
    let (parts, body) = req.into_parts();
    let (bytes, caller) = match read_and_authenticate(&s, &parts, body, true).await {
        Ok(x) => x,
        Err(e) => return respond("rest", None, Err(e), true),
    };
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let built: Result<Map<String, Value>, ApiError> = (|| {
        let mut m = if ct.starts_with("image/") || ct.starts_with("application/octet-stream") {
            let mut m = Map::new();
            m.insert(
                "Image".into(),
                json!({ "Bytes": base64::engine::general_purpose::STANDARD.encode(&bytes) }),
            );
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
        Err(e) => return respond("rest", caller, Err(e), true),
    };
    let op = pick(&m);
    let result = run_op(&s, op, Value::Object(m)).await;
    respond(op, caller, result, true)
}

macro_rules! fixed {
    ($name:literal) => {
        (|_: &Map<String, Value>| $name) as Pick
    };
}

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

/// Runs an operation whose whole input is in the path (DELETE with a face id).
async fn call_extra(
    s: Arc<AppState>,
    req: Request,
    path: &[(&str, &str)],
    extra: Value,
    pick: Pick,
) -> Response {
    let (parts, body) = req.into_parts();
    let caller = match read_and_authenticate(&s, &parts, body, true).await {
        Ok((_, caller)) => caller,
        Err(e) => return respond("rest", None, Err(e), true),
    };
    let mut m = Map::new();
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    for (k, v) in path {
        m.insert((*k).into(), Value::String((*v).into()));
    }
    let op = pick(&m);
    let result = run_op(&s, op, Value::Object(m)).await;
    respond(op, caller, result, true)
}
