//! Calibration support: impostor FMR points, checking how well a
//! calibration predicts FMR, k-means, and fair (per-cluster) calibration.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::distance::{dot, pairwise_fold, Distance, Embeddings};
use crate::error::{invalid, Result};
use crate::rng::SplitMix64;

/// Predicted FMRs checked by default.
pub const DEFAULT_CHECK_FMRS: [f64; 5] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

/// A point of an empirical distance-to-FMR curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FmrPoint {
    /// log10 of the FMR.
    pub log10_fmr: f64,
    /// Distance at or below which that fraction of impostor pairs fall.
    pub distance: f32,
    /// Impostor pairs at or below the distance.
    pub false_matches: u64,
}

/// Empirical (log10 FMR, distance) points from impostor distances, at
/// `per_decade` log-spaced FMRs from 1 down to the FMR of `min_count`
/// pairs; the distance for FMR f is the ceil(f N)-th smallest. Points with
/// a repeated distance are dropped so distances strictly decrease.
pub fn impostor_fmr_points(impostor: &[f32], per_decade: usize, min_count: u64) -> Vec<FmrPoint> {
    let mut v: Vec<f32> = impostor.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_unstable_by(f32::total_cmp);
    let n = v.len() as f64;
    let mut out: Vec<FmrPoint> = Vec::new();
    let per_decade = per_decade.max(1) as f64;
    // Levels are computed from a step index, not by repeated subtraction,
    // so they are exact decimals like -2.0 rather than -2.0000000000000004.
    for step in 0u32.. {
        let level = -f64::from(step) / per_decade;
        if v.is_empty() {
            break;
        }
        let count = (10f64.powf(level) * n).ceil().max(1.0) as u64;
        if count < min_count.max(1) {
            break;
        }
        let distance = v[count as usize - 1];
        if out.last().is_none_or(|p| distance < p.distance) {
            out.push(FmrPoint {
                log10_fmr: level,
                distance,
                false_matches: count,
            });
        }
    }
    out
}

/// Predicted against observed FMR at one predicted level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRow {
    /// FMR the calibration promises.
    pub predicted_fmr: f64,
    /// Fraction of impostor pairs whose predicted FMR is <= the promise.
    pub observed_fmr: f64,
    /// Those pairs.
    pub false_matches: u64,
    /// predicted x pairs >= 1, so the promise can be checked at all.
    pub measurable: bool,
    /// observed / predicted.
    pub ratio: f64,
    /// Whether observed is within the stated factor of predicted.
    pub within_factor: bool,
}

/// How well a calibration predicts FMR on an impostor set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCheck {
    /// What was checked.
    pub description: String,
    /// Impostor pairs.
    pub impostor_pairs: u64,
    /// Allowed factor between predicted and observed (3 in the product brief).
    pub factor: f64,
    /// One row per predicted FMR.
    pub rows: Vec<CalibrationRow>,
}

/// Checks a calibration from the FMR it predicts for each impostor pair of
/// an independent set: at predicted level p the threshold accepts pairs
/// with prediction <= p, and the observed FMR is the fraction accepted.
pub fn check_calibration(
    predicted: &[f64],
    levels: &[f64],
    factor: f64,
    description: &str,
) -> CalibrationCheck {
    let mut v: Vec<f64> = predicted.iter().copied().filter(|x| !x.is_nan()).collect();
    v.par_sort_unstable_by(f64::total_cmp);
    let n = v.len() as u64;
    let rows = levels
        .iter()
        .map(|&p| {
            let k = v.partition_point(|&x| x <= p) as u64;
            let observed = if n == 0 { 0.0 } else { k as f64 / n as f64 };
            let ratio = observed / p;
            CalibrationRow {
                predicted_fmr: p,
                observed_fmr: observed,
                false_matches: k,
                measurable: p * n as f64 >= 1.0,
                ratio,
                within_factor: ratio <= factor && ratio >= 1.0 / factor,
            }
        })
        .collect();
    CalibrationCheck {
        description: description.into(),
        impostor_pairs: n,
        factor,
        rows,
    }
}

/// [`check_calibration`] for a distance-to-FMR function (e.g. a global
/// table's lookup) applied to impostor distances.
pub fn check_calibration_fn(
    impostor: &[f32],
    predict: impl Fn(f32) -> f64 + Sync,
    levels: &[f64],
    factor: f64,
    description: &str,
) -> CalibrationCheck {
    let predicted: Vec<f64> = impostor.par_iter().map(|&d| predict(d)).collect();
    check_calibration(&predicted, levels, factor, description)
}

