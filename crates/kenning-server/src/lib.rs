//! Kenning's HTTP service.
//!
//! * `POST /` speaks Amazon Rekognition's AWS JSON 1.1 protocol
//!   (`X-Amz-Target: RekognitionService.<Operation>`), authenticated with AWS
//!   Signature Version 4, so AWS SDKs and the aws CLI work by changing only
//!   the endpoint URL.
//! * `/v1/...` is a native REST API over the same operations (bearer secret
//!   or SigV4), described by the OpenAPI 3 document at `/openapi.json`.
//! * `/healthz` and Prometheus `/metrics` are unauthenticated.
//!
//! Inference is CPU-bound and runs on tokio's blocking pool behind a
//! semaphore, so the async runtime never blocks and at most
//! `max_concurrent` requests hold decoded images at once.

#![forbid(unsafe_code)]

mod console;
mod events;
pub mod metrics;
mod rest;
pub mod sigv4;
pub mod throttle;
pub mod tls;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kenning_accountability::keys::{self, ActiveKey, KeyError, KeyStore};
use kenning_accountability::{Caller, Governor, Grant, Principal, KENNING_OPERATIONS};
use kenning_collections::Collections;
use kenning_streams::StreamService;
use kenning_video::VideoService;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Semaphore;

use kenning_api::ops;
pub use kenning_api::ApiError;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Accept unsigned requests (signed ones are still verified).
    pub allow_anonymous: bool,
    /// Allow `allow_anonymous` on a non-loopback address.
    pub allow_anonymous_remote: bool,
    /// Longest a request may take before it is answered with 503.
    pub request_timeout: Duration,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Requests running the pipeline at once (others wait their turn).
    pub max_concurrent: usize,
    /// How often the retention pass runs (`None`: only on demand).
    pub retention_interval: Option<Duration>,
    /// Serve HTTPS with this certificate and key (re-read on SIGHUP).
    pub tls: Option<tls::TlsFiles>,
    /// Longest a client may take to send a request's headers (and a TLS
    /// handshake), so slow clients cannot hold connections open.
    pub header_timeout: Duration,
    /// Per-key request rate and concurrency limits.
    pub limits: throttle::Limits,
    /// The web console at `/console/` (`None`: not served).
    pub console: Option<kenning_console::ConsoleConfig>,
}

impl ServerConfig {
    /// Defaults for `listen`: 30 s timeout, 8 MiB bodies, 2 x cores in the
    /// pipeline, 10 s for headers; per key 200 requests/s (bursts of 400)
    /// and 4 x cores at once.
    pub fn new(listen: SocketAddr) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            listen,
            allow_anonymous: false,
            allow_anonymous_remote: false,
            request_timeout: Duration::from_secs(30),
            body_limit: 8 << 20,
            max_concurrent: cores * 2,
            retention_interval: Some(Duration::from_secs(3600)),
            tls: None,
            header_timeout: Duration::from_secs(10),
            limits: throttle::Limits {
                rate: 200.0,
                burst: 400.0,
                concurrency: cores * 4,
            },
            console: None,
        }
    }
}

/// What starting the service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Anonymous access was asked for on a non-loopback address.
    #[error(
        "--allow-anonymous on the non-loopback address {0} needs --allow-anonymous-remote as well"
    )]
    AnonymousRemote(SocketAddr),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The key store failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Saving the indexes at shutdown failed.
    #[error("flushing collections at shutdown: {0}")]
    Flush(String),
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Where the root key came from.
#[derive(Debug, Clone)]
pub enum RootKey {
    /// KENNING_ACCESS_KEY_ID / KENNING_SECRET_ACCESS_KEY.
    FromEnv {
        /// Access key id.
        access_key_id: String,
        /// Secret.
        secret_access_key: SecretString,
    },
    /// Generated now and saved: print the secret once.
    Generated(keys::NewKey),
    /// Generated on an earlier start.
    Stored {
        /// Access key id.
        access_key_id: String,
    },
}

