//! 1:1 verification: FNMR at a fixed FMR, equal error rate, DET curves,
//! k-fold accuracy and pair generation.
//!
//! Scores are distances: a pair is declared a match when `score <= threshold`.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::rng::SplitMix64;

/// The FMR targets the issue asks for.
pub const DEFAULT_FMR_TARGETS: [f64; 5] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

/// The measurability rule, stated in every report: a rate target `r` over
/// `n` negative comparisons is measurable only when `r * n >= 1`, i.e. at
/// least one false match (or false positive) is allowed at the threshold.
pub const MEASURABILITY_RULE: &str = "a target rate r over n negative comparisons is measurable only when r x n >= 1 \
(at least one false match can be observed); the threshold is the largest distance at which the observed rate is <= r";

/// A threshold chosen so that an observed rate stays at or below a target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateThreshold {
    /// Accept (declare a match) when `score <= threshold`.
    pub threshold: f32,
    /// Negatives accepted at this threshold.
    pub accepted: u64,
    /// Observed rate, `accepted / total`.
    pub rate: f64,
}

/// The exact empirical threshold for a rate target on sorted negative
/// scores: the largest threshold among the scores such that at most
/// `floor(target * n)` negatives are at or below it. Ties are never split:
/// if the allowance falls inside a run of equal scores the whole run is
/// rejected. `None` when `target * n < 1` (see [`MEASURABILITY_RULE`]).
pub fn threshold_for_rate(sorted_negatives: &[f32], target: f64) -> Option<RateThreshold> {
    threshold_for_rate_prefix(sorted_negatives, sorted_negatives.len() as u64, target)
}

/// [`threshold_for_rate`] when only the smallest scores are kept: `prefix`
/// holds the smallest of `total` negative scores, sorted, and must be longer
/// than `floor(target * total)` (or hold all of them).
pub(crate) fn threshold_for_rate_prefix(
    prefix: &[f32],
    total: u64,
    target: f64,
) -> Option<RateThreshold> {
    // The tiny relative slack keeps e.g. 1e-4 * 10_000 from rounding to 0.999..
    let allowed = (target * total as f64 * (1.0 + 1e-9)).floor();
    if total == 0 || allowed.is_nan() || allowed < 1.0 {
        return None;
    }
    let n = prefix.len();
    let mut c = (allowed.min(total as f64) as usize).min(n);
    while c > 0 && c < n && prefix[c - 1] == prefix[c] {
        c -= 1;
    }
    let threshold = if c == 0 {
        prefix.first()?.next_down()
    } else {
        prefix[c - 1]
    };
    Some(RateThreshold {
        threshold,
        accepted: c as u64,
        rate: c as f64 / total as f64,
    })
}

/// Sorted genuine and impostor distances with the error rates they imply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerificationScores {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

impl VerificationScores {
    /// Sorts both lists; NaN scores are an error.
    pub fn new(mut genuine: Vec<f32>, mut impostor: Vec<f32>) -> Result<Self> {
        if genuine.iter().chain(&impostor).any(|s| s.is_nan()) {
            return Err(invalid("scores contain NaN"));
        }
        genuine.sort_unstable_by(f32::total_cmp);
        impostor.sort_unstable_by(f32::total_cmp);
        Ok(Self { genuine, impostor })
    }

    /// Genuine distances, ascending.
    pub fn genuine(&self) -> &[f32] {
        &self.genuine
    }

    /// Impostor distances, ascending.
    pub fn impostor(&self) -> &[f32] {
        &self.impostor
    }

    /// Fraction of impostor pairs with `score <= t`.
    pub fn fmr_at(&self, t: f32) -> f64 {
        frac(
            self.impostor.partition_point(|&s| s <= t),
            self.impostor.len(),
        )
    }

    /// Fraction of genuine pairs with `score > t`.
    pub fn fnmr_at(&self, t: f32) -> f64 {
        frac(
            self.genuine.len() - self.genuine.partition_point(|&s| s <= t),
            self.genuine.len(),
        )
    }

