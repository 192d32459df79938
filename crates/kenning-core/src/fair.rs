//! Fair (per-region) calibration: the scoring half, shared by the model
//! layer (CompareFaces, collection search) and the evaluation toolkit, which
//! fits it (`kenning_eval::calibrate`).
//!
//! A fair calibration clusters the unit-normalised embeddings of an
//! unlabelled impostor set and keeps, for each cluster, a distance-to-FMR
//! table. A pair in clusters `a` and `b` gets the geometric mean of the two
//! clusters' FMRs at its distance (one cluster's when `a == b`), and a final
//! monotone table maps that combined score to the FMR observed over all
//! impostor pairs, so the overall FMR stays calibrated while the
//! per-region differences are taken out.

use serde::{Deserialize, Serialize};

/// Lowest log10 FMR any fair calibration reports.
pub const FLOOR_LOG_FMR: f64 = -15.0;

/// Largest [`FairCalibrationConfig::strength`]: beyond twice the measured
/// per-region correction a table would invent differences it never saw.
pub const MAX_STRENGTH: f64 = 2.0;

/// How two embeddings are compared. Smaller is always more similar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Euclidean (L2) distance, as dlib's recogniser uses.
    #[default]
    Euclidean,
    /// Cosine distance, `1 - cos(a, b)`, in `[0, 2]`.
    Cosine,
}

impl Distance {
    /// Distance between two vectors of equal length.
    pub fn between(self, a: &[f32], b: &[f32]) -> f32 {
        self.combine(dot(a, b), dot(a, a), dot(b, b))
    }

    /// The same, accumulated in f64: the distance a single comparison is
    /// scored by, where speed matters less than matching the calibration
    /// to the last digit.
    pub fn precise(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Self::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum::<f64>()
                .sqrt(),
            Self::Cosine => {
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for (&x, &y) in a.iter().zip(b) {
                    let (x, y) = (f64::from(x), f64::from(y));
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                if aa == 0.0 || bb == 0.0 {
                    1.0
                } else {
                    1.0 - ab / (aa.sqrt() * bb.sqrt())
                }
            }
        }
    }

    /// Distance from the dot product and the two squared norms (one dot
    /// product per pair in all-pairs loops).
    #[inline]
    pub fn combine(self, ab: f32, aa: f32, bb: f32) -> f32 {
        match self {
            Distance::Euclidean => (aa + bb - 2.0 * ab).max(0.0).sqrt(),
            Distance::Cosine => {
                let den = (aa * bb).sqrt();
                if den > 0.0 {
                    (1.0 - ab / den).clamp(0.0, 2.0)
                } else {
                    1.0
                }
            }
        }
    }
}

/// Dot product with eight independent accumulators so the compiler can keep
/// them in SIMD lanes.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index and squared distance of the nearest centroid.
pub fn nearest_centroid(centroids: &[Vec<f32>], x: &[f32]) -> (usize, f32) {
    centroids
        .iter()
        .enumerate()
        .map(|(k, c)| (k, sq_dist(c, x)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, f32::INFINITY))
}

/// A monotone map from a score to log10 FMR: `(score, log10 FMR)` points
/// with both strictly increasing. Linear in between; above the last point
/// the last FMR; below the first the slope over the lowest decade is
/// extended (fewer than the fit's `min_count` pairs were that close), down
/// to [`FLOOR_LOG_FMR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogFmrTable {
    /// Comparisons measured.
    pub pairs: u64,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

impl LogFmrTable {
    /// log10 FMR at `x`.
    pub fn log_fmr(&self, x: f64) -> f64 {
        let p = &self.points;
        let (Some(&first), Some(&last)) = (p.first(), p.last()) else {
            return 0.0;
        };
        if x >= last.0 {
            return last.1;
        }
        if x < first.0 {
            let (slope, _) = self.low_slope();
            if slope <= 0.0 {
                return FLOOR_LOG_FMR.max(first.1);
            }
            return (first.1 + (x - first.0) * slope).max(FLOOR_LOG_FMR);
        }
        let i = p.partition_point(|q| q.0 <= x);
        let (a, b) = (p[i - 1], p[i]);
        a.1 + (x - a.0) * (b.1 - a.1) / (b.0 - a.0)
    }