/// A fitted k-means clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeans {
    /// Cluster centres.
    pub centroids: Vec<Vec<f32>>,
    /// Cluster of each input point.
    pub assignments: Vec<usize>,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Sum of squared distances to the assigned centres.
    pub inertia: f64,
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

/// k-means with k-means++ seeding and Lloyd iterations (parallel
/// assignment), stopping when no point changes cluster or after
/// `max_iter` iterations. An emptied cluster is re-seeded with the point
/// farthest from its centre. Deterministic for a seed.
pub fn kmeans(points: &Embeddings, k: usize, seed: u64, max_iter: usize) -> Result<KMeans> {
    let n = points.len();
    if k == 0 || k > n {
        return Err(invalid(format!(
            "k-means needs 1 <= k <= points, got k = {k} for {n} points"
        )));
    }
    let dim = points.dim();
    let mut rng = SplitMix64::new(seed);
    let mut centroids = vec![points.row(rng.below(n)).to_vec()];
    let mut d2: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| sq_dist(points.row(i), &centroids[0]))
        .collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().map(|&x| f64::from(x)).sum();
        let next = if total > 0.0 {
            let mut r = rng.unit() * total;
            d2.iter()
                .position(|&x| {
                    r -= f64::from(x);
                    r < 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.below(n)
        };
        let c = points.row(next).to_vec();
        d2.par_iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = d.min(sq_dist(points.row(i), &c)));
        centroids.push(c);
    }
    let mut assignments = vec![usize::MAX; n];
    let mut iterations = 0;
    loop {
        let next: Vec<(usize, f32)> = (0..n)
            .into_par_iter()
            .map(|i| nearest_centroid(&centroids, points.row(i)))
            .collect();
        let changed = next
            .iter()
            .zip(&assignments)
            .filter(|(a, b)| a.0 != **b)
            .count();
        assignments = next.iter().map(|a| a.0).collect();
        if changed == 0 || iterations >= max_iter {
            let inertia = next.iter().map(|a| f64::from(a.1)).sum();
            return Ok(KMeans {
                centroids,
                assignments,
                iterations,
                inertia,
            });
        }
        iterations += 1;
        let mut sums = vec![vec![0f64; dim]; k];
        let mut counts = vec![0usize; k];
        for (i, &c) in assignments.iter().enumerate() {
            counts[c] += 1;
            sums[c]
                .iter_mut()
                .zip(points.row(i))
                .for_each(|(s, &x)| *s += f64::from(x));
        }
        let mut taken = vec![false; n];
        for c in 0..k {
            if counts[c] > 0 {
                centroids[c] = sums[c]
                    .iter()
                    .map(|&s| (s / counts[c] as f64) as f32)
                    .collect();
            } else {
                // Re-seed from the worst-fitting point not already used.
                let far = (0..n)
                    .filter(|&i| !taken[i])
                    .max_by(|&a, &b| next[a].1.total_cmp(&next[b].1))
                    .unwrap_or(0);
                taken[far] = true;
                centroids[c] = points.row(far).to_vec();
            }
        }
    }
}

/// Lowest log10 FMR any calibration reports.
pub const FLOOR_LOG_FMR: f64 = -15.0;

/// A monotone map from a score to log10 FMR: `(score, log10 FMR)` points
/// with both strictly increasing. Linear in between; above the last point
/// the last FMR; below the first the slope over the lowest decade is
/// extended (fewer than `min_count` pairs were that close), down to
/// [`FLOOR_LOG_FMR`].
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
            // Slope over roughly the lowest decade, steadier than one segment.
            let top = p
                .iter()
                .find(|q| q.1 >= first.1 + 1.0 - 1e-9)
                .unwrap_or(&last);
            if top.0 <= first.0 {
                return FLOOR_LOG_FMR.max(first.1);
            }
            let slope = (top.1 - first.1) / (top.0 - first.0);
            return (first.1 + (x - first.0) * slope).max(FLOOR_LOG_FMR);
        }
        let i = p.partition_point(|q| q.0 <= x);
        let (a, b) = (p[i - 1], p[i]);
        a.1 + (x - a.0) * (b.1 - a.1) / (b.0 - a.0)
    }
}

/// A fine histogram from which [`LogFmrTable`]s are cut.
#[derive(Debug, Clone)]
struct Hist {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
}

