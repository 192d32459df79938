//! The page frame and the small pieces every page uses.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kenning_accountability::Role;
use kenning_api::ApiError;
use maud::{html, Markup, DOCTYPE};

use crate::form::Ctx;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Kenning" }
            meta name="theme-color" content="#10243a";
            link rel="manifest" href="/console/manifest.webmanifest";
            link rel="icon" href="/console/assets/icon.svg" type="image/svg+xml";
            link rel="apple-touch-icon" href="/console/assets/icon-192.png";
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

fn html_response(markup: Markup) -> Response {
    let mut r = markup.into_string().into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A page without navigation (sign-in, refusals).
pub fn bare_page(title: &str, body: Markup) -> Response {
    html_response(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/console/" { "Kenning" } }
                main #main { (body) }
            }
        }
    })
}

/// The links of a role's navigation (video jobs when the service has them).
fn nav(role: Role, video: bool) -> Vec<(&'static str, &'static str)> {
    let mut links = vec![("/console/", "Home")];
    match role {
        Role::Admin => links.extend([
            ("/console/search", "Search"),
            ("/console/collections", "Collections"),
            ("/console/video", "Video"),
            ("/console/review", "Review"),
            ("/console/keys", "Keys"),
            ("/console/retention", "Retention"),
            ("/console/report", "Report"),
        ]),
        Role::Operator => links.extend([
            ("/console/search", "Search"),
            ("/console/searches", "My searches"),
            ("/console/collections", "Collections"),
            ("/console/video", "Video"),
        ]),
        Role::Reviewer => links.push(("/console/review", "Review queue")),
        Role::Auditor => links.extend([
            ("/console/audit", "Audit trail"),
            ("/console/report", "Report"),
            ("/console/review", "Reviews"),
        ]),
    }
    if !video {
        links.retain(|l| l.0 != "/console/video");
    }
    links.push(("/console/accuracy", "Accuracy"));
    links
}

/// A console page for the signed-in caller.
pub fn page(ctx: &Ctx, title: &str, body: Markup) -> Response {
    let path = ctx.here.split('?').next().unwrap_or("");
    html_response(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "Kenning" }
                    nav aria-label="Main" {
                        ul {
                            @for (href, label) in nav(ctx.role(), ctx.app.backend.video().is_some()) {
                                @let current = path == href || (href != "/console/" && path.starts_with(href));
                                li { a href=(href) aria-current=[current.then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.who {
                        span { (ctx.principal.access_key) " · " strong { (ctx.role().as_str()) } }
                        form method="post" action="/console/signout" {
                            (csrf(ctx))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    @if let Some(f) = &ctx.flash {
                        p.flash role="status" { (f) }
                    }
                    (body)
                }
            }
        }
    })
}

/// The hidden CSRF field every form carries.
pub fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// An operation's refusal or failure, in the page.
pub fn error_box(e: &ApiError) -> Markup {
    html! {
        div.error role="alert" {
            p { strong { (e.kind) } }
            p { (e.message) }
        }
    }
}

/// A page that only says what went wrong.
pub fn error_page(ctx: &Ctx, e: &ApiError) -> Response {
    let mut r = page(
        ctx,
        "Refused",
        html! { h1 { "That did not work" } (error_box(e)) },
    );
    *r.status_mut() = StatusCode::from_u16(e.rest_status()).unwrap_or(StatusCode::BAD_REQUEST);
    r
}

/// 1234567 -> "1,234,567".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A positive number to two significant figures, in plain digits where
/// that reads well ("0.12", "13,000"), else in e-notation.
pub fn sig2(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "0".into();
    }
    let e = x.log10().floor() as i32;
    let scale = 10f64.powi(e - 1);
    let r = (x / scale).round() * scale;
    if r >= 1000.0 {
        int(r.round() as u64)
    } else if r >= 1e-4 {
        let decimals = (1 - e).max(0) as usize;
        format!("{r:.decimals$}")
    } else {
        format!("{r:.1e}")
    }
}

/// What a false-match rate means, in words a reader without statistics
/// understands.
pub fn fmr_words(fmr: f64) -> String {
    if fmr >= 0.5 {
        return "about half of all different people or more would score this high".into();
    }
    if fmr <= 0.0 {
        return "no different person is expected to score this high".into();
    }
    format!(
        "about 1 in {} different people would score this high",
        sig2(1.0 / fmr)
    )
}

/// What an expected number of false matches per search means.
pub fn expected_words(expected: f64, faces: u64) -> String {
    format!(
        "Searching {} faces at this threshold, expect about {} false {} per search.",
        int(faces),
        sig2(expected),
        if (0.5..1.5).contains(&expected) {
            "match"
        } else {
            "matches"
        }
    )
}

/// What `expected` false matches per search at a candidate's Similarity
/// mean for a gallery of `faces`.
pub fn gallery_words(expected: f64, faces: u64) -> String {
    if expected <= 0.0 {
        format!(
            "In this gallery of {} faces, no different person is expected to score this high.",
            int(faces)
        )
    } else if expected < 1.0 {
        format!(
            "In this gallery of {} faces, a different person would score this high about once in {} searches.",
            int(faces),
            sig2(1.0 / expected)
        )
    } else {
        format!(
            "In this gallery of {} faces, about {} different people would score this high in every search.",
            int(faces),
            sig2(expected)
        )
    }
}

/// A time in ms since the epoch, as people read it (UTC).
pub fn when(ms: u64) -> String {
    let t = kenning_audit::format_time(ms);
    // 2026-12-03T10:15:02.123Z -> 2026-12-03 10:15 UTC
    format!("{} {} UTC", &t[..10], &t[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_plainly() {
        assert_eq!(int(0), "0");
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(sig2(12589.25), "13,000");
        assert_eq!(sig2(0.1234), "0.12");
        assert_eq!(sig2(1.0), "1.0");
        assert_eq!(sig2(0.00001234), "1.2e-5");
        assert_eq!(
            fmr_words(1e-4),
            "about 1 in 10,000 different people would score this high"
        );
        assert_eq!(
            fmr_words(kenning_collections::fmr_at(91.0)),
            "about 1 in 130,000 different people would score this high"
        );
        assert!(expected_words(0.12, 1200).contains("about 0.12 false matches"));
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}
