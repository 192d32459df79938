//! Model loading on ONNX Runtime: the CenterFace detector, dlib's landmarks,
//! recognisers described by manifests, calibration from distance to
//! false-match rate, and the face pipeline that ties them together.

#![forbid(unsafe_code)]

pub mod calibration;
pub mod compare;
pub mod detector;
mod error;
pub mod manifest;
pub mod pipeline;
mod pool;
pub mod pose;
pub mod recognisers;
pub mod recognizer;
pub mod runtime;

pub use calibration::{Calibration, CalibrationKind, CalibrationTable, Equalise, OwnedCalibration};
pub use detector::{Detection, Detector, DetectorConfig};
pub use error::ModelError;
pub use manifest::{LoadedManifest, Manifest};
pub use pipeline::{Face, Pipeline, PipelineConfig};
pub use pool::SessionPool;
pub use recognisers::Recognisers;
pub use recognizer::Recognizer;
