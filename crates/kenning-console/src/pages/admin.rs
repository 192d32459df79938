//! Collections with their policies, faces and users, and retention.

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use kenning_api::ApiError;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::search::{policy_and_facts, policy_words, urlenc};
use super::{all_pages, collection_ids};
use crate::form::{Ctx, Fields, Submitted};
use crate::{ui, App};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console/collections", get(list).post(create))
        .route("/console/collections/{id}", get(show))
        .route("/console/collections/{id}/policy", post(set_policy))
        .route("/console/collections/{id}/faces", post(index))
        .route(
            "/console/collections/{id}/faces/{face}/delete",
            get(confirm_delete_face).post(delete_face),
        )
        .route("/console/collections/{id}/users", post(create_user))
        .route(
            "/console/collections/{id}/users/{user}/faces",
            post(associate),
        )
        .route(
            "/console/collections/{id}/users/{user}/delete",
            get(confirm_delete_user).post(delete_user),
        )
        .route(
            "/console/collections/{id}/delete",
            get(confirm_delete_collection).post(delete_collection),
        )
        .route("/console/retention", get(retention).post(run_retention))
}

fn collection_url(id: &str) -> String {
    format!("/console/collections/{}", urlenc(id))
}

/// The policy's `Equalise` choices ("" leaves the field out: the
/// recogniser's default), each with what it does to searches, as measured
/// for SFace at Similarity 80 (docs/accuracy.md, "Equalising false matches
/// or misses").
const EQUALISE: [(&str, &str, &str); 4] = [
    (
        "",
        "The recogniser's default",
        "For SFace today the same calibration as equal false matches.",
    ),
    (
        "FalseMatches",
        "Equal false matches",
        "A Similarity promises about the same false-match rate for every group (the worst group has about 5 times the best's). \
         The price: women are missed about twice as often as men, and about 12% of genuine matches are missed.",
    ),
    (
        "Misses",
        "Equal misses",
        "The per-region calibration pulled further: misses are spread more evenly (women missed 1.3 times as often as men, \
         young people 1.3 times as often as older). The price: about 22% of genuine matches are missed, \
         and the worst group gets about 10 times the best's false matches.",
    ),
    (
        "Balanced",
        "Balanced",
        "The calibration that keeps the larger of the two disparities smallest; for SFace today the same as equal false matches.",
    ),
];

/// The policy fields of the create and edit forms, filled from `p`.
fn policy_fields(p: &Value) -> Markup {
    let reviewers = p["RequiredReviewers"].as_u64().unwrap_or(0);
    let after = p["Retention"]["After"].as_str().unwrap_or("INDEXED");
    let equalise = p["Equalise"].as_str().unwrap_or("");
    html! {
        fieldset {
            legend { "Policy" }
            label.choice { input type="checkbox" name="require_case" value="1" checked[p["RequireCase"] == true];
                "Every search needs a case reference" }
            label for="reviewers" { "Reviewers who must confirm each candidate"
                span.hint { "Two different reviewers is what the EU AI Act asks for remote biometric identification (art. 14(5)). None of them may be the one who searched." } }
            select #reviewers name="reviewers" {
                option value="2" selected[reviewers == 2] { "Two reviewers" }
                option value="1" selected[reviewers == 1] { "One reviewer" }
                option value="0" selected[reviewers == 0] { "No review" }
            }
            label for="min_threshold" { "Lowest Similarity threshold a search may use" span.hint { "80 means about 1 in 10,000 different people score as high; 90, 1 in 100,000. Empty: no minimum." } }
            input #min_threshold type="number" name="min_threshold" min="0" max="100" step="0.5" value=[p["MinFaceMatchThreshold"].as_f64()];
            fieldset #equalise {
                legend { "What Similarity keeps equal across groups of people"
                    span.hint { "No calibration equalises both false matches and misses; each choice is a point on the trade-off measured in the accuracy documentation. Figures are SFace's at Similarity 80." } }
                @for (value, name, consequence) in EQUALISE {
                    label.choice {
                        input type="radio" name="equalise" value=(value) checked[equalise == value];
                        span { strong { (name) } span.hint { (consequence) } }
                    }
                }
            }
            label for="max_expected" { "Most false matches a search may expect" span.hint { "Faces x false-match rate at the threshold; the rule tightens as the collection grows. Empty: no limit." } }
            input #max_expected type="number" name="max_expected" min="0" step="any" value=[p["MaxExpectedFalseMatches"].as_f64()];
            label for="retention_days" { "Delete faces after (days)" span.hint { "Empty: keep until deleted." } }
            input #retention_days type="number" name="retention_days" min="1" max="36500" value=[p["Retention"]["Days"].as_u64()];
            label for="retention_after" { "counted from" }
            select #retention_after name="retention_after" {
                option value="INDEXED" selected[after == "INDEXED"] { "when the face was indexed" }
                option value="LAST_MATCH" selected[after == "LAST_MATCH"] { "when a search last matched it" }
            }
            label.choice { input type="checkbox" name="allow_video" value="1" checked[p["AllowVideo"] != false];
                "Stored video may be searched against it" }
            label.choice { input type="checkbox" name="allow_streams" value="1" checked[p["AllowStreams"] != false];
                "Live streams may be searched against it" }
            label for="image_source" { "Folder of enrolment photos on the server (optional)"
                span.hint { "An absolute path in which each face's ExternalImageId (the file name it was indexed from) is a photo. Only reviewers and admins see these photos, beside the candidates they review." } }
            input #image_source type="text" name="image_source" value=[p["ImageSource"]["Directory"].as_str()] spellcheck="false";
        }
    }
}

