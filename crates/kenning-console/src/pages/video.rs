//! Stored-video jobs (admins and operators): start a face search on a
//! video in one of the service's buckets, follow its progress, and read
//! who was found when on a timeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Query, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use kenning_api::ApiError;
use kenning_video::jobs::{Api, JobStatus};
use kenning_video::JobSummary;
use kenning_video::VideoService;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::search::{candidate_card, urlenc};
use super::{all_pages, collection_ids};
use crate::form::{forbidden, same_origin, Ctx, Submitted};
use crate::{session, ui, App};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console/video", get(jobs).post(start))
        // The video service holds uploads to its own size limit as they
        // stream in, so the console's limit for forms does not apply.
        .route(
            crate::UPLOAD_PATH,
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/console/video/{job}", get(job))
}

/// Most videos offered per bucket.
const LISTED: usize = 500;
/// Most result pages (of 1000 sightings) a job page reads.
const PAGES: usize = 50;
/// Sightings of one person at most this far apart (ms) are one stretch on
/// the timeline (frames are sampled every 200 ms by default).
const GAP_MS: u64 = 1000;
/// Persons who matched nothing drawn on the timeline; the rest are counted.
const UNMATCHED_SHOWN: usize = 30;

fn job_url(id: &str) -> String {
    format!("/console/video/{}", urlenc(id))
}

/// Runs blocking work of the video service off the async threads.
async fn blocking<T: Send + 'static>(
    video: &Arc<VideoService>,
    f: impl FnOnce(&VideoService) -> kenning_video::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let v = video.clone();
    tokio::task::spawn_blocking(move || f(&v))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::from_wire(&e))
}

/// The video service, if the caller may use it; else the page to show.
fn service(ctx: &Ctx) -> Result<Arc<VideoService>, Box<Response>> {
    let Some(video) = ctx.app.backend.video() else {
        return Err(Box::new(ui::page(
            ctx,
            "Video",
            html! { h1 { "Video" } p.note { "This service does not analyse stored video." } },
        )));
    };
    if !ctx.may("ListVideoJobs") {
        return Err(Box::new(ui::error_page(
            ctx,
            &ApiError::new(
                403,
                "AccessDeniedException",
                format!(
                    "access key {} has the {} role, which does not run video jobs",
                    ctx.principal.access_key,
                    ctx.role().as_str()
                ),
            ),
        )));
    }
    Ok(video)
}

/// 83600 -> "1:23.6"; an hour or more, "1:02:03".
pub(super) fn clock(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}.{}", s / 60, s % 60, ms % 1000 / 100)
    }
}

fn status_badge(job: &JobSummary) -> Markup {
    let progress = job.progress;
    match job.job_status {
        JobStatus::InProgress => html! {
            span.badge.pending { "Running" @if let Some(p) = progress { " " (format!("{:.0}", p * 100.0)) "%" } @else { " (queued)" } }
        },
        JobStatus::Succeeded => html! { span.badge.confirmed { "Done" } },
        JobStatus::Failed => html! { span.badge.rejected { "Failed" } },
    }
}

#[derive(serde::Deserialize, Default)]
struct Chosen {
    /// `bucket/name` to preselect (after an upload).
    video: Option<String>,
}

