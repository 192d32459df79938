//! The review queue: the probe beside the candidate, confirm or reject with
//! a reason; never one's own searches.

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use kenning_accountability::Role;
use kenning_api::ApiError;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::all_pages;
use super::search::{boxed_photo, urlenc};
use crate::form::{Ctx, Submitted};
use crate::{status, ui, App};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console/review", get(queue))
        .route("/console/review/{id}", get(item_page).post(decide))
        .route("/console/review/{id}/probe", get(probe))
        .route(
            "/console/collections/{id}/faces/{face}/photo",
            get(enrolment_photo),
        )
}

#[derive(Deserialize, Default)]
struct Filter {
    status: Option<String>,
}

fn badge(st: &str) -> Markup {
    html! { span class=(format!("badge {}", st.to_lowercase())) { (st) } }
}

fn decisions(i: &Value) -> usize {
    i["Decisions"].as_array().map_or(0, Vec::len)
        + i["OtherDecisions"].as_u64().unwrap_or(0) as usize
}

async fn queue(ctx: Ctx, Query(q): Query<Filter>) -> Response {
    let status = q
        .status
        .filter(|s| ["PENDING", "CONFIRMED", "REJECTED"].contains(&s.as_str()))
        .unwrap_or_else(|| "PENDING".into());
    let items = match all_pages(
        &ctx,
        "ListReviewItems",
        json!({ "Status": status, "MaxResults": 1000 }),
        "Items",
        10,
    )
    .await
    {
        Ok(i) => i,
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let me = ctx.principal.access_key.as_str();
    let reviewer = ctx.role() == Role::Reviewer;
    let own = items.iter().filter(|i| i["SearchedBy"] == me).count();
    let shown: Vec<&Value> = items
        .iter()
        .filter(|i| !reviewer || i["SearchedBy"] != me)
        .collect();
    ui::page(
        &ctx,
        "Review queue",
        html! {
            h1 { "Review queue" }
            @if reviewer {
                p { "Compare each candidate with the probe photo and decide on your own: other reviewers' decisions are hidden until the candidate is closed. Your decision and its reason go into the audit trail." }
            } @else {
                p { "Candidates from searches of collections under review. Only reviewers decide; this view is read-only." }
            }
            form.no-print method="get" action="/console/review" {
                label for="status" { "Show" }
                select #status name="status" {
                    @for s in ["PENDING", "CONFIRMED", "REJECTED"] { option value=(s) selected[s == status] { (s.to_lowercase()) } }
                }
                button.secondary type="submit" { "Show" }
            }
            @if own > 0 && reviewer { p.note { (own) " of these candidates come from your own searches and are not shown: someone else must review them." } }
            @if shown.is_empty() { p.note { "Nothing here." } }
            ul.cards {
                @for i in &shown {
                    @let id = i["ReviewId"].as_str().unwrap_or("");
                    @let mine = i["Decisions"].as_array().is_some_and(|d| d.iter().any(|d| d["Reviewer"] == me));
                    li.card {
                        h3 { a href=(format!("/console/review/{id}")) { "Candidate " (i["ExternalImageId"].as_str().or(i["FaceId"].as_str()).unwrap_or("?")) } }
                        p { (badge(i["Status"].as_str().unwrap_or(""))) " " (decisions(i)) " of " (i["RequiredReviewers"].as_u64().unwrap_or(1)) " confirmations so far"
                            @if mine { " · you have decided" } }
                        dl.facts {
                            dt { "Similarity" } dd { (format!("{:.1}", i["Similarity"].as_f64().unwrap_or(0.0))) }
                            dt { "Collection" } dd { (i["CollectionId"].as_str().unwrap_or("")) }
                            dt { "Case" } dd { (i["Case"].as_str().unwrap_or("(none)")) }
                            dt { "Searched" } dd { (ui::when(i["CreatedAt"].as_u64().unwrap_or(0))) }
                        }
                    }
                }
            }
        },
    )
}

async fn get_item(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    let v = ctx
        .call("ListReviewItems", json!({ "ReviewId": id }))
        .await?;
    v["Items"][0]
        .as_object()
        .map(|o| Value::Object(o.clone()))
        .ok_or_else(|| {
            ApiError::from_code(
                kenning_core::ErrorCode::ResourceNotFoundException,
                format!("review {id} not found"),
            )
        })
}

