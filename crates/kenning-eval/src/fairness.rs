//! Demographic differentials in the style of NIST FRVT Part 3: one global
//! threshold, then per-group false-match and false non-match rates with
//! bootstrap confidence intervals and the max/min ratio across groups.
//!
//! Memory stays bounded however many impostor pairs there are: the all-pairs
//! pass keeps only the pairs scoring at or below the thresholds of interest
//! (the false matches, plus a margin), and per-group pair totals are counted
//! from group sizes rather than enumerated.

use std::collections::{BTreeMap, HashMap};

use kenning_core::quality::QualityBands;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::calibrate::{FairCalibration, FairCalibrationFit};
use crate::distance::{pairwise_fold, Distance, Embeddings};
use crate::error::{invalid, Result};
use crate::rng::SplitMix64;
use crate::verify::threshold_for_rate_prefix;

/// Photos with their subject (person) and optional demographic group.
#[derive(Debug, Clone)]
pub struct LabelledSet<'a> {
    embeddings: &'a Embeddings,
    subject: Vec<u32>,
    subjects: usize,
    group: Vec<Option<u32>>,
    group_names: Vec<String>,
    /// Each photo's face size for the small-face rule (`None`: unknown).
    pixels: Vec<Option<f32>>,
}

impl<'a> LabelledSet<'a> {
    /// `subjects[i]` names the person in photo `i` (photos of one person are
    /// never an impostor pair); `groups[i]` is its group (e.g.
    /// `female|asian`), `None` when unlabelled: such photos count towards
    /// the overall FMR and threshold but towards no group.
    pub fn new<S: AsRef<str>, G: AsRef<str>>(
        embeddings: &'a Embeddings,
        subjects: &[S],
        groups: &[Option<G>],
    ) -> Result<Self> {
        let n = embeddings.len();
        if subjects.len() != n || groups.len() != n {
            return Err(invalid(format!(
                "{n} embeddings but {} subjects and {} groups",
                subjects.len(),
                groups.len()
            )));
        }
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let subject = subjects
            .iter()
            .map(|s| {
                let next = ids.len() as u32;
                *ids.entry(s.as_ref()).or_insert(next)
            })
            .collect();
        let mut names: Vec<String> = groups
            .iter()
            .flatten()
            .map(|g| g.as_ref().to_string())
            .collect();
        names.sort();
        names.dedup();
        let group = groups
            .iter()
            .map(|g| {
                g.as_ref().map(|g| {
                    names
                        .binary_search_by(|n| n.as_str().cmp(g.as_ref()))
                        .unwrap_or(0) as u32
                })
            })
            .collect();
        Ok(Self {
            embeddings,
            subject,
            subjects: ids.len(),
            group,
            group_names: names,
            pixels: vec![None; n],
        })
    }

    /// The same set with each photo's face size in pixels
    /// (kenning_core::quality::SIZE_MEASURE), which [`Scoring::FairWithRule`]
    /// needs; `None` for a size not known.
    pub fn with_pixels(mut self, pixels: Vec<Option<f32>>) -> Result<Self> {
        if pixels.len() != self.len() {
            return Err(invalid(format!(
                "{} photos but {} sizes",
                self.len(),
                pixels.len()
            )));
        }
        self.pixels = pixels;
        Ok(self)
    }

    /// A set where every photo is a different person (e.g. UTKFace).
    pub fn one_photo_per_subject<G: AsRef<str>>(
        embeddings: &'a Embeddings,
        groups: &[Option<G>],
    ) -> Result<Self> {
        let subjects: Vec<String> = (0..embeddings.len()).map(|i| i.to_string()).collect();
        Self::new(embeddings, &subjects, groups)
    }

    /// Number of photos.
    pub fn len(&self) -> usize {
        self.subject.len()
    }

    /// True when there are no photos.
    pub fn is_empty(&self) -> bool {
        self.subject.is_empty()
    }