    /// FNMR at the threshold [`threshold_for_rate`] picks for `target_fmr`.
    pub fn fnmr_at_fmr(&self, target_fmr: f64) -> FnmrAtFmr {
        let op = threshold_for_rate(&self.impostor, target_fmr);
        FnmrAtFmr {
            target_fmr,
            threshold: op.map(|o| o.threshold),
            fmr: op.map(|o| o.rate),
            fnmr: op
                .filter(|_| !self.genuine.is_empty())
                .map(|o| self.fnmr_at(o.threshold)),
        }
    }

    /// The equal error rate: over every threshold at which either rate
    /// changes, the one where `|FMR - FNMR|` is smallest; the EER is the
    /// mean of the two rates there. `None` when either list is empty.
    pub fn eer(&self) -> Option<Eer> {
        if self.genuine.is_empty() || self.impostor.is_empty() {
            return None;
        }
        let (ng, ni) = (self.genuine.len(), self.impostor.len());
        let mut best = Eer {
            eer: 0.5,
            threshold: f32::NEG_INFINITY,
            fmr: 0.0,
            fnmr: 1.0,
        };
        let (mut gi, mut ii) = (0usize, 0usize);
        loop {
            let (fmr, fnmr) = (frac(ii, ni), frac(ng - gi, ng));
            if (fmr - fnmr).abs() < (best.fmr - best.fnmr).abs() {
                let t = if ii == 0 && gi == 0 {
                    f32::NEG_INFINITY
                } else {
                    self.last_accepted(gi, ii)
                };
                best = Eer {
                    eer: (fmr + fnmr) / 2.0,
                    threshold: t,
                    fmr,
                    fnmr,
                };
            }
            // Advance past the next distinct score in either list.
            let next = match (self.genuine.get(gi), self.impostor.get(ii)) {
                (Some(&g), Some(&i)) => g.min(i),
                (Some(&g), None) => g,
                (None, Some(&i)) => i,
                (None, None) => break,
            };
            gi += self.genuine[gi..].partition_point(|&s| s <= next);
            ii += self.impostor[ii..].partition_point(|&s| s <= next);
        }
        Some(best)
    }

    fn last_accepted(&self, gi: usize, ii: usize) -> f32 {
        let g = gi.checked_sub(1).map(|k| self.genuine[k]);
        let i = ii.checked_sub(1).map(|k| self.impostor[k]);
        g.into_iter().chain(i).fold(f32::NEG_INFINITY, f32::max)
    }

    /// DET curve points at log-spaced FMR targets (`per_decade` per factor
    /// of ten) from the smallest measurable FMR up to 1. Each point is the
    /// exact empirical operating point for its target; duplicates dropped.
    pub fn det_curve(&self, per_decade: usize) -> Vec<DetPoint> {
        let ni = self.impostor.len();
        if ni == 0 || self.genuine.is_empty() {
            return Vec::new();
        }
        let per_decade = per_decade.max(1) as f64;
        let lo = (1.0 / ni as f64).log10();
        let steps = (-lo * per_decade).ceil() as i64;
        let mut out: Vec<DetPoint> = Vec::new();
        for s in (0..=steps).rev() {
            let target = 10f64.powf(-(s as f64) / per_decade).max(1.0 / ni as f64);
            if let Some(op) = threshold_for_rate(&self.impostor, target) {
                let p = DetPoint {
                    fmr: op.rate,
                    fnmr: self.fnmr_at(op.threshold),
                    threshold: op.threshold,
                };
                if out.last().is_none_or(|l| l.fmr != p.fmr) {
                    out.push(p);
                }
            }
        }
        out
    }
}