    /// Slope over roughly the lowest decade (steadier than one segment),
    /// and the first point.
    fn low_slope(&self) -> (f64, (f64, f64)) {
        let p = &self.points;
        let first = p[0];
        let last = p[p.len() - 1];
        let top = p
            .iter()
            .find(|q| q.1 >= first.1 + 1.0 - 1e-9)
            .unwrap_or(&last);
        if top.0 <= first.0 {
            return (0.0, first);
        }
        ((top.1 - first.1) / (top.0 - first.0), first)
    }

    /// The largest `x` whose log10 FMR is at most `log_fmr` (the inverse of
    /// [`LogFmrTable::log_fmr`]); `None` when no score is that low, and
    /// infinity when every score is.
    pub fn score_for_log_fmr(&self, log_fmr: f64) -> Option<f64> {
        let p = &self.points;
        let (Some(&first), Some(&last)) = (p.first(), p.last()) else {
            return (log_fmr >= 0.0).then_some(f64::INFINITY);
        };
        if log_fmr >= last.1 {
            return Some(f64::INFINITY);
        }
        if log_fmr < first.1 {
            let (slope, _) = self.low_slope();
            if slope <= 0.0 || log_fmr < FLOOR_LOG_FMR {
                return None;
            }
            return Some(first.0 - (first.1 - log_fmr) / slope);
        }
        let i = p.partition_point(|q| q.1 <= log_fmr);
        let (a, b) = (p[i - 1], p[i]);
        Some(a.0 + (log_fmr - a.1) * (b.0 - a.0) / (b.1 - a.1))
    }
}

/// Which impostor pairs teach a cluster its distance-to-FMR map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterPairs {
    /// Pairs with both photos in the cluster: the pairs that dominate
    /// same-group false matches. Needs larger clusters.
    #[default]
    Within,
    /// Pairs with at least one photo in the cluster (FairCal's choice).
    Involving,
}

/// In a fit pooled from several photo sets (domains), how each region's
/// table weighs the domains' pairs inside the region (the overall tables
/// always weigh domains alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionDomains {
    /// Every pair counts once, so the domain with most pairs shapes the
    /// region's table.
    #[default]
    Summed,
    /// Each domain with at least `domain_min_pairs` pairs in the region
    /// has its own curve there and the curves weigh alike (mean log10 FMR).
    MeanLog,
    /// Each pair weighs one over its domain's pair count, so the region's
    /// table is the FMR of an equal mixture of the domains; with
    /// `mixture_power` p below 1, one over the count to the power p, which
    /// runs from `Summed` (p = 0) to the equal mixture (p = 1) and keeps a
    /// small domain's few pairs from setting a region's tail alone.
    Mixture,
}

/// How a fair calibration was (or is to be) fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FairCalibrationConfig {
    /// Number of clusters.
    pub k: usize,
    /// Seed for k-means.
    pub seed: u64,
    /// Most k-means iterations.
    pub max_iter: usize,
    /// Table points per decade of FMR.
    pub per_decade: usize,
    /// A table stops where fewer than this many pairs are below a point.
    pub min_count: u64,
    /// Which pairs calibrate a cluster.
    pub pairs: ClusterPairs,
    /// Pairs closer than this are left out: copies of one photo in the set,
    /// which are not comparisons of different people.
    #[serde(default)]
    pub exclude_below: f64,
    /// How far each cluster's table pulls a pair away from the global one,
    /// in log10 FMR: `global + strength (cluster - global)`. 1 is the full
    /// per-region correction (equal false matches across regions), 0 one
    /// global threshold (whose misses are spread more evenly); in between
    /// trades one for the other (issue 16, goal 5).
    #[serde(default = "full_strength", skip_serializing_if = "is_full_strength")]
    pub strength: f64,
    /// In a pooled fit, how each region's table weighs the domains.
    #[serde(default, skip_serializing_if = "is_summed")]
    pub region_domains: RegionDomains,
    /// With [`RegionDomains::MeanLog`]: the pairs a domain needs inside a
    /// region for a curve of its own there.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub domain_min_pairs: u64,
    /// With [`RegionDomains::Mixture`]: the power p of the weights, each
    /// pair weighing (largest domain's pairs / its domain's pairs)^p
    /// (absent = 1, the equal mixture).
    #[serde(default = "full_strength", skip_serializing_if = "is_full_strength")]
    pub mixture_power: f64,
}