    /// Impostor pairs: all pairs of photos of different subjects.
    pub fn impostor_pairs(&self) -> u64 {
        let n = self.len() as u64;
        let mut per = vec![0u64; self.subjects];
        self.subject.iter().for_each(|&s| per[s as usize] += 1);
        n * n.saturating_sub(1) / 2 - per.iter().map(|m| m * m.saturating_sub(1) / 2).sum::<u64>()
    }
}

/// What a comparison's score is. Smaller is always more similar.
#[derive(Debug, Clone, Copy)]
pub enum Scoring<'a> {
    /// The raw distance (global threshold = global calibration table).
    Distance(Distance),
    /// log10 of the pair's FMR under a fair (per-cluster) calibration.
    Fair(&'a FairCalibration),
    /// [`Scoring::Fair`] corrected by the small-face rule with both photos'
    /// sizes ([`LabelledSet::with_pixels`]), as the service scores a pair.
    FairWithRule(&'a FairCalibration, &'a QualityBands),
}

impl Scoring<'_> {
    /// A short name for reports.
    pub fn describe(&self) -> String {
        match self {
            Scoring::Distance(d) => format!("{d:?} distance (global threshold)").to_lowercase(),
            Scoring::Fair(f) => format!(
                "fair calibration ({} clusters, log10 FMR)",
                f.clusters.len()
            ),
            Scoring::FairWithRule(f, q) => format!(
                "fair calibration ({} clusters, log10 FMR) with the {}",
                f.clusters.len(),
                q.label()
            ),
        }
    }

    fn fair(&self) -> Option<&FairCalibration> {
        match self {
            Scoring::Distance(_) => None,
            Scoring::Fair(f) | Scoring::FairWithRule(f, _) => Some(f),
        }
    }
}

/// How many pairs the small-face rule changed ([`Scoring::FairWithRule`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleEffect {
    /// The rule's name ([`QualityBands::label`]).
    pub rule: String,
    /// Impostor pairs whose score the rule changed.
    pub impostor_pairs_changed: u64,
    /// Genuine pairs whose score it changed.
    pub genuine_pairs_changed: u64,
}

/// A scorer bound to one set: cluster assignments are computed once.
struct Bound<'s> {
    set: &'s Embeddings,
    pixels: &'s [Option<f32>],
    scoring: Scoring<'s>,
    clusters: Vec<u32>,
}

impl<'s> Bound<'s> {
    fn new(set: &'s LabelledSet<'s>, scoring: Scoring<'s>) -> Result<Self> {
        let clusters = match scoring.fair() {
            None => Vec::new(),
            Some(f) => f.assign_all(set.embeddings)?,
        };
        Ok(Self {
            set: set.embeddings,
            pixels: &set.pixels,
            scoring,
            clusters,
        })
    }
    /// The pair's score, and whether the small-face rule changed it.
    #[inline]
    fn score(&self, i: usize, j: usize) -> (f32, bool) {
        let fair = |f: &FairCalibration| {
            let d = self.set.distance(i, j, f.distance);
            f.log_fmr_for_clusters(self.clusters[i] as usize, self.clusters[j] as usize, d)
        };
        match self.scoring {
            Scoring::Distance(d) => (self.set.distance(i, j, d), false),
            Scoring::Fair(f) => (fair(f) as f32, false),
            Scoring::FairWithRule(f, q) => {
                let l = fair(f);
                let a = q.adjust(l, self.pixels[i], self.pixels[j]);
                (a as f32, a != l)
            }
        }
    }
}

/// How a threshold is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The empirical threshold giving this FMR over all impostor pairs (NIST).
    OverallFmr(f64),
    /// A given score threshold, e.g. the distance a calibration table maps
    /// to FMR 1e-4, or log10(1e-4) = -4 for a fair calibration.
    Fixed {
        /// Name for reports (e.g. "calibrated FMR 1e-4").
        label: String,
        /// Score threshold (accept `<=`).
        score: f32,
    },
}

