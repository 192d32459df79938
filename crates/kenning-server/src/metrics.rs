//! The service's Prometheus metrics (the `prometheus-client` crate, so the
//! exposition is escaped and well-formed): requests, latencies and errors
//! by operation, faces detected and indexed, inference time, requests in
//! flight.
//!
//! Every label value comes from a fixed set — operation names the service
//! implements, HTTP status classes, exception names the service itself
//! raises — never from the request, so a client cannot grow the series or
//! break the format with the paths or targets it sends.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode, encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Histogram bucket upper bounds, in seconds.
const BOUNDS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    operation: &'static str,
    exception: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Latency = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BOUNDS)
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Latency,
    inference: Latency,
    faces_detected: Counter<u64, AtomicU64>,
    faces_indexed: Counter<u64, AtomicU64>,
    in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency: Latency = Family::new_with_constructor(histogram);
        let inference: Latency = Family::new_with_constructor(histogram);
        let faces_detected = Counter::default();
        let faces_indexed = Counter::default();
        let in_flight = Gauge::default();
        registry.register(
            "kenning_requests",
            "Requests by operation and HTTP status class",
            requests.clone(),
        );
        registry.register(
            "kenning_request_errors",
            "Failed requests by operation and exception",
            errors.clone(),
        );
        registry.register(
            "kenning_request_duration_seconds",
            "Request latency by operation",
            latency.clone(),
        );
        registry.register(
            "kenning_inference_seconds",
            "Time in the face pipeline and store by operation",
            inference.clone(),
        );
        registry.register(
            "kenning_faces_detected",
            "Faces found by detection",
            faces_detected.clone(),
        );
        registry.register(
            "kenning_faces_indexed",
            "Faces stored by IndexFaces",
            faces_indexed.clone(),
        );
        registry.register(
            "kenning_requests_in_flight",
            "Requests being served",
            in_flight.clone(),
        );
        Self {
            registry,
            requests,
            errors,
            latency,
            inference,
            faces_detected,
            faces_indexed,
            in_flight,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessorLabels {
    processor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    processor: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    output: String,
    sink: &'static str,
}

/// The stream processors' metrics now. Processor and output names are
/// labels: admins choose them, checked to `[A-Za-z0-9_.-]`, and their
/// number is bounded (`--stream-max-processors`, the configured outputs).
fn stream_registry(streams: &kenning_streams::StreamService) -> Registry {
    use std::sync::atomic::Ordering::Relaxed;
    let mut r = Registry::default();
    let (processors, sinks) = streams.stats();
    let status = Family::<StatusLabels, Gauge>::default();
    let lag = Family::<ProcessorLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let counters: Vec<(&str, &str, Family<ProcessorLabels, Counter>)> = [
        (
            "kenning_stream_frames_in",
            "Frames a processor's source delivered",
        ),
        (
            "kenning_stream_frames_analysed",
            "Frames a processor analysed",
        ),
        (
            "kenning_stream_frames_skipped",
            "Frames skipped because analysis was behind live",
        ),
        ("kenning_stream_faces", "Faces detected in live frames"),
        (
            "kenning_stream_matches",
            "New matches of a followed face to a collection face",
        ),
        (
            "kenning_stream_reconnects",
            "Reconnections to a processor's source",
        ),
        (
            "kenning_stream_records",
            "Records sent to a processor's output",
        ),
    ]
    .into_iter()
    .map(|(n, h)| (n, h, Family::default()))
    .collect();
    for p in &processors {
        let labels = ProcessorLabels {
            processor: p.name.clone(),
        };
        for st in kenning_streams::Status::ALL {
            status
                .get_or_create(&StatusLabels {
                    processor: p.name.clone(),
                    status: st.as_str(),
                })
                .set(i64::from(st == p.status));
        }
        let Some(live) = &p.live else { continue };
        let c = &live.counters;
        let values = [
            &c.frames_in,
            &c.frames_analysed,
            &c.frames_skipped,
            &c.faces,
            &c.matches,
            &c.reconnects,
            &c.records,
        ];
        for ((_, _, family), v) in counters.iter().zip(values) {
            family.get_or_create(&labels).inc_by(v.load(Relaxed));
        }
        lag.get_or_create(&labels)
            .set(c.lag_us.load(Relaxed) as f64 / 1e6);
    }
    r.register(
        "kenning_stream_processor_status",
        "1 for a stream processor's current status",
        status,
    );
    r.register(
        "kenning_stream_lag_seconds",
        "How far behind live the last analysed frame was",
        lag,
    );
    for (name, help, family) in counters {
        r.register(name, help, family);
    }
    let delivered = Family::<SinkLabels, Counter>::default();
    let dropped = Family::<SinkLabels, Counter>::default();
    let failed = Family::<SinkLabels, Counter>::default();
    let clients = Family::<SinkLabels, Gauge>::default();
    for s in sinks {
        let labels = SinkLabels {
            output: s.output,
            sink: s.kind,
        };
        if s.kind == "sse" {
            clients
                .get_or_create(&labels)
                .set(i64::try_from(s.clients).unwrap_or(i64::MAX));
        }
        delivered.get_or_create(&labels).inc_by(s.delivered);
        dropped.get_or_create(&labels).inc_by(s.dropped);
        failed.get_or_create(&labels).inc_by(s.failed);
    }
    r.register(
        "kenning_stream_output_delivered",
        "Records a sink delivered: POSTed, written, or sent to each Server-Sent Events client",
        delivered,
    );
    r.register(
        "kenning_stream_output_clients",
        "Server-Sent Events clients connected now",
        clients,
    );
    r.register(
        "kenning_stream_output_dropped",
        "Records a sink dropped because it was behind",
        dropped,
    );
    r.register(
        "kenning_stream_output_failed",
        "Records a sink gave up on",
        failed,
    );
    r
}

/// The label for `operation`: one of `known`, else "other".
pub fn operation_label(operation: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| **k == operation)
        .copied()
        .unwrap_or("other")
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts a request in flight from creation to drop, so the gauge comes
/// back down also when a client goes away and the request is cancelled.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Records one finished request (labels from fixed sets only).
    pub fn request(
        &self,
        operation: &'static str,
        status: u16,
        secs: f64,
        error: Option<&'static str>,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                operation,
                status: status_class(status),
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels { operation })
            .observe(secs);
        if let Some(exception) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    operation,
                    exception,
                })
                .inc();
        }
    }

    /// Records time spent in the face pipeline for one request.
    pub fn inference(&self, operation: &'static str, secs: f64) {
        self.inference
            .get_or_create(&OperationLabels { operation })
            .observe(secs);
    }

    /// Counts faces found by detection.
    pub fn faces_detected(&self, n: u64) {
        self.faces_detected.inc_by(n);
    }

    /// Counts faces stored by IndexFaces.
    pub fn faces_indexed(&self, n: u64) {
        self.faces_indexed.inc_by(n);
    }

    /// One more request in flight until the returned guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The OpenMetrics text exposition, with the stream processors' metrics
    /// when `streams` runs.
    pub fn render(&self, streams: Option<&kenning_streams::StreamService>) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        match streams {
            None => {
                let _ = encode(&mut out, &self.registry);
            }
            Some(s) => {
                let _ = encode_registry(&mut out, &self.registry);
                let _ = encode_registry(&mut out, &stream_registry(s));
                let _ = encode_eof(&mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_comes_down_when_a_guard_is_dropped_early() {
        let m = Metrics::default();
        let a = m.in_flight();
        let b = m.in_flight();
        assert!(m.render(None).contains("kenning_requests_in_flight 2"));
        drop((a, b));
        assert!(m.render(None).contains("kenning_requests_in_flight 0"));
        assert_eq!(operation_label("Evil\"\n", &["ListFaces"]), "other");
    }
}
