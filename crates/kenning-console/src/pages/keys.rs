//! Access keys: one per person, with a role and a scope (admins).

use std::sync::Arc;

use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kenning_accountability::{Role, MATRIX};
use maud::html;
use serde_json::{json, Value};

use super::search::urlenc;
use crate::form::{Ctx, Submitted};
use crate::{ui, App};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console/keys", get(list).post(create))
        .route(
            "/console/keys/{id}/revoke",
            get(confirm_revoke).post(revoke),
        )
}

fn list_of(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "all".into())
}

async fn list(ctx: Ctx) -> Response {
    let keys = match ctx.call("ListAccessKeys", json!({})).await {
        Ok(v) => v["AccessKeys"].as_array().cloned().unwrap_or_default(),
        Err(e) => return ui::error_page(&ctx, &e),
    };
    ui::page(
        &ctx,
        "Keys",
        html! {
            h1 { "Access keys" }
            p { "Give every person their own key and never share one: the audit trail names the key, so a shared key makes nobody accountable. Reviewers need their own keys (a search's candidates are never reviewed by the key that searched), and two of them when a policy asks for two." }
            div.table-wrap { table {
                thead { tr { th { "Access key id" } th { "Role" } th { "Collections" } th { "Operations" } th { "Created" } th { "Status" } } }
                tbody {
                    @for k in &keys {
                        @let id = k["AccessKeyId"].as_str().unwrap_or("");
                        tr {
                            td.mono { (id) @if k["Root"] == true { " (root)" } }
                            td { (k["Role"].as_str().unwrap_or("")) }
                            td { (list_of(&k["Collections"])) }
                            td { (list_of(&k["Operations"])) }
                            td { (ui::when(k["Created"].as_u64().unwrap_or(0) * 1000)) }
                            td { @if k["Revoked"].is_null() {
                                    "active · " a href=(format!("/console/keys/{}/revoke", urlenc(id))) { "Revoke" }
                                } @else { "revoked " (ui::when(k["Revoked"].as_u64().unwrap_or(0) * 1000)) } }
                        }
                    }
                }
            } }
            h2 { "Create a key" }
            form method="post" action="/console/keys" {
                (ui::csrf(&ctx))
                label for="role" { "Role" }
                select #role name="role" {
                    option value="operator" { "operator: searches and enrols" }
                    option value="reviewer" { "reviewer: confirms or rejects candidates" }
                    option value="auditor" { "auditor: reads the audit trail and reports" }
                    option value="admin" { "admin: collections, policies, keys" }
                }
                label for="collections" { "Collections (optional)" span.hint { "Comma-separated ids; a trailing * matches a prefix. Empty: every collection." } }
                input #collections type="text" name="collections" spellcheck="false";
                label for="operations" { "Operations (optional)" span.hint { "Comma-separated, within the role's; empty: all of the role's. For example SearchFacesByImage,DescribeCollection." } }
                input #operations type="text" name="operations" spellcheck="false" list="ops";
                datalist #ops { @for (op, _) in MATRIX { option value=(op) {} } }
                div { button type="submit" { "Create key" } }
            }
        },
    )
}

fn split(s: Option<&str>) -> Option<Vec<String>> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

async fn create(s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let body = json!({
        "Role": f.get("role").unwrap_or(""),
        "Collections": split(f.get("collections")),
        "Operations": split(f.get("operations")),
    });
    match ctx.call("CreateAccessKey", body).await {
        Ok(v) => {
            let role: Option<Role> = v["Role"].as_str().and_then(|r| r.parse().ok());
            ui::page(
                &ctx,
                "Key created",
                html! {
                    h1 { "Key created" }
                    p.warn { strong { "The secret is shown only now." } " Give it to the person the key is for, in person or through a channel only they can read. It cannot be shown again; if it is lost, revoke the key and create another." }
                    dl.facts {
                        dt { "Role" } dd { (role.map_or("", Role::as_str)) }
                        dt { "Access key id" } dd.mono #new-key-id { (v["AccessKeyId"].as_str().unwrap_or("")) }
                        dt { "Secret" } dd.mono #new-key-secret { (v["SecretAccessKey"].as_str().unwrap_or("")) }
                    }
                    p { "They sign in at this console's address (" code { "/console/" } ") with these two values, or use them with an AWS SDK." }
                    a.button href="/console/keys" { "Done" }
                },
            )
        }
        Err(e) => ui::error_page(&ctx, &e),
    }
}

async fn confirm_revoke(ctx: Ctx, Path(id): Path<String>) -> Response {
    ui::page(
        &ctx,
        "Revoke a key",
        html! {
            h1 { "Revoke a key" }
            p { "Revoke " code { (id) } "? Requests and console sessions with it stop at once. This cannot be undone." }
            form method="post" action=(format!("/console/keys/{}/revoke", urlenc(&id))) {
                (ui::csrf(&ctx))
                button.danger type="submit" { "Revoke" }
                a.button.secondary href="/console/keys" { "Cancel" }
            }
        },
    )
}

async fn revoke(Path(id): Path<String>, s: Submitted) -> Response {
    let ctx = s.ctx;
    ctx.done(
        ctx.call("RevokeAccessKey", json!({ "AccessKeyId": id }))
            .await,
        "/console/keys",
        |_| format!("Key {id} revoked."),
    )
}