/// The root key: from the environment, else the stored one, else a new one
/// (stored with the audit record `audit` gives). When several nodes of one
/// database start at once, one of them generates it and the others use it.
pub fn root_key(
    store: &KeyStore,
    env: Option<(String, SecretString)>,
    audit: impl FnOnce(&keys::KeyInfo) -> kenning_audit::Entry,
) -> Result<RootKey, KeyError> {
    if let Some((access_key_id, secret_access_key)) = env {
        keys::validate_access_key_id(&access_key_id)?;
        if secret_access_key.expose_secret().len() < 16 {
            return Err(KeyError::Invalid(
                "KENNING_SECRET_ACCESS_KEY must be at least 16 characters".into(),
            ));
        }
        return Ok(RootKey::FromEnv {
            access_key_id,
            secret_access_key,
        });
    }
    if let Some(access_key_id) = store.root()? {
        return Ok(RootKey::Stored { access_key_id });
    }
    match store.create(true, &Grant::admin(), audit) {
        Ok(k) => Ok(RootKey::Generated(k)),
        Err(KeyError::RootExists) => match store.root()? {
            Some(access_key_id) => Ok(RootKey::Stored { access_key_id }),
            None => Err(KeyError::RootExists),
        },
        Err(e) => Err(e),
    }
}

/// The keys requests are checked against: the stored keys (reloaded when
/// they change, so `kenning keys revoke` takes effect at once on the
/// embedded store and within a second on every node of a shared database)
/// plus a root key from the environment, and the API tokens issued for them.
pub struct Credentials {
    store: KeyStore,
    fixed: HashMap<String, ActiveKey>,
    cache: RwLock<Loaded>,
}

/// The keys and tokens as last loaded.
struct Loaded {
    version: Option<String>,
    checked: Option<Instant>,
    keys: HashMap<String, ActiveKey>,
    tokens: Option<Arc<keys::TokenSet>>,
}

impl Credentials {
    /// Credentials from `store` plus `root` when it came from the environment.
    pub fn new(store: KeyStore, root: &RootKey) -> Self {
        let mut fixed = HashMap::new();
        if let RootKey::FromEnv {
            access_key_id,
            secret_access_key,
        } = root
        {
            fixed.insert(
                access_key_id.clone(),
                ActiveKey {
                    secret: secret_access_key.clone(),
                    principal: Principal::new(access_key_id, Grant::admin()),
                },
            );
        }
        Self {
            store,
            fixed,
            cache: RwLock::new(Loaded {
                version: None,
                checked: None,
                keys: HashMap::new(),
                tokens: None,
            }),
        }
    }

    fn refresh(&self) {
        let recheck = self.store.vault().recheck();
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if cache.checked.is_some_and(|t| t.elapsed() < recheck) {
                return;
            }
        }
        let version = self.store.vault().version().ok();
        let stale = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            version.is_none() || cache.version != version
        };
        if !stale {
            self.cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .checked = Some(Instant::now());
            return;
        }
        match self
            .store
            .active()
            .and_then(|k| Ok((k, self.store.tokens()?)))
        {
            Ok((keys, tokens)) => {
                *self.cache.write().unwrap_or_else(|e| e.into_inner()) = Loaded {
                    version,
                    checked: Some(Instant::now()),
                    keys,
                    tokens: Some(Arc::new(tokens)),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the key store; keeping the keys loaded before")
            }
        }
    }

    /// The active key `access_key_id`.
    pub fn key(&self, access_key_id: &str) -> Option<ActiveKey> {
        if let Some(k) = self.fixed.get(access_key_id) {
            return Some(k.clone());
        }
        self.refresh();
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .get(access_key_id)
            .cloned()
    }

    /// The key an API token speaks for (bearer authentication), if the
    /// token is valid and its key active. Tokens reload with the keys, so a
    /// revoked token stops as a revoked key does.
    pub fn by_token(&self, token: &str) -> Option<ActiveKey> {
        self.refresh();
        let set = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tokens
            .clone()?;
        let info = set.verify(token, now_secs().max(0) as u64).ok()?;
        self.key(&info.access_key_id)
    }
}

/// Shared state of the running service.
pub(crate) struct AppState {
    governor: Arc<Governor>,
    video: Option<Arc<VideoService>>,
    streams: Option<Arc<StreamService>>,
    /// Turns true when the service shuts down (ends event feeds).
    closing: tokio::sync::watch::Sender<bool>,
    credentials: Credentials,
    metrics: metrics::Metrics,
    config: ServerConfig,
    permits: Arc<Semaphore>,
    throttle: throttle::Throttle,
}

