//! Search (operators, phone first) and the operator's own searches.

use std::sync::Arc;

use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use kenning_api::ApiError;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{all_pages, collection_ids};
use crate::form::{Ctx, Submitted};
use crate::{ui, App};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console/search", get(search_form).post(search))
        .route("/console/searches", get(my_searches))
}

#[derive(Deserialize, Default)]
struct Pick {
    collection: Option<String>,
}

/// A collection's policy (`{}` when unreadable) and description.
pub(super) async fn policy_and_facts(ctx: &Ctx, id: &str) -> Result<(Value, Value), ApiError> {
    let d = ctx
        .call("DescribeCollection", json!({ "CollectionId": id }))
        .await?;
    let p = ctx
        .call("GetCollectionPolicy", json!({ "CollectionId": id }))
        .await
        .map(|v| v["Policy"].clone())
        .unwrap_or_else(|_| json!({}));
    Ok((p, d))
}

/// The rules of a policy, in words.
pub(super) fn policy_words(p: &Value) -> Markup {
    let reviewers = p["RequiredReviewers"].as_u64().unwrap_or(0);
    html! {
        ul {
            li { @if p["RequireCase"] == true { "Every search needs a case reference." } @else { "A case reference is optional." } }
            li { @match reviewers {
                0 => "Candidates are not reviewed.",
                1 => "Each candidate must be confirmed by a reviewer before anyone acts on it.",
                _ => "Each candidate must be confirmed by two different reviewers before anyone acts on it.",
            } }
            @if let Some(t) = p["MinFaceMatchThreshold"].as_f64() {
                li { "Searches use a Similarity threshold of at least " (t) "." }
            }
            @if let Some(m) = p["MaxExpectedFalseMatches"].as_f64() {
                li { "A search may expect at most " (m) " false matches." }
            }
            @if let Some(days) = p["Retention"]["Days"].as_u64() {
                li { "Faces are deleted " (days) " days after "
                    (if p["Retention"]["After"] == "LAST_MATCH" { "they last matched a search" } else { "they were indexed" }) "." }
            }
            @match p["Equalise"].as_str() {
                Some("FalseMatches") => li { "Similarity keeps false matches equal across groups of people; some groups are missed more often than others." },
                Some("Misses") => li { "Similarity keeps misses close across groups of people: about a fifth of genuine matches are missed, and some groups get more false matches than others." },
                Some("Balanced") => li { "Similarity balances false matches against misses across groups of people." },
                _ => {},
            }
            @if p["AllowVideo"] == false { li { "Stored video may not be searched against it." } }
            @if p["AllowStreams"] == false { li { "Live streams may not be searched against it." } }
            @if p["ImageSource"]["Directory"].is_string() {
                li { "Reviewers see the enrolment photo beside each candidate." }
            }
        }
    }
}

fn threshold_default(p: &Value) -> f64 {
    p["MinFaceMatchThreshold"]
        .as_f64()
        .map_or(kenning_collections::DEFAULT_THRESHOLD, |m| {
            m.max(kenning_collections::DEFAULT_THRESHOLD)
        })
}

async fn search_form(ctx: Ctx, Query(q): Query<Pick>) -> Response {
    let ids = match collection_ids(&ctx).await {
        Ok(ids) => ids,
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let chosen = q
        .collection
        .filter(|c| ids.contains(c))
        .or_else(|| (ids.len() == 1).then(|| ids[0].clone()));
    let form = match &chosen {
        None => html! {},
        Some(id) => match policy_and_facts(&ctx, id).await {
            Err(e) => ui::error_box(&e),
            Ok((p, d)) => search_fields(&ctx, id, &p, &d, None),
        },
    };
    ui::page(
        &ctx,
        "Search",
        html! {
            h1 { "Search" }
            @if ids.is_empty() {
                p.note { "There is no collection to search yet." @if ctx.may("CreateCollection") { " " a href="/console/collections" { "Create one" } "." } }
            } @else if ids.len() > 1 || chosen.is_none() {
                form method="get" action="/console/search" {
                    label for="collection" { "Collection" }
                    select #collection name="collection" {
                        @for id in &ids { option value=(id) selected[chosen.as_deref() == Some(id.as_str())] { (id) } }
                    }
                    div { button.secondary type="submit" { "Use this collection" } }
                }
            }
            (form)
        },
    )
}

