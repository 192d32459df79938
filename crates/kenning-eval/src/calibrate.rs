//! Calibration support: impostor FMR points, checking how well a
//! calibration predicts FMR, k-means, and fair (per-cluster) calibration.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use kenning_core::fair::{
    nearest_centroid, ClusterCalibration, ClusterPairs, FairCalibration, FairCalibrationConfig,
    LogFmrTable, RegionDomains, FLOOR_LOG_FMR,
};

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

impl CalibrationRow {
    /// The row for promise `predicted_fmr` when `false_matches` of `pairs`
    /// impostor pairs fall within it, judged against `factor`.
    pub fn new(predicted_fmr: f64, false_matches: u64, pairs: u64, factor: f64) -> Self {
        let observed_fmr = if pairs == 0 {
            0.0
        } else {
            false_matches as f64 / pairs as f64
        };
        let ratio = observed_fmr / predicted_fmr;
        Self {
            predicted_fmr,
            observed_fmr,
            false_matches,
            measurable: predicted_fmr * pairs as f64 >= 1.0,
            ratio,
            within_factor: ratio <= factor && ratio >= 1.0 / factor,
        }
    }
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
        .map(|&p| CalibrationRow::new(p, v.partition_point(|&x| x <= p) as u64, n, factor))
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

/// A fine histogram from which [`LogFmrTable`]s are cut.
#[derive(Debug, Clone)]
pub(crate) struct Hist {
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

/// Dense numbers for names, in order of first appearance.
fn numbered<S: AsRef<str>>(names: &[S]) -> Vec<u32> {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    names
        .iter()
        .map(|x| {
            let next = ids.len() as u32;
            *ids.entry(x.as_ref()).or_insert(next)
        })
        .collect()
}

/// One domain's table as it is; several domains' pooled by
/// [`mean_curve_points`] on `[lo, hi]`, at the fit's levels down to the
/// deepest any domain measured (domains without pairs left out).
pub(crate) fn pooled_table(
    hists: &[Hist],
    config: &FairCalibrationConfig,
    lo: f64,
    hi: f64,
) -> LogFmrTable {
    let tables: Vec<LogFmrTable> = hists
        .iter()
        .map(|h| h.table(config.per_decade, config.min_count))
        .filter(|t| t.points.len() >= 2)
        .collect();
    let pairs = hists.iter().flat_map(|h| &h.counts).sum();
    if tables.len() <= 1 {
        let points = tables
            .into_iter()
            .next()
            .map_or_else(Vec::new, |t| t.points);
        return LogFmrTable { pairs, points };
    }
    let deepest = tables.iter().map(|t| t.points[0].1).fold(0.0, f64::min);
    let per_decade = config.per_decade.max(1) as f64;
    let levels: Vec<f64> = (0u32..)
        .map(|step| -f64::from(step) / per_decade)
        .take_while(|&l| l >= deepest - 1e-9)
        .collect();
    let curves: Vec<_> = tables.iter().map(|t| move |x| t.log_fmr(x)).collect();
    let curves: Vec<&(dyn Fn(f64) -> f64 + Sync)> = curves
        .iter()
        .map(|c| c as &(dyn Fn(f64) -> f64 + Sync))
        .collect();
    let mut points = mean_curve_points(&curves, lo, hi, &levels);
    points.reverse();
    LogFmrTable { pairs, points }
}

/// One cluster's table from its per-domain histograms (one histogram when
/// domains are not told apart; `domain_pairs`: each domain's pairs in the
/// whole fit). [`RegionDomains::MeanLog`]: the domains with at least
/// `config.domain_min_pairs` pairs in the cluster weigh alike
/// ([`pooled_table`]), the pairs of the others are added to the largest
/// one's (too few for a curve of their own); with fewer than two such
/// domains, all pairs are added up into one table.
/// [`RegionDomains::Mixture`]: each domain's counts are scaled by the
/// largest domain's pair count over its own, to the power
/// `config.mixture_power` (integer counts, so the largest domain's pairs
/// count once).
fn cluster_table(
    hists: &[Hist],
    domain_pairs: &[u64],
    config: &FairCalibrationConfig,
    hi: f64,
) -> LogFmrTable {
    let count = |h: &Hist| h.counts.iter().sum::<u64>();
    if config.region_domains == RegionDomains::Mixture && hists.len() > 1 {
        let most = domain_pairs.iter().copied().max().unwrap_or(1) as f64;
        let mut mix = Hist::new(0.0, hi, hists[0].counts.len());
        for (h, &n) in hists.iter().zip(domain_pairs) {
            let w = (most / n.max(1) as f64).powf(config.mixture_power);
            mix.counts
                .iter_mut()
                .zip(&h.counts)
                .for_each(|(m, &c)| *m += (c as f64 * w).round() as u64);
        }
        let mut t = mix.table(config.per_decade, config.min_count);
        t.pairs = hists.iter().map(count).sum();
        return t;
    }
    let (mut own, rest): (Vec<&Hist>, Vec<&Hist>) = hists.iter().partition(|h| {
        config.region_domains == RegionDomains::MeanLog && count(h) >= config.domain_min_pairs
    });
    if own.len() < 2 {
        let mut all = hists[0].clone();
        hists[1..].iter().for_each(|h| all.merge(h));
        return all.table(config.per_decade, config.min_count);
    }
    own.sort_by_key(|h| std::cmp::Reverse(count(h)));
    let mut curves: Vec<Hist> = own.into_iter().cloned().collect();
    rest.iter().for_each(|h| curves[0].merge(h));
    pooled_table(&curves, config, 0.0, hi)
}

/// Where the mean of several log10-FMR curves reaches each level: the
/// curve of a pool of impostor domains in which every domain counts alike
/// in log FMR (the geometric mean of their FMRs), so that no domain decides
/// the promise by having the most pairs and the promise lands between the
/// domains. Each curve must be non-decreasing in x on `[lo, hi]`. Returns
/// `(x, level)` for the levels in the order given, x being the largest
/// value at which the mean is at most the level; levels the mean does not
/// reach on `[lo, hi]`, and points that would not keep x strictly
/// monotone, are left out.
pub fn mean_curve_points(
    curves: &[&(dyn Fn(f64) -> f64 + Sync)],
    lo: f64,
    hi: f64,
    levels: &[f64],
) -> Vec<(f64, f64)> {
    let mean = |x: f64| curves.iter().map(|c| c(x)).sum::<f64>() / curves.len().max(1) as f64;
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &level in levels {
        if curves.is_empty() || mean(lo) > level {
            continue;
        }
        let (mut a, mut b) = (lo, hi);
        if mean(b) <= level {
            a = b;
        }
        for _ in 0..64 {
            if b - a <= 1e-12 * (1.0 + b.abs()) {
                break;
            }
            let m = 0.5 * (a + b);
            if mean(m) <= level {
                a = m;
            } else {
                b = m;
            }
        }
        if out.last().is_none_or(|&(x, l)| (a - x) * (level - l) > 0.0) {
            out.push((a, level));
        }
    }
    out
}

/// Histogram resolution: fine enough that binning error is far below the
/// spread of impostor distances.
const DIST_BINS: usize = 8192;
const SCORE_BINS_PER_DECADE: f64 = 2000.0;

/// Pass 2 of a fit: per domain, a histogram of the combined score
/// ([`FairCalibration::raw_score`]) of every pair `impostor` admits, photo
/// `i` being in cluster `cl[i]` and domain `domain[i]` (of `nd`).
pub(crate) fn score_hists(
    fc: &FairCalibration,
    cl: &[usize],
    domain: &[u32],
    nd: usize,
    impostor: &(dyn Fn(usize, usize) -> Option<f32> + Sync),
) -> Vec<Hist> {
    let bins = (-FLOOR_LOG_FMR * SCORE_BINS_PER_DECADE) as usize;
    pairwise_fold(
        cl.len(),
        || vec![Hist::new(FLOOR_LOG_FMR, 0.0, bins); nd],
        |h, i, j| {
            if let Some(d) = impostor(i, j) {
                h[domain[i] as usize].add(fc.raw_score(cl[i], cl[j], d));
            }
        },
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| a.merge(b));
            a
        },
    )
}

