//! Evaluation toolkit for Kenning: verification, identification,
//! detection and demographic-differential metrics, calibration checks and
//! fair (per-cluster) calibration, with JSON, Markdown and SVG output.
//!
//! Everything works on plain data (embeddings, distances, labels as
//! strings) so the crate does not depend on any model runtime. Distances
//! are "smaller is more similar" throughout: a pair matches when its score
//! is at or below the threshold.

#![forbid(unsafe_code)]

pub mod calibrate;
pub mod detect;
pub mod distance;
pub mod error;
pub mod fairness;
pub mod formats;
pub mod gallery;
pub mod identify;
pub mod published;
pub mod quality;
pub mod report;
pub mod rng;
pub mod svg;
pub mod verify;

pub use calibrate::{
    check_calibration, check_calibration_fn, impostor_fmr_points, kmeans, mean_curve_points,
    CalibrationCheck, ClusterPairs, FairCalibration, FairCalibrationConfig, FairCalibrationFit,
    KMeans, LogFmrTable, RegionDomains,
};
pub use detect::{evaluate_detection, match_detections, DetectionReport};
pub use distance::{Distance, Embeddings};
pub use error::{EvalError, Result};
pub use fairness::{
    evaluate_fairness, FairnessConfig, FairnessReport, LabelledSet, RuleEffect, Scoring,
    ThresholdRule,
};
pub use formats::{GroundTruthBox, IdentityRecord, Labels, PairRecord};
pub use gallery::{check_gallery, fit_gallery, GalleryCalibration, GalleryCheck};
pub use identify::{
    evaluate_identification, split_gallery, GallerySplit, IdentificationReport, IdentifyConfig,
};
pub use report::ToMarkdown;
pub use svg::{bar_chart_svg, det_svg, BarChart, Series};
pub use verify::{
    evaluate_verification, generate_pairs, PairConfig, ScoredPair, VerificationReport, VerifyConfig,
};
