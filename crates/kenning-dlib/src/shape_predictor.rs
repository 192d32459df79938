//! dlib's cascaded regression-tree shape predictor (Kazemi & Sullivan), as
//! stored in `shape_predictor_5_face_landmarks.dat`, reproducing dlib's
//! integer landmarks exactly.

use std::path::Path;

use kenning_core::Point;
use kenning_image::{RgbImage, Similarity};

use crate::serialize::{Reader, MIN_FLOAT_BYTES, MIN_INT_BYTES};
use crate::{floor_i64, DlibError, DlibRect};

/// Number of landmarks this implementation supports (the 5-point model).
const LANDMARKS: usize = 5;

/// One tree split: go left when `f[idx1] - f[idx2] > thresh`.
#[derive(Debug, Clone, Copy)]
struct Split {
    // u16 keeps a split at 8 bytes; the trees are walked for every face,
    // so their memory footprint is the predictor's main cost.
    idx1: u16,
    idx2: u16,
    thresh: f32,
}

/// One cascade level, flattened for speed: all trees' splits and leaves are
/// in two contiguous arrays.
#[derive(Debug, Clone)]
struct Cascade {
    /// Per feature: the landmark it is anchored to.
    anchors: Vec<u8>,
    /// Per feature: its offset from the anchor in normalised coordinates.
    deltas: Vec<[f32; 2]>,
    /// Per tree: index of its first split in `splits` and first leaf in
    /// `leaves`, and its number of splits.
    trees: Vec<(u32, u32, u32)>,
    splits: Vec<Split>,
    leaves: Vec<[f32; 2 * LANDMARKS]>,
}

/// dlib's 5-point face landmark predictor.
#[derive(Debug, Clone)]
pub struct ShapePredictor {
    /// Mean shape, (x0, y0, ..., x4, y4) in rectangle-normalised units.
    initial: [f32; 2 * LANDMARKS],
    /// The initial shape's points in f64, the `from` side of every fit.
    initial_points: [Point; LANDMARKS],
    cascades: Vec<Cascade>,
}

/// A serialized tree as read from the file.
struct RawTree {
    splits: Vec<Split>,
    leaves: Vec<[f32; 2 * LANDMARKS]>,
}

fn read_shape_vector(r: &mut Reader<'_>) -> Result<[f32; 2 * LANDMARKS], DlibError> {
    let offset = r.offset();
    let m = r.read_matrix_f32()?;
    if m.rows != 2 * LANDMARKS || m.cols != 1 {
        return Err(DlibError::Invalid {
            offset,
            what: format!(
                "shape vector of {}x{}, expected {}x1 (a 5-point model)",
                m.rows,
                m.cols,
                2 * LANDMARKS
            ),
        });
    }
    let mut v = [0f32; 2 * LANDMARKS];
    v.copy_from_slice(&m.data);
    Ok(v)
}

impl ShapePredictor {
    /// Parses `shape_predictor_5_face_landmarks.dat` from memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DlibError> {
        let mut r = Reader::new(bytes);
        r.expect_version(1, "shape_predictor")?;
        let initial = read_shape_vector(&mut r)?;
        // Smallest possible tree: an empty split vector and one leaf.
        let forests = r.read_vec(2 * MIN_INT_BYTES, |r| {
            r.read_vec(2 * MIN_INT_BYTES, |r| {
                let splits = r.read_vec(2 * MIN_INT_BYTES + MIN_FLOAT_BYTES, |r| {
                    let offset = r.offset();
                    let idx1 = u16::try_from(r.read_u64()?);
                    let idx2 = u16::try_from(r.read_u64()?);
                    let thresh = r.read_f32()?;
                    match (idx1, idx2) {
                        (Ok(idx1), Ok(idx2)) => Ok(Split { idx1, idx2, thresh }),
                        _ => Err(DlibError::Invalid {
                            offset,
                            what: "feature index out of range".into(),
                        }),
                    }
                })?;
                let leaves = r.read_vec(2 * MIN_INT_BYTES, read_shape_vector)?;
                Ok(RawTree { splits, leaves })
            })
        })?;
        let anchors_offset = r.offset();
        let anchors = r.read_vec(MIN_INT_BYTES, |r| {
            r.read_vec(MIN_INT_BYTES, |r| r.read_u64())
        })?;
        let deltas_offset = r.offset();
        let deltas = r.read_vec(MIN_INT_BYTES, |r| {
            r.read_vec(2 * MIN_FLOAT_BYTES, |r| r.read_point_f32())
        })?;
        r.expect_eof()?;