/// Fitting a [`FairCalibration`] (the struct and its scoring live in
/// `kenning_core::fair`, so the model layer can use it without this crate).
///
/// Fitting clusters the unit-normalised embeddings of an impostor set with
/// k-means and learns, for each cluster, a distance-to-FMR table from its
/// impostor pairs ([`ClusterPairs`]); a final monotone table maps the
/// combined (geometric-mean) score to the FMR observed over all pairs.
pub trait FairCalibrationFit: Sized {
    /// Fits with default options, treating every pair of `embeddings` as an
    /// impostor pair (one photo per person, as UTKFace).
    fn fit(embeddings: &Embeddings, k: usize, distance: Distance, seed: u64) -> Result<Self>;

    /// Fits with options; with `subjects`, pairs of photos of one subject
    /// are skipped.
    fn fit_with<S: AsRef<str> + Sync>(
        embeddings: &Embeddings,
        subjects: Option<&[S]>,
        distance: Distance,
        config: FairCalibrationConfig,
    ) -> Result<Self>;

    /// [`FairCalibrationFit::fit_with`] on a pool of impostor domains (one
    /// domain name per photo, e.g. the photo set it came from): only pairs
    /// within one domain count, the clusters are learned from all of them,
    /// each cluster's table weighs the domains as `config.region_domains`
    /// says, and the overall tables (`global`, `combined`) are
    /// the mean over domains of each domain's log10 FMR
    /// ([`mean_curve_points`]), so every domain weighs alike however many
    /// pairs it has and the promise lands between the domains.
    fn fit_pooled<S: AsRef<str> + Sync>(
        embeddings: &Embeddings,
        subjects: Option<&[S]>,
        domains: &[S],
        distance: Distance,
        config: FairCalibrationConfig,
    ) -> Result<Self>;