impl ThresholdRule {
    fn label(&self) -> String {
        match self {
            ThresholdRule::OverallFmr(t) => format!("overall FMR {t:e}"),
            ThresholdRule::Fixed { label, .. } => label.clone(),
        }
    }
}

/// Options for [`evaluate_fairness`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessConfig {
    /// Thresholds to report at.
    pub thresholds: Vec<ThresholdRule>,
    /// Bootstrap replicates (0 disables confidence intervals).
    pub bootstrap_replicates: usize,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Seed for the bootstrap.
    pub seed: u64,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            thresholds: vec![
                ThresholdRule::OverallFmr(1e-4),
                ThresholdRule::OverallFmr(1e-5),
            ],
            bootstrap_replicates: 1000,
            confidence: 0.95,
            seed: 0x6661_6972,
        }
    }
}

/// An error rate in one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRate {
    /// Group name.
    pub group: String,
    /// Subjects in the group.
    pub subjects: usize,
    /// Comparisons (same-group impostor pairs, or genuine pairs).
    pub pairs: u64,
    /// Errors (false matches, or false non-matches).
    pub errors: u64,
    /// errors / pairs.
    pub rate: f64,
    /// Lower end of the bootstrap interval.
    pub ci_low: Option<f64>,
    /// Upper end of the bootstrap interval.
    pub ci_high: Option<f64>,
}

/// The largest over the smallest group rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateRatio {
    /// Group with the highest rate.
    pub max_group: String,
    /// Group with the lowest rate.
    pub min_group: String,
    /// max / min; `None` when the lowest rate is 0.
    pub ratio: Option<f64>,
    /// When the lowest rate is 0: max divided by the 95% upper bound on the
    /// lowest group's rate (rule of three, 3 / pairs), so the true ratio is
    /// at least about this.
    pub lower_bound: Option<f64>,
    /// Lower end of the bootstrap interval of the ratio.
    pub ci_low: Option<f64>,
    /// Upper end; `None` when unbounded (some replicates had a zero rate).
    pub ci_high: Option<f64>,
}

/// Impostor rate between two groups (or within one when `a == b`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossGroupRate {
    /// First group.
    pub a: String,
    /// Second group.
    pub b: String,
    /// Impostor pairs between them.
    pub pairs: u64,
    /// False matches.
    pub false_matches: u64,
    /// FMR.
    pub fmr: f64,
}

/// Results at one threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// What the threshold means.
    pub label: String,
    /// Score threshold; `None` when the overall FMR target is not measurable.
    pub threshold: Option<f32>,
    /// FMR over all impostor pairs.
    pub overall_fmr: Option<f64>,
    /// False matches over all impostor pairs.
    pub overall_false_matches: u64,
    /// FNMR over all genuine pairs.
    pub overall_fnmr: Option<f64>,
    /// Same-group impostor FMR per group.
    pub fmr_by_group: Vec<GroupRate>,
    /// Max/min of the per-group FMRs.
    pub fmr_ratio: Option<RateRatio>,
    /// FNMR per group.
    pub fnmr_by_group: Vec<GroupRate>,
    /// Max/min of the per-group FNMRs.
    pub fnmr_ratio: Option<RateRatio>,
    /// FMR for every pair of groups, including cross-group impostors.
    pub cross_group_fmr: Vec<CrossGroupRate>,
}

/// Everything `kenning eval fairness` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessReport {
    /// What the scores are.
    pub scoring: String,
    /// Photos in the impostor set.
    pub impostor_photos: usize,
    /// Impostor pairs compared.
    pub impostor_pairs: u64,
    /// Genuine pairs compared.
    pub genuine_pairs: u64,
    /// Bootstrap replicates.
    pub bootstrap_replicates: usize,
    /// Confidence level.
    pub confidence: f64,
    /// Bootstrap seed.
    pub seed: u64,
    /// How it was measured, in words.
    pub method: String,
    /// What the small-face rule changed, when it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_face_rule: Option<RuleEffect>,
    /// Results per threshold.
    pub thresholds: Vec<ThresholdResult>,
}