/// The id the envelope gave a request (it is also the audit record's).
#[derive(Clone)]
pub(crate) struct RequestId(String);

/// What the handler did, for the access log and the metrics.
#[derive(Clone)]
pub(crate) struct Outcome {
    operation: &'static str,
    error: Option<Cow<'static, str>>,
    caller: Option<String>,
}

/// The metrics label of an operation name: one the service implements,
/// "unknown" or "rest", else "other" (never a client's string).
fn operation_label(op: &str) -> &'static str {
    static KNOWN: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        ops::OPERATIONS
            .iter()
            .chain(KENNING_OPERATIONS)
            .copied()
            .chain(["unknown", "rest"])
            .collect()
    });
    metrics::operation_label(op, known)
}

/// The metrics label of an exception: the names the service's code raises
/// are static strings; anything built at run time is "other".
#[allow(clippy::ptr_arg)] // the Cow's variant is what tells the two apart
fn exception_label(kind: &Cow<'static, str>) -> &'static str {
    match kind {
        Cow::Borrowed(s) => s,
        Cow::Owned(_) => "other",
    }
}

/// A bound, not yet serving, service.
pub struct Server {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<tls::Tls>,
}

/// The optional services behind the photo operations.
#[derive(Default, Clone)]
pub struct Services {
    /// The stored-video operations (without it they are refused).
    pub video: Option<Arc<VideoService>>,
    /// The stream-processor operations and feeds (without it, as without
    /// `--enable-streams`, they are refused with AccessDeniedException).
    pub streams: Option<Arc<StreamService>>,
}

/// Binds the listening socket, serving `services` beside the photo
/// operations.
pub async fn bind(
    config: ServerConfig,
    governor: impl Into<Arc<Governor>>,
    credentials: Credentials,
    services: Services,
) -> Result<Server, ServerError> {
    if config.allow_anonymous && !config.listen.ip().is_loopback() && !config.allow_anonymous_remote
    {
        return Err(ServerError::AnonymousRemote(config.listen));
    }
    let tls = config.tls.clone().map(tls::Tls::new).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let state = Arc::new(AppState {
        governor: governor.into(),
        video: services.video,
        streams: services.streams,
        closing: tokio::sync::watch::channel(false).0,
        credentials,
        metrics: metrics::Metrics::default(),
        permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        throttle: throttle::Throttle::new(config.limits),
        config,
    });
    Ok(Server {
        state,
        listener,
        tls,
    })
}

impl Server {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in
    /// flight and saves the collections' indexes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        let retention = state.config.retention_interval.map(|every| {
            let governor = state.governor.clone();
            tokio::spawn(retention_schedule(governor, every))
        });
        let reload = self.tls.clone().map(|t| tokio::spawn(reload_on_sighup(t)));
        let app = router(self.state);
        let closing = state.closing.clone();
        let shutdown = async move {
            shutdown.await;
            // Event feeds never end by themselves: end them so the
            // connections can close.
            closing.send_replace(true);
        };
        serve_connections(
            self.listener,
            app,
            self.tls,
            state.config.header_timeout,
            shutdown,
        )
        .await;
        if let Some(task) = reload {
            task.abort();
        }
        if let Some(task) = retention {
            task.abort();
        }
        if let Some(video) = state.video.clone() {
            // Running jobs stay IN_PROGRESS and resume at the next start.
            let _ = tokio::task::spawn_blocking(move || video.shutdown()).await;
        }
        if let Some(streams) = state.streams.clone() {
            // Running processors stay RUNNING and resume at the next start.
            let _ = tokio::task::spawn_blocking(move || streams.shutdown()).await;
        }
        tracing::info!("requests finished; saving indexes");
        let collections = state.governor.collections().clone();
        tokio::task::spawn_blocking(move || collections.flush())
            .await
            .map_err(|e| ServerError::Flush(e.to_string()))?
            .map_err(|e| ServerError::Flush(e.to_string()))?;
        Ok(())
    }
}