fn search_fields(
    ctx: &Ctx,
    id: &str,
    p: &Value,
    d: &Value,
    previous: Option<(&str, &str)>,
) -> Markup {
    let case_required = p["RequireCase"] == true;
    let min = p["MinFaceMatchThreshold"].as_f64().unwrap_or(0.0);
    let faces = d["FaceCount"].as_u64().unwrap_or(0);
    let (case, purpose) = previous.unwrap_or(("", ""));
    let needs = if case_required { "case" } else { "" };
    html! {
        h2 { "Search " (id) }
        p { (ui::int(faces)) " faces. This collection's policy:" }
        (policy_words(p))
        form method="post" action="/console/search" enctype="multipart/form-data" data-downscale="1280" {
            (ui::csrf(ctx))
            input type="hidden" name="collection" value=(id);
            label for="case" { "Case reference" @if case_required { " (required)" } @else { " (optional)" }
                span.hint { "The case, warrant or incident this search is for. It is recorded with the search." } }
            input #case type="text" name="case" value=(case) maxlength="256" required[case_required] autocomplete="off";
            label for="purpose" { "Purpose" span.hint { "Why you are searching, in a few words. Recorded with the search." } }
            input #purpose type="text" name="purpose" value=(purpose) maxlength="256" autocomplete="off";
            details {
                summary { "Threshold and number of candidates" }
                label for="threshold" { "Similarity threshold" span.hint { "Higher means fewer false matches and more missed matches. 80 means about 1 in 10,000 different people score as high." } }
                input #threshold type="number" name="threshold" min=(min) max="100" step="0.5" value=(threshold_default(p));
                label for="max" { "Most candidates to show" }
                input #max type="number" name="max" min="1" max="20" value="5";
            }
            @if case_required {
                p #needs-hint.warn { "Enter the case reference first; then the camera opens." }
            }
            div {
                label.file for="take" { "Take a photo" }
                input #take type="file" name="image" accept="image/*" capture="environment" data-needs=(needs) data-needs-hint="needs-hint" data-preview="preview" data-autosubmit;
            }
            div {
                label.file for="choose" { "Choose a photo" }
                input #choose type="file" name="image" accept="image/*" data-needs=(needs) data-needs-hint="needs-hint" data-preview="preview" data-autosubmit;
            }
            img #preview.preview hidden alt="The photo to search with";
            div { button type="submit" { "Search" } }
            p data-status aria-live="polite" {}
        }
    }
}

/// A face's box drawn over its photo (SVG attributes, no inline style).
pub(super) fn boxed_photo(src: &str, alt: &str, bbox: &Value) -> Markup {
    let f = |k: &str| bbox[k].as_f64();
    html! {
        div.photo {
            img src=(src) alt=(alt);
            @if let (Some(l), Some(t), Some(w), Some(h)) = (f("Left"), f("Top"), f("Width"), f("Height")) {
                svg viewBox="0 0 1 1" preserveAspectRatio="none" aria-hidden="true" {
                    rect x=(l) y=(t) width=(w) height=(h) {}
                }
            }
        }
    }
}

async fn search(s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let Some(id) = f.get("collection").map(str::to_owned) else {
        return ui::error_page(&ctx, &ApiError::invalid_parameter("choose a collection"));
    };
    let case = f.get("case").map(str::to_owned);
    let purpose = f.get("purpose").map(str::to_owned);
    let again = || {
        html! { a.button.secondary href=(format!("/console/search?collection={}", urlenc(&id))) { "New search" } }
    };
    let Some(photo) = f.files("image").next() else {
        return ui::page(
            &ctx,
            "Search",
            html! { h1 { "Search" } div.error role="alert" { p { "Take or choose a photo to search with." } } (again()) },
        );
    };
    let threshold: f64 = f
        .get("threshold")
        .and_then(|t| t.parse().ok())
        .unwrap_or(kenning_collections::DEFAULT_THRESHOLD);
    let max: u64 = f
        .get("max")
        .and_then(|t| t.parse().ok())
        .unwrap_or(5)
        .clamp(1, 20);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&photo.bytes);
    let caller = ctx.caller(case.as_deref(), purpose.as_deref());
    let result = ctx
        .call_as(
            caller,
            "SearchFacesByImage",
            json!({ "CollectionId": id, "Image": { "Bytes": b64 }, "FaceMatchThreshold": threshold, "MaxFaces": max }),
        )
        .await;
    let policy = ctx
        .call("GetCollectionPolicy", json!({ "CollectionId": id }))
        .await
        .map(|v| v["Policy"].clone())
        .unwrap_or_else(|_| json!({}));
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            return ui::page(
                &ctx,
                "Search refused",
                html! { h1 { "The search was not run" } (ui::error_box(&e)) p { "The refusal is recorded in the audit trail." } (again()) },
            )
        }
    };
    let est = &v["FalseMatchEstimate"];
    let faces = est["FaceCount"].as_u64().unwrap_or(0);
    let reviewers = policy["RequiredReviewers"].as_u64().unwrap_or(0);
    let matches = v["FaceMatches"].as_array().cloned().unwrap_or_default();
    let mime = kenning_accountability::image_type(&photo.bytes);
    let probe_src = format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&photo.bytes)
    );
    ui::page(
        &ctx,
        "Search results",
        html! {
            h1 { "Search results" }
            dl.facts {
                dt { "Collection" } dd { (id) }
                dt { "Case" } dd { (case.as_deref().unwrap_or("(none)")) }
                dt { "Purpose" } dd { (purpose.as_deref().unwrap_or("(none)")) }
                dt { "Threshold" } dd { "Similarity " (threshold) ": " (ui::fmr_words(est["FalseMatchRate"].as_f64().unwrap_or(0.0))) "." }
                dt { "Gallery" } dd { (ui::expected_words(est["ExpectedFalseMatches"].as_f64().unwrap_or(0.0), faces)) }
            }
            (boxed_photo(&probe_src, "The photo searched with", &v["SearchedFaceBoundingBox"]))
            @if matches.is_empty() {
                p.note { "No face in the collection reached Similarity " (threshold) ". That does not show the person is not in it: photos of the same person can score lower." }
            } @else {
                @if reviewers > 0 {
                    p.warn role="status" { strong { "Candidates, not identifications." } " Each one needs review by "
                        (if reviewers == 1 { "a reviewer" } else { "two different reviewers" }) " before anyone acts on it." }
                } @else {
                    p.warn role="status" { strong { "Candidates, not identifications." } " This collection's policy asks for no review: treat every candidate as a lead to check, never as an identification." }
                }
                ol.cards {
                    @for m in &matches { (candidate_card(m, faces)) }
                }
            }
            (again())
            @if reviewers > 0 { a.button.secondary href="/console/searches" { "My searches" } }
        },
    )
}

