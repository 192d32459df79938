//! int8 scalar quantiser: per-dimension offset, one global scale.
//!
//! A single scale keeps distances between codes a plain integer sum of squared
//! differences (proportional to the true squared distance), which vectorises
//! well; the per-dimension mean centres the values so the 255 levels are spent
//! where the data is. The scale comes from a high quantile rather than the
//! maximum so one outlier does not coarsen every code; the rare clipped value
//! only perturbs the graph walk, never the result, which is re-ranked exactly.

/// Trained quantiser parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Quantizer {
    /// Per-dimension offset subtracted before scaling.
    pub mean: Vec<f32>,
    /// Size of one code step.
    pub scale: f32,
}

impl Quantizer {
    /// Fit on a sample of vectors.
    pub fn train<'a>(dim: usize, sample: impl Iterator<Item = &'a [f32]> + Clone) -> Quantizer {
        let mut mean = vec![0f64; dim];
        let mut n = 0usize;
        for v in sample.clone() {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += *x as f64;
            }
            n += 1;
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n.max(1) as f64) as f32).collect();
        let mut dev: Vec<f32> = sample
            .flat_map(|v| v.iter().zip(&mean).map(|(x, m)| (x - m).abs()))
            .collect();
        let q = ((dev.len() as f64 * 0.9999) as usize).min(dev.len().saturating_sub(1));
        let bound = if dev.is_empty() {
            1.0
        } else {
            *dev.select_nth_unstable_by(q, f32::total_cmp).1
        };
        let scale = if bound > 0.0 && bound.is_finite() {
            bound / 127.0
        } else {
            1.0 / 127.0
        };
        Quantizer { mean, scale }
    }

    /// Encode `x` into `out` (one i8 per dimension).
    pub fn encode(&self, x: &[f32], out: &mut [i8]) {
        let inv = 1.0 / self.scale;
        for ((o, v), m) in out.iter_mut().zip(x).zip(&self.mean) {
            *o = ((v - m) * inv).round().clamp(-127.0, 127.0) as i8;
        }
    }

    /// Map a query into code units, unrounded, for asymmetric distances.
    pub fn prepare(&self, q: &[f32]) -> Vec<f32> {
        let inv = 1.0 / self.scale;
        q.iter()
            .zip(&self.mean)
            .map(|(v, m)| (v - m) * inv)
            .collect()
    }
}
