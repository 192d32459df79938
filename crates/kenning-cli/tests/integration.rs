//! End-to-end tests over real photos: the face pipeline against dlib's own
//! results, detection against hand-drawn boxes, the CLI, and a second
//! recogniser plugged in through a manifest.
//!
//! Models come from scripts/setup-models.sh (the test command runs it);
//! photos come from ../shared/data, and the tests that need them skip with
//! one line when it is absent, or fail under CI (`common::data`, from
//! kenning-testdata).

mod accountability;
mod cli;
mod collections;
mod common;
mod console;
mod crash;
mod eval;
mod fuzz;
mod identification;
mod model_lookup;
mod parity;
mod recognisers;
mod scale_out;
mod self_calibration;
mod serve_crash;
mod server;
mod service;
mod sface;
mod small_faces;
mod streams;
mod tls;
mod video;
mod wire;