impl Hist {
    fn new(lo: f64, hi: f64, bins: usize) -> Self {
        Self {
            lo,
            width: (hi - lo).max(1e-12) / bins as f64,
            counts: vec![0; bins],
        }
    }
    #[inline]
    fn add(&mut self, x: f64) {
        let b = ((x - self.lo) / self.width).max(0.0) as usize;
        let last = self.counts.len() - 1;
        self.counts[b.min(last)] += 1;
    }
    fn merge(&mut self, o: &Hist) {
        self.counts
            .iter_mut()
            .zip(&o.counts)
            .for_each(|(a, b)| *a += b);
    }
    /// Points at `per_decade` log-spaced FMRs down to `min_count` pairs,
    /// the value for each interpolated within its bin.
    fn table(&self, per_decade: usize, min_count: u64) -> LogFmrTable {
        let n: u64 = self.counts.iter().sum();
        let mut cum = Vec::with_capacity(self.counts.len());
        let mut acc = 0u64;
        for &c in &self.counts {
            acc += c;
            cum.push(acc);
        }
        let mut pts: Vec<(f64, f64)> = Vec::new();
        let per_decade = per_decade.max(1) as f64;
        for step in 0u32..100_000 {
            let level = -f64::from(step) / per_decade;
            if n == 0 {
                break;
            }
            let target = 10f64.powf(level) * n as f64;
            if target < min_count.max(1) as f64 {
                break;
            }
            let b = cum
                .partition_point(|&c| (c as f64) < target)
                .min(cum.len() - 1);
            let before = if b == 0 { 0 } else { cum[b - 1] };
            let frac = (target - before as f64) / self.counts[b].max(1) as f64;
            let x = self.lo + (b as f64 + frac.clamp(0.0, 1.0)) * self.width;
            if pts.last().is_none_or(|p| x < p.0) {
                pts.push((x, level));
            }
        }
        pts.reverse();
        LogFmrTable {
            pairs: n,
            points: pts,
        }
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

/// Options for [`FairCalibration::fit_with`].
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
        }
    }
}

/// A distance-to-FMR calibration that depends on where in embedding space
/// the two faces lie, learned without labels.
///
/// Fitting clusters the unit-normalised embeddings of an impostor set with
/// k-means and learns, for each cluster, a distance-to-FMR table from its
/// impostor pairs ([`ClusterPairs`]). A pair in clusters `a` and `b` gets
/// the geometric mean of the two clusters' FMRs at its distance (one
/// cluster's when `a == b`). Because a geometric mean of per-cluster rates
/// is not itself a rate over the whole set, a final monotone table maps
/// that combined score to the FMR observed over all impostor pairs, so the
/// overall FMR stays calibrated while the per-cluster ordering is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairCalibration {
    /// Distance the tables are in.
    pub distance: Distance,
    /// How it was fitted.
    pub config: FairCalibrationConfig,
    /// Unit-normalised-space cluster centres.
    pub centroids: Vec<Vec<f32>>,
    /// Per-cluster photo counts and tables (distance -> log10 FMR); `None`
    /// when a cluster had too few pairs, in which case `global` is used.
    pub clusters: Vec<ClusterCalibration>,
    /// Distance -> log10 FMR over all impostor pairs.
    pub global: LogFmrTable,
    /// Combined score -> log10 FMR over all impostor pairs.
    pub combined: LogFmrTable,
    /// Impostor pairs used.
    pub impostor_pairs: u64,
}

/// One cluster's calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterCalibration {
    /// Calibration photos in the cluster.
    pub photos: usize,
    /// Distance -> log10 FMR, if the cluster had enough pairs.
    pub table: Option<LogFmrTable>,
}

/// Histogram resolution: fine enough that binning error is far below the
/// spread of impostor distances.
const DIST_BINS: usize = 8192;
const SCORE_BINS_PER_DECADE: f64 = 2000.0;

impl FairCalibration {
    /// Fits with default options, treating every pair of `embeddings` as an
    /// impostor pair (one photo per person, as UTKFace).
    pub fn fit(embeddings: &Embeddings, k: usize, distance: Distance, seed: u64) -> Result<Self> {
        Self::fit_with::<&str>(
            embeddings,
            None,
            distance,
            FairCalibrationConfig {
                k,
                seed,
                ..Default::default()
            },
        )
    }

