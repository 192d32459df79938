//! IndexFaces' QualityFilter: which detected faces are good enough to index.

use std::str::FromStr;

use kenning_core::FaceDetail;
use serde::{Deserialize, Serialize};

use crate::error::CollectionError;

/// Rekognition's QualityFilter levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QualityFilter {
    /// No filtering.
    None,
    /// Kenning's choice; the same bar as MEDIUM.
    Auto,
    /// Lowest bar.
    Low,
    /// Middle bar.
    Medium,
    /// Highest bar.
    High,
}

impl FromStr for QualityFilter {
    type Err = CollectionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "NONE" => Self::None,
            "AUTO" => Self::Auto,
            "LOW" => Self::Low,
            "MEDIUM" => Self::Medium,
            "HIGH" => Self::High,
            other => {
                return Err(CollectionError::InvalidParameter(format!(
                    "QualityFilter must be NONE, AUTO, LOW, MEDIUM or HIGH, not {other:?}"
                )))
            }
        })
    }
}

/// Why a face was not indexed (Rekognition's Reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// More faces than MaxFaces; the smallest were left out.
    ExceedsMaxFaces,
    /// Head turned or tilted too far.
    ExtremePose,
    /// Too dark.
    LowBrightness,
    /// Too blurred.
    LowSharpness,
    /// The detector is not sure it is a face.
    LowConfidence,
    /// Too few pixels across the face.
    SmallBoundingBox,
    /// More than a quarter of the face lies outside the image.
    LowFaceQuality,
}

/// The bar for one level: each measure must reach its minimum.
struct Bar {
    confidence: f32,
    side_px: f64,
    pose_deg: f32,
    brightness: f32,
    sharpness: f32,
}

impl QualityFilter {
    fn bar(self) -> Option<Bar> {
        let bar = |confidence, side_px, pose_deg, brightness, sharpness| Bar {
            confidence,
            side_px,
            pose_deg,
            brightness,
            sharpness,
        };
        match self {
            Self::None => None,
            Self::Low => Some(bar(50.0, 20.0, 75.0, 10.0, 10.0)),
            Self::Auto | Self::Medium => Some(bar(60.0, 40.0, 60.0, 20.0, 20.0)),
            Self::High => Some(bar(75.0, 60.0, 45.0, 30.0, 35.0)),
        }
    }

    /// The reasons `face` (in an image of `width` x `height` pixels) fails
    /// this level; empty when it passes.
    pub fn reasons(self, face: &FaceDetail, width: u32, height: u32) -> Vec<Reason> {
        let Some(bar) = self.bar() else {
            return Vec::new();
        };
        let b = face.bounding_box;
        let side =
            (f64::from(b.width) * f64::from(width)).min(f64::from(b.height) * f64::from(height));
        let inside = (b.left + b.width).min(1.0) - b.left.max(0.0);
        let inside = inside.max(0.0) * ((b.top + b.height).min(1.0) - b.top.max(0.0)).max(0.0);
        let area = b.width * b.height;
        let p = face.pose;
        let checks = [
            (face.confidence < bar.confidence, Reason::LowConfidence),
            (side < bar.side_px, Reason::SmallBoundingBox),
            (
                p.yaw.abs().max(p.pitch.abs()) > bar.pose_deg,
                Reason::ExtremePose,
            ),
            (
                face.quality.brightness < bar.brightness,
                Reason::LowBrightness,
            ),
            (face.quality.sharpness < bar.sharpness, Reason::LowSharpness),
            (area > 0.0 && inside / area < 0.75, Reason::LowFaceQuality),
        ];
        checks
            .into_iter()
            .filter(|(fails, _)| *fails)
            .map(|(_, r)| r)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kenning_core::{BoundingBox, ImageQuality, Pose};

    fn face(confidence: f32, width: f32, yaw: f32, brightness: f32) -> FaceDetail {
        FaceDetail {
            bounding_box: BoundingBox {
                width,
                height: width,
                left: 0.1,
                top: 0.1,
            },
            landmarks: Vec::new(),
            pose: Pose {
                roll: 0.0,
                yaw,
                pitch: 0.0,
            },
            quality: ImageQuality {
                brightness,
                sharpness: 80.0,
            },
            confidence,
        }
    }

    #[test]
    fn levels_are_nested_and_none_passes_everything() {
        let f = face(70.0, 0.05, 50.0, 25.0); // 50 px in a 1000 px image
        assert!(QualityFilter::None.reasons(&f, 1000, 1000).is_empty());
        assert!(QualityFilter::Low.reasons(&f, 1000, 1000).is_empty());
        assert!(QualityFilter::Medium.reasons(&f, 1000, 1000).is_empty());
        let high = QualityFilter::High.reasons(&f, 1000, 1000);
        assert!(high.contains(&Reason::LowConfidence) && high.contains(&Reason::SmallBoundingBox));
        assert!(high.contains(&Reason::ExtremePose) && high.contains(&Reason::LowBrightness));
    }

    #[test]
    fn faces_mostly_outside_the_image_are_low_quality() {
        let mut f = face(99.0, 0.4, 0.0, 50.0);
        f.bounding_box.left = 0.8;
        assert_eq!(
            QualityFilter::Low.reasons(&f, 1000, 1000),
            vec![Reason::LowFaceQuality]
        );
        assert!("BAD".parse::<QualityFilter>().is_err());
        assert_eq!(
            "AUTO".parse::<QualityFilter>().unwrap(),
            QualityFilter::Auto
        );
    }
}