/// Per-task collector of the lowest-scoring impostor pairs: everything at
/// or below `fixed`, plus the `keep` smallest overall.
struct Lowest {
    keep: usize,
    fixed: f32,
    cut: f32,
    buf: Vec<(u32, u32, f32)>,
    /// Pairs seen whose score the small-face rule changed.
    changed: u64,
}

impl Lowest {
    fn push(&mut self, i: usize, j: usize, (s, changed): (f32, bool)) {
        self.changed += u64::from(changed);
        if s <= self.cut || s <= self.fixed {
            self.buf.push((i as u32, j as u32, s));
            if self.keep > 0 && self.buf.len() >= 4 * self.keep + 1024 {
                self.prune();
            }
        }
    }
    fn prune(&mut self) {
        if self.keep == 0 || self.buf.len() <= self.keep {
            return;
        }
        let k = self.keep - 1;
        self.buf
            .select_nth_unstable_by(k, |a, b| a.2.total_cmp(&b.2));
        self.cut = self.buf[k].2;
        let (cut, fixed) = (self.cut, self.fixed);
        self.buf.retain(|p| p.2 <= cut || p.2 <= fixed);
    }
}

/// Per-group subject bookkeeping for the bootstrap.
struct GroupSubjects {
    /// Global subject id -> local index in the group.
    local: HashMap<u32, usize>,
    /// Photos of each local subject in the group.
    photos: Vec<u64>,
}

fn group_subjects(set: &LabelledSet, g: u32) -> GroupSubjects {
    let mut local = HashMap::new();
    let mut photos = Vec::new();
    for (s, _) in set
        .subject
        .iter()
        .zip(&set.group)
        .filter(|(_, gr)| **gr == Some(g))
    {
        let next = local.len();
        let k = *local.entry(*s).or_insert(next);
        if k == photos.len() {
            photos.push(0);
        }
        photos[k] += 1;
    }
    GroupSubjects { local, photos }
}