fn frac(k: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

/// FNMR at a target FMR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FnmrAtFmr {
    /// The FMR asked for.
    pub target_fmr: f64,
    /// Distance threshold used; `None` when not measurable.
    pub threshold: Option<f32>,
    /// FMR actually observed at the threshold (<= target).
    pub fmr: Option<f64>,
    /// FNMR at the threshold; `None` when not measurable or no genuine pairs.
    pub fnmr: Option<f64>,
}

/// The equal error rate and where it occurs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eer {
    /// `(fmr + fnmr) / 2` at the chosen threshold.
    pub eer: f64,
    /// Distance threshold (accept `<=`); `-inf` if accepting nothing is best.
    #[serde(with = "finite_or_null")]
    pub threshold: f32,
    /// FMR at the threshold.
    pub fmr: f64,
    /// FNMR at the threshold.
    pub fnmr: f64,
}

/// One point of a DET curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetPoint {
    /// False-match rate.
    pub fmr: f64,
    /// False non-match rate.
    pub fnmr: f64,
    /// Distance threshold.
    pub threshold: f32,
}

/// Serialises non-finite floats as JSON `null` (JSON has no infinity).
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f32(*v)
        } else {
            s.serialize_none()
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NEG_INFINITY))
    }
}

/// One compared pair: its distance, whether it is genuine, and its fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredPair {
    /// Distance.
    pub score: f32,
    /// True for a genuine pair.
    pub same: bool,
    /// Cross-validation fold, if any.
    pub fold: Option<u32>,
}

/// Accuracy on one held-out fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FoldAccuracy {
    /// Fold id.
    pub fold: u32,
    /// Threshold that maximised accuracy on the other folds.
    pub threshold: f32,
    /// Accuracy on this fold at that threshold.
    pub accuracy: f64,
    /// Pairs in this fold.
    pub pairs: usize,
}

/// k-fold verification accuracy (LFW protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KFoldAccuracy {
    /// Per-fold results.
    pub folds: Vec<FoldAccuracy>,
    /// Mean held-out accuracy.
    pub mean: f64,
    /// Sample standard deviation (n - 1) of the held-out accuracies.
    pub std: f64,
}

/// The threshold maximising accuracy on `pairs`: the midpoint between the
/// last accepted score and the next distinct one, at the first maximum.
pub fn best_accuracy_threshold(pairs: &[(f32, bool)]) -> f32 {
    let mut v = pairs.to_vec();
    v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let Some(first) = v.first() else { return 0.0 };
    let mut correct = v.iter().filter(|p| !p.1).count() as i64;
    let (mut best, mut best_t) = (correct, first.0.next_down());
    let mut k = 0;
    while k < v.len() {
        let s = v[k].0;
        while k < v.len() && v[k].0 == s {
            correct += if v[k].1 { 1 } else { -1 };
            k += 1;
        }
        if correct > best {
            best = correct;
            best_t = v.get(k).map_or(s, |n| s + (n.0 - s) / 2.0);
        }
    }
    best_t
}

/// k-fold accuracy: for each fold, the threshold maximising accuracy on the
/// other folds is applied to it. Needs at least two folds.
pub fn kfold_accuracy(pairs: &[ScoredPair]) -> Result<KFoldAccuracy> {
    let mut by_fold: BTreeMap<u32, Vec<(f32, bool)>> = BTreeMap::new();
    for p in pairs {
        let f = p
            .fold
            .ok_or_else(|| invalid("k-fold accuracy needs a fold for every pair"))?;
        by_fold.entry(f).or_default().push((p.score, p.same));
    }
    if by_fold.len() < 2 {
        return Err(invalid(format!(
            "k-fold accuracy needs at least 2 folds, found {}",
            by_fold.len()
        )));
    }
    let folds: Vec<FoldAccuracy> = by_fold
        .iter()
        .map(|(&fold, test)| {
            let train: Vec<(f32, bool)> = by_fold
                .iter()
                .filter(|(&f, _)| f != fold)
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            let threshold = best_accuracy_threshold(&train);
            let right = test
                .iter()
                .filter(|&&(s, same)| (s <= threshold) == same)
                .count();
            FoldAccuracy {
                fold,
                threshold,
                accuracy: right as f64 / test.len() as f64,
                pairs: test.len(),
            }
        })
        .collect();
    let accs: Vec<f64> = folds.iter().map(|f| f.accuracy).collect();
    let (mean, std) = mean_std(&accs);
    Ok(KFoldAccuracy { folds, mean, std })
}

