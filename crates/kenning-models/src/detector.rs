use std::path::Path;

use kenning_core::{PixelBox, Point};
use kenning_image::RgbImage;
use ort::value::TensorRef;

use crate::pool::SessionPool;
use crate::runtime::read_model_file;
use crate::ModelError;

/// File name of the CenterFace model inside the models folder.
pub const CENTERFACE_FILE: &str = "centerface.onnx";

/// How the detector looks at an image.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// The longer image side is scaled down to at most this many pixels
    /// before detection (the working resolution); smaller images run at
    /// their own size. Larger values find smaller faces and cost more.
    pub max_side: u32,
    /// Minimum heatmap score (0-1) for a face.
    pub min_score: f32,
    /// Boxes overlapping a better one by at least this IoU are dropped.
    pub nms_iou: f32,
    /// At most this many faces are returned: the largest ones.
    pub max_faces: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            max_side: 960,
            min_score: 0.5,
            nms_iou: 0.3,
            max_faces: 100,
        }
    }
}

/// One face found by the detector, in image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The face box (CenterFace's convention: brow-to-chin, narrower than dlib's).
    pub bbox: PixelBox,
    /// Heatmap score, 0-1.
    pub score: f32,
    /// Eye centres (image left, image right), nose tip, mouth corners
    /// (image left, image right).
    pub points: [Point; 5],
}

/// The CenterFace detector on ONNX Runtime.
pub struct Detector {
    pool: SessionPool,
    config: DetectorConfig,
}