fn is_summed(w: &RegionDomains) -> bool {
    *w == RegionDomains::Summed
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn full_strength() -> f64 {
    1.0
}

fn is_full_strength(s: &f64) -> bool {
    *s == 1.0
}

impl Default for FairCalibrationConfig {
    fn default() -> Self {
        Self {
            k: 8,
            seed: 0x6b6d_6561,
            max_iter: 100,
            per_decade: 10,
            min_count: 10,
            pairs: ClusterPairs::Within,
            exclude_below: 0.0,
            strength: 1.0,
            region_domains: RegionDomains::Summed,
            domain_min_pairs: 0,
            mixture_power: 1.0,
        }
    }
}

/// One cluster's calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterCalibration {
    /// Calibration photos in the cluster.
    pub photos: usize,
    /// Distance -> log10 FMR, if the cluster had enough pairs.
    pub table: Option<LogFmrTable>,
}

/// Why a fair calibration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FairCalibrationError {
    /// Not valid JSON for a fair calibration.
    #[error("fair calibration: {0}")]
    Json(#[from] serde_json::Error),
    /// Parsed, but inconsistent.
    #[error("fair calibration: {0}")]
    Invalid(String),
}

/// A distance-to-FMR calibration that depends on where in embedding space
/// the two faces lie, learned without labels (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairCalibration {
    /// Recogniser the calibration was made for (empty if not recorded).
    #[serde(default)]
    pub recogniser: String,
    /// What it was fitted on and how.
    #[serde(default)]
    pub source: String,
    /// Distance the tables are in.
    pub distance: Distance,
    /// How it was fitted.
    pub config: FairCalibrationConfig,
    /// Unit-normalised-space cluster centres.
    pub centroids: Vec<Vec<f32>>,
    /// Per-cluster photo counts and tables (distance -> log10 FMR); a
    /// cluster without a table uses `global`.
    pub clusters: Vec<ClusterCalibration>,
    /// Distance -> log10 FMR over all impostor pairs.
    pub global: LogFmrTable,
    /// Combined score -> log10 FMR over all impostor pairs.
    pub combined: LogFmrTable,
    /// Impostor pairs used.
    pub impostor_pairs: u64,
}

impl FairCalibration {
    /// log10 FMR of cluster `c`'s own table at distance `d`, moved toward
    /// the global table as the config's `strength` says.
    pub fn cluster_log_fmr(&self, c: usize, d: f32) -> f64 {
        let d = f64::from(d);
        match self.clusters.get(c).and_then(|c| c.table.as_ref()) {
            Some(t) if self.config.strength == 1.0 => t.log_fmr(d),
            Some(t) => {
                let g = self.global.log_fmr(d);
                g + self.config.strength * (t.log_fmr(d) - g)
            }
            None => self.global.log_fmr(d),
        }
    }

    /// Mean of the two clusters' log10 FMRs (the log of the geometric mean):
    /// the score the `combined` table maps to overall FMR.
    pub fn raw_score(&self, a: usize, b: usize, d: f32) -> f64 {
        if a == b {
            self.cluster_log_fmr(a, d)
        } else {
            (self.cluster_log_fmr(a, d) + self.cluster_log_fmr(b, d)) / 2.0
        }
    }

    /// The cluster of an embedding (normalised to unit length first).
    pub fn assign(&self, embedding: &[f32]) -> usize {
        let n2 = dot(embedding, embedding);
        let s = if n2 > 0.0 { 1.0 / n2.sqrt() } else { 1.0 };
        let unit: Vec<f32> = embedding.iter().map(|x| x * s).collect();
        nearest_centroid(&self.centroids, &unit).0
    }

    /// Number of clusters.
    pub fn clusters(&self) -> usize {
        self.centroids.len()
    }

    /// log10 FMR of a pair in clusters `a` and `b` at `distance`.
    pub fn log_fmr_for_clusters(&self, a: usize, b: usize, distance: f32) -> f64 {
        self.combined.log_fmr(self.raw_score(a, b, distance))
    }

    /// FMR of comparing embeddings `a` and `b` whose distance is `distance`.
    pub fn fmr(&self, a: &[f32], b: &[f32], distance: f32) -> f64 {
        10f64.powf(self.log_fmr_for_clusters(self.assign(a), self.assign(b), distance))
    }

    /// FMR of comparing embeddings `a` and `b`, computing their distance.
    pub fn fmr_of(&self, a: &[f32], b: &[f32]) -> f64 {
        self.fmr(a, b, self.distance.between(a, b))
    }

