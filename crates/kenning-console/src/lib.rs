//! Kenning's web console, served by `kenning serve` at `/console/` on the
//! API's own listener.
//!
//! Server-rendered pages (maud) with a little plain JavaScript that only
//! enhances them: everything works without it, and everything the browser
//! loads comes from the binary itself. The console is one more front end of
//! the [`Governor`](kenning_accountability::Governor): every page acts as
//! the signed-in key, with its role and scope, through the same operations
//! as the API, so the audit trail records it alike.
//!
//! * Sessions live in the service; the browser holds a random id in an
//!   HttpOnly, SameSite=Strict cookie (Secure under TLS). Every form that
//!   changes something carries the session's CSRF token. Sessions end after
//!   an idle time, at sign-out, or when their key is revoked.
//! * Content-Security-Policy allows scripts, styles and images from the
//!   service only (no inline code).

#![warn(missing_docs)]

pub mod accuracy;
mod assets;
mod form;
mod pages;
pub mod pdf;
pub mod report;
mod session;
mod ui;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use kenning_accountability::{Caller, Governor, Principal};
use kenning_api::ApiError;
use serde_json::Value;

pub use session::Sessions;

/// What the console needs from the service it is mounted in.
pub trait Backend: Send + Sync + 'static {
    /// The principal of the active key `key_id` if `secret` is its secret.
    fn sign_in(&self, key_id: &str, secret: &str) -> Option<Principal>;
    /// The principal an API token speaks for, while the token is valid and
    /// its key active.
    fn token(&self, token: &str) -> Option<Principal>;
    /// The principal of the active key `key_id` (`None` once revoked).
    fn principal(&self, key_id: &str) -> Option<Principal>;
    /// The id the service gave this request (its audit records carry it).
    fn request_id(&self, extensions: &axum::http::Extensions) -> Option<String>;
    /// Runs operation `op` for `caller` as the API would.
    fn call(
        &self,
        caller: Caller,
        op: &'static str,
        body: Value,
    ) -> Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send>>;
    /// The rules every operation goes through.
    fn governor(&self) -> &Governor;
    /// The stored-video jobs, when the service analyses video.
    fn video(&self) -> Option<Arc<kenning_video::VideoService>>;
}

/// How the console runs.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The data directory (its `eval/` folder holds extra accuracy reports).
    pub data_dir: PathBuf,
    /// Mark cookies Secure (the service speaks TLS).
    pub secure_cookies: bool,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in in any case.
    pub max_lifetime: Duration,
    /// Largest upload, in bytes.
    pub body_limit: usize,
}

impl ConsoleConfig {
    /// Defaults: 15 minutes idle, 12 hours at most, 8 MiB uploads.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            secure_cookies: false,
            idle_timeout: Duration::from_secs(15 * 60),
            max_lifetime: Duration::from_secs(12 * 3600),
            body_limit: 8 << 20,
        }
    }
}

/// Shared state of the console.
pub(crate) struct App {
    backend: Arc<dyn Backend>,
    config: ConsoleConfig,
    sessions: Sessions,
}

/// The Content-Security-Policy of every console response: nothing inline,
/// nothing from elsewhere; images may also be the page's own blobs (photo
/// previews) and data URLs (the probe shown with its results); the web app
/// manifest comes from the service too.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; manifest-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes under `/console`, for the service to merge.
pub fn router(backend: Arc<dyn Backend>, config: ConsoleConfig) -> Router {
    let limit = config.body_limit;
    let app = Arc::new(App {
        backend,
        sessions: Sessions::new(config.idle_timeout, config.max_lifetime),
        config,
    });
    pages::routes()
        .merge(assets::routes())
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Where a browser's `GET /` is sent.
pub async fn root_redirect() -> Response {
    Redirect::to("/console/").into_response()
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("geolocation=(), microphone=(), camera=(self)"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A plain-text error response (for image routes).
pub(crate) fn status(code: StatusCode, message: &str) -> Response {
    (code, message.to_owned()).into_response()
}
