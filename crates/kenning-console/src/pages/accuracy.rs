//! The Accuracy page: per-group false-match and false-non-match rates of
//! the calibrations, from `kenning eval fairness` reports.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kenning_eval::fairness::ThresholdResult;
use kenning_eval::report::{fmt_rate, group_rate_chart};
use maud::{html, Markup};

use crate::accuracy::{self, EvalReport};
use crate::form::Ctx;
use crate::{status, ui, App};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console/accuracy", get(page))
        .route("/console/accuracy/{report}/{threshold}/{kind}", get(chart))
}

fn rates_table(t: &ThresholdResult, fnmr: bool) -> Markup {
    let rows = if fnmr {
        &t.fnmr_by_group
    } else {
        &t.fmr_by_group
    };
    html! {
        div.table-wrap { table {
            caption { (if fnmr { "False non-match rate per group" } else { "Same-group false-match rate per group" }) }
            thead { tr { th { "Group" } th.num { "Rate" } th { "95% interval" } th.num { "Errors" } th.num { (if fnmr { "Genuine pairs" } else { "Impostor pairs" }) } } }
            tbody { @for g in rows { tr {
                th scope="row" { (g.group.replace('|', ", ")) }
                td.num { (fmt_rate(Some(g.rate))) }
                td { (fmt_rate(g.ci_low)) " - " (g.ci_high.map_or("unbounded".into(), |h| fmt_rate(Some(h)))) }
                td.num { (ui::int(g.errors)) }
                td.num { (ui::int(g.pairs)) }
            } } }
        } }
    }
}

fn section(n: usize, r: &EvalReport, in_force: &str) -> Markup {
    html! {
        section {
            h2 { (r.title()) @if r.calibration() == in_force { " (in force)" } }
            p.hint { "Source: " code { (r.source) } @if let Some(c) = &r.command { br; "Measured with: " code { (c) } } }
            p { (r.fairness.method) }
            p { (ui::int(r.fairness.impostor_photos as u64)) " impostor photos (" (ui::int(r.fairness.impostor_pairs)) " pairs), "
                (ui::int(r.fairness.genuine_pairs)) " genuine pairs." }
            @for (t, th) in r.fairness.thresholds.iter().enumerate() {
                h3 { (th.label) }
                p { "Overall FMR " (fmt_rate(th.overall_fmr)) ", overall FNMR " (fmt_rate(th.overall_fnmr)) "."
                    @if let Some(x) = &th.fmr_ratio {
                        " Highest same-group FMR: " (x.max_group.replace('|', ", ")) "; lowest: " (x.min_group.replace('|', ", ")) "; "
                        @match (x.ratio, x.lower_bound) {
                            (Some(q), _) => { (format!("{q:.1}")) " times as high." },
                            (None, Some(l)) if l >= 1.0 => { "at least " (format!("{l:.1}")) " times as high (the lowest group had no false match)." },
                            (None, Some(_)) => { "the ratio is not measurable: the lowest group had no false match." },
                            _ => {},
                        }
                    }
                }
                img.chart src=(format!("/console/accuracy/{n}/{t}/fmr.svg")) alt=(format!("Bar chart of same-group false-match rates per group at {}; the table below has the numbers.", th.label));
                (rates_table(th, false))
                @if !th.fnmr_by_group.is_empty() {
                    img.chart src=(format!("/console/accuracy/{n}/{t}/fnmr.svg")) alt=(format!("Bar chart of false non-match rates per group at {}; the table below has the numbers.", th.label));
                    (rates_table(th, true))
                }
            }
        }
    }
}

async fn page(ctx: Ctx) -> Response {
    let (reports, problems) = accuracy::load(ctx.app.backend.governor().eval_reports().as_ref());
    let in_force = ctx.app.backend.governor().calibration_in_force();
    ui::page(
        &ctx,
        "Accuracy",
        html! {
            h1 { "Accuracy and demographic differentials" }
            p { "How often the calibration in force (" strong { (in_force) } ") lets a different person through (false-match rate, FMR) and misses the same person (false non-match rate, FNMR), per demographic group, at one threshold for everyone. Differences between groups are what made face search notorious: read them before choosing a threshold." }
            p.hint { "Admins can publish reports of their own (" code { "kenning eval fairness DIR --json FILE" } " on photos from their own cameras, then " code { "kenning eval publish FILE" } " or " code { "PUT /v1/eval-reports/NAME" } "); every node of the deployment shows them." }
            @for p in &problems { p.warn { (p) } }
            @for (n, r) in reports.iter().enumerate() { (section(n, r, &in_force)) }
        },
    )
}

async fn chart(
    ctx: Ctx,
    Path((report, threshold, kind)): Path<(usize, usize, String)>,
) -> Response {
    let (reports, _) = accuracy::load(ctx.app.backend.governor().eval_reports().as_ref());
    let fnmr = match kind.as_str() {
        "fmr.svg" => false,
        "fnmr.svg" => true,
        _ => return status(StatusCode::NOT_FOUND, "no such chart"),
    };
    let Some(t) = reports
        .get(report)
        .and_then(|r| r.fairness.thresholds.get(threshold))
    else {
        return status(StatusCode::NOT_FOUND, "no such chart");
    };
    let title = format!(
        "{} per group at {}",
        if fnmr { "FNMR" } else { "Same-group FMR" },
        t.label
    );
    let reference = (!fnmr)
        .then_some(t.overall_fmr)
        .flatten()
        .map(|f| (f, "overall".to_owned()));
    let svg =
        kenning_eval::svg::bar_chart_svg(&group_rate_chart(&title, &[("", t)], fnmr, reference));
    let mut r = svg.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    r
}