    /// Clusters of every row, in parallel.
    fn assign_all(&self, embeddings: &Embeddings) -> Result<Vec<u32>>;
}

impl FairCalibrationFit for FairCalibration {
    fn fit(embeddings: &Embeddings, k: usize, distance: Distance, seed: u64) -> Result<Self> {
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

    fn fit_with<S: AsRef<str> + Sync>(
        embeddings: &Embeddings,
        subjects: Option<&[S]>,
        distance: Distance,
        config: FairCalibrationConfig,
    ) -> Result<Self> {
        Self::fit_pooled(embeddings, subjects, &[], distance, config)
    }

    fn fit_pooled<S: AsRef<str> + Sync>(
        embeddings: &Embeddings,
        subjects: Option<&[S]>,
        domains: &[S],
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
        if !domains.is_empty() && domains.len() != n {
            return Err(invalid("one domain per photo is needed"));
        }
        let subject: Vec<u32> = match subjects {
            Some(s) => numbered(s),
            None => (0..n as u32).collect(),
        };
        let domain: Vec<u32> = if domains.is_empty() {
            vec![0; n]
        } else {
            numbered(domains)
        };
        let nd = domain.iter().max().map_or(1, |&d| d as usize + 1);
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
        // The distance of a pair that counts as an impostor pair: different
        // subjects, and not so close as to be copies of one photo.
        let impostor = |i: usize, j: usize| {
            (subject[i] != subject[j] && domain[i] == domain[j])
                .then(|| embeddings.distance(i, j, distance))
                .filter(|&d| f64::from(d) >= config.exclude_below)
        };
        // Pass 1: per-cluster (per domain too when domains weigh alike
        // inside clusters) and global distance histograms.
        let nh = if config.region_domains == RegionDomains::Summed {
            1
        } else {
            nd
        };
        let slot = |c: usize, i: usize| c * nh + if nh > 1 { domain[i] as usize } else { 0 };
        let (hists, global) = pairwise_fold(
            n,
            || {
                (
                    vec![Hist::new(0.0, hi, DIST_BINS); k * nh],
                    vec![Hist::new(0.0, hi, DIST_BINS); nd],
                )
            },
            |(h, g), i, j| {
                let Some(d) = impostor(i, j).map(f64::from) else {
                    return;
                };
                g[domain[i] as usize].add(d);
                let (a, b) = (cl[i], cl[j]);
                match config.pairs {
                    ClusterPairs::Within if a == b => h[slot(a, i)].add(d),
                    ClusterPairs::Within => {}
                    ClusterPairs::Involving => {
                        h[slot(a, i)].add(d);
                        if b != a {
                            h[slot(b, i)].add(d);
                        }
                    }
                }
            },
            |(mut h, mut g), (h2, g2)| {
                h.iter_mut().zip(&h2).for_each(|(a, b)| a.merge(b));
                g.iter_mut().zip(&g2).for_each(|(a, b)| a.merge(b));
                (h, g)
            },
        );
        let impostor_pairs = global.iter().flat_map(|h| &h.counts).sum();
        let domain_pairs: Vec<u64> = global.iter().map(|h| h.counts.iter().sum()).collect();
        let global_table = pooled_table(&global, &config, 0.0, hi);
        if global_table.points.len() < 2 {
            return Err(invalid(format!(
                "{} impostor pairs are too few to calibrate",
                global_table.pairs
            )));
        }
        let mut sizes = vec![0usize; k];
        cl.iter().for_each(|&c| sizes[c] += 1);
        let clusters: Vec<ClusterCalibration> = hists
            .chunks(nh)
            .zip(&sizes)
            .map(|(h, &photos)| {
                let t = cluster_table(h, &domain_pairs, &config, hi);
                ClusterCalibration {
                    photos,
                    table: (t.points.len() >= 2).then_some(t),
                }
            })
            .collect();
        let mut fc = FairCalibration {
            recogniser: String::new(),
            source: String::new(),
            distance,
            config,
            centroids: km.centroids,
            clusters,
            global: global_table,
            combined: LogFmrTable {
                pairs: 0,
                points: Vec::new(),
            },
            impostor_pairs,
        };
        // Pass 2: the combined score's overall FMR.
        let combined = score_hists(&fc, &cl, &domain, nd, &impostor);
        fc.combined = pooled_table(&combined, &config, FLOOR_LOG_FMR, 0.0);
        Ok(fc)
    }

    fn assign_all(&self, embeddings: &Embeddings) -> Result<Vec<u32>> {
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
}
