//! The audit trail (auditors): browse with filters, verify the chain,
//! export; and the accountability report (auditors and admins).

use std::sync::Arc;

use axum::extract::Query;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kenning_accountability::report::AccountabilityReport;
use kenning_accountability::MATRIX;
use kenning_api::ApiError;
use maud::html;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::search::urlenc;
use crate::form::Ctx;
use crate::{accuracy, report, ui, App};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console/audit", get(browse))
        .route("/console/audit/verify", get(verify))
        .route("/console/audit/export", get(export))
        .route("/console/report", get(report_page))
        .route("/console/report.json", get(report_json))
        .route("/console/report.pdf", get(report_pdf))
}

/// The audit browser's filters, as the query string carries them.
#[derive(Deserialize, Default, Clone)]
struct AuditQuery {
    from: Option<String>,
    to: Option<String>,
    case: Option<String>,
    purpose: Option<String>,
    collection: Option<String>,
    caller: Option<String>,
    operation: Option<String>,
    outcome: Option<String>,
    token: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl AuditQuery {
    /// (request field, query parameter, value) of each filter.
    fn fields(&self) -> [(&'static str, &'static str, &Option<String>); 8] {
        [
            ("From", "from", &self.from),
            ("To", "to", &self.to),
            ("Case", "case", &self.case),
            ("Purpose", "purpose", &self.purpose),
            ("CollectionId", "collection", &self.collection),
            ("AccessKey", "caller", &self.caller),
            ("Operation", "operation", &self.operation),
            ("Outcome", "outcome", &self.outcome),
        ]
    }

    /// ExportAudit's request for these filters and page.
    fn body(&self) -> Value {
        let mut v = body(&self.fields());
        if let Some(t) = set(&self.token) {
            v["NextToken"] = json!(t);
        }
        v
    }
}

/// An operation's request from filters that are set.
fn body(fields: &[(&str, &str, &Option<String>)]) -> Value {
    let mut m = Map::new();
    for (k, _, v) in fields {
        if let Some(v) = set(v) {
            m.insert((*k).into(), json!(v));
        }
    }
    Value::Object(m)
}

/// The query string of filters that are set.
fn query(fields: &[(&str, &str, &Option<String>)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (_, k, v) in fields {
        if let Some(v) = set(v) {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// Operations and events that appear in the trail.
fn operations() -> Vec<&'static str> {
    let mut ops: Vec<&str> = MATRIX.iter().map(|(o, _)| *o).collect();
    ops.extend(["ConsoleSignIn", "ConsoleSignOut", "StoreChange"]);
    ops.sort_unstable();
    ops
}

async fn browse(ctx: Ctx, Query(q): Query<AuditQuery>) -> Response {
    let mut body = q.body();
    body["MaxResults"] = json!(50);
    let result = ctx.call("ExportAudit", body).await;
    let text = |name: &str, label: &str, v: &Option<String>, kind: &str| {
        html! {
            div {
                label for=(name) { (label) }
                input id=(name) type=(kind) name=(name) value=[set(v)];
            }
        }
    };
    ui::page(
        &ctx,
        "Audit trail",
        html! {
            h1 { "Audit trail" }
            p { "Every search, refusal, review decision, gallery change, key change and audit read, in order. Reading it here is itself recorded." }
            p { a.button.secondary href="/console/audit/verify" { "Verify the chain" } }
            form.no-print method="get" action="/console/audit" {
                div.filters {
                    (text("from", "From (date or time, UTC)", &q.from, "text"))
                    (text("to", "To (exclusive)", &q.to, "text"))
                    (text("case", "Case", &q.case, "text"))
                    (text("purpose", "Purpose", &q.purpose, "text"))
                    (text("collection", "Collection", &q.collection, "text"))
                    (text("caller", "Caller (access key id)", &q.caller, "text"))
                    div {
                        label for="operation" { "Operation" }
                        select #operation name="operation" {
                            option value="" { "any" }
                            @for op in operations() { option value=(op) selected[set(&q.operation) == Some(op)] { (op) } }
                        }
                    }
                    div {
                        label for="outcome" { "Outcome" }
                        select #outcome name="outcome" {
                            @for (v, l) in [("", "any"), ("ok", "ok"), ("error", "refused or failed"), ("AccessDeniedException", "AccessDeniedException"), ("InvalidParameterException", "InvalidParameterException")] {
                                option value=(v) selected[set(&q.outcome).unwrap_or("") == v] { (l) }
                            }
                        }
                    }
                }
                button type="submit" { "Show" }
                a.button.secondary href=(format!("/console/audit/export?{}", query(&q.fields()))) { "Export these records (JSON lines)" }
            }
            @match &result {
                Err(e) => (ui::error_box(e)),
                Ok(v) => {
                    @let records = v["Records"].as_array().cloned().unwrap_or_default();
                    @if records.is_empty() { p.note { "No records match." } }
                    div.table-wrap { table {
                        thead { tr { th.num { "#" } th { "Time (UTC)" } th { "Operation" } th { "Outcome" } th { "Caller" } th { "Collection" } th { "Case" } th { "Details" } } }
                        tbody {
                            @for r in &records {
                                tr {
                                    td.num { (r["seq"]) }
                                    td { (r["time"].as_str().unwrap_or("")) }
                                    td { (r["operation"].as_str().unwrap_or("")) }
                                    td { (r["outcome"].as_str().unwrap_or("")) }
                                    td { span.mono { (r["access_key"].as_str().unwrap_or("")) } br; (r["role"].as_str().unwrap_or("")) }
                                    td { (r["collection"].as_str().unwrap_or("")) }
                                    td { (r["case"].as_str().unwrap_or("")) }
                                    td { details { summary { "Record" } pre { (serde_json::to_string_pretty(r).unwrap_or_default()) } } }
                                }
                            }
                        }
                    } }
                    @if let Some(t) = v["NextToken"].as_str() {
                        a.button.secondary href=(format!("/console/audit?{}&token={}", query(&q.fields()), urlenc(t))) { "Next records" }
                    }
                }
            }
        },
    )
}

async fn verify(ctx: Ctx) -> Response {
    match ctx.call("VerifyAudit", json!({})).await {
        Err(e) => ui::error_page(&ctx, &e),
        Ok(v) => ui::page(
            &ctx,
            "Verify the audit trail",
            html! {
                h1 { "Verify the audit trail" }
                @if v["Valid"] == true {
                    p.flash role="status" { "The chain is intact: every one of its " (v["Records"]) " records matches its hash and its place." }
                } @else {
                    div.error role="alert" {
                        p { strong { "The chain is broken." } }
                        p { "First bad record: line " (v["FirstBadRecord"]["Line"]) ": " (v["FirstBadRecord"]["Reason"].as_str().unwrap_or("")) }
                    }
                }
                dl.facts {
                    dt { "Records" } dd { (v["Records"]) }
                    dt { "Head hash" } dd.mono #head-hash { (v["Head"].as_str().unwrap_or("(empty)")) }
                }
                p { "Write the head hash down somewhere the trail's keepers cannot change (a ticket, a second machine, a printout). A later check with "
                    code { "kenning audit verify --expect-head HASH" } " then also catches records removed from the end, or a rewritten chain." }
            },
        ),
    }
}

/// Every record matching the filters, as JSON lines (a download).
async fn export(ctx: Ctx, Query(q): Query<AuditQuery>) -> Response {
    let mut body = q.body();
    body["MaxResults"] = json!(10_000);
    let mut out = String::new();
    loop {
        let v = match ctx.call("ExportAudit", body.clone()).await {
            Ok(v) => v,
            Err(e) => return ui::error_page(&ctx, &e),
        };
        for r in v["Records"].as_array().into_iter().flatten() {
            out.push_str(&r.to_string());
            out.push('\n');
        }
        match v["NextToken"].as_str() {
            Some(t) => body["NextToken"] = json!(t),
            None => break,
        }
    }
    download(out.into_bytes(), "application/x-ndjson", "audit.jsonl")
}

fn download(bytes: Vec<u8>, content_type: &'static str, name: &str) -> Response {
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[derive(Deserialize, Default, Clone)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    collection: Option<String>,
    purpose: Option<String>,
    case: Option<String>,
}

/// The first day of this month and of the next, as dates.
fn this_month() -> (String, String) {
    let now = kenning_audit::format_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    let (y, m): (i32, u32) = (
        now[..4].parse().unwrap_or(1970),
        now[5..7].parse().unwrap_or(1),
    );
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (format!("{y:04}-{m:02}-01"), format!("{ny:04}-{nm:02}-01"))
}

impl ReportQuery {
    fn filled(mut self) -> Self {
        let (from, to) = this_month();
        if set(&self.from).is_none() {
            self.from = Some(from);
        }
        if set(&self.to).is_none() {
            self.to = Some(to);
        }
        self
    }

    /// (request field, query parameter, value) of each filter.
    fn fields(&self) -> [(&'static str, &'static str, &Option<String>); 5] {
        [
            ("From", "from", &self.from),
            ("To", "to", &self.to),
            ("CollectionId", "collection", &self.collection),
            ("Purpose", "purpose", &self.purpose),
            ("Case", "case", &self.case),
        ]
    }
}

async fn make_report(ctx: &Ctx, q: &ReportQuery) -> Result<AccountabilityReport, ApiError> {
    let v = ctx
        .call("GetAccountabilityReport", body(&q.fields()))
        .await?;
    serde_json::from_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

async fn report_page(ctx: Ctx, Query(q): Query<ReportQuery>) -> Response {
    let q = q.filled();
    let r = make_report(&ctx, &q).await;
    let (evals, _) = accuracy::load(ctx.app.backend.governor().eval_reports().as_ref());
    let field = |name: &str, label: &str, v: &Option<String>| {
        html! { div { label for=(name) { (label) } input id=(name) type="text" name=(name) value=[set(v)]; } }
    };
    ui::page(
        &ctx,
        "Accountability report",
        html! {
            form.no-print method="get" action="/console/report" {
                div.filters {
                    (field("from", "From (YYYY-MM-DD, UTC)", &q.from))
                    (field("to", "To (exclusive)", &q.to))
                    (field("collection", "Collection (optional)", &q.collection))
                    (field("purpose", "Purpose (optional)", &q.purpose))
                    (field("case", "Case (optional)", &q.case))
                }
                button type="submit" { "Make the report" }
                button.secondary type="button" data-print hidden { "Print" }
                a.button.secondary href=(format!("/console/report.pdf?{}", query(&q.fields()))) { "PDF" }
                a.button.secondary href=(format!("/console/report.json?{}", query(&q.fields()))) { "JSON" }
            }
            @match &r {
                Ok(r) => (report::body(r, &evals)),
                Err(e) => (ui::error_box(e)),
            }
        },
    )
}

async fn report_json(ctx: Ctx, Query(q): Query<ReportQuery>) -> Response {
    match make_report(&ctx, &q.filled()).await {
        Ok(r) => download(
            serde_json::to_vec_pretty(&r).unwrap_or_default(),
            "application/json",
            &format!("accountability-{}.json", &r.from[..10]),
        ),
        Err(e) => ui::error_page(&ctx, &e),
    }
}

async fn report_pdf(ctx: Ctx, Query(q): Query<ReportQuery>) -> Response {
    match make_report(&ctx, &q.filled()).await {
        Ok(r) => {
            let (evals, _) = accuracy::load(ctx.app.backend.governor().eval_reports().as_ref());
            download(
                report::pdf(&r, &evals),
                "application/pdf",
                &format!("accountability-{}.pdf", &r.from[..10]),
            )
        }
        Err(e) => ui::error_page(&ctx, &e),
    }
}
