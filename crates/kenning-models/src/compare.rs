use kenning_core::{BoundingBox, FaceDetail};
use kenning_image::RgbImage;
use serde::Serialize;

use crate::pipeline::{Face, Pipeline};
use crate::ModelError;

/// Rekognition's default SimilarityThreshold for CompareFaces.
pub const DEFAULT_SIMILARITY_THRESHOLD: f64 = 80.0;

/// CompareFaces' SourceImageFace: the face that was compared.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SourceFace {
    /// Where it is in the source image.
    pub bounding_box: BoundingBox,
    /// Detector confidence, 0-100.
    pub confidence: f32,
}

/// One target face at or above the threshold.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceMatch {
    /// Calibrated Similarity, 0-100.
    pub similarity: f32,
    /// The target face.
    pub face: FaceDetail,
}

/// The CompareFaces response body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompareFacesResult {
    /// The largest face of the source image.
    pub source_image_face: SourceFace,
    /// Target faces whose Similarity reaches the threshold, best first.
    pub face_matches: Vec<FaceMatch>,
    /// The other target faces.
    pub unmatched_faces: Vec<FaceDetail>,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The source image has no face.
    #[error("there are no faces in the source image")]
    NoSourceFace,
    /// The recogniser has no calibration table, so Similarity is undefined.
    #[error("recogniser {0} has no calibration table; Similarity cannot be computed")]
    Uncalibrated(String),
    /// A model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl kenning_core::WireError for CompareError {
    fn code(&self) -> kenning_core::ErrorCode {
        match self {
            Self::NoSourceFace => kenning_core::ErrorCode::InvalidParameterException,
            Self::Uncalibrated(_) => kenning_core::ErrorCode::InternalServerError,
            Self::Model(e) => e.code(),
        }
    }
}

/// Compares the largest face of `source` with up to `max_targets` faces of
/// `target` (the largest ones), as Rekognition's CompareFaces.
pub fn compare_faces(
    pipeline: &Pipeline,
    source: &RgbImage,
    target: &RgbImage,
    similarity_threshold: f64,
    max_targets: usize,
) -> Result<CompareFacesResult, CompareError> {
    let recognizer = pipeline.recognizer();
    let calibration = recognizer
        .similarity_calibration()
        .ok_or_else(|| CompareError::Uncalibrated(recognizer.manifest().name.clone()))?;
    let src = pipeline
        .analyze(source, true)?
        .into_iter()
        .next()
        .ok_or(CompareError::NoSourceFace)?;
    let mut targets: Vec<Face> = pipeline.detect(target)?;
    targets.truncate(max_targets);
    pipeline.embed_faces(target, &mut targets)?;
    let src_pixels = Some(src.pixels());
    let src_embedding = src.embedding.unwrap_or_default();
    let mut face_matches = Vec::new();
    let mut unmatched_faces = Vec::new();
    for face in targets {
        let embedding = face.embedding.as_deref().unwrap_or_default();
        let d = recognizer.distance(&src_embedding, embedding);
        let similarity = calibration.similarity_of_faces(
            &src_embedding,
            embedding,
            d,
            recognizer.quality_bands(),
            [src_pixels, Some(face.pixels())],
        );
        if similarity >= similarity_threshold {
            face_matches.push(FaceMatch {
                similarity: similarity as f32,
                face: face.detail,
            });
        } else {
            unmatched_faces.push(face.detail);
        }
    }
    face_matches.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    Ok(CompareFacesResult {
        source_image_face: SourceFace {
            bounding_box: src.detail.bounding_box,
            confidence: src.detail.confidence,
        },
        face_matches,
        unmatched_faces,
    })
}