/// A candidate with its Similarity, what it means, and its review state.
pub(super) fn candidate_card(m: &Value, faces: u64) -> Markup {
    let sim = m["Similarity"].as_f64().unwrap_or(0.0);
    let fmr = kenning_collections::fmr_at(sim);
    let face = &m["Face"];
    let name = face["ExternalImageId"]
        .as_str()
        .or(face["FaceId"].as_str())
        .unwrap_or("?");
    html! {
        li.card {
            h3 { (name) }
            p { span.big { (format!("{sim:.1}")) } " Similarity" }
            p { "At this Similarity, " (ui::fmr_words(fmr)) " (false-match rate 1 in " (ui::sig2(1.0 / fmr)) ")." }
            p { (ui::gallery_words(fmr * faces as f64, faces)) }
            @match m["ReviewStatus"].as_str() {
                Some(st) => p { span class=(format!("badge {}", st.to_lowercase())) {
                    @if st == "PENDING" { "Candidate, not an identification: needs review" } @else { (st) } } },
                None => p { span.badge.pending { "Candidate, not an identification" } },
            }
            p.hint { "FaceId " code { (face["FaceId"].as_str().unwrap_or("")) }
                @if let Some(r) = m["ReviewId"].as_str() { br; "ReviewId " code { (r) } } }
        }
    }
}

pub(super) fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The review status of the caller's own searches.
async fn my_searches(ctx: Ctx) -> Response {
    let items = match all_pages(
        &ctx,
        "ListReviewItems",
        json!({ "MaxResults": 1000 }),
        "Items",
        10,
    )
    .await
    {
        Ok(i) => i,
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let mut mine: Vec<&Value> = items
        .iter()
        .filter(|i| i["SearchedBy"] == ctx.principal.access_key.as_str())
        .collect();
    mine.reverse();
    ui::page(
        &ctx,
        "My searches",
        html! {
            h1 { "My searches" }
            p { "Candidates from your searches of collections under review, newest first. Act only on a CONFIRMED candidate." }
            @if mine.is_empty() { p.note { "None yet." } }
            ul.cards {
                @for i in &mine {
                    @let st = i["Status"].as_str().unwrap_or("PENDING");
                    li.card {
                        h3 { (i["ExternalImageId"].as_str().or(i["FaceId"].as_str()).unwrap_or("?")) }
                        p { span class=(format!("badge {}", st.to_lowercase())) {
                            @match st { "PENDING" => "Candidate: needs review", "CONFIRMED" => "Confirmed by review", _ => "Rejected by review" } } }
                        dl.facts {
                            dt { "Similarity" } dd { (format!("{:.1}", i["Similarity"].as_f64().unwrap_or(0.0))) }
                            dt { "Collection" } dd { (i["CollectionId"].as_str().unwrap_or("")) }
                            dt { "Case" } dd { (i["Case"].as_str().unwrap_or("(none)")) }
                            dt { "Searched" } dd { (ui::when(i["CreatedAt"].as_u64().unwrap_or(0))) }
                            dt { "Decisions" } dd { (i["Decisions"].as_array().map_or(0, Vec::len) + i["OtherDecisions"].as_u64().unwrap_or(0) as usize) " of " (i["RequiredReviewers"].as_u64().unwrap_or(1)) }
                        }
                    }
                }
            }
        },
    )
}
