//! Who is asking (the session) and what they submitted (form fields and
//! uploads, accepted only with the session's CSRF token).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kenning_accountability::{Caller, Principal, Role};
use kenning_api::ApiError;
use serde_json::Value;

use crate::session::{self, Missing};
use crate::{ui, App};

/// The signed-in caller of a console request.
pub(crate) struct Ctx {
    pub app: Arc<App>,
    pub principal: Principal,
    pub csrf: String,
    pub token: String,
    pub request_id: String,
    pub flash: Option<String>,
    /// Path and query of this request.
    pub here: String,
}

fn to_signin(here: &str, why: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    Redirect::to(&format!("/console/signin?next={next}{why}")).into_response()
}

impl FromRequestParts<Arc<App>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let here = parts
            .uri
            .path_and_query()
            .map_or("/console/".to_owned(), |p| p.to_string());
        // After signing in again, come back here (to the form's page only
        // for a GET: a form is never re-sent).
        let back = if parts.method == Method::GET {
            here.as_str()
        } else {
            "/console/"
        };
        let Some(token) = session::cookie(&parts.headers, session::COOKIE) else {
            return Err(to_signin(back, ""));
        };
        let s = match app.sessions.touch(token) {
            Ok(s) => s,
            Err(Missing::Expired) => return Err(to_signin(back, "&expired=1")),
            Err(Missing::Unknown) => return Err(to_signin(back, "")),
        };
        let principal = match &s.token {
            Some(t) => app.backend.token(t),
            None => app.backend.principal(&s.key_id),
        };
        let Some(principal) = principal else {
            app.sessions.end(token);
            return Err(to_signin(back, "&revoked=1"));
        };
        let request_id = app
            .backend
            .request_id(&parts.extensions)
            .unwrap_or_else(session::random_token);
        Ok(Ctx {
            app: app.clone(),
            principal,
            csrf: s.csrf,
            token: token.to_owned(),
            request_id,
            flash: s.flash,
            here,
        })
    }
}

impl Ctx {
    pub fn role(&self) -> Role {
        self.principal.role()
    }

    /// Whether the key may run `op` at all (to offer only what works).
    pub fn may(&self, op: &str) -> bool {
        self.principal.authorize(op, None).is_ok()
    }

    /// The caller for operations, with an optional case and purpose.
    pub fn caller(&self, case: Option<&str>, purpose: Option<&str>) -> Caller {
        Caller {
            principal: self.principal.clone(),
            request_id: self.request_id.clone(),
            case: case.map(Into::into),
            purpose: purpose.map(Into::into),
        }
    }

    /// Runs `op` as the signed-in key.
    pub async fn call(&self, op: &'static str, body: Value) -> Result<Value, ApiError> {
        self.call_as(self.caller(None, None), op, body).await
    }

    /// Runs `op` as `caller`.
    pub async fn call_as(
        &self,
        caller: Caller,
        op: &'static str,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.app.backend.call(caller, op, body).await
    }

    /// Leaves a message for the next page.
    pub fn flash(&self, message: impl Into<String>) {
        self.app.sessions.flash(&self.token, message.into());
    }

    /// What a form that changed something answers: the refusal as a page,
    /// or what `message` makes of the result, shown on the page at `to`.
    pub fn done(
        &self,
        result: Result<Value, ApiError>,
        to: &str,
        message: impl FnOnce(&Value) -> String,
    ) -> Response {
        match result {
            Ok(v) => {
                self.flash(message(&v));
                Redirect::to(to).into_response()
            }
            Err(e) => ui::error_page(self, &e),
        }
    }
}

/// An uploaded file.
pub(crate) struct Upload {
    pub name: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The fields of a submitted form.
#[derive(Default)]
pub(crate) struct Fields {
    pairs: Vec<(String, String)>,
    uploads: Vec<Upload>,
}

impl Fields {
    /// A field's value, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// Non-empty uploads of field `name`.
    pub fn files<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Upload> + 'a {
        self.uploads
            .iter()
            .filter(move |u| u.name == name && !u.bytes.is_empty())
    }

    pub(crate) fn parse_urlencoded(body: &[u8]) -> Self {
        Self {
            pairs: form_urlencoded::parse(body).into_owned().collect(),
            uploads: Vec::new(),
        }
    }
}

/// A form submitted by a signed-in session, with its CSRF token checked.
pub(crate) struct Submitted {
    pub ctx: Ctx,
    pub fields: Fields,
}

/// The page a refused form gets.
pub(crate) fn forbidden(message: &str) -> Response {
    let mut r = ui::bare_page(
        "Not accepted",
        maud::html! {
            h1 { "The form was not accepted" }
            p { (message) }
            p { a href="/console/" { "Back to the console" } }
        },
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

/// Whether a request that changes something came from a console page of
/// this service (the browser's Origin, when it sends one, names this host;
/// pages are served with `Referrer-Policy: same-origin` so that browsers
/// send it rather than `null`).
pub(crate) fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return true;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(_, rest)| rest == host)
}

impl FromRequest<Arc<App>> for Submitted {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, app).await?;
        if !same_origin(&parts) {
            return Err(forbidden(
                "It was sent from another site. Use the console's own pages.",
            ));
        }
        let ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let req = Request::from_parts(parts, body);
        let too_big = || {
            let mut r = ui::bare_page(
                "Too large",
                maud::html! { h1 { "The upload is too large" } p { "Send fewer or smaller photos at a time." } },
            );
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            r
        };
        let fields = if ct.starts_with("multipart/form-data") {
            let mut mp = Multipart::from_request(req, app)
                .await
                .map_err(|_| forbidden("The form could not be read."))?;
            let mut f = Fields::default();
            loop {
                match mp.next_field().await {
                    Ok(Some(field)) => {
                        let name = field.name().unwrap_or("").to_owned();
                        let file_name = field.file_name().map(str::to_owned);
                        let bytes = field.bytes().await.map_err(|_| too_big())?;
                        match file_name {
                            Some(file_name) => f.uploads.push(Upload {
                                name,
                                file_name,
                                bytes: bytes.to_vec(),
                            }),
                            None => f
                                .pairs
                                .push((name, String::from_utf8_lossy(&bytes).into_owned())),
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return Err(too_big()),
                }
            }
            f
        } else {
            let bytes = axum::body::Bytes::from_request(req, app)
                .await
                .map_err(|_| too_big())?;
            Fields::parse_urlencoded(&bytes)
        };
        match fields.get("csrf") {
            Some(t) if session::same(t, &ctx.csrf) => Ok(Submitted { ctx, fields }),
            _ => Err(forbidden(
                "Its security token is missing or out of date (the page was open from an earlier session). Reload the page and try again.",
            )),
        }
    }
}
