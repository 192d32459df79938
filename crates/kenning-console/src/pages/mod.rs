//! The console's pages, by what they are for.

mod accuracy;
mod admin;
mod audit;
mod keys;
mod review;
mod search;
mod video;

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use kenning_accountability::{Caller, Role};
use kenning_api::ApiError;
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::form::{forbidden, same_origin, Ctx, Fields, Submitted};
use crate::session::{self, SIGNIN_COOKIE};
use crate::{ui, App};

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(home))
        .route("/console/signin", get(signin_form).post(signin))
        .route("/console/signout", post(signout))
        .merge(search::routes())
        .merge(review::routes())
        .merge(admin::routes())
        .merge(keys::routes())
        .merge(audit::routes())
        .merge(accuracy::routes())
        .merge(video::routes())
        .route("/console/{*rest}", get(not_found))
}

async fn not_found() -> Response {
    let mut r = ui::bare_page(
        "Not found",
        html! { h1 { "No such page" } p { a href="/console/" { "Back to the console" } } },
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// A console path to return to after sign-in: only this console's pages.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/console/signout") =>
        {
            n.to_owned()
        }
        _ => "/console/".to_owned(),
    }
}

#[derive(Deserialize, Default)]
struct SigninQuery {
    next: Option<String>,
    expired: Option<String>,
    revoked: Option<String>,
    out: Option<String>,
}

fn signin_page(app: &App, next: &str, notice: Option<&str>, error: Option<&str>) -> Response {
    let token = session::random_token();
    let idle = app.config.idle_timeout.as_secs();
    let mut r = ui::bare_page(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(n) = notice { p.note role="status" { (n) } }
            @if let Some(e) = error { div.error role="alert" { p { (e) } } }
            p { "Sign in with your access key: its id and its secret. The first key is printed by "
                code { "scripts/run.sh" } " when the service starts for the first time; an admin creates a key for every other person." }
            form method="post" action="/console/signin" {
                input type="hidden" name="signin" value=(token);
                input type="hidden" name="next" value=(next);
                label for="key" { "Access key id" }
                input #key type="text" name="key_id" autocomplete="username" autocapitalize="characters" spellcheck="false" required;
                label for="secret" { "Secret" }
                input #secret type="password" name="secret" autocomplete="current-password" required;
                div { button type="submit" { "Sign in" } }
            }
            details {
                summary { "Sign in with an API token instead" }
                form method="post" action="/console/signin" {
                    input type="hidden" name="signin" value=(token);
                    input type="hidden" name="next" value=(next);
                    label for="api-token" { "API token" span.hint { "From " code { "kenning keys token create" } "; it starts with " code { "kntk_" } "." } }
                    input #api-token type="password" name="token" autocomplete="off" spellcheck="false" required;
                    div { button type="submit" { "Sign in with the token" } }
                }
            }
            p.hint { "You stay signed in until you sign out or do nothing for "
                (if idle >= 120 { format!("{} minutes", idle / 60) } else { format!("{idle} seconds") })
                ". Nothing secret is kept in the browser." }
        },
    );
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        SIGNIN_COOKIE,
        Some(&token),
        app.config.secure_cookies,
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn signin_form(State(app): State<Arc<App>>, Query(q): Query<SigninQuery>) -> Response {
    let notice = if q.expired.is_some() {
        Some("Your session ended because it was idle too long. Sign in again.")
    } else if q.revoked.is_some() {
        Some("The key or API token this session used was revoked. Sign in with another.")
    } else if q.out.is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    signin_page(&app, &safe_next(q.next.as_deref()), notice, None)
}

