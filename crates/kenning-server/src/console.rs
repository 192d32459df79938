//! Mounts the web console (`kenning-console`) on the service: its pages
//! sign in against the service's keys and run operations as the API does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use kenning_accountability::{keys, Caller, Governor, Principal};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::{run_op, ApiError, AppState, RequestId};

struct Backend(Arc<AppState>);

impl kenning_console::Backend for Backend {
    fn sign_in(&self, key_id: &str, secret: &str) -> Option<Principal> {
        let k = self.0.credentials.key(key_id)?;
        keys::same_secret(k.secret.expose_secret(), secret).then_some(k.principal)
    }

    fn token(&self, token: &str) -> Option<Principal> {
        self.0.credentials.by_token(token).map(|k| k.principal)
    }

    fn principal(&self, key_id: &str) -> Option<Principal> {
        self.0.credentials.key(key_id).map(|k| k.principal)
    }

    fn request_id(&self, extensions: &axum::http::Extensions) -> Option<String> {
        extensions.get::<RequestId>().map(|r| r.0.clone())
    }

    fn call(
        &self,
        caller: Caller,
        op: &'static str,
        body: Value,
    ) -> Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send>> {
        let state = self.0.clone();
        Box::pin(async move { run_op(&state, &caller, op, body).await })
    }

    fn governor(&self) -> &Governor {
        &self.0.governor
    }

    fn video(&self) -> Option<Arc<kenning_video::VideoService>> {
        self.0.video.clone()
    }
}

/// The console's routes, served with this service's keys and operations.
pub(crate) fn router(state: Arc<AppState>, config: kenning_console::ConsoleConfig) -> Router {
    kenning_console::router(Arc::new(Backend(state)), config)
}