/// The policy document a form describes.
fn policy_from(f: &Fields) -> Result<Value, ApiError> {
    let mut p = Map::new();
    let num = |k: &str| -> Result<Option<f64>, ApiError> {
        f.get(k)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| ApiError::invalid_parameter(format!("{k} must be a number")))
            })
            .transpose()
    };
    if f.get("require_case").is_some() {
        p.insert("RequireCase".into(), json!(true));
    }
    let reviewers: u64 = f.get("reviewers").and_then(|r| r.parse().ok()).unwrap_or(0);
    if reviewers > 0 {
        p.insert("RequiredReviewers".into(), json!(reviewers));
    }
    if let Some(t) = num("min_threshold")? {
        p.insert("MinFaceMatchThreshold".into(), json!(t));
    }
    if let Some(e) = f.get("equalise") {
        p.insert("Equalise".into(), json!(e));
    }
    if let Some(m) = num("max_expected")? {
        p.insert("MaxExpectedFalseMatches".into(), json!(m));
    }
    if let Some(d) = num("retention_days")? {
        p.insert(
            "Retention".into(),
            json!({ "Days": d as u64, "After": f.get("retention_after").unwrap_or("INDEXED") }),
        );
    }
    // Unticked boxes are absent from the form: absent means forbidden.
    for (field, rule) in [
        ("allow_video", "AllowVideo"),
        ("allow_streams", "AllowStreams"),
    ] {
        if f.get(field).is_none() {
            p.insert(rule.into(), json!(false));
        }
    }
    if let Some(dir) = f.get("image_source") {
        p.insert("ImageSource".into(), json!({ "Directory": dir }));
    }
    Ok(Value::Object(p))
}