/// Measures per-group FMR and FNMR at each threshold.
///
/// `impostors` supplies all impostor pairs (every pair of photos of
/// different subjects); `genuine` supplies genuine pairs (pairs of photos of
/// one subject) and defaults to `impostors`. A genuine pair belongs to a
/// group when both photos carry it.
///
/// Bootstrap: each replicate resamples subjects with replacement within
/// every group independently (the threshold stays fixed, as NIST fixes it)
/// and recomputes every group's rate and the max/min ratio; intervals are
/// percentile intervals. Replicate `r` draws from a stream seeded by
/// `(seed, r)`, so results do not depend on the number of threads.
pub fn evaluate_fairness(
    impostors: &LabelledSet,
    genuine: Option<&LabelledSet>,
    scoring: Scoring,
    config: &FairnessConfig,
) -> Result<FairnessReport> {
    let gen_set = genuine.unwrap_or(impostors);
    let total = impostors.impostor_pairs();
    if total == 0 {
        return Err(invalid(
            "the impostor set has no pairs of different subjects",
        ));
    }
    let keep = config
        .thresholds
        .iter()
        .filter_map(|r| match r {
            ThresholdRule::OverallFmr(t) => {
                Some((t * total as f64 * (1.0 + 1e-9)).floor() as usize + 2)
            }
            ThresholdRule::Fixed { .. } => None,
        })
        .max()
        .unwrap_or(0);
    let fixed = config
        .thresholds
        .iter()
        .filter_map(|r| {
            if let ThresholdRule::Fixed { score, .. } = r {
                Some(*score)
            } else {
                None
            }
        })
        .fold(f32::NEG_INFINITY, f32::max);
    let cut0 = if keep > 0 {
        f32::INFINITY
    } else {
        f32::NEG_INFINITY
    };

    // Pass 1: the lowest-scoring impostor pairs.
    let bound = Bound::new(impostors, scoring)?;
    let subj = &impostors.subject;
    let mut low = pairwise_fold(
        impostors.len(),
        || Lowest {
            keep,
            fixed,
            cut: cut0,
            buf: Vec::new(),
            changed: 0,
        },
        |acc, i, j| {
            if subj[i] != subj[j] {
                acc.push(i, j, bound.score(i, j));
            }
        },
        |mut a, b| {
            a.buf.extend(b.buf);
            a.changed += b.changed;
            a.prune();
            a
        },
    );
    low.prune();
    low.buf
        .sort_unstable_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let low_scores: Vec<f32> = low.buf.iter().map(|p| p.2).collect();

    // Genuine pairs, per subject.
    let gbound = Bound::new(gen_set, scoring)?;
    let mut photos_of: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    gen_set
        .subject
        .iter()
        .enumerate()
        .for_each(|(i, &s)| photos_of.entry(s).or_default().push(i));
    // (subject, group if both photos share it, score, changed by the rule)
    let genuine_scored: Vec<(u32, Option<u32>, (f32, bool))> = photos_of
        .par_iter()
        .flat_map_iter(|(&s, ph)| {
            let gb = &gbound;
            let set = gen_set;
            ph.iter().enumerate().flat_map(move |(k, &a)| {
                ph[k + 1..].iter().map(move |&b| {
                    let g = if set.group[a] == set.group[b] {
                        set.group[a]
                    } else {
                        None
                    };
                    (s, g, gb.score(a, b))
                })
            })
        })
        .collect();
    let genuine_changed = genuine_scored.iter().filter(|p| p.2 .1).count() as u64;
    let genuine_pairs: Vec<(u32, Option<u32>, f32)> = genuine_scored
        .into_iter()
        .map(|(s, g, (score, _))| (s, g, score))
        .collect();

    // Group bookkeeping by name, so the two sets may label groups differently.
    let imp_groups: Vec<GroupSubjects> = (0..impostors.group_names.len() as u32)
        .map(|g| group_subjects(impostors, g))
        .collect();
    let cross_totals = cross_group_totals(impostors);

    let mut results = Vec::new();
    for rule in &config.thresholds {
        let threshold = match rule {
            ThresholdRule::OverallFmr(t) => {
                threshold_for_rate_prefix(&low_scores, total, *t).map(|o| o.threshold)
            }
            ThresholdRule::Fixed { score, .. } => Some(*score),
        };
        let Some(t) = threshold else {
            results.push(ThresholdResult {
                label: format!(
                    "{} (not measurable: fewer than 1/target impostor pairs)",
                    rule.label()
                ),
                threshold: None,
                overall_fmr: None,
                overall_false_matches: 0,
                overall_fnmr: None,
                fmr_by_group: Vec::new(),
                fmr_ratio: None,
                fnmr_by_group: Vec::new(),
                fnmr_ratio: None,
                cross_group_fmr: Vec::new(),
            });
            continue;
        };
        let fm: Vec<(u32, u32)> = low
            .buf
            .iter()
            .take_while(|p| p.2 <= t)
            .map(|p| (p.0, p.1))
            .collect();

        // Same-group FMR and the cross-group matrix.
        let mut cross_fm: HashMap<(u32, u32), u64> = HashMap::new();
        let mut fm_local: Vec<Vec<(usize, usize)>> = vec![Vec::new(); imp_groups.len()];
        for &(i, j) in &fm {
            if let (Some(a), Some(b)) = (impostors.group[i as usize], impostors.group[j as usize]) {
                *cross_fm.entry((a.min(b), a.max(b))).or_default() += 1;
                if a == b {
                    let gs = &imp_groups[a as usize];
                    fm_local[a as usize]
                        .push((gs.local[&subj[i as usize]], gs.local[&subj[j as usize]]));
                }
            }
        }
        let fmr_stats: Vec<RateInput> = imp_groups
            .iter()
            .enumerate()
            .map(|(g, gs)| RateInput::impostor(&impostors.group_names[g], gs, &fm_local[g]))
            .filter(|r| r.pairs > 0)
            .collect();

        // FNMR per group.
        let mut by_group: BTreeMap<u32, BTreeMap<u32, (u64, u64)>> = BTreeMap::new();
        for &(s, g, score) in &genuine_pairs {
            if let Some(g) = g {
                let e = by_group.entry(g).or_default().entry(s).or_default();
                e.0 += 1;
                e.1 += u64::from(score > t);
            }
        }
        let fnmr_stats: Vec<RateInput> = by_group
            .iter()
            .map(|(&g, per)| {
                RateInput::genuine(
                    &gen_set.group_names[g as usize],
                    per.values().copied().collect(),
                )
            })
            .collect();
        let overall_fnmr = (!genuine_pairs.is_empty()).then(|| {
            genuine_pairs.iter().filter(|p| p.2 > t).count() as f64 / genuine_pairs.len() as f64
        });

        let (fmr_by_group, fmr_ratio) = bootstrap_rates(&fmr_stats, config, 1);
        let (fnmr_by_group, fnmr_ratio) = bootstrap_rates(&fnmr_stats, config, 2);
        let cross_group_fmr = cross_totals
            .iter()
            .map(|(&(a, b), &pairs)| {
                let f = cross_fm.get(&(a, b)).copied().unwrap_or(0);
                CrossGroupRate {
                    a: impostors.group_names[a as usize].clone(),
                    b: impostors.group_names[b as usize].clone(),
                    pairs,
                    false_matches: f,
                    fmr: f as f64 / pairs as f64,
                }
            })
            .collect();
        results.push(ThresholdResult {
            label: rule.label(),
            threshold: Some(t),
            overall_fmr: Some(fm.len() as f64 / total as f64),
            overall_false_matches: fm.len() as u64,
            overall_fnmr,
            fmr_by_group,
            fmr_ratio,
            fnmr_by_group,
            fnmr_ratio,
            cross_group_fmr,
        });
    }
    let small_face_rule = match scoring {
        Scoring::FairWithRule(_, q) => Some(RuleEffect {
            rule: q.label(),
            impostor_pairs_changed: low.changed,
            genuine_pairs_changed: genuine_changed,
        }),
        _ => None,
    };
    Ok(FairnessReport {
        scoring: scoring.describe(),
        small_face_rule,
        impostor_photos: impostors.len(),
        impostor_pairs: total,
        genuine_pairs: genuine_pairs.len() as u64,
        bootstrap_replicates: config.bootstrap_replicates,
        confidence: config.confidence,
        seed: config.seed,
        method: format!(
            "One threshold for all groups. Per-group FMR counts same-group impostor pairs (both photos in the group, different \
             subjects) at or below the threshold; per-group FNMR counts genuine pairs with both photos in the group above it. \
             {}% intervals: percentile bootstrap over {} replicates resampling subjects within each group (seed {}), threshold \
             held fixed. A ratio whose lowest rate is 0 is given as a lower bound using the rule of three (3 / pairs).",
            config.confidence * 100.0,
            config.bootstrap_replicates,
            config.seed
        ),
        thresholds: results,
    })
}