async fn jobs(ctx: Ctx, Query(chosen): Query<Chosen>) -> Response {
    if let Err(r) = service(&ctx) {
        return *r;
    }
    // Through the operations, as the REST and wire APIs list them: the
    // same authorisation, refusals audited.
    let listing = async {
        let jobs = list_jobs(&ctx, json!({})).await?;
        let videos = ctx
            .call("ListVideos", json!({ "MaxResults": LISTED }))
            .await?;
        let files: Vec<(String, Vec<String>)> = videos["Buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let name = b["Name"].as_str().unwrap_or_default().to_owned();
                let videos = b["Videos"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                (name, videos)
            })
            .collect();
        Ok::<_, ApiError>((jobs, files))
    };
    let (jobs, files) = match listing.await {
        Ok(x) => x,
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let collections = collection_ids(&ctx).await.unwrap_or_default();
    let may_start = ctx.may("StartFaceSearch");
    ui::page(
        &ctx,
        "Video",
        html! {
            h1 { "Video" }
            p { "Search stored video for the people a collection holds. Each person found is a candidate that needs review, exactly as in a photo search; "
                "faces that match nobody keep only where and when they were seen, and results are deleted with the job." }
            @if may_start {
                (start_form(&ctx, &files, &collections, chosen.video.as_deref()))
                (upload_form(&ctx, &files))
            }
            h2 { @if ctx.role() == kenning_accountability::Role::Admin { "Jobs" } @else { "My video jobs" } }
            @if jobs.is_empty() {
                p.note { "No jobs yet." }
            } @else {
                div.table-wrap { table {
                    thead { tr { th { "Started" } th { "Video" } th { "Search" } th { "Case" } th { "Status" } } }
                    tbody {
                        @for j in &jobs {
                            tr {
                                td { a href=(job_url(&j.job_id)) { (ui::when(j.created_at)) } }
                                td.mono { (j.video.bucket) "/" (j.video.name) }
                                td { @match &j.collection_id { Some(c) => { "Collection " (c) }, None => "Faces detected only" } }
                                td { (j.case.as_deref().unwrap_or("(none)")) }
                                td { (status_badge(j)) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

fn start_form(
    ctx: &Ctx,
    files: &[(String, Vec<String>)],
    collections: &[String],
    chosen: Option<&str>,
) -> Markup {
    if files.is_empty() {
        return html! {
            p.note { "This service reads videos from buckets: folders on its machine named with "
                code { "kenning serve --bucket NAME=DIR" } ". It has none yet." }
        };
    }
    if collections.is_empty() {
        return html! { p.note { "There is no collection to search yet." } };
    }
    html! {
        h2 { "Search a video" }
        form method="post" action="/console/video" {
            (ui::csrf(ctx))
            // The same form sent twice (a reload) starts one job, not two.
            input type="hidden" name="token" value=(session::random_token());
            label for="video" { "Video" span.hint { "Files in the service's buckets (folders named with " code { "--bucket" } ")." } }
            select #video name="video" required {
                @for (bucket, names) in files {
                    optgroup label=(bucket) {
                        @for n in names {
                            @let v = format!("{bucket}/{n}");
                            option value=(v) selected[chosen == Some(v.as_str())] { (n) }
                        }
                    }
                }
            }
            label for="collection" { "Collection" }
            select #collection name="collection" required {
                @for c in collections { option value=(c) { (c) } }
            }
            label for="case" { "Case reference" span.hint { "Required when the collection's policy says so. Recorded with the search." } }
            input #case type="text" name="case" maxlength="256" autocomplete="off";
            label for="purpose" { "Purpose" span.hint { "Why you are searching, in a few words. Recorded with the search." } }
            input #purpose type="text" name="purpose" maxlength="256" autocomplete="off";
            label for="threshold" { "Similarity threshold" span.hint { "80 means about 1 in 10,000 different people score as high. The collection's policy may ask for more." } }
            input #threshold type="number" name="threshold" min="0" max="100" step="0.5" value=(kenning_collections::DEFAULT_THRESHOLD);
            div { button type="submit" { "Start the search" } }
        }
    }
}

/// The form that puts a video from this device into a bucket.
fn upload_form(ctx: &Ctx, files: &[(String, Vec<String>)]) -> Markup {
    if files.is_empty() || !ctx.may("UploadVideo") {
        return html! {};
    }
    html! {
        h2 { "Upload a video" }
        // The fields come before the file: the service checks them before
        // it reads the video.
        form method="post" action=(crate::UPLOAD_PATH) enctype="multipart/form-data" {
            (ui::csrf(ctx))
            label for="bucket" { "Bucket" }
            select #bucket name="bucket" required {
                @for (b, _) in files { option value=(b) { (b) } }
            }
            label for="video-file" { "Video file" span.hint { "MP4, MOV, MKV, WebM or AVI. It is kept in the bucket under its file name until someone deletes it there." } }
            input #video-file type="file" name="video" accept="video/*" required;
            div { button type="submit" { "Upload" } }
        }
    }
}

/// Puts the uploaded video into the bucket (UploadVideo, as
/// `PUT /v1/buckets/{Bucket}/{Key}` does), streaming it to the video
/// service, which checks its size as it arrives and records the upload.
async fn upload(ctx: Ctx, req: Request) -> Response {
    let video = match service(&ctx) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (parts, body) = req.into_parts();
    if !same_origin(&parts) {
        return forbidden("It was sent from another site. Use the console's own pages.");
    }
    let app = ctx.app.clone();
    let Ok(mut form) = Multipart::from_request(Request::from_parts(parts, body), &app).await else {
        return forbidden("The form could not be read.");
    };
    let (mut csrf, mut bucket) = (None, None);
    let file = loop {
        match form.next_field().await {
            Ok(Some(f)) if f.file_name().is_some() => break f,
            Ok(Some(mut f)) => {
                let name = f.name().unwrap_or("").to_owned();
                // The fields before the file are short; the body's size
                // is not limited here, so neither is what is read of it.
                let mut text = Vec::new();
                while let Ok(Some(c)) = f.chunk().await {
                    text.extend_from_slice(&c);
                    if text.len() > 1024 {
                        return forbidden("A field of the form is too long.");
                    }
                }
                let text = String::from_utf8_lossy(&text).into_owned();
                match name.as_str() {
                    "csrf" => csrf = Some(text),
                    "bucket" => bucket = Some(text),
                    _ => {}
                }
            }
            _ => return forbidden("The form has no video file."),
        }
    };
    if !csrf.is_some_and(|t| session::same(&t, &ctx.csrf)) {
        return forbidden(
            "Its security token is missing or out of date. Reload the page and try again.",
        );
    }
    let bucket = bucket.unwrap_or_default();
    // The name on this device, without any folder the browser sent.
    let name = file
        .file_name()
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .unwrap_or_default()
        .to_owned();
    let exists = {
        let (v, b, n) = (video.clone(), bucket.clone(), name.clone());
        blocking(&video, move |_| {
            Ok(v.buckets().resolve(&b, &n).is_ok_and(|p| p.exists()))
        })
        .await
        .unwrap_or(false)
    };
    if exists {
        return ui::error_page(
            &ctx,
            &ApiError::invalid_parameter(format!(
                "{bucket} already holds a video called {name}; rename the file and upload it again (a video a job has read is never replaced from the console)"
            )),
        );
    }
    let to = kenning_video::UploadTo {
        caller: ctx.caller(None, None),
        bucket: bucket.clone(),
        name: name.clone(),
        expected_sha256: None,
    };
    let result = kenning_video::upload_streamed(video.clone(), to, FileChunks(file)).await;
    match result {
        Ok(v) => {
            ctx.flash(format!(
                "Uploaded {bucket}/{name}: {} bytes, SHA-256 {}. It is chosen below: start a search on it.",
                ui::int(v["Bytes"].as_u64().unwrap_or(0)),
                v["Sha256"].as_str().unwrap_or("")
            ));
            let chosen: String =
                form_urlencoded::byte_serialize(format!("{bucket}/{name}").as_bytes()).collect();
            Redirect::to(&format!("/console/video?video={chosen}")).into_response()
        }
        Err(e) => ui::error_page(&ctx, &e),
    }
}

/// The form's file field as an upload's chunks.
struct FileChunks<'a>(axum::extract::multipart::Field<'a>);

impl kenning_video::Chunks for FileChunks<'_> {
    type Chunk = axum::body::Bytes;
    async fn next_chunk(&mut self) -> Option<Result<axum::body::Bytes, String>> {
        match self.0.chunk().await {
            Ok(c) => c.map(Ok),
            Err(e) => Some(Err(format!("the upload was cut off: {e}"))),
        }
    }
}

async fn start(s: Submitted) -> Response {
    let (ctx, f) = (s.ctx, s.fields);
    if let Err(r) = service(&ctx) {
        return *r;
    }
    let (Some((bucket, name)), Some(collection)) = (
        f.get("video").and_then(|v| v.split_once('/')),
        f.get("collection"),
    ) else {
        return ui::error_page(
            &ctx,
            &ApiError::invalid_parameter("choose a video and a collection"),
        );
    };
    let threshold = match f.get("threshold").map(str::parse::<f64>) {
        None => kenning_collections::DEFAULT_THRESHOLD,
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            return ui::error_page(
                &ctx,
                &ApiError::invalid_parameter("the threshold must be a number"),
            )
        }
    };
    let mut body = json!({
        "Video": { "S3Object": { "Bucket": bucket, "Name": name } },
        "CollectionId": collection,
        "FaceMatchThreshold": threshold,
    });
    if let Some(t) = f.get("token") {
        body["ClientRequestToken"] = json!(t);
    }
    let caller = ctx.caller(f.get("case"), f.get("purpose"));
    match ctx.call_as(caller, "StartFaceSearch", body).await {
        Ok(v) => {
            let id = v["JobId"].as_str().unwrap_or_default();
            ctx.flash(format!(
                "Started a search of {bucket}/{name} for collection {collection}."
            ));
            Redirect::to(&job_url(id)).into_response()
        }
        Err(e) => ui::page(
            &ctx,
            "Video search refused",
            html! {
                h1 { "The search was not started" }
                (ui::error_box(&e))
                a.button.secondary href="/console/video" { "Back to video" }
            },
        ),
    }
}

fn no_such_job(ctx: &Ctx) -> Response {
    let mut r = ui::page(
        ctx,
        "No such job",
        html! {
            h1 { "No such job" }
            p { "The job does not exist, its results expired, or it is not one you may follow." }
            a.button.secondary href="/console/video" { "Back to video" }
        },
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// ListVideoJobs' jobs for `body`.
async fn list_jobs(ctx: &Ctx, body: Value) -> Result<Vec<JobSummary>, ApiError> {
    let v = ctx.call("ListVideoJobs", body).await?;
    serde_json::from_value(v["Jobs"].clone())
        .map_err(|e| ApiError::internal(format!("ListVideoJobs answered {e}")))
}

async fn job(ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(r) = service(&ctx) {
        return *r;
    }
    let job = match list_jobs(&ctx, json!({ "JobId": id })).await {
        Ok(jobs) => match jobs.into_iter().next() {
            Some(j) => j,
            None => return no_such_job(&ctx),
        },
        Err(e) if e.kind == "InvalidParameterException" => return no_such_job(&ctx),
        Err(e) => return ui::error_page(&ctx, &e),
    };
    let progress = job.progress;
    let body = match job.job_status {
        JobStatus::InProgress => html! {
            h2 { "Progress" }
            @if let Some(p) = progress {
                label for="progress" { "Analysed " (format!("{:.0}", p * 100.0)) "% of the video" }
                progress #progress max="1" value=(p) {}
            } @else {
                p { "Waiting for a free worker: jobs run one after another." }
            }
            // console.js reloads the page while the job runs.
            p data-reload="3" { "This page updates itself until the job is done. " a href=(job_url(&id)) { "Refresh" } }
        },
        JobStatus::Failed => html! {
            div.error role="alert" { p { strong { "The job failed" } } p { (job.status_message.as_deref().unwrap_or("(no reason given)")) } }
        },
        JobStatus::Succeeded => match results(&ctx, &job).await {
            Ok(m) => m,
            Err(e) => ui::error_box(&e),
        },
    };
    let meta = job.video_metadata.as_ref();
    ui::page(
        &ctx,
        "Video job",
        html! {
            h1 { "Video job" }
            dl.facts {
                dt { "Video" } dd.mono { (job.video.bucket) "/" (job.video.name) }
                @if let Some(m) = meta {
                    dt { "Length" } dd { (clock(m.duration_millis)) ", " (m.frame_width) "x" (m.frame_height) " at " (format!("{:.2}", m.frame_rate)) " frames/s (" (m.codec) ")" }
                }
                dt { "Search" } dd {
                    @match &job.collection_id {
                        Some(c) => { "Collection " (c) ", Similarity " (job.face_match_threshold.unwrap_or(kenning_collections::DEFAULT_THRESHOLD)) " or more" }
                        None => "Faces detected, no search"
                    }
                }
                dt { "Case" } dd { (job.case.as_deref().unwrap_or("(none)")) }
                dt { "Purpose" } dd { (job.purpose.as_deref().unwrap_or("(none)")) }
                dt { "Started" } dd { (ui::when(job.created_at)) " by " (job.started_by) }
                @if let Some(t) = job.finished_at { dt { "Finished" } dd { (ui::when(t)) } }
                dt { "Status" } dd { (status_badge(&job)) }
                @if let Some(sha) = &job.sha256 { dt { "Video SHA-256" } dd.mono { (sha) } }
                dt { "Job id" } dd.mono { (job.job_id) }
            }
            (body)
            a.button.secondary href="/console/video" { "All video jobs" }
        },
    )
}

/// One person of a face search: when they were seen and whom they matched
/// (the best Similarity per collection face).
#[derive(Default)]
struct Seen {
    times: Vec<u64>,
    matches: BTreeMap<String, Value>,
}

impl Seen {
    fn best(&self) -> f64 {
        self.matches
            .values()
            .filter_map(|m| m["Similarity"].as_f64())
            .fold(0.0, f64::max)
    }
}

/// Stretches of time (start, end) in sorted `times`, split at gaps over
/// [`GAP_MS`].
fn stretches(times: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &t in times {
        match out.last_mut() {
            Some(last) if t <= last.1 + GAP_MS => last.1 = t,
            _ => out.push((t, t)),
        }
    }
    out
}

fn seen_words(times: &[u64]) -> String {
    stretches(times)
        .iter()
        .map(|&(a, b)| {
            if a == b {
                clock(a)
            } else {
                format!("{}–{}", clock(a), clock(b))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One lane of the timeline: the stretches drawn along the video's length
/// (SVG attributes, no inline style; the words beside it say the same).
fn lane(times: &[u64], duration: u64) -> Markup {
    let d = duration.max(1) as f64;
    html! {
        svg.lane viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true" focusable="false" {
            @for (a, b) in stretches(times) {
                @let x = a as f64 / d * 1000.0;
                rect x=(format!("{x:.1}")) y="0" height="10"
                    width=(format!("{:.1}", ((b - a + 200) as f64 / d * 1000.0).max(4.0).min(1000.0 - x))) {}
            }
        }
    }
}

fn axis(duration: u64) -> Markup {
    html! {
        div.axis aria-hidden="true" {
            @for i in 0..=4u64 { span { (clock(duration * i / 4)) } }
        }
    }
}

async fn results(ctx: &Ctx, job: &JobSummary) -> Result<Markup, ApiError> {
    let duration = job.video_metadata.as_ref().map_or(1, |m| m.duration_millis);
    match job.api() {
        Api::FaceDetection => {
            let faces = all_pages(
                ctx,
                "GetFaceDetection",
                json!({ "JobId": job.job_id, "MaxResults": 1000 }),
                "Faces",
                PAGES,
            )
            .await?;
            let mut per_frame: BTreeMap<u64, usize> = BTreeMap::new();
            for f in &faces {
                *per_frame
                    .entry(f["Timestamp"].as_u64().unwrap_or(0))
                    .or_default() += 1;
            }
            let times: Vec<u64> = per_frame.keys().copied().collect();
            Ok(html! {
                h2 { "Faces detected" }
                p { (ui::int(faces.len() as u64)) " face sightings in " (ui::int(times.len() as u64)) " frames; at most "
                    (per_frame.values().max().copied().unwrap_or(0)) " faces at once." }
                (axis(duration))
                ul.timeline { li { span { "Faces on screen: " (seen_words(&times)) } (lane(&times, duration)) } }
            })
        }
        Api::FaceSearch => {
            let sightings = all_pages(
                ctx,
                "GetFaceSearch",
                json!({ "JobId": job.job_id, "MaxResults": 1000, "SortBy": "INDEX" }),
                "Persons",
                PAGES,
            )
            .await?;
            let mut persons: BTreeMap<u64, Seen> = BTreeMap::new();
            for s in &sightings {
                let p = persons
                    .entry(s["Person"]["Index"].as_u64().unwrap_or(0))
                    .or_default();
                p.times.push(s["Timestamp"].as_u64().unwrap_or(0));
                for m in s["FaceMatches"].as_array().into_iter().flatten() {
                    let face = m["Face"]["FaceId"].as_str().unwrap_or_default().to_owned();
                    let better = p
                        .matches
                        .get(&face)
                        .is_none_or(|old| old["Similarity"].as_f64() < m["Similarity"].as_f64());
                    if better {
                        p.matches.insert(face, m.clone());
                    }
                }
            }
            for p in persons.values_mut() {
                p.times.sort_unstable();
            }
            let mut matched: Vec<(&u64, &Seen)> =
                persons.iter().filter(|p| !p.1.matches.is_empty()).collect();
            matched.sort_by(|a, b| b.1.best().total_cmp(&a.1.best()));
            let unmatched: Vec<(&u64, &Seen)> =
                persons.iter().filter(|p| p.1.matches.is_empty()).collect();
            let faces = match &job.collection_id {
                Some(c) => ctx
                    .call("DescribeCollection", json!({ "CollectionId": c }))
                    .await
                    .map_or(0, |d| d["FaceCount"].as_u64().unwrap_or(0)),
                None => 0,
            };
            let truncated = sightings.len() >= PAGES * 1000;
            Ok(html! {
                h2 { "Who was seen when" }
                p { (persons.len()) " people seen; " (matched.len()) " matched someone in the collection." }
                @if truncated { p.warn { "Only the first " (ui::int(sightings.len() as u64)) " sightings are shown." } }
                @if !matched.is_empty() {
                    p.warn role="status" { strong { "Candidates, not identifications." } " A person found in video needs review as much as one found in a photo." }
                }
                (axis(duration))
                ul.timeline {
                    @for (index, p) in &matched {
                        li.matched {
                            span { strong { "Person " (index) } ": "
                                (p.matches.values().filter_map(|m| m["Face"]["ExternalImageId"].as_str().or(m["Face"]["FaceId"].as_str())).collect::<Vec<_>>().join(", "))
                                " (Similarity " (format!("{:.1}", p.best())) "), seen " (seen_words(&p.times)) }
                            (lane(&p.times, duration))
                        }
                    }
                    @for (index, p) in unmatched.iter().take(UNMATCHED_SHOWN) {
                        li {
                            span { "Person " (index) ": matched no one, seen " (seen_words(&p.times)) }
                            (lane(&p.times, duration))
                        }
                    }
                }
                @if unmatched.len() > UNMATCHED_SHOWN {
                    p.note { "And " (unmatched.len() - UNMATCHED_SHOWN) " more people who matched no one." }
                }
                @for (index, p) in &matched {
                    h3 { "Person " (index) }
                    ol.cards { @for m in p.matches.values() { (candidate_card(m, faces)) } }
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_clock_times_and_stretches() {
        assert_eq!(clock(0), "0:00.0");
        assert_eq!(clock(83_650), "1:23.6");
        assert_eq!(clock(3_723_000), "1:02:03");
        assert_eq!(
            stretches(&[800, 1000, 1400, 3600, 4000, 7900]),
            [(800, 1400), (3600, 4000), (7900, 7900)]
        );
        assert_eq!(
            seen_words(&[800, 1000, 1400, 3600]),
            "0:00.8–0:01.4, 0:03.6"
        );
    }
}