/// Accepts connections until `shutdown`, serving HTTP/1.1 and HTTP/2 (over
/// TLS when configured), then waits for the connections' requests to end.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tls::Tls>,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (builder, app, tls, watcher) = (
            builder.clone(),
            app.clone(),
            tls.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let result =
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(tcp), service);
                        watcher.watch(conn).await
                    }
                    Some(tls) => {
                        let stream =
                            match tokio::time::timeout(header_timeout, tls.acceptor().accept(tcp))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(conn).await
                    }
                };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Re-reads the TLS certificate and key on every SIGHUP.
async fn reload_on_sighup(tls: tls::Tls) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the one in use")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

/// Runs the retention pass at start and then every `every` (so frequent
/// restarts cannot postpone it forever).
async fn retention_schedule(governor: Arc<Governor>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let g = governor.clone();
        let caller = Caller::system("retention");
        match tokio::task::spawn_blocking(move || g.run_retention(&caller)).await {
            Ok(Ok(done)) => {
                let faces: u64 = done.iter().map(|r| r.faces_deleted).sum();
                tracing::info!(
                    faces_deleted = faces,
                    collections = done.len(),
                    "retention pass"
                );
            }
            Ok(Err(e)) => tracing::error!(error = %e, "retention pass failed"),
            Err(e) => tracing::error!(error = %e, "retention pass panicked"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}

fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .route("/", post(aws_json).get(kenning_console::root_redirect))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(rest::openapi))
        .merge(rest::routes())
        .merge(events::routes())
        .fallback(not_found)
        .with_state(state.clone());
    if let Some(c) = &state.config.console {
        app = app.merge(console::router(state.clone(), c.clone()));
    }
    app.layer(middleware::from_fn_with_state(state, envelope))
}

/// Request id, timeout, access log and metrics around every request.
async fn envelope(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    // SigV4 signs the normalised path, so a request on a path with `.`,
    // `..` or empty segments must not reach a route by its raw spelling.
    if sigv4::normalize_path(&path) != path {
        let e = ApiError::new(
            404,
            "NotFoundException",
            format!("{path:?} is not a normalised path (no '.', '..' or empty segments)"),
        );
        let mut r = json_error(&e, 404);
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert("x-amzn-requestid", v);
        }
        return r;
    }
    let start = Instant::now();
    let in_flight = s.metrics.in_flight();
    // Uploads of videos take as long as the bytes take to arrive.
    let limit = if path.starts_with(rest::UPLOAD_PREFIX) || path == kenning_console::UPLOAD_PATH {
        s.config.request_timeout.max(Duration::from_secs(24 * 3600))
    } else {
        s.config.request_timeout
    };
    let mut resp = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let e = ApiError::new(
                503,
                "ThrottlingException",
                format!(
                    "the request did not finish within {} s; the service is overloaded, retry later",
                    s.config.request_timeout.as_secs()
                ),
            );
            let mut r = json_error(&e, e.status);
            r.extensions_mut().insert(Outcome {
                operation: "other",
                error: Some(e.kind.clone()),
                caller: None,
            });
            r
        }
    };
    drop(in_flight);
    let secs = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    let outcome = resp.extensions().get::<Outcome>().cloned();
    let operation = outcome.as_ref().map_or("other", |o| o.operation);
    let error = outcome.as_ref().and_then(|o| o.error.clone());
    let caller = outcome.and_then(|o| o.caller);
    if path != "/metrics" && path != "/healthz" {
        s.metrics
            .request(operation, status, secs, error.as_ref().map(exception_label));
    }
    tracing::info!(
        request_id = %id,
        %method,
        %path,
        operation = %operation,
        status,
        latency_ms = (secs * 1000.0).round(),
        error = error.as_deref().unwrap_or(""),
        caller = caller.as_deref().unwrap_or(""),
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    if matches!(
        error.as_deref(),
        Some("ThrottlingException" | "ProvisionedThroughputExceededException")
    ) && !resp.headers().contains_key("retry-after")
    {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn json_error(e: &ApiError, status: u16) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        e.body().to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}

fn respond(
    operation: &str,
    caller: Option<String>,
    result: Result<Value, ApiError>,
    rest: bool,
) -> Response {
    let (mut r, error) = match result {
        Ok(v) => {
            let mut r = (StatusCode::OK, v.to_string()).into_response();
            let ct = if rest {
                "application/json"
            } else {
                "application/x-amz-json-1.1"
            };
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(ct));
            (r, None)
        }
        Err(e) => {
            let status = if rest { e.rest_status() } else { e.status };
            let mut r = json_error(&e, status);
            if rest {
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
            }
            (r, Some(e.kind.clone()))
        }
    };
    r.extensions_mut().insert(Outcome {
        operation: operation_label(operation),
        error,
        caller,
    });
    r
}