/// Mean and sample standard deviation.
pub(crate) fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Options for [`evaluate_verification`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyConfig {
    /// FMR targets for the FNMR table.
    pub fmr_targets: Vec<f64>,
    /// DET points per decade of FMR.
    pub det_points_per_decade: usize,
    /// How the pairs were obtained, copied into the report (see
    /// [`GeneratedPairs::describe`]).
    pub pair_source: String,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            fmr_targets: DEFAULT_FMR_TARGETS.to_vec(),
            det_points_per_decade: 10,
            pair_source: String::new(),
        }
    }
}

/// Everything `kenning eval verify` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// How the pairs were obtained.
    pub pair_source: String,
    /// Genuine pairs compared.
    pub genuine_pairs: usize,
    /// Impostor pairs compared.
    pub impostor_pairs: usize,
    /// The rule deciding when a target FMR is measurable.
    pub measurability_rule: String,
    /// FNMR at each target FMR.
    pub fnmr_at_fmr: Vec<FnmrAtFmr>,
    /// Equal error rate.
    pub eer: Option<Eer>,
    /// k-fold accuracy when every pair has a fold.
    pub kfold: Option<KFoldAccuracy>,
    /// DET curve.
    pub det: Vec<DetPoint>,
}

/// Computes the verification report from scored pairs. k-fold accuracy is
/// included when every pair carries a fold and there are at least two.
pub fn evaluate_verification(
    pairs: &[ScoredPair],
    config: &VerifyConfig,
) -> Result<VerificationReport> {
    let (g, i): (Vec<&ScoredPair>, Vec<&ScoredPair>) = pairs.iter().partition(|p| p.same);
    let scores = VerificationScores::new(
        g.iter().map(|p| p.score).collect(),
        i.iter().map(|p| p.score).collect(),
    )?;
    let folded = !pairs.is_empty() && pairs.iter().all(|p| p.fold.is_some());
    let kfold = if folded {
        kfold_accuracy(pairs).ok()
    } else {
        None
    };
    Ok(VerificationReport {
        pair_source: config.pair_source.clone(),
        genuine_pairs: scores.genuine.len(),
        impostor_pairs: scores.impostor.len(),
        measurability_rule: MEASURABILITY_RULE.into(),
        fnmr_at_fmr: config
            .fmr_targets
            .iter()
            .map(|&t| scores.fnmr_at_fmr(t))
            .collect(),
        eer: scores.eer(),
        kfold,
        det: scores.det_curve(config.det_points_per_decade),
    })
}

/// A pair of photos by index, as generated from identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPair {
    /// Index of the first photo (`a < b`).
    pub a: u32,
    /// Index of the second photo.
    pub b: u32,
    /// True when both photos show the same identity.
    pub same: bool,
    /// Fold, assigned round-robin after a seeded shuffle, separately for
    /// genuine and impostor pairs so each fold has the same mix.
    pub fold: u32,
}

/// Options for [`generate_pairs`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairConfig {
    /// Most impostor pairs to keep; beyond this a uniform sample is drawn.
    pub max_impostors: usize,
    /// Number of folds.
    pub folds: u32,
    /// Seed for sampling and fold assignment.
    pub seed: u64,
}

impl Default for PairConfig {
    fn default() -> Self {
        Self {
            max_impostors: 5_000_000,
            folds: 10,
            seed: 0x6b65_6e6e,
        }
    }
}