        if anchors.len() != forests.len() || deltas.len() != forests.len() {
            return Err(DlibError::Invalid {
                offset: anchors_offset,
                what: format!(
                    "{} cascades but {} anchor lists and {} delta lists",
                    forests.len(),
                    anchors.len(),
                    deltas.len()
                ),
            });
        }
        let mut cascades = Vec::with_capacity(forests.len());
        for ((trees, anchor), delta) in forests.into_iter().zip(anchors).zip(deltas) {
            if anchor.len() != delta.len() {
                return Err(DlibError::Invalid {
                    offset: deltas_offset,
                    what: "anchor and delta counts differ".into(),
                });
            }
            let features = anchor.len();
            let anchors = anchor
                .into_iter()
                .map(|a| u8::try_from(a).ok().filter(|&a| usize::from(a) < LANDMARKS))
                .collect::<Option<Vec<u8>>>()
                .ok_or(DlibError::Invalid {
                    offset: anchors_offset,
                    what: "anchor index is not a landmark".into(),
                })?;
            let mut c = Cascade {
                anchors,
                deltas: delta,
                trees: Vec::with_capacity(trees.len()),
                splits: Vec::new(),
                leaves: Vec::new(),
            };
            for t in trees {
                // A tree with n splits in breadth-first order has n + 1 leaves;
                // the traversal relies on it.
                let bad_feature = t
                    .splits
                    .iter()
                    .any(|s| s.idx1 as usize >= features || s.idx2 as usize >= features);
                if t.leaves.len() != t.splits.len() + 1 || bad_feature {
                    return Err(DlibError::Invalid {
                        offset: anchors_offset,
                        what: "regression tree is not complete or indexes a missing feature".into(),
                    });
                }
                c.trees.push((
                    c.splits.len() as u32,
                    c.leaves.len() as u32,
                    t.splits.len() as u32,
                ));
                c.splits.extend(t.splits);
                c.leaves.extend(t.leaves);
            }
            cascades.push(c);
        }
        let initial_points = std::array::from_fn(|k| {
            Point::new(f64::from(initial[2 * k]), f64::from(initial[2 * k + 1]))
        });
        Ok(Self {
            initial,
            initial_points,
            cascades,
        })
    }

    /// Reads and parses the model file at `path`.
    pub fn load(path: &Path) -> Result<Self, DlibError> {
        let bytes = std::fs::read(path).map_err(|e| DlibError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_bytes(&bytes)
    }

    /// Number of cascade levels (15 for the 5-point model).
    pub fn num_cascades(&self) -> usize {
        self.cascades.len()
    }

    /// Trees per cascade level (500 for the 5-point model).
    pub fn trees_per_cascade(&self) -> Vec<usize> {
        self.cascades.iter().map(|c| c.trees.len()).collect()
    }

    /// Feature pixels per cascade level (800 for the 5-point model).
    pub fn features_per_cascade(&self) -> Vec<usize> {
        self.cascades.iter().map(|c| c.anchors.len()).collect()
    }

    /// The 5 landmarks for the face in `rect`, as integer pixel positions,
    /// exactly as `dlib.shape_predictor(img, rect)` returns them.
    ///
    /// Order: outer and inner corner of the image-right eye, outer and inner
    /// corner of the image-left eye, base of the nose.
    pub fn predict(&self, img: &RgbImage, rect: DlibRect) -> [Point; 5] {
        // Normalised (u, v) -> image: l + u*(r-l), t + v*(b-t). dlib fits this
        // through the rectangle's corners, so the scale is (r - l), not the
        // inclusive width r - l + 1.
        let to_img = Mapping {
            sx: (rect.right - rect.left) as f64,
            sy: (rect.bottom - rect.top) as f64,
            ox: rect.left as f64,
            oy: rect.top as f64,
        };
        let (w, h) = (i64::from(img.width()), i64::from(img.height()));
        let pixels = img.as_raw();
        let mut cur = self.initial;
        let max_features = self
            .cascades
            .iter()
            .map(|c| c.anchors.len())
            .max()
            .unwrap_or(0);
        let mut features = vec![0f32; max_features];
        let max_trees = self
            .cascades
            .iter()
            .map(|c| c.trees.len())
            .max()
            .unwrap_or(0);
        let mut leaf_idx = Vec::with_capacity(max_trees);

        for c in &self.cascades {
            // Rotation/scale of the current shape relative to the mean shape;
            // dlib keeps only the 2x2 part and applies it in f32.
            let cur_points: [Point; LANDMARKS] = std::array::from_fn(|k| {
                Point::new(f64::from(cur[2 * k]), f64::from(cur[2 * k + 1]))
            });
            let s = Similarity::fit(&self.initial_points, &cur_points);
            let (m00, m01, m10, m11) = (s.a as f32, (-s.b) as f32, s.b as f32, s.a as f32);

            for ((f, &a), d) in features.iter_mut().zip(&c.anchors).zip(&c.deltas) {
                let a = usize::from(a);
                // One f32 operation at a time (Rust never fuses into FMA
                // unless asked), matching dlib's float arithmetic.
                let qx = (m00 * d[0] + m01 * d[1]) + cur[2 * a];
                let qy = (m10 * d[0] + m11 * d[1]) + cur[2 * a + 1];
                let (x, y) = to_img.apply(qx, qy);
                *f = if x >= 0 && y >= 0 && x < w && y < h {
                    let i = ((y * w + x) * 3) as usize;
                    // dlib's RGB intensity: integer mean of the channels.
                    ((u32::from(pixels[i]) + u32::from(pixels[i + 1]) + u32::from(pixels[i + 2]))
                        / 3) as f32
                } else {
                    0.0
                };
            }

            // Two passes: first every tree's leaf (the trees only read the
            // features), then the leaf sums in tree order, which keeps
            // dlib's f32 addition order. Splitting the passes lets the CPU
            // overlap the scattered leaf loads; the traversal is branch-free
            // because its comparisons are unpredictable.
            leaf_idx.clear();
            for &(s0, l0, n) in &c.trees {
                let splits = &c.splits[s0 as usize..(s0 + n) as usize];
                let step = |node: usize| {
                    let sp = splits[node];
                    let left = features[sp.idx1 as usize] - features[sp.idx2 as usize] > sp.thresh;
                    2 * node + 2 - usize::from(left)
                };
                let node = if splits.len() == 15 {
                    // Depth 4, as in every tree of the 5-point model: a
                    // fixed number of steps lets consecutive trees overlap.
                    step(step(step(step(0))))
                } else {
                    let mut node = 0usize;
                    while node < splits.len() {
                        node = step(node);
                    }
                    node
                };
                leaf_idx.push(l0 as usize + node - splits.len());
            }
            for &l in &leaf_idx {
                let leaf = &c.leaves[l];
                for (v, d) in cur.iter_mut().zip(leaf) {
                    *v += d;
                }
            }
        }
        std::array::from_fn(|k| {
            let (x, y) = to_img.apply(cur[2 * k], cur[2 * k + 1]);
            Point::new(x as f64, y as f64)
        })
    }
}

/// The normalised-to-image affine map of a rectangle, followed by dlib's
/// rounding to the nearest pixel (half up).
struct Mapping {
    sx: f64,
    sy: f64,
    ox: f64,
    oy: f64,
}

impl Mapping {
    fn apply(&self, u: f32, v: f32) -> (i64, i64) {
        let x = self.sx * f64::from(u) + self.ox;
        let y = self.sy * f64::from(v) + self.oy;
        (floor_i64(x + 0.5), floor_i64(y + 0.5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        assert!(ShapePredictor::from_bytes(&[]).is_err());
        assert!(ShapePredictor::from_bytes(&[0x01, 0x01]).is_err());
        assert!(ShapePredictor::from_bytes(&[0x01, 0x02]).is_err());
        // Version 1, then a 10x1 matrix header and nothing else.
        assert!(ShapePredictor::from_bytes(&[0x01, 0x01, 0x81, 0x0a, 0x81, 0x01]).is_err());
    }
}