async fn not_found(req: Request) -> Response {
    let e = ApiError::new(
        404,
        "NotFoundException",
        format!("no route for {} {}", req.method(), req.uri().path()),
    );
    json_error(&e, 404)
}

async fn healthz() -> Response {
    let mut r = (StatusCode::OK, r#"{"status":"ok"}"#).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    let mut r = (StatusCode::OK, s.metrics.render(s.streams.as_deref())).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads an optional context header (`X-Kenning-Case`, `X-Kenning-Purpose`).
fn context_header(
    parts: &axum::http::request::Parts,
    name: &str,
) -> Result<Option<String>, ApiError> {
    let Some(v) = parts.headers.get(name) else {
        return Ok(None);
    };
    // Length and emptiness are checked by the Governor, for every front end.
    let text = v.to_str().map_err(|_| {
        ApiError::invalid_parameter(format!(
            "the {name} header must be printable ASCII characters"
        ))
    })?;
    Ok(Some(text.trim().to_owned()))
}

/// An authenticated request: its body, who sent it, and the key's
/// concurrency slot (held until the request is answered).
pub(crate) struct Authenticated {
    pub(crate) bytes: axum::body::Bytes,
    pub(crate) caller: Caller,
    pub(crate) _permit: throttle::Permit,
}

/// Reads the body (bounded), authenticates the request and applies the
/// key's limits; `bearer` allows `Authorization: Bearer <API token>` as well
/// as SigV4.
pub(crate) async fn read_and_authenticate(
    s: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
    bearer: bool,
) -> Result<Authenticated, ApiError> {
    let bytes = axum::body::to_bytes(body, s.config.body_limit)
        .await
        .map_err(|_| {
            ApiError::new(
                413,
                "ImageTooLargeException",
                format!("the request body exceeds {} bytes", s.config.body_limit),
            )
        })?;
    let (caller, permit) = authenticate(s, parts, Payload::Body(&bytes), bearer)?;
    Ok(Authenticated {
        bytes,
        caller,
        _permit: permit,
    })
}

/// What a request's SigV4 signature is checked over.
pub(crate) enum Payload<'a> {
    /// The body, read whole.
    Body(&'a [u8]),
    /// The SHA-256 (hex) the client declared for a body still to be read.
    Declared(&'a str),
}

/// Authenticates a request whose body is `payload` and takes a slot of the
/// key's concurrency (held until the request is answered).
pub(crate) fn authenticate(
    s: &AppState,
    parts: &axum::http::request::Parts,
    payload: Payload<'_>,
    bearer: bool,
) -> Result<(Caller, throttle::Permit), ApiError> {
    let header = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let principal = match header {
        None if s.config.allow_anonymous => Principal::new("anonymous", Grant::admin()),
        Some(h) if bearer && h.starts_with("Bearer ") => {
            let token = h["Bearer ".len()..].trim();
            s.credentials
                .by_token(token)
                .ok_or_else(|| {
                    ApiError::new(
                        403,
                        "UnrecognizedClientException",
                        "the bearer token is not a valid API token of an active access key \
                         (`kenning keys token create` issues one; a secret access key is not a token)",
                    )
                })?
                .principal
        }
        _ => {
            let req = sigv4::SignedRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or(""),
                authority: parts.uri.authority().map(|a| a.as_str()),
                headers: &parts.headers,
                body: match payload {
                    Payload::Body(b) => b,
                    Payload::Declared(_) => b"",
                },
            };
            let secret_of = |k: &str| s.credentials.key(k).map(|k| k.secret);
            let verified = match payload {
                Payload::Body(_) => sigv4::verify(&req, now_secs(), secret_of),
                Payload::Declared(hash) => {
                    sigv4::verify_declared(&req, hash, now_secs(), secret_of)
                }
            };
            let key =
                verified.map_err(|e| ApiError::new(e.status(), e.exception(), e.to_string()))?;
            s.credentials
                .key(&key)
                .ok_or_else(|| {
                    ApiError::new(403, "UnrecognizedClientException", "the key was revoked")
                })?
                .principal
        }
    };
    let permit = s
        .throttle
        .admit(&principal.access_key, Instant::now())
        .map_err(|refusal| match refusal {
            throttle::Refusal::Rate(secs) => ApiError::new(
                400,
                "ThrottlingException",
                format!(
                    "access key {} is over its rate of {} requests per second; retry in {secs} s",
                    principal.access_key, s.config.limits.rate
                ),
            ),
            throttle::Refusal::Concurrency => ApiError::new(
                400,
                "ProvisionedThroughputExceededException",
                format!(
                    "access key {} has {} requests in progress, its limit; retry when one finishes",
                    principal.access_key, s.config.limits.concurrency
                ),
            ),
        })?;
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |r| r.0.clone());
    Ok((
        Caller {
            principal,
            request_id,
            case: context_header(parts, "x-kenning-case")?,
            purpose: context_header(parts, "x-kenning-purpose")?,
        },
        permit,
    ))
}

/// Runs an operation on the blocking pool, holding a permit while it runs.
pub(crate) async fn run_op(
    s: &Arc<AppState>,
    caller: &Caller,
    op: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let permit =
        s.permits.clone().acquire_owned().await.map_err(|_| {
            ApiError::new(503, "ThrottlingException", "the service is shutting down")
        })?;
    let state = s.clone();
    let op_owned = op.to_owned();
    let caller = caller.clone();
    let (result, secs) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let t = Instant::now();
        let none = |r: Result<Value, ApiError>| r.map(|v| (v, ops::Counts::default()));
        let r = if kenning_streams::OPERATIONS.contains(&op_owned.as_str()) {
            match &state.streams {
                Some(streams) => none(streams.call(&caller, &op_owned, body)),
                None => Err(events::disabled(&op_owned)),
            }
        } else {
            match &state.video {
                Some(video) if kenning_video::OPERATIONS.contains(&op_owned.as_str()) => {
                    none(video.call(&caller, &op_owned, body))
                }
                _ => state.governor.call(&caller, &op_owned, body),
            }
        };
        (r, t.elapsed().as_secs_f64())
    })
    .await
    .map_err(|e| ApiError::internal(format!("the operation failed: {e}")))?;
    s.metrics.inference(operation_label(op), secs);
    let (v, counts) = result?;
    s.metrics.faces_detected(counts.detected);
    s.metrics.faces_indexed(counts.indexed);
    Ok(v)
}