/// Pairs generated from identities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedPairs {
    /// Genuine pairs first, then impostor pairs.
    pub pairs: Vec<IndexPair>,
    /// Number of genuine pairs (all of them).
    pub genuine: usize,
    /// Number of impostor pairs kept.
    pub impostor: usize,
    /// Number of impostor pairs that exist.
    pub impostor_population: u64,
    /// The configuration used.
    pub config: PairConfig,
}

impl GeneratedPairs {
    /// One sentence for reports saying how the pairs were made.
    pub fn describe(&self) -> String {
        let imp = if self.impostor as u64 == self.impostor_population {
            format!("all {} impostor pairs", self.impostor)
        } else {
            format!(
                "a uniform random sample of {} of the {} impostor pairs (seed {})",
                self.impostor, self.impostor_population, self.config.seed
            )
        };
        format!(
            "all {} genuine pairs and {imp} from identities; {} folds assigned round-robin after a seeded shuffle",
            self.genuine, self.config.folds
        )
    }
}

/// All genuine pairs of the photos' identities and all impostor pairs, or a
/// seeded uniform sample of `max_impostors` of them when there are more.
/// Indices refer to positions in `identities`; the result depends only on
/// the input order and the seed.
pub fn generate_pairs<S: AsRef<str>>(
    identities: &[S],
    config: PairConfig,
) -> Result<GeneratedPairs> {
    let n = identities.len();
    if n > u32::MAX as usize {
        return Err(invalid("too many photos"));
    }
    if config.folds == 0 {
        return Err(invalid("folds must be at least 1"));
    }
    let mut by_id: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (i, id) in identities.iter().enumerate() {
        by_id.entry(id.as_ref()).or_default().push(i as u32);
    }
    let mut genuine = Vec::new();
    for idx in by_id.values() {
        for (k, &a) in idx.iter().enumerate() {
            genuine.extend(idx[k + 1..].iter().map(|&b| (a, b)));
        }
    }
    let total = (n as u64) * (n as u64).saturating_sub(1) / 2;
    let population = total - genuine.len() as u64;
    let same = |a: u32, b: u32| identities[a as usize].as_ref() == identities[b as usize].as_ref();
    let mut rng = SplitMix64::new(config.seed);
    let mut impostor: Vec<(u32, u32)> = Vec::new();
    if population <= 2 * config.max_impostors as u64 {
        for a in 0..n as u32 {
            impostor.extend((a + 1..n as u32).filter(|&b| !same(a, b)).map(|b| (a, b)));
        }
        if impostor.len() > config.max_impostors {
            rng.shuffle(&mut impostor);
            impostor.truncate(config.max_impostors);
        }
    } else {
        // Rejection sampling: fewer than half of all impostor pairs are
        // wanted, so each draw succeeds with probability > 1/2.
        let mut seen = HashSet::with_capacity(config.max_impostors);
        while impostor.len() < config.max_impostors {
            let (x, y) = (rng.below(n) as u32, rng.below(n) as u32);
            let (a, b) = (x.min(y), x.max(y));
            if a != b && !same(a, b) && seen.insert((a, b)) {
                impostor.push((a, b));
            }
        }
    }
    let mut assign = |list: &[(u32, u32)], is_same: bool| -> Vec<IndexPair> {
        let mut order: Vec<usize> = (0..list.len()).collect();
        rng.shuffle(&mut order);
        let mut fold = vec![0u32; list.len()];
        for (pos, &k) in order.iter().enumerate() {
            fold[k] = (pos % config.folds as usize) as u32;
        }
        list.iter()
            .zip(fold)
            .map(|(&(a, b), fold)| IndexPair {
                a,
                b,
                same: is_same,
                fold,
            })
            .collect()
    };
    let mut pairs = assign(&genuine, true);
    pairs.extend(assign(&impostor, false));
    Ok(GeneratedPairs {
        genuine: genuine.len(),
        impostor: impostor.len(),
        impostor_population: population,
        config,
        pairs,
    })
}
