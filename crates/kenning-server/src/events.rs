//! Stream processors over HTTP: the REST twins of the seven operations and
//! the Server-Sent Events feeds, `GET /v1/stream-outputs/{Name}/events`
//! (records of a `--stream-output NAME=sse`) and
//! `GET /v1/stream-processors/{Name}/tracks` (a processor's track events).
//!
//! A client that reconnects with `Last-Event-ID` gets what the feed still
//! buffers after that id; events it can no longer get are announced by an
//! `event: missed` message with their count (null when unknown). A feed
//! ends when the service shuts down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kenning_streams::EventHub;

use crate::rest::{call, fixed, Pick};
use crate::{authenticate, respond, ApiError, AppState, Payload};

/// Events sent per wake-up, so one slow client cannot hold the lock long.
const BATCH: usize = 256;

/// Comment lines sent this often keep proxies from closing idle feeds.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/stream-processors", get(list).post(create))
        .route(
            "/v1/stream-processors/{name}",
            get(describe).delete(delete).patch(update),
        )
        .route("/v1/stream-processors/{name}/start", post(start))
        .route("/v1/stream-processors/{name}/stop", post(stop))
        .route("/v1/stream-processors/{name}/tracks", get(tracks))
        .route("/v1/stream-outputs/{name}/events", get(output_events))
}

type Q = Query<HashMap<String, String>>;

async fn list(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("ListStreamProcessors")).await
}

async fn create(State(s): State<Arc<AppState>>, Query(q): Q, req: Request) -> Response {
    call(s, req, q, &[], fixed!("CreateStreamProcessor")).await
}

async fn named(s: Arc<AppState>, name: String, q: Q, req: Request, pick: Pick) -> Response {
    call(s, req, q.0, &[("Name", &name)], pick).await
}

async fn describe(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    q: Q,
    r: Request,
) -> Response {
    named(s, n, q, r, fixed!("DescribeStreamProcessor")).await
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    q: Q,
    r: Request,
) -> Response {
    named(s, n, q, r, fixed!("DeleteStreamProcessor")).await
}

async fn update(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    q: Q,
    r: Request,
) -> Response {
    named(s, n, q, r, fixed!("UpdateStreamProcessor")).await
}

async fn start(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    q: Q,
    r: Request,
) -> Response {
    named(s, n, q, r, fixed!("StartStreamProcessor")).await
}

async fn stop(State(s): State<Arc<AppState>>, Path(n): Path<String>, q: Q, r: Request) -> Response {
    named(s, n, q, r, fixed!("StopStreamProcessor")).await
}

async fn output_events(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    r: Request,
) -> Response {
    feed(s, n, r, true).await
}

async fn tracks(State(s): State<Arc<AppState>>, Path(n): Path<String>, r: Request) -> Response {
    feed(s, n, r, false).await
}