/// Records a sign-in, sign-out or failed sign-in; the trail must hold it
/// before the session starts or ends.
async fn record(app: &App, entry: kenning_audit::Entry, error: Option<ApiError>) -> bool {
    let backend = app.backend.clone();
    tokio::task::spawn_blocking(move || {
        backend
            .governor()
            .record_event(entry, error.as_ref().map_or(Ok(()), Err))
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

async fn signin(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 10).await else {
        return forbidden("The form could not be read.");
    };
    let f = Fields::parse_urlencoded(&bytes);
    let next = safe_next(f.get("next"));
    let bound = session::cookie(&parts.headers, SIGNIN_COOKIE);
    match (f.get("signin"), bound) {
        (Some(a), Some(b)) if session::same(a, b) && same_origin(&parts) => {}
        _ => return signin_page(
            &app,
            &next,
            None,
            Some(
                "The sign-in form was out of date or came from elsewhere. Try again on this page.",
            ),
        ),
    }
    let token = f.get("token");
    let key_id = f.get("key_id").unwrap_or("").to_owned();
    let request_id = app
        .backend
        .request_id(&parts.extensions)
        .unwrap_or_else(session::random_token);
    let principal = match token {
        Some(t) => app.backend.token(t),
        None => app.backend.sign_in(&key_id, f.get("secret").unwrap_or("")),
    };
    let Some(principal) = principal else {
        // A secret typed into the id field must not land in the trail:
        // name the key only when it exists (never a token).
        let known = token
            .is_none()
            .then(|| app.backend.principal(&key_id))
            .flatten();
        let entry = kenning_audit::Entry {
            request_id: Some(request_id),
            access_key: Some(known.as_ref().map_or("unknown", |_| key_id.as_str()).into()),
            role: known.map(|p| p.role().to_string()),
            operation: "ConsoleSignIn".into(),
            ..kenning_audit::Entry::default()
        };
        let e = ApiError::new(
            403,
            "UnrecognizedClientException",
            "console sign-in with an unknown key or a wrong secret",
        );
        record(&app, entry, Some(e)).await;
        let mut r = signin_page(
            &app,
            &next,
            None,
            Some(if token.is_some() {
                "That is not a valid API token of an active key."
            } else {
                "That access key id and secret do not match an active key."
            }),
        );
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let key_id = principal.access_key.clone();
    let caller = Caller {
        principal,
        request_id,
        case: None,
        purpose: None,
    };
    let mut entry = caller.entry("ConsoleSignIn");
    let with = if token.is_some() {
        "ApiToken"
    } else {
        "SecretAccessKey"
    };
    entry.details = Some(json!({ "With": with }));
    if !record(&app, entry, None).await {
        return forbidden(
            "The sign-in could not be recorded in the audit trail, so it was refused.",
        );
    }
    let token = app.sessions.start(&key_id, token);
    let mut r = Redirect::to(&next).into_response();
    let secure = app.config.secure_cookies;
    for c in [
        session::set_cookie(session::COOKIE, Some(&token), secure),
        session::set_cookie(SIGNIN_COOKIE, None, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

async fn signout(s: Submitted) -> Response {
    let ctx = s.ctx;
    record(
        &ctx.app,
        ctx.caller(None, None).entry("ConsoleSignOut"),
        None,
    )
    .await;
    ctx.app.sessions.end(&ctx.token);
    let mut r = Redirect::to("/console/signin?out=1").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        session::COOKIE,
        None,
        ctx.app.config.secure_cookies,
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Every page of a listing, following NextToken (at most `pages` pages).
pub(crate) async fn all_pages(
    ctx: &Ctx,
    op: &'static str,
    mut body: Value,
    key: &str,
    pages: usize,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for _ in 0..pages {
        let v = ctx.call(op, body.clone()).await?;
        out.extend(v[key].as_array().cloned().unwrap_or_default());
        match v["NextToken"].as_str() {
            Some(t) => body["NextToken"] = json!(t),
            None => break,
        }
    }
    Ok(out)
}

/// Collection ids the caller sees.
pub(crate) async fn collection_ids(ctx: &Ctx) -> Result<Vec<String>, ApiError> {
    Ok(
        all_pages(ctx, "ListCollections", json!({}), "CollectionIds", 20)
            .await?
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

fn step(done: bool, body: maud::Markup) -> maud::Markup {
    html! { li class=(if done { "done" } else { "todo" }) { (body) } }
}

async fn home(ctx: Ctx) -> Response {
    let body = match ctx.role() {
        Role::Admin => {
            let ids = collection_ids(&ctx).await.unwrap_or_default();
            let mut faces = 0;
            for id in &ids {
                if let Ok(d) = ctx
                    .call("DescribeCollection", json!({ "CollectionId": id }))
                    .await
                {
                    faces += d["FaceCount"].as_u64().unwrap_or(0);
                }
            }
            let keys = ctx
                .call("ListAccessKeys", json!({}))
                .await
                .map(|v| v["AccessKeys"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default();
            let active = |role: &str| {
                keys.iter()
                    .filter(|k| k["Revoked"].is_null() && k["Role"] == role)
                    .count()
            };
            html! {
                h1 { "Getting started" }
                p { "Kenning finds candidates for a face among the people you enrol. Every search, review and change is written to a tamper-evident audit trail." }
                ol.steps {
                    (step(!ids.is_empty(), html! { a href="/console/collections" { "Create a collection" } " with a policy: who may search it, for what, and who must review its candidates." }))
                    (step(faces > 0, html! { "Open the collection and " strong { "index photos" } " of the people it should find (" (ui::int(faces)) " faces so far)." }))
                    (step(active("operator") > 0 && active("reviewer") >= 2 && active("auditor") > 0,
                        html! { a href="/console/keys" { "Create a key for each person" } ": operators search, reviewers confirm or reject candidates (two different reviewers when the policy asks for two), auditors read the trail. "
                        "Now: " (active("operator")) " operator, " (active("reviewer")) " reviewer, " (active("auditor")) " auditor keys." }))
                    (step(false, html! { "Sign in as an operator (on a phone if you like) and " a href="/console/search" { "search with a case reference" } "." }))
                    (step(false, html! { "Sign in as each reviewer and work through the " a href="/console/review" { "review queue" } "." }))
                    (step(false, html! { "Print the month's " a href="/console/report" { "accountability report" } "." }))
                }
            }
        }
        Role::Operator => html! {
            h1 { "Search" }
            p { "Search a collection with a photo taken on this device or chosen from it. Each result is a candidate that needs review, never an identification." }
            a.button href="/console/search" { "Start a search" }
            p { a href="/console/searches" { "My searches and their review status" } }
        },
        Role::Reviewer => {
            let pending = all_pages(
                &ctx,
                "ListReviewItems",
                json!({ "Status": "PENDING", "MaxResults": 1000 }),
                "Items",
                10,
            )
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i["SearchedBy"] != ctx.principal.access_key.as_str())
            .count();
            html! {
                h1 { "Review" }
                p.big { (pending) " candidates await review" }
                a.button href="/console/review" { "Open the review queue" }
            }
        }
        Role::Auditor => html! {
            h1 { "Audit" }
            p { "Read and verify the audit trail, and produce the accountability report." }
            a.button href="/console/audit" { "Audit trail" }
            a.button.secondary href="/console/audit/verify" { "Verify the chain" }
            a.button.secondary href="/console/report" { "Accountability report" }
        },
    };
    ui::page(&ctx, "Home", body)
}