    /// The largest distance at which a pair in clusters `a` and `b` still
    /// has log10 FMR at most `log_fmr` (0 when none does; found by
    /// bisection, since the score falls monotonically with distance).
    pub fn distance_for_clusters(&self, a: usize, b: usize, log_fmr: f64) -> f32 {
        let ok = |d: f32| self.log_fmr_for_clusters(a, b, d) <= log_fmr;
        let mut hi = self
            .global
            .points
            .last()
            .map_or(4.0, |p| p.0 as f32)
            .max(1e-3);
        if ok(hi) {
            // Beyond the last table point every pair is accepted.
            return f32::INFINITY;
        }
        let mut lo = 0f32;
        if !ok(lo) {
            return 0.0;
        }
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if ok(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The loosest distance any pair involving cluster `a` may have and
    /// still reach `log_fmr`: the search radius for a probe in cluster `a`.
    pub fn max_distance_for(&self, a: usize, log_fmr: f64) -> f32 {
        (0..self.clusters())
            .map(|b| self.distance_for_clusters(a, b, log_fmr))
            .fold(0.0, f32::max)
    }

    /// JSON text.
    pub fn to_json(&self) -> Result<String, FairCalibrationError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Reads JSON written by [`FairCalibration::to_json`] and checks it.
    pub fn from_json(text: &str) -> Result<Self, FairCalibrationError> {
        let fc: Self = serde_json::from_str(text)?;
        fc.validate()?;
        Ok(fc)
    }

    /// Checks the parts agree.
    pub fn validate(&self) -> Result<(), FairCalibrationError> {
        let bad = |s: &str| Err(FairCalibrationError::Invalid(s.into()));
        if self.centroids.is_empty() || self.centroids.len() != self.clusters.len() {
            return bad("centroids and clusters disagree");
        }
        if !(0.0..=MAX_STRENGTH).contains(&self.config.strength) {
            return Err(FairCalibrationError::Invalid(format!(
                "strength must be 0-{MAX_STRENGTH}, not {}",
                self.config.strength
            )));
        }
        let dim = self.centroids[0].len();
        if dim == 0 || self.centroids.iter().any(|c| c.len() != dim) {
            return bad("centroids differ in length");
        }
        let tables = std::iter::once(&self.global)
            .chain(std::iter::once(&self.combined))
            .chain(self.clusters.iter().filter_map(|c| c.table.as_ref()));
        for t in tables {
            if t.points.len() < 2
                || t.points
                    .windows(2)
                    .any(|w| !(w[0].0 < w[1].0 && w[0].1 < w[1].1))
                || t.points
                    .iter()
                    .any(|p| !p.0.is_finite() || !p.1.is_finite())
            {
                return bad("a table is not finite and strictly increasing");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precise_distances() {
        let (a, b) = ([3.0f32, 0.0], [0.0f32, 4.0]);
        assert_eq!(Distance::Euclidean.precise(&a, &b), 5.0);
        assert!((Distance::Cosine.precise(&a, &b) - 1.0).abs() < 1e-12);
        assert!(Distance::Cosine.precise(&a, &a).abs() < 1e-12);
    }

    fn table(points: &[(f64, f64)]) -> LogFmrTable {
        LogFmrTable {
            pairs: 1000,
            points: points.to_vec(),
        }
    }

    /// Two clusters on opposite poles; cluster 1's impostors are twice as
    /// close as cluster 0's, so the same FMR sits at half the distance.
    fn two_clusters() -> FairCalibration {
        let t0 = table(&[(0.4, -4.0), (0.6, -2.0), (0.8, 0.0)]);
        let t1 = table(&[(0.2, -4.0), (0.3, -2.0), (0.4, 0.0)]);
        FairCalibration {
            recogniser: "test".into(),
            source: String::new(),
            distance: Distance::Euclidean,
            config: FairCalibrationConfig::default(),
            centroids: vec![vec![1.0, 0.0], vec![-1.0, 0.0]],
            clusters: vec![
                ClusterCalibration {
                    photos: 10,
                    table: Some(t0.clone()),
                },
                ClusterCalibration {
                    photos: 10,
                    table: Some(t1),
                },
            ],
            global: t0,
            // Identity map: the combined score is already an overall FMR.
            combined: table(&[(-15.0, -15.0), (0.0, 0.0)]),
            impostor_pairs: 1000,
        }
    }

    #[test]
    fn tables_interpolate_and_invert() {
        let t = table(&[(0.4, -4.0), (0.6, -2.0), (0.8, 0.0)]);
        assert!((t.log_fmr(0.5) + 3.0).abs() < 1e-12);
        assert_eq!(t.log_fmr(0.9), 0.0);
        // Below the first point the lowest decade's slope (10 per unit) goes on.
        assert!((t.log_fmr(0.3) + 5.0).abs() < 1e-12);
        for l in [-5.0, -4.0, -3.0, -1.0] {
            let x = t.score_for_log_fmr(l).unwrap();
            assert!((t.log_fmr(x) - l).abs() < 1e-9, "{l}");
        }
        assert_eq!(t.score_for_log_fmr(0.0), Some(f64::INFINITY));
    }

    #[test]
    fn each_cluster_gets_its_own_threshold() {
        let fc = two_clusters();
        let (a, b) = ([0.9f32, 0.1], [-0.9f32, 0.1]);
        assert_eq!((fc.assign(&a), fc.assign(&b)), (0, 1));
        // Same distance 0.4: FMR 1e-4 in cluster 0, 1 in cluster 1.
        // (Distances are f32, so agreement is to about 1e-6.)
        assert!((fc.log_fmr_for_clusters(0, 0, 0.4) + 4.0).abs() < 1e-5);
        assert!(fc.log_fmr_for_clusters(1, 1, 0.4).abs() < 1e-5);
        // Mixed pair: geometric mean of the two.
        assert!((fc.log_fmr_for_clusters(0, 1, 0.4) + 2.0).abs() < 1e-5);
        let d0 = fc.distance_for_clusters(0, 0, -4.0);
        let d1 = fc.distance_for_clusters(1, 1, -4.0);
        assert!(
            (d0 - 0.4).abs() < 1e-4 && (d1 - 0.2).abs() < 1e-4,
            "{d0} {d1}"
        );
        // A probe in cluster 1 must search out to the loosest pair involving
        // it: against cluster 0, where the two tables' mean reaches -4 at
        // 0.8/3 (-4 + 10 (d - 0.4) and -4 + 20 (d - 0.2) average to -4).
        let r = fc.max_distance_for(1, -4.0);
        let d10 = fc.distance_for_clusters(1, 0, -4.0);
        assert!((d10 - 0.8 / 3.0).abs() < 1e-4, "{d10}");
        assert!((r - d10.max(d1)).abs() < 1e-6 && r < d0, "{r}");
        assert!((fc.max_distance_for(0, -4.0) - d0).abs() < 1e-6);
        assert!((fc.fmr(&a, &a, 0.4) / 1e-4 - 1.0).abs() < 1e-4);
    }

    #[test]
    fn strength_moves_each_cluster_toward_the_global_table() {
        let mut fc = two_clusters();
        // Cluster 1's table at 0.3 says -2, the global (cluster 0's) -5.
        let (own, global) = (-2.0, fc.global.log_fmr(0.3));
        assert!((fc.cluster_log_fmr(1, 0.3) - own).abs() < 1e-6);
        for (t, want) in [
            (0.0, global),
            (0.5, (own + global) / 2.0),
            (1.5, global + 1.5 * (own - global)),
        ] {
            fc.config.strength = t;
            assert!((fc.cluster_log_fmr(1, 0.3) - want).abs() < 1e-6, "{t}");
        }
        // Stored only when it is not the full correction; out of range refused.
        assert!(fc.to_json().unwrap().contains("\"strength\":1.5"));
        fc.config.strength = 1.0;
        assert!(!fc.to_json().unwrap().contains("strength"));
        fc.config.strength = MAX_STRENGTH + 0.5;
        assert!(FairCalibration::from_json(&fc.to_json().unwrap()).is_err());
    }

    #[test]
    fn json_round_trip_and_validation() {
        let fc = two_clusters();
        let back = FairCalibration::from_json(&fc.to_json().unwrap()).unwrap();
        assert_eq!(back, fc);
        let mut bad = fc.clone();
        bad.clusters.pop();
        assert!(FairCalibration::from_json(&bad.to_json().unwrap()).is_err());
        let mut bad = fc;
        bad.combined.points.reverse();
        assert!(FairCalibration::from_json(&bad.to_json().unwrap()).is_err());
    }
}