/// Impostor pair totals for every pair of groups, from subject counts.
fn cross_group_totals(set: &LabelledSet) -> BTreeMap<(u32, u32), u64> {
    let ng = set.group_names.len();
    let mut n = vec![0u64; ng];
    let mut per_subject: HashMap<u32, BTreeMap<u32, u64>> = HashMap::new();
    for (&s, g) in set.subject.iter().zip(&set.group) {
        if let Some(g) = *g {
            n[g as usize] += 1;
            *per_subject.entry(s).or_default().entry(g).or_default() += 1;
        }
    }
    let mut out = BTreeMap::new();
    for a in 0..ng {
        for b in a..ng {
            let all = if a == b {
                n[a] * n[a].saturating_sub(1) / 2
            } else {
                n[a] * n[b]
            };
            out.insert((a as u32, b as u32), all);
        }
    }
    // Remove pairs of photos of the same subject.
    for counts in per_subject.values() {
        for (&a, &ca) in counts {
            for (&b, &cb) in counts.range(a..) {
                let same = if a == b {
                    ca * ca.saturating_sub(1) / 2
                } else {
                    ca * cb
                };
                *out.get_mut(&(a, b)).expect("pair inserted above") -= same;
            }
        }
    }
    out.retain(|_, v| *v > 0);
    out
}