async fn list(ctx: Ctx) -> Response {
    let ids = match collection_ids(&ctx).await {
        Ok(i) => i,
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let mut cards = Vec::new();
    for id in &ids {
        cards.push((id.clone(), policy_and_facts(&ctx, id).await));
    }
    let defaults =
        json!({ "RequireCase": true, "RequiredReviewers": 2, "MinFaceMatchThreshold": 80 });
    ui::page(
        &ctx,
        "Collections",
        html! {
            h1 { "Collections" }
            @if ids.is_empty() { p.note { "No collection yet." } }
            ul.cards {
                @for (id, r) in &cards {
                    li.card {
                        h3 { a href=(collection_url(id)) { (id) } }
                        @match r {
                            Ok((p, d)) => {
                                p { (ui::int(d["FaceCount"].as_u64().unwrap_or(0))) " faces, " (ui::int(d["UserCount"].as_u64().unwrap_or(0))) " users" }
                                (policy_words(p))
                            }
                            Err(e) => (ui::error_box(e)),
                        }
                    }
                }
            }
            @if ctx.may("CreateCollection") {
                h2 { "Create a collection" }
                form method="post" action="/console/collections" {
                    (ui::csrf(&ctx))
                    label for="id" { "Collection id" span.hint { "Letters, digits, '_', '.' and '-'; for example watchlist-2026." } }
                    input #id type="text" name="id" required pattern="[a-zA-Z0-9_.\\-]+" maxlength="255" spellcheck="false";
                    (policy_fields(&defaults))
                    div { button type="submit" { "Create collection" } }
                }
            }
        },
    )
}

async fn create(s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let id = f.get("id").unwrap_or("").to_owned();
    let r = async {
        let policy = policy_from(&f)?;
        ctx.call(
            "CreateCollection",
            json!({ "CollectionId": id, "Policy": policy }),
        )
        .await
    }
    .await;
    ctx.done(r, &collection_url(&id), |_| {
        format!("Collection {id} created. Now index photos of the people it should find.")
    })
}

#[derive(Deserialize, Default)]
struct Paging {
    token: Option<String>,
}

async fn show(ctx: Ctx, Path(id): Path<String>, Query(q): Query<Paging>) -> Response {
    let (p, d) = match policy_and_facts(&ctx, &id).await {
        Ok(x) => x,
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let mut list = json!({ "CollectionId": id, "MaxResults": 50 });
    if let Some(t) = &q.token {
        list["NextToken"] = json!(t);
    }
    let faces = ctx.call("ListFaces", list).await;
    let users = all_pages(&ctx, "ListUsers", json!({ "CollectionId": id }), "Users", 5).await;
    let est = &d["FalseMatchEstimate"];
    let face_count = d["FaceCount"].as_u64().unwrap_or(0);
    let min = p["MinFaceMatchThreshold"].as_f64();
    let url = collection_url(&id);
    let calibration = ctx.app.backend.governor().calibration_in_force();
    let photos = ctx.may("GetEnrolmentImage") && p["ImageSource"]["Directory"].is_string();
    ui::page(
        &ctx,
        &id,
        html! {
            h1 { "Collection " (id) }
            dl.facts {
                dt { "Faces" } dd { (ui::int(face_count)) }
                dt { "Users" } dd { (ui::int(d["UserCount"].as_u64().unwrap_or(0))) }
                dt { "Recogniser" } dd { (d["FaceModelVersion"].as_str().unwrap_or("")) }
                dt { "Calibration in force" } dd { (calibration) " · " a href="/console/accuracy" { "its measured differentials" } }
                dt { "At Similarity 80" } dd { (ui::expected_words(est["ExpectedFalseMatches"].as_f64().unwrap_or(0.0), face_count)) }
                @if let Some(m) = min {
                    dt { "At Similarity " (m) } dd { (ui::expected_words(kenning_collections::estimate(m, face_count).expected_false_matches, face_count)) }
                }
            }
            h2 { "Policy" }
            (policy_words(&p))
            @if ctx.may("PutCollectionPolicy") {
                details {
                    summary { "Change the policy" }
                    form method="post" action=(format!("{url}/policy")) {
                        (ui::csrf(&ctx))
                        (policy_fields(&p))
                        p.hint { "The new policy replaces the old one and applies to the next request. The change is recorded with the whole policy." }
                        div { button type="submit" { "Save policy" } }
                    }
                }
            }
            @if ctx.may("IndexFaces") {
                h2 { "Index photos" }
                form method="post" action=(format!("{url}/faces")) enctype="multipart/form-data" data-downscale="1920" {
                    (ui::csrf(&ctx))
                    label for="photos" { "Photos" span.hint { "Each photo's file name becomes its faces' ExternalImageId: use opaque ids rather than people's names where you can." } }
                    input #photos type="file" name="photos" accept="image/*" multiple required;
                    label.choice { input type="checkbox" name="largest" value="1" checked; "Only the largest face of each photo" }
                    div { button type="submit" { "Index" } }
                    p data-status aria-live="polite" {}
                }
            }
            h2 { "Faces" }
            @match &faces {
                Err(e) => (ui::error_box(e)),
                Ok(v) => {
                    @let list = v["Faces"].as_array().cloned().unwrap_or_default();
                    @if list.is_empty() { p.note { "No faces." } }
                    div.table-wrap { table {
                        thead { tr { th { "ExternalImageId" } th { "FaceId" } th { "User" } th { span.hint { "Actions" } } } }
                        tbody {
                            @for f in &list {
                                @let fid = f["FaceId"].as_str().unwrap_or("");
                                tr {
                                    td { (f["ExternalImageId"].as_str().unwrap_or("")) }
                                    td.mono { (fid) }
                                    td { (f["UserId"].as_str().unwrap_or("")) }
                                    td.actions {
                                        @if photos { a href=(format!("{url}/faces/{}/photo", urlenc(fid))) { "Photo" } " " }
                                        @if ctx.may("DeleteFaces") { a href=(format!("{url}/faces/{}/delete", urlenc(fid))) { "Delete" } }
                                    }
                                }
                            }
                        }
                    } }
                    @if let Some(t) = v["NextToken"].as_str() {
                        a.button.secondary href=(format!("{url}?token={}", urlenc(t))) { "Next faces" }
                    }
                }
            }
            h2 { "Users" }
            p.hint { "A user groups several faces of one person, so a search can match the person instead of one photo." }
            @match &users {
                Err(e) => (ui::error_box(e)),
                Ok(list) => {
                    @if list.is_empty() { p.note { "No users." } }
                    ul {
                        @for u in list {
                            @let uid = u["UserId"].as_str().unwrap_or("");
                            li { strong { (uid) } " (" (u["UserStatus"].as_str().unwrap_or("")) ")"
                                @if ctx.may("DeleteUser") { " · " a href=(format!("{url}/users/{}/delete", urlenc(uid))) { "Delete" } }
                                @if ctx.may("AssociateFaces") {
                                    form method="post" action=(format!("{url}/users/{}/faces", urlenc(uid))) {
                                        (ui::csrf(&ctx))
                                        label for=(format!("assoc-{uid}")) { "Add faces to " (uid) span.hint { "FaceIds, separated by commas" } }
                                        input id=(format!("assoc-{uid}")) type="text" name="faces" spellcheck="false";
                                        button.secondary type="submit" { "Associate" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if ctx.may("CreateUser") {
                form method="post" action=(format!("{url}/users")) {
                    (ui::csrf(&ctx))
                    label for="user" { "New user id" }
                    input #user type="text" name="user" required maxlength="128" spellcheck="false";
                    div { button.secondary type="submit" { "Create user" } }
                }
            }
            @if ctx.may("DeleteCollection") {
                h2 { "Delete" }
                a.button.secondary href=(format!("{url}/delete")) { "Delete this collection" }
            }
        },
    )
}

async fn set_policy(Path(id): Path<String>, s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let r = async {
        let policy = policy_from(&f)?;
        ctx.call(
            "PutCollectionPolicy",
            json!({ "CollectionId": id, "Policy": policy }),
        )
        .await
    }
    .await;
    ctx.done(r, &collection_url(&id), |_| "Policy saved.".into())
}

/// An ExternalImageId from an upload's file name (Rekognition allows
/// `[a-zA-Z0-9_.\-:]+`, at most 255 characters).
fn external_id(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let id: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(255)
        .collect();
    if id.is_empty() {
        "photo".into()
    } else {
        id
    }
}

async fn index(Path(id): Path<String>, s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let largest = f.get("largest").is_some();
    let (mut faces, mut photos, mut problems) = (0usize, 0usize, Vec::new());
    for up in f.files("photos") {
        photos += 1;
        let mut body = json!({
            "CollectionId": id,
            "Image": { "Bytes": base64::engine::general_purpose::STANDARD.encode(&up.bytes) },
            "ExternalImageId": external_id(&up.file_name),
        });
        if largest {
            body["MaxFaces"] = json!(1);
        }
        match ctx.call("IndexFaces", body).await {
            Ok(v) => {
                let n = v["FaceRecords"].as_array().map_or(0, Vec::len);
                faces += n;
                if n == 0 {
                    problems.push(format!("{}: no face found", up.file_name));
                }
            }
            Err(e) => problems.push(format!("{}: {}", up.file_name, e.message)),
        }
    }
    let mut msg = format!("Indexed {faces} faces from {photos} photos.");
    if !problems.is_empty() {
        msg.push_str(&format!(" Not indexed: {}.", problems.join("; ")));
    }
    ctx.flash(msg);
    Redirect::to(&collection_url(&id)).into_response()
}

/// A page asking to confirm a deletion, posting to the same path.
fn confirm(
    ctx: &Ctx,
    title: &str,
    what: Markup,
    action: &str,
    typed: Option<&str>,
    cancel: &str,
) -> Response {
    ui::page(
        ctx,
        title,
        html! {
            h1 { (title) }
            (what)
            form method="post" action=(action) {
                (ui::csrf(ctx))
                @if let Some(t) = typed {
                    label for="confirm" { "Type " code { (t) } " to confirm" }
                    input #confirm type="text" name="confirm" required autocomplete="off" spellcheck="false";
                }
                button.danger type="submit" { "Delete" }
                a.button.secondary href=(cancel) { "Cancel" }
            }
        },
    )
}

async fn confirm_delete_face(ctx: Ctx, Path((id, face)): Path<(String, String)>) -> Response {
    let action = format!("{}/faces/{}/delete", collection_url(&id), urlenc(&face));
    confirm(
        &ctx,
        "Delete a face",
        html! { p { "Delete face " code { (face) } " from " (id) "? Its vector leaves the collection now and its bytes are erased at the next retention pass. This cannot be undone." } },
        &action,
        None,
        &collection_url(&id),
    )
}

async fn delete_face(Path((id, face)): Path<(String, String)>, s: Submitted) -> Response {
    let ctx = s.ctx;
    ctx.done(
        ctx.call(
            "DeleteFaces",
            json!({ "CollectionId": id, "FaceIds": [face] }),
        )
        .await,
        &collection_url(&id),
        |_| format!("Face {face} deleted."),
    )
}

async fn create_user(Path(id): Path<String>, s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let user = f.get("user").unwrap_or("").to_owned();
    ctx.done(
        ctx.call("CreateUser", json!({ "CollectionId": id, "UserId": user }))
            .await,
        &collection_url(&id),
        |_| format!("User {user} created."),
    )
}

async fn associate(Path((id, user)): Path<(String, String)>, s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    let faces: Vec<&str> = f
        .get("faces")
        .unwrap_or("")
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    ctx.done(
        ctx.call(
            "AssociateFaces",
            json!({ "CollectionId": id, "UserId": user, "FaceIds": faces }),
        )
        .await,
        &collection_url(&id),
        |v| {
            format!(
                "{} faces associated with {user}.",
                v["AssociatedFaces"].as_array().map_or(0, Vec::len)
            )
        },
    )
}

async fn confirm_delete_user(ctx: Ctx, Path((id, user)): Path<(String, String)>) -> Response {
    let action = format!("{}/users/{}/delete", collection_url(&id), urlenc(&user));
    confirm(
        &ctx,
        "Delete a user",
        html! { p { "Delete user " strong { (user) } " from " (id) "? Its faces stay in the collection, no longer associated." } },
        &action,
        None,
        &collection_url(&id),
    )
}

async fn delete_user(Path((id, user)): Path<(String, String)>, s: Submitted) -> Response {
    let ctx = s.ctx;
    ctx.done(
        ctx.call("DeleteUser", json!({ "CollectionId": id, "UserId": user }))
            .await,
        &collection_url(&id),
        |_| format!("User {user} deleted."),
    )
}

async fn confirm_delete_collection(ctx: Ctx, Path(id): Path<String>) -> Response {
    let action = format!("{}/delete", collection_url(&id));
    confirm(
        &ctx,
        "Delete a collection",
        html! { p { "Delete collection " strong { (id) } " with all its faces and users? This cannot be undone." } },
        &action,
        Some(&id),
        &collection_url(&id),
    )
}

async fn delete_collection(Path(id): Path<String>, s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    if f.get("confirm") != Some(id.as_str()) {
        return ui::error_page(
            &ctx,
            &ApiError::invalid_parameter("type the collection's id to confirm its deletion"),
        );
    }
    ctx.done(
        ctx.call("DeleteCollection", json!({ "CollectionId": id }))
            .await,
        "/console/collections",
        |_| format!("Collection {id} deleted."),
    )
}

async fn retention(ctx: Ctx) -> Response {
    let ids = collection_ids(&ctx).await.unwrap_or_default();
    let mut rows = Vec::new();
    for id in &ids {
        if let Ok((p, d)) = policy_and_facts(&ctx, id).await {
            rows.push((id.clone(), p, d["FaceCount"].as_u64().unwrap_or(0)));
        }
    }
    ui::page(
        &ctx,
        "Retention",
        html! {
            h1 { "Retention" }
            p { "Faces are deleted when their collection's retention policy says, by a pass that runs every hour (and when the service starts). Deleted faces leave the tables at once; their bytes are erased from the store and index files by the pass. Probe photos of closed reviews are erased too." }
            div.table-wrap { table {
                thead { tr { th { "Collection" } th.num { "Faces" } th { "Retention" } } }
                tbody {
                    @for (id, p, n) in &rows {
                        tr {
                            td { a href=(collection_url(id)) { (id) } }
                            td.num { (ui::int(*n)) }
                            td { @match p["Retention"]["Days"].as_u64() {
                                Some(d) => { (d) " days after " (if p["Retention"]["After"] == "LAST_MATCH" { "the last match" } else { "indexing" }) },
                                None => "kept until deleted",
                            } }
                        }
                    }
                }
            } }
            @if ctx.may("RunRetention") {
                form method="post" action="/console/retention" {
                    (ui::csrf(&ctx))
                    button type="submit" { "Run a retention pass now" }
                }
            }
        },
    )
}

async fn run_retention(s: Submitted) -> Response {
    let ctx = s.ctx;
    ctx.done(
        ctx.call("RunRetention", json!({})).await,
        "/console/retention",
        |v| {
            let done = v["Collections"].as_array().cloned().unwrap_or_default();
            let n: u64 = done.iter().filter_map(|c| c["FacesDeleted"].as_u64()).sum();
            format!(
                "Retention pass done: {n} faces deleted from {} collections.",
                done.len()
            )
        },
    )
}
