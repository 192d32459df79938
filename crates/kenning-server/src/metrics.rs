//! A small Prometheus registry: requests, latencies, errors by operation,
//! faces detected and indexed, inference time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Histogram bucket upper bounds, in seconds.
const BOUNDS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BOUNDS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (c, b) in self.counts.iter_mut().zip(BOUNDS) {
            if secs <= b {
                *c += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, label: &str) {
        for (c, b) in self.counts.iter().zip(BOUNDS) {
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{label}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{label}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    errors: BTreeMap<(String, String), u64>,
    latency: BTreeMap<String, Histogram>,
    inference: BTreeMap<String, Histogram>,
}

/// The service's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    in_flight: AtomicI64,
    faces_detected: AtomicU64,
    faces_indexed: AtomicU64,
}

impl Metrics {
    /// Records one finished request.
    pub fn request(&self, operation: &str, status: u16, secs: f64, error: Option<&str>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.requests.entry((operation.into(), status)).or_default() += 1;
        m.latency.entry(operation.into()).or_default().observe(secs);
        if let Some(e) = error {
            *m.errors.entry((operation.into(), e.into())).or_default() += 1;
        }
    }

    /// Records time spent in the face pipeline for one request.
    pub fn inference(&self, operation: &str, secs: f64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.inference
            .entry(operation.into())
            .or_default()
            .observe(secs);
    }

    /// Counts faces found by detection.
    pub fn faces_detected(&self, n: u64) {
        self.faces_detected.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts faces stored by IndexFaces.
    pub fn faces_indexed(&self, n: u64) {
        self.faces_indexed.fetch_add(n, Ordering::Relaxed);
    }

    /// Adjusts the in-flight gauge.
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP kenning_requests_total Requests by operation and HTTP status.\n# TYPE kenning_requests_total counter\n");
        for ((op, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "kenning_requests_total{{operation=\"{op}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP kenning_request_errors_total Failed requests by operation and exception.\n# TYPE kenning_request_errors_total counter\n");
        for ((op, e), n) in &m.errors {
            let _ = writeln!(
                out,
                "kenning_request_errors_total{{operation=\"{op}\",exception=\"{e}\"}} {n}"
            );
        }
        out.push_str("# HELP kenning_request_duration_seconds Request latency by operation.\n# TYPE kenning_request_duration_seconds histogram\n");
        for (op, h) in &m.latency {
            h.render(
                &mut out,
                "kenning_request_duration_seconds",
                &format!("operation=\"{op}\""),
            );
        }
        out.push_str("# HELP kenning_inference_seconds Time in the face pipeline and store by operation.\n# TYPE kenning_inference_seconds histogram\n");
        for (op, h) in &m.inference {
            h.render(
                &mut out,
                "kenning_inference_seconds",
                &format!("operation=\"{op}\""),
            );
        }
        let _ = writeln!(out, "# HELP kenning_faces_detected_total Faces found by detection.\n# TYPE kenning_faces_detected_total counter\nkenning_faces_detected_total {}", self.faces_detected.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP kenning_faces_indexed_total Faces stored by IndexFaces.\n# TYPE kenning_faces_indexed_total counter\nkenning_faces_indexed_total {}", self.faces_indexed.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP kenning_requests_in_flight Requests being served.\n# TYPE kenning_requests_in_flight gauge\nkenning_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out
    }
}