/// The data one group's rate and its bootstrap need.
struct RateInput {
    group: String,
    subjects: usize,
    pairs: u64,
    errors: u64,
    kind: RateKind,
}

enum RateKind {
    /// Photos per local subject, and error pairs as local subject indices.
    Impostor {
        photos: Vec<u64>,
        errors: Vec<(usize, usize)>,
    },
    /// (pairs, errors) per subject.
    Genuine(Vec<(u64, u64)>),
}

impl RateInput {
    fn impostor(name: &str, gs: &GroupSubjects, errors: &[(usize, usize)]) -> Self {
        let (s1, s2): (u64, u64) = gs
            .photos
            .iter()
            .fold((0, 0), |(a, b), &m| (a + m, b + m * m));
        RateInput {
            group: name.to_string(),
            subjects: gs.photos.len(),
            pairs: (s1 * s1 - s2) / 2,
            errors: errors.len() as u64,
            kind: RateKind::Impostor {
                photos: gs.photos.clone(),
                errors: errors.to_vec(),
            },
        }
    }

    fn genuine(name: &str, per: Vec<(u64, u64)>) -> Self {
        RateInput {
            group: name.to_string(),
            subjects: per.len(),
            pairs: per.iter().map(|p| p.0).sum(),
            errors: per.iter().map(|p| p.1).sum(),
            kind: RateKind::Genuine(per),
        }
    }

    fn rate(&self) -> f64 {
        self.errors as f64 / self.pairs as f64
    }

    /// The rate with subjects resampled with replacement.
    fn resample(&self, rng: &mut SplitMix64, w: &mut Vec<u64>) -> f64 {
        w.clear();
        w.resize(self.subjects, 0);
        for _ in 0..self.subjects {
            w[rng.below(self.subjects)] += 1;
        }
        match &self.kind {
            RateKind::Impostor { photos, errors } => {
                // Copies of one drawn subject are the same person, so pairs
                // between copies are not impostor pairs.
                let (s1, s2) = photos
                    .iter()
                    .zip(w.iter())
                    .fold((0u64, 0u64), |(a, b), (&m, &k)| {
                        (a + k * m, b + k * k * m * m)
                    });
                let den = (s1 * s1 - s2) / 2;
                let num: u64 = errors.iter().map(|&(a, b)| w[a] * w[b]).sum();
                if den == 0 {
                    f64::NAN
                } else {
                    num as f64 / den as f64
                }
            }
            RateKind::Genuine(per) => {
                let (p, e) = per
                    .iter()
                    .zip(w.iter())
                    .fold((0u64, 0u64), |(p, e), (&(pp, ee), &k)| {
                        (p + k * pp, e + k * ee)
                    });
                if p == 0 {
                    f64::NAN
                } else {
                    e as f64 / p as f64
                }
            }
        }
    }
}