impl Detector {
    /// Loads `centerface.onnx` from `models_dir`, rewritten to accept any
    /// input size, with a pool of `sessions` sessions.
    pub fn load(
        models_dir: &Path,
        config: DetectorConfig,
        sessions: usize,
    ) -> Result<Self, ModelError> {
        let raw = read_model_file(&models_dir.join(CENTERFACE_FILE))?;
        let model = kenning_onnx::make_dynamic_input(&raw)?;
        Ok(Self {
            pool: SessionPool::new(model, sessions, 1)?,
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Finds faces, largest first, at most `max_faces`.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, ModelError> {
        let (w, h) = image.dimensions();
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let (net_w, net_h) = working_size(w, h, self.config.max_side);
        let resized;
        let input = if (net_w, net_h) == (w, h) {
            image
        } else {
            resized = kenning_image::resize_bilinear(image, net_w, net_h);
            &resized
        };
        let planar = kenning_image::to_planar_f32(input);
        let shape = [1usize, 3, net_h as usize, net_w as usize];
        let maps = self.pool.with(|session| {
            let outputs = session.run(ort::inputs![TensorRef::from_array_view((
                shape,
                planar.as_slice()
            ))?])?;
            OUTPUT_NAMES
                .iter()
                .map(|name| {
                    let value = outputs.get(name).ok_or_else(|| ModelError::BadOutput {
                        model: "centerface",
                        reason: format!("no output named {name}"),
                    })?;
                    Ok(value.try_extract_tensor::<f32>()?.1.to_vec())
                })
                .collect::<Result<Vec<_>, ModelError>>()
        })?;
        let grid = OutputMaps::new(maps, net_w, net_h)?;
        let scale = (
            f64::from(net_w) / f64::from(w),
            f64::from(net_h) / f64::from(h),
        );
        let mut faces = grid.decode(self.config.min_score, self.config.nms_iou, scale);
        faces.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        faces.truncate(self.config.max_faces);
        Ok(faces)
    }
}

/// The network input size: the image scaled so its longer side is at most
/// `max_side`, each side then rounded up to a multiple of 32 (the network's
/// stride); the image is stretched to it, as CenterFace was run upstream.
pub fn working_size(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let longer = w.max(h).max(1);
    let s = (f64::from(max_side.max(32)) / f64::from(longer)).min(1.0);
    let round = |v: u32| -> u32 {
        let scaled = (f64::from(v) * s).round().max(1.0) as u32;
        scaled.div_ceil(32) * 32
    };
    (round(w), round(h))
}

/// CenterFace's outputs: heatmap, log box size (h, w), centre offset (y, x)
/// and landmarks (y, x pairs), each on the stride-4 grid.
const OUTPUT_NAMES: [&str; 4] = ["537", "538", "539", "540"];

/// CenterFace's four output maps for one image.
struct OutputMaps {
    heat: Vec<f32>,
    scale: Vec<f32>,
    offset: Vec<f32>,
    landmarks: Vec<f32>,
    rows: usize,
    cols: usize,
    net: (f64, f64),
}

impl OutputMaps {
    fn new(maps: Vec<Vec<f32>>, net_w: u32, net_h: u32) -> Result<Self, ModelError> {
        let (rows, cols) = (net_h as usize / 4, net_w as usize / 4);
        let cells = rows * cols;
        for (map, channels) in maps.iter().zip([1, 2, 2, 10]) {
            if map.len() != channels * cells {
                return Err(ModelError::BadOutput {
                    model: "centerface",
                    reason: format!(
                        "{} values where {} were expected for a {net_w}x{net_h} input",
                        map.len(),
                        channels * cells
                    ),
                });
            }
        }
        let [heat, scale, offset, landmarks]: [Vec<f32>; 4] =
            maps.try_into().map_err(|_| ModelError::BadOutput {
                model: "centerface",
                reason: "not four outputs".into(),
            })?;
        Ok(Self {
            heat,
            scale,
            offset,
            landmarks,
            rows,
            cols,
            net: (f64::from(net_w), f64::from(net_h)),
        })
    }

    /// Every cell above `min_score` becomes a candidate box, then greedy NMS
    /// by score; coordinates are divided by `scale` back to the image.
    fn decode(&self, min_score: f32, nms_iou: f32, scale: (f64, f64)) -> Vec<Detection> {
        let cells = self.rows * self.cols;
        let mut candidates = Vec::new();
        for (i, &score) in self.heat.iter().enumerate() {
            if score <= min_score {
                continue;
            }
            let (y, x) = (i / self.cols, i % self.cols);
            let h = f64::from(self.scale[i].exp()) * 4.0;
            let w = f64::from(self.scale[cells + i].exp()) * 4.0;
            let cy = (y as f64 + f64::from(self.offset[i]) + 0.5) * 4.0;
            let cx = (x as f64 + f64::from(self.offset[cells + i]) + 0.5) * 4.0;
            // Clamp the top-left first and derive the far edges from it: a box
            // cut off at the left or top is shifted, not trimmed, as upstream.
            let x1 = (cx - w / 2.0).max(0.0).min(self.net.0);
            let y1 = (cy - h / 2.0).max(0.0).min(self.net.1);
            let x2 = (x1 + w).min(self.net.0);
            let y2 = (y1 + h).min(self.net.1);
            let mut points = [Point::default(); 5];
            for (j, p) in points.iter_mut().enumerate() {
                let ly = f64::from(self.landmarks[2 * j * cells + i]);
                let lx = f64::from(self.landmarks[(2 * j + 1) * cells + i]);
                *p = Point::new((lx * w + x1) / scale.0, (ly * h + y1) / scale.1);
            }
            let bbox = PixelBox {
                left: x1 / scale.0,
                top: y1 / scale.1,
                right: x2 / scale.0,
                bottom: y2 / scale.1,
            };
            candidates.push(Detection {
                bbox,
                score,
                points,
            });
        }
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<Detection> = Vec::new();
        for c in candidates {
            if kept
                .iter()
                .all(|k| k.bbox.iou(&c.bbox) < f64::from(nms_iou))
            {
                kept.push(c);
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_size_keeps_small_images_and_rounds_to_32() {
        assert_eq!(working_size(910, 1137, 2000), (928, 1152));
        assert_eq!(working_size(92, 112, 960), (96, 128));
        assert_eq!(working_size(1920, 1080, 640), (640, 384));
    }

    #[test]
    fn decode_reproduces_the_worked_example() {
        // One hot cell at row 1, col 2 of a 3x4 grid (net input 16x12).
        let (rows, cols) = (3, 4);
        let cells = rows * cols;
        let i = cols + 2;
        let mut heat = vec![0.0; cells];
        heat[i] = 0.9;
        let mut scale = vec![0.0; 2 * cells];
        scale[i] = (8.0f32 / 4.0).ln();
        scale[cells + i] = (4.0f32 / 4.0).ln();
        let mut offset = vec![0.0; 2 * cells];
        offset[cells + i] = 0.25;
        let mut landmarks = vec![0.0; 10 * cells];
        landmarks[i] = 0.5; // y0
        landmarks[cells + i] = 0.25; // x0
        let maps = OutputMaps {
            heat,
            scale,
            offset,
            landmarks,
            rows,
            cols,
            net: (16.0, 12.0),
        };
        let faces = maps.decode(0.5, 0.3, (2.0, 1.0));
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        // cx = (2 + 0.25 + 0.5) * 4 = 11, w = 4 -> x1 = 9; cy = 6, h = 8 -> y1 = 2.
        assert_eq!(
            f.bbox,
            PixelBox {
                left: 4.5,
                top: 2.0,
                right: 6.5,
                bottom: 10.0
            }
        );
        assert_eq!(
            f.points[0],
            Point::new((0.25 * 4.0 + 9.0) / 2.0, 0.5 * 8.0 + 2.0)
        );
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let (rows, cols) = (1, 2);
        let cells = 2;
        let maps = OutputMaps {
            heat: vec![0.6, 0.8],
            scale: vec![(40.0f32 / 4.0).ln(); 2 * cells],
            offset: vec![0.0; 2 * cells],
            landmarks: vec![0.0; 10 * cells],
            rows,
            cols,
            net: (64.0, 64.0),
        };
        let faces = maps.decode(0.5, 0.3, (1.0, 1.0));
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].score, 0.8);
    }
}