/// Authenticates (SigV4 over an empty body, or an API token), asks the
/// stream service for the feed (it authorises and audits the read), and
/// streams it.
async fn feed(s: Arc<AppState>, name: String, req: Request, output: bool) -> Response {
    let (parts, _) = req.into_parts();
    let (caller, permit) = match authenticate(&s, &parts, Payload::Body(b""), true) {
        Ok(c) => c,
        Err(e) => return respond("ReadStreamOutput", None, Err(e), true),
    };
    // A feed stays open for hours: it does not hold one of the key's
    // request slots.
    drop(permit);
    let key = Some(caller.principal.access_key.clone());
    let Some(streams) = s.streams.clone() else {
        return respond(
            "ReadStreamOutput",
            key,
            Err(disabled("ReadStreamOutput")),
            true,
        );
    };
    let last = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let opened = tokio::task::spawn_blocking(move || {
        if output {
            streams.output_events(&caller, &name)
        } else {
            streams.track_events(&caller, &name)
        }
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(format!("opening the feed failed: {e}"))));
    let hub = match opened {
        Ok(h) => h,
        Err(e) => return respond("ReadStreamOutput", key, Err(e), true),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(pump(hub, last, tx, s.closing.subscribe()));
    let mut r = (StatusCode::OK, Body::new(Feed(rx))).into_response();
    r.extensions_mut().insert(crate::Outcome {
        operation: "ReadStreamOutput",
        error: None,
        caller: key,
    });
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// The exception every stream operation gets when streams are off.
pub(crate) fn disabled(op: &str) -> ApiError {
    ApiError::from_code(
        kenning_core::ErrorCode::AccessDeniedException,
        format!(
            "{op}: stream processors are disabled on this server; start it with \
             `kenning serve --enable-streams --stream-source NAME=URL --stream-output NAME=sse` \
             to enable them"
        ),
    )
}

/// Sends the feed's events after `last`, then each new one, until the
/// client goes away or the service shuts down.
async fn pump(
    hub: Arc<EventHub>,
    mut last: Option<u64>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = hub.subscribe();
    // A new client starts at the newest event; one that resumes gets what
    // it missed.
    let resuming = last.is_some();
    if last.is_none() {
        last = Some(*tick.borrow_and_update());
    }
    let mut first = true;
    loop {
        let since = hub.since(last, BATCH);
        let mut chunk = String::new();
        if first {
            first = false;
            // Tells a client how long to wait before reconnecting.
            chunk.push_str("retry: 1000\n\n");
            if resuming && since.missed != Some(0) {
                let n = since.missed.map_or("null".to_owned(), |n| n.to_string());
                chunk.push_str(&format!(
                    "event: missed\ndata: {{\"MissedEvents\":{n}}}\n\n"
                ));
            }
        }
        let more = since.events.len() == BATCH;
        for e in &since.events {
            chunk.push_str(&format!("id: {}\ndata: {}\n\n", e.id, e.data));
            last = Some(e.id);
        }
        if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
            return;
        }
        hub.count_delivered(since.events.len());
        if more {
            continue;
        }
        if *closing.borrow_and_update() {
            return;
        }
        tokio::select! {
            changed = tick.changed() => if changed.is_err() { return },
            _ = closing.changed() => return,
            () = tokio::time::sleep(KEEPALIVE) => {
                if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

/// A response body fed from a channel.
struct Feed(tokio::sync::mpsc::Receiver<Bytes>);

impl HttpBody for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `id:` lines in `chunks`.
    fn ids(chunks: &[Bytes]) -> Vec<u64> {
        chunks
            .iter()
            .flat_map(|c| {
                String::from_utf8_lossy(c)
                    .into_owned()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| l.strip_prefix("id: ").and_then(|i| i.parse().ok()))
            .collect()
    }

    #[tokio::test]
    async fn delivered_counts_records_sent_to_each_client_not_clients() {
        let hub = Arc::new(EventHub::new(kenning_streams::config::Replay {
            events: 100,
            bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        }));
        let (_closing_tx, closing) = tokio::sync::watch::channel(false);
        let before = hub.publish("{\"n\":0}".into());
        // A client that resumes after the first event, and a new one.
        let (tx_a, mut rx_a) = tokio::sync::mpsc::channel::<Bytes>(64);
        let (tx_b, mut rx_b) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::spawn(pump(hub.clone(), Some(before), tx_a, closing.clone()));
        tokio::spawn(pump(hub.clone(), None, tx_b, closing.clone()));
        // Both are waiting (the first chunk, `retry:`, is sent at once).
        let (mut got_a, mut got_b) = (
            vec![rx_a.recv().await.unwrap()],
            vec![rx_b.recv().await.unwrap()],
        );
        let published: Vec<u64> = (1..=5)
            .map(|n| hub.publish(format!("{{\"n\":{n}}}")))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ids(&got_a).len() < 5 || ids(&got_b).len() < 5 {
            let next = tokio::select! {
                Some(c) = rx_a.recv() => (true, c),
                Some(c) = rx_b.recv() => (false, c),
                () = tokio::time::sleep_until(deadline) => panic!("feeds stalled"),
            };
            if next.0 {
                got_a.push(next.1)
            } else {
                got_b.push(next.1)
            }
        }
        assert_eq!(ids(&got_a), published);
        assert_eq!(ids(&got_b), published);
        // Ten records went out (five to each of the two clients); each
        // pump counts right after handing its chunk over.
        while hub.delivered() < 10 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(hub.delivered(), 10);
        assert_eq!(hub.subscribers(), 2);
        drop((rx_a, rx_b));
    }
}