/// Point rates, bootstrap intervals and the max/min ratio for some groups.
fn bootstrap_rates(
    groups: &[RateInput],
    config: &FairnessConfig,
    stream: u64,
) -> (Vec<GroupRate>, Option<RateRatio>) {
    let reps = config.bootstrap_replicates;
    let seed = config.seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F);
    // replicates[r] = (rates per group, ratio)
    let replicates: Vec<(Vec<f64>, f64)> = (0..reps)
        .into_par_iter()
        .map(|r| {
            let mut rng = SplitMix64::derive(seed, r as u64);
            let mut w = Vec::new();
            let rates: Vec<f64> = groups
                .iter()
                .map(|g| g.resample(&mut rng, &mut w))
                .collect();
            (rates.clone(), ratio_of(&rates))
        })
        .collect();
    let alpha = (1.0 - config.confidence) / 2.0;
    let interval = |mut v: Vec<f64>| -> (Option<f64>, Option<f64>) {
        v.retain(|x| !x.is_nan());
        if v.is_empty() {
            return (None, None);
        }
        v.sort_unstable_by(f64::total_cmp);
        let q = |p: f64| Some(quantile(&v, p)).filter(|x| x.is_finite());
        (q(alpha), q(1.0 - alpha))
    };
    let rates: Vec<GroupRate> = groups
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let (ci_low, ci_high) = interval(replicates.iter().map(|r| r.0[k]).collect());
            GroupRate {
                group: g.group.clone(),
                subjects: g.subjects,
                pairs: g.pairs,
                errors: g.errors,
                rate: g.rate(),
                ci_low,
                ci_high,
            }
        })
        .collect();
    if rates.len() < 2 {
        return (rates, None);
    }
    let point: Vec<f64> = rates.iter().map(|r| r.rate).collect();
    let imax = (0..point.len())
        .max_by(|&a, &b| point[a].total_cmp(&point[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    let imin = (0..point.len())
        .min_by(|&a, &b| point[a].total_cmp(&point[b]))
        .unwrap_or(0);
    let (ci_low, ci_high) = if reps > 0 {
        let mut v: Vec<f64> = replicates.iter().map(|r| r.1).collect();
        v.retain(|x| !x.is_nan());
        v.sort_unstable_by(f64::total_cmp);
        if v.is_empty() {
            (None, None)
        } else {
            (
                Some(quantile(&v, alpha)).filter(|x| x.is_finite()),
                Some(quantile(&v, 1.0 - alpha)).filter(|x| x.is_finite()),
            )
        }
    } else {
        (None, None)
    };
    let (max, min) = (point[imax], point[imin]);
    let ratio = (min > 0.0).then(|| max / min);
    let lower_bound = (min == 0.0 && max > 0.0).then(|| max / (3.0 / rates[imin].pairs as f64));
    let ratio = RateRatio {
        max_group: rates[imax].group.clone(),
        min_group: rates[imin].group.clone(),
        ratio,
        lower_bound,
        ci_low,
        ci_high,
    };
    (rates, Some(ratio))
}

/// max / min over the finite rates (NaN when there are none, +inf when the
/// smallest is 0 and the largest is not, 1 when all are 0).
fn ratio_of(rates: &[f64]) -> f64 {
    let v: Vec<f64> = rates.iter().copied().filter(|x| !x.is_nan()).collect();
    let (max, min) = v
        .iter()
        .fold((f64::NEG_INFINITY, f64::INFINITY), |(a, b), &x| {
            (a.max(x), b.min(x))
        });
    match v.len() {
        0 => f64::NAN,
        _ if max == 0.0 => 1.0,
        _ => max / min,
    }
}

/// Linear-interpolation quantile of sorted values; infinities propagate.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    let pos = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (sorted[lo], sorted[hi]);
    if lo == hi || a == b {
        a
    } else if !a.is_finite() || !b.is_finite() {
        b
    } else {
        a + (b - a) * (pos - lo as f64)
    }
}
