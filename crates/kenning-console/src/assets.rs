//! The console's stylesheet, script, web app manifest and icons, compiled
//! into the binary.

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::App;

/// The stylesheet.
pub const CSS: &str = include_str!("../assets/console.css");
/// The script (progressive enhancement only).
pub const JS: &str = include_str!("../assets/console.js");

/// The app's icon, and the same drawing rendered (by headless Chromium,
/// `--screenshot` of the SVG at each size) at the sizes phones ask for when
/// the console is added to the home screen.
const ICON_SVG: &str = include_str!("../assets/icon.svg");
const ICON_192: &[u8] = include_bytes!("../assets/icon-192.png");
const ICON_512: &[u8] = include_bytes!("../assets/icon-512.png");

/// The web app manifest: on a phone the console installs as a field app
/// that opens on the search page, full screen, like an app of its own.
/// Nothing is cached on the device (pages are `no-store`): a lost phone
/// holds no photos or results.
const MANIFEST: &str = r##"{
  "name": "Kenning",
  "short_name": "Kenning",
  "description": "Search a collection with a photo from this phone, with a case reference; every result needs review.",
  "id": "/console/",
  "start_url": "/console/search",
  "scope": "/console/",
  "display": "standalone",
  "orientation": "portrait",
  "background_color": "#ffffff",
  "theme_color": "#10243a",
  "icons": [
    { "src": "/console/assets/icon-192.png", "sizes": "192x192", "type": "image/png" },
    { "src": "/console/assets/icon-512.png", "sizes": "512x512", "type": "image/png" },
    { "src": "/console/assets/icon.svg", "sizes": "any", "type": "image/svg+xml" }
  ]
}
"##;

/// Every file the console serves as it is: path, bytes, type.
const FILES: &[(&str, &[u8], &str)] = &[
    (
        "/console/assets/console.css",
        CSS.as_bytes(),
        "text/css; charset=utf-8",
    ),
    (
        "/console/assets/console.js",
        JS.as_bytes(),
        "text/javascript; charset=utf-8",
    ),
    (
        "/console/manifest.webmanifest",
        MANIFEST.as_bytes(),
        "application/manifest+json",
    ),
    (
        "/console/assets/icon.svg",
        ICON_SVG.as_bytes(),
        "image/svg+xml",
    ),
    ("/console/assets/icon-192.png", ICON_192, "image/png"),
    ("/console/assets/icon-512.png", ICON_512, "image/png"),
];

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

pub(crate) fn routes() -> Router<Arc<App>> {
    FILES.iter().fold(Router::new(), |r, &(path, body, kind)| {
        r.route(path, get(move || async move { asset(body, kind) }))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_manifest_is_json_with_its_icons() {
        let m: serde_json::Value = serde_json::from_str(super::MANIFEST).unwrap();
        assert_eq!(m["start_url"], "/console/search");
        let icons = m["icons"].as_array().unwrap();
        assert_eq!(icons.len(), 3);
        for (png, side) in [(super::ICON_192, 192u32), (super::ICON_512, 512)] {
            // PNG signature, then IHDR's width and height.
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), side);
            assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), side);
        }
    }
}