async fn item_page(ctx: Ctx, Path(id): Path<String>) -> Response {
    let item = match get_item(&ctx, &id).await {
        Ok(i) => i,
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let collection = item["CollectionId"].as_str().unwrap_or("").to_owned();
    let face = item["FaceId"].as_str().unwrap_or("").to_owned();
    let policy = ctx
        .call("GetCollectionPolicy", json!({ "CollectionId": collection }))
        .await
        .map(|v| v["Policy"].clone())
        .unwrap_or_default();
    let st = item["Status"].as_str().unwrap_or("");
    let me = ctx.principal.access_key.as_str();
    let own_search = item["SearchedBy"] == me;
    let decided = item["Decisions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["Reviewer"] == me).cloned());
    let sees_photos = ctx.may("GetEnrolmentImage");
    let has_source = policy["ImageSource"]["Directory"].is_string();
    let sim = item["Similarity"].as_f64().unwrap_or(0.0);
    let can_decide =
        ctx.may("DecideReviewItem") && st == "PENDING" && !own_search && decided.is_none();
    ui::page(
        &ctx,
        "Review a candidate",
        html! {
            h1 { "Review a candidate" }
            p { (badge(st)) " " (decisions(&item)) " of " (item["RequiredReviewers"].as_u64().unwrap_or(1)) " confirmations so far" }
            div.side {
                section {
                    h2 { "Probe (the photo searched with)" }
                    @if item["Operation"] == "StartFaceSearch" {
                        p.note { "Found by a search of stored video. Kenning keeps no frames of a video: compare the candidate with the video itself. "
                            "The search's audit record names the video, and its job page shows when this person was on screen." }
                    } @else if st == "PENDING" && ctx.may("GetReviewProbe") {
                        (boxed_photo(&format!("/console/review/{}/probe", urlenc(&id)), "The probe photo", &item["ProbeFace"]))
                    } @else if st != "PENDING" {
                        p.note { "The probe photo was erased when this review closed." }
                    } @else {
                        p.note { "Your role does not show probe photos." }
                    }
                }
                section {
                    h2 { "Candidate (enrolled face)" }
                    @if !sees_photos {
                        p.note { "Your role does not show enrolment photos." }
                    } @else if !has_source {
                        p.note { "This collection names no image source, so there is no enrolment photo to show. An admin can set one in the collection's policy." }
                    } @else if !face.is_empty() {
                        img src=(format!("/console/collections/{}/faces/{}/photo", urlenc(&collection), urlenc(&face))) alt="The enrolment photo of the candidate";
                    }
                    dl.facts {
                        dt { "Name" } dd { (item["ExternalImageId"].as_str().unwrap_or("(none)")) }
                        dt { "FaceId" } dd.mono { (face) }
                    }
                }
            }
            h2 { "The match" }
            dl.facts {
                dt { "Similarity" } dd { (format!("{sim:.1}")) ": " (ui::fmr_words(kenning_collections::fmr_at(sim))) "." }
                dt { "Threshold" } dd { (item["Threshold"].as_f64().unwrap_or(0.0)) }
                dt { "Collection" } dd { (collection) }
                dt { "Case" } dd { (item["Case"].as_str().unwrap_or("(none)")) }
                dt { "Purpose" } dd { (item["Purpose"].as_str().unwrap_or("(none)")) }
                dt { "Searched by" } dd.mono { (item["SearchedBy"].as_str().unwrap_or("")) }
                dt { "Searched" } dd { (ui::when(item["CreatedAt"].as_u64().unwrap_or(0))) }
            }
            @if let Some(d) = &decided {
                p.note { "You decided " strong { (d["Decision"].as_str().unwrap_or("")) } ": " (d["Comment"].as_str().unwrap_or("")) }
            }
            @if own_search && st == "PENDING" {
                p.warn { "You ran this search, so you may not review it." }
            }
            @if can_decide {
                form method="post" action=(format!("/console/review/{}", urlenc(&id))) {
                    (ui::csrf(&ctx))
                    fieldset {
                        legend { "Your decision" }
                        label.choice { input type="radio" name="decision" value="CONFIRM" required; "Confirm: the same person" }
                        label.choice { input type="radio" name="decision" value="REJECT"; "Reject: not the same person, or I cannot tell" }
                    }
                    label for="comment" { "Why" span.hint { "What you compared (features, marks, photo quality). Recorded in the audit trail with your key." } }
                    textarea #comment name="comment" required maxlength="2000" {}
                    div { button type="submit" { "Record my decision" } }
                }
            }
            p { a href="/console/review" { "Back to the queue" } }
        },
    )
}

async fn decide(Path(id): Path<String>, s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let r = ctx
        .call(
            "DecideReviewItem",
            json!({
                "ReviewId": id,
                "Decision": f.get("decision").unwrap_or(""),
                "Comment": f.get("comment").unwrap_or(""),
            }),
        )
        .await;
    ctx.done(r, "/console/review", |v| {
        match v["Status"].as_str().unwrap_or("") {
            "CONFIRMED" => "Recorded. The candidate is now CONFIRMED.".to_owned(),
            "REJECTED" => "Recorded. The candidate is now REJECTED.".to_owned(),
            _ => format!(
            "Recorded. The candidate still needs {} more confirmation from a different reviewer.",
            v["RequiredReviewers"].as_u64().unwrap_or(1) as usize - decisions(v)
        ),
        }
    })
}

/// An image from an operation's `Image.Bytes`, never cached.
fn image_response(v: &Value) -> Response {
    let bytes = v["Image"]["Bytes"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    let mut r = bytes.into_response();
    let ct = v["ContentType"]
        .as_str()
        .unwrap_or("application/octet-stream");
    if let Ok(ct) = HeaderValue::from_str(ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    r
}

fn image_error(e: &ApiError) -> Response {
    status(
        StatusCode::from_u16(e.rest_status()).unwrap_or(StatusCode::NOT_FOUND),
        &e.message,
    )
}

async fn probe(ctx: Ctx, Path(id): Path<String>) -> Response {
    match ctx.call("GetReviewProbe", json!({ "ReviewId": id })).await {
        Ok(v) => image_response(&v),
        Err(e) => image_error(&e),
    }
}

async fn enrolment_photo(ctx: Ctx, Path((id, face)): Path<(String, String)>) -> Response {
    match ctx
        .call(
            "GetEnrolmentImage",
            json!({ "CollectionId": id, "FaceId": face }),
        )
        .await
    {
        Ok(v) => image_response(&v),
        Err(e) => image_error(&e),
    }
}