async fn aws_json(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (op, known) = match target.split_once('.') {
        Some(("RekognitionService", op)) => (op, ops::OPERATIONS.contains(&op)),
        Some(("KenningService", op)) => (op, KENNING_OPERATIONS.contains(&op)),
        _ => (target.as_str(), false),
    };
    let label = if known { op } else { "unknown" };
    let Authenticated {
        bytes,
        caller,
        _permit,
    } = match read_and_authenticate(&s, &parts, body, false).await {
        Ok(x) => x,
        Err(e) => return respond(label, None, Err(e), false),
    };
    let key = Some(caller.principal.access_key.clone());
    let result = async {
        if target.is_empty() {
            return Err(ApiError::new(
                400,
                "UnknownOperationException",
                "the X-Amz-Target header is missing; expected RekognitionService.<Operation>",
            ));
        }
        if !known {
            return Err(ApiError::unknown_operation(op));
        }
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    400,
                    "SerializationException",
                    format!("the request body is not valid JSON: {e}"),
                )
            })?
        };
        run_op(&s, &caller, op, value).await
    }
    .await;
    respond(label, key, result, false)
}

/// The collections of `store`, served with `recognisers` under the service's
/// limits on image bytes.
pub fn open_collections(
    store: Arc<dyn kenning_store::FaceStore>,
    recognisers: impl Into<kenning_models::Recognisers>,
) -> Collections {
    let mut c = Collections::with_store(store, recognisers);
    c.set_decode_limits(kenning_image::DecodeLimits {
        max_bytes: ops::MAX_IMAGE_BYTES,
        ..kenning_image::DecodeLimits::default()
    });
    c
}