    /// Fits with options; with `subjects`, pairs of photos of one subject
    /// are skipped.
    pub fn fit_with<S: AsRef<str> + Sync>(
        embeddings: &Embeddings,
        subjects: Option<&[S]>,
        distance: Distance,
        config: FairCalibrationConfig,
    ) -> Result<Self> {
        let n = embeddings.len();
        if n < 2 {
            return Err(invalid("fair calibration needs at least two photos"));
        }
        if subjects.is_some_and(|s| s.len() != n) {
            return Err(invalid("one subject per photo is needed"));
        }
        let subject: Vec<u32> = match subjects {
            Some(s) => {
                let mut ids: HashMap<&str, u32> = HashMap::new();
                s.iter()
                    .map(|x| {
                        let next = ids.len() as u32;
                        *ids.entry(x.as_ref()).or_insert(next)
                    })
                    .collect()
            }
            None => (0..n as u32).collect(),
        };
        let unit = embeddings.unit_normalised();
        let km = kmeans(&unit, config.k, config.seed, config.max_iter)?;
        let cl: Vec<usize> = km.assignments;
        let k = config.k;
        let hi = match distance {
            Distance::Cosine => 2.0,
            Distance::Euclidean => {
                2.0 * (0..n)
                    .map(|i| f64::from(dot(embeddings.row(i), embeddings.row(i))).sqrt())
                    .fold(0.0, f64::max)
            }
        };
        // Pass 1: per-cluster and global distance histograms.
        let (hists, global) = pairwise_fold(
            n,
            || {
                (
                    vec![Hist::new(0.0, hi, DIST_BINS); k],
                    Hist::new(0.0, hi, DIST_BINS),
                )
            },
            |(h, g), i, j| {
                if subject[i] == subject[j] {
                    return;
                }
                let d = f64::from(embeddings.distance(i, j, distance));
                g.add(d);
                let (a, b) = (cl[i], cl[j]);
                match config.pairs {
                    ClusterPairs::Within if a == b => h[a].add(d),
                    ClusterPairs::Within => {}
                    ClusterPairs::Involving => {
                        h[a].add(d);
                        if b != a {
                            h[b].add(d);
                        }
                    }
                }
            },
            |(mut h, mut g), (h2, g2)| {
                h.iter_mut().zip(&h2).for_each(|(a, b)| a.merge(b));
                g.merge(&g2);
                (h, g)
            },
        );
        let global_table = global.table(config.per_decade, config.min_count);
        if global_table.points.len() < 2 {
            return Err(invalid(format!(
                "{} impostor pairs are too few to calibrate",
                global_table.pairs
            )));
        }
        let mut sizes = vec![0usize; k];
        cl.iter().for_each(|&c| sizes[c] += 1);
        let clusters: Vec<ClusterCalibration> = hists
            .iter()
            .zip(&sizes)
            .map(|(h, &photos)| {
                let t = h.table(config.per_decade, config.min_count);
                ClusterCalibration {
                    photos,
                    table: (t.points.len() >= 2).then_some(t),
                }
            })
            .collect();
        let mut fc = FairCalibration {
            distance,
            config,
            centroids: km.centroids,
            clusters,
            global: global_table,
            combined: LogFmrTable {
                pairs: 0,
                points: Vec::new(),
            },
            impostor_pairs: global.counts.iter().sum(),
        };
        // Pass 2: the combined score's overall FMR.
        let bins = (-FLOOR_LOG_FMR * SCORE_BINS_PER_DECADE) as usize;
        let combined = pairwise_fold(
            n,
            || Hist::new(FLOOR_LOG_FMR, 0.0, bins),
            |h, i, j| {
                if subject[i] != subject[j] {
                    let d = embeddings.distance(i, j, distance);
                    h.add(fc.raw_score(cl[i], cl[j], d));
                }
            },
            |mut a, b| {
                a.merge(&b);
                a
            },
        );
        fc.combined = combined.table(config.per_decade, config.min_count);
        Ok(fc)
    }

    fn cluster_log_fmr(&self, c: usize, d: f32) -> f64 {
        match self.clusters.get(c).and_then(|c| c.table.as_ref()) {
            Some(t) => t.log_fmr(f64::from(d)),
            None => self.global.log_fmr(f64::from(d)),
        }
    }

    /// Mean of the two clusters' log10 FMRs (the log of the geometric mean).
    fn raw_score(&self, a: usize, b: usize, d: f32) -> f64 {
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

    /// Clusters of every row, in parallel.
    pub fn assign_all(&self, embeddings: &Embeddings) -> Result<Vec<u32>> {
        let dim = self.centroids.first().map_or(0, Vec::len);
        if !embeddings.is_empty() && embeddings.dim() != dim {
            return Err(invalid(format!(
                "embeddings have {} values, the calibration {dim}",
                embeddings.dim()
            )));
        }
        Ok((0..embeddings.len())
            .into_par_iter()
            .map(|i| self.assign(embeddings.row(i)) as u32)
            .collect())
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

    /// JSON text.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Reads JSON written by [`FairCalibration::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        let fc: Self = serde_json::from_str(text)?;
        if fc.centroids.is_empty() || fc.centroids.len() != fc.clusters.len() {
            return Err(invalid("fair calibration: centroids and clusters disagree"));
        }
        Ok(fc)
    }
}
