use serde::{Deserialize, Serialize};

/// A point in image pixel coordinates (x to the right, y down).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    /// Column, in pixels.
    pub x: f64,
    /// Row, in pixels.
    pub y: f64,
}

impl Point {
    /// A point at (x, y).
    pub const fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }
}

/// An axis-aligned box in pixel coordinates; `right`/`bottom` are exclusive
/// edges, so width is `right - left`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PixelBox {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Right edge.
    pub right: f64,
    /// Bottom edge.
    pub bottom: f64,
}

impl PixelBox {
    /// Width in pixels.
    pub fn width(&self) -> f64 {
        self.right - self.left
    }
    /// Height in pixels.
    pub fn height(&self) -> f64 {
        self.bottom - self.top
    }
    /// Area in square pixels (0 for an empty box).
    pub fn area(&self) -> f64 {
        self.width().max(0.0) * self.height().max(0.0)
    }
    /// Intersection over union with another box.
    pub fn iou(&self, other: &PixelBox) -> f64 {
        let w = (self.right.min(other.right) - self.left.max(other.left)).max(0.0);
        let h = (self.bottom.min(other.bottom) - self.top.max(other.top)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
    /// This box as fractions of an image of `width` x `height` pixels.
    pub fn to_fractions(&self, width: u32, height: u32) -> BoundingBox {
        let (w, h) = (f64::from(width), f64::from(height));
        BoundingBox {
            width: (self.width() / w) as f32,
            height: (self.height() / h) as f32,
            left: (self.left / w) as f32,
            top: (self.top / h) as f32,
        }
    }
}

/// Rekognition's BoundingBox: fractions of the image width and height.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BoundingBox {
    /// Width as a fraction of the image width.
    pub width: f32,
    /// Height as a fraction of the image height.
    pub height: f32,
    /// Left edge as a fraction of the image width.
    pub left: f32,
    /// Top edge as a fraction of the image height.
    pub top: f32,
}

impl BoundingBox {
    /// Back to pixels for an image of `width` x `height`.
    pub fn to_pixels(&self, width: u32, height: u32) -> PixelBox {
        let (w, h) = (f64::from(width), f64::from(height));
        PixelBox {
            left: f64::from(self.left) * w,
            top: f64::from(self.top) * h,
            right: f64::from(self.left + self.width) * w,
            bottom: f64::from(self.top + self.height) * h,
        }
    }
}

/// The landmark kinds Kenning reports (Rekognition's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LandmarkType {
    /// Centre of the eye on the image's left (Rekognition's convention).
    EyeLeft,
    /// Centre of the eye on the image's right.
    EyeRight,
    /// Nose tip.
    Nose,
    /// Mouth corner on the image's left.
    MouthLeft,
    /// Mouth corner on the image's right.
    MouthRight,
}

/// One landmark, as fractions of the image width and height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Landmark {
    /// Which landmark.
    #[serde(rename = "Type")]
    pub kind: LandmarkType,
    /// Column as a fraction of the image width.
    pub x: f32,
    /// Row as a fraction of the image height.
    pub y: f32,
}

/// Head pose in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pose {
    /// In-plane rotation; positive is clockwise in the image.
    pub roll: f32,
    /// Left-right turn; positive when the nose points towards the image's right.
    pub yaw: f32,
    /// Up-down tilt; positive when the subject looks up.
    pub pitch: f32,
}

/// Image quality of the face region, each 0-100.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageQuality {
    /// Mean brightness of the face region.
    pub brightness: f32,
    /// Sharpness of the face region.
    pub sharpness: f32,
}

/// Rekognition's FaceDetail, restricted to what Kenning reports (no
/// demographic or emotion attributes, by design).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceDetail {
    /// Where the face is.
    pub bounding_box: BoundingBox,
    /// Eye, nose and mouth positions.
    pub landmarks: Vec<Landmark>,
    /// Estimated head pose.
    pub pose: Pose,
    /// Brightness and sharpness.
    pub quality: ImageQuality,
    /// Detector confidence, 0-100.
    pub confidence: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_half_overlapping_boxes() {
        let a = PixelBox {
            left: 0.0,
            top: 0.0,
            right: 2.0,
            bottom: 2.0,
        };
        let b = PixelBox {
            left: 1.0,
            top: 0.0,
            right: 3.0,
            bottom: 2.0,
        };
        assert!((a.iou(&b) - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            a.iou(&PixelBox {
                left: 5.0,
                top: 5.0,
                right: 6.0,
                bottom: 6.0
            }),
            0.0
        );
    }

    #[test]
    fn fractions_round_trip_and_wire_names() {
        let p = PixelBox {
            left: 10.0,
            top: 20.0,
            right: 60.0,
            bottom: 120.0,
        };
        let b = p.to_fractions(200, 400);
        assert_eq!(b.left, 0.05);
        let back = b.to_pixels(200, 400);
        assert!((back.right - 60.0).abs() < 1e-4);
        let json = serde_json::to_string(&Landmark {
            kind: LandmarkType::EyeLeft,
            x: 0.5,
            y: 0.25,
        })
        .unwrap();
        assert_eq!(json, r#"{"Type":"eyeLeft","X":0.5,"Y":0.25}"#);
    }
}
