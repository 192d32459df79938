//! 1:N identification: gallery/probe split, rank-k hit rates and FNIR at
//! FPIR, following NIST FRVT 1:N definitions.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::distance::{Distance, Embeddings};
use crate::error::{invalid, Result};
use crate::rng::SplitMix64;
use crate::verify::threshold_for_rate;

/// Which photos are enrolled and which are searched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GallerySplit {
    /// Photo indices enrolled in the gallery.
    pub gallery: Vec<usize>,
    /// Probes whose identity is enrolled.
    pub mated_probes: Vec<usize>,
    /// Probes whose identity is not enrolled.
    pub unmated_probes: Vec<usize>,
    /// How the split was made, for reports.
    pub description: String,
}

/// The default split: identities are shuffled with `seed` and a fraction
/// `unenrolled_fraction` of them (rounded, at least one when the fraction is
/// positive and there are two or more identities) are left out of the
/// gallery, so all their photos are unmated probes. Every other identity
/// enrols its first photo in sorted file order; its other photos are mated
/// probes.
pub fn split_gallery<F: AsRef<str>, I: AsRef<str>>(
    files: &[F],
    identities: &[I],
    unenrolled_fraction: f64,
    seed: u64,
) -> Result<GallerySplit> {
    if files.len() != identities.len() {
        return Err(invalid(format!(
            "{} files but {} identities",
            files.len(),
            identities.len()
        )));
    }
    if !(0.0..1.0).contains(&unenrolled_fraction) {
        return Err(invalid("unenrolled fraction must be in [0, 1)"));
    }
    let mut by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, id) in identities.iter().enumerate() {
        by_id.entry(id.as_ref()).or_default().push(i);
    }
    let mut ids: Vec<&str> = by_id.keys().copied().collect();
    SplitMix64::new(seed).shuffle(&mut ids);
    let mut leave_out = (unenrolled_fraction * ids.len() as f64).round() as usize;
    if unenrolled_fraction > 0.0 && ids.len() >= 2 {
        leave_out = leave_out.clamp(1, ids.len() - 1);
    }
    let unenrolled: std::collections::HashSet<&str> = ids[..leave_out].iter().copied().collect();
    let mut split = GallerySplit {
        gallery: Vec::new(),
        mated_probes: Vec::new(),
        unmated_probes: Vec::new(),
        description: String::new(),
    };
    for (id, mut idx) in by_id {
        idx.sort_by(|&a, &b| files[a].as_ref().cmp(files[b].as_ref()));
        if unenrolled.contains(id) {
            split.unmated_probes.extend(idx);
        } else {
            split.gallery.push(idx[0]);
            split.mated_probes.extend(&idx[1..]);
        }
    }
    split.description = format!(
        "gallery: first photo (sorted by file name) of each of {} enrolled identities; mated probes: their other {} photos; \
         unmated probes: all {} photos of {} identities left out of the gallery (seeded shuffle, seed {seed})",
        split.gallery.len(),
        split.mated_probes.len(),
        split.unmated_probes.len(),
        leave_out
    );
    Ok(split)
}

/// Options for [`evaluate_identification`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentifyConfig {
    /// FPIR targets for the FNIR table.
    pub fpir_targets: Vec<f64>,
    /// Candidate list length L: a mated search succeeds at a threshold when
    /// its mate is within the top L and its distance is <= the threshold.
    pub candidate_list_length: usize,
    /// Also count each mated probe, searched against the gallery without
    /// its mate, as an unmated search. Off by default (NIST uses separate
    /// unmated probes); useful when few identities are left out.
    pub leave_mate_out_unmated: bool,
}

impl Default for IdentifyConfig {
    fn default() -> Self {
        Self {
            fpir_targets: vec![0.01, 0.003],
            candidate_list_length: 1,
            leave_mate_out_unmated: false,
        }
    }
}

/// FNIR at one FPIR target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FnirAtFpir {
    /// FPIR asked for.
    pub target_fpir: f64,
    /// Distance threshold; `None` when not measurable (target x unmated < 1).
    pub threshold: Option<f32>,
    /// FPIR observed at the threshold.
    pub fpir: Option<f64>,
    /// FNIR at the threshold.
    pub fnir: Option<f64>,
}

/// Everything `kenning eval identify` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentificationReport {
    /// How the gallery and probes were chosen.
    pub split: String,
    /// Enrolled identities (the N of 1:N).
    pub gallery_identities: usize,
    /// Enrolled photos.
    pub gallery_photos: usize,
    /// Mated searches.
    pub mated_searches: usize,
    /// Unmated searches (including leave-mate-out ones when enabled).
    pub unmated_searches: usize,
    /// Fraction of mated searches whose mate is ranked first.
    pub rank1: f64,
    /// Fraction whose mate is within the first ten.
    pub rank10: f64,
    /// Cumulative match characteristic: hit rate at rank 1, 2, ... 20.
    pub cmc: Vec<f64>,
    /// Candidate list length used for FNIR.
    pub candidate_list_length: usize,
    /// FNIR at each FPIR target.
    pub fnir_at_fpir: Vec<FnirAtFpir>,
    /// Definitions used, for the report.
    pub rules: String,
}

/// Searches every probe against the gallery. A gallery identity's score is
/// the smallest distance to any of its enrolled photos. Ties count against
/// the mate: its rank is one plus the number of other identities scoring
/// at or below it.
pub fn evaluate_identification<S: AsRef<str> + Sync>(
    embeddings: &Embeddings,
    identities: &[S],
    split: &GallerySplit,
    distance: Distance,
    config: &IdentifyConfig,
) -> Result<IdentificationReport> {
    let n = embeddings.len();
    if identities.len() != n {
        return Err(invalid(format!(
            "{n} embeddings but {} identities",
            identities.len()
        )));
    }
    let all = split
        .gallery
        .iter()
        .chain(&split.mated_probes)
        .chain(&split.unmated_probes);
    if let Some(&bad) = all.clone().find(|&&i| i >= n) {
        return Err(invalid(format!("split refers to photo {bad} of {n}")));
    }
    if split.gallery.is_empty() {
        return Err(invalid("the gallery is empty"));
    }
    let mut gallery_ids: Vec<&str> = split
        .gallery
        .iter()
        .map(|&i| identities[i].as_ref())
        .collect();
    gallery_ids.sort_unstable();
    gallery_ids.dedup();
    let id_index = |s: &str| gallery_ids.binary_search(&s).ok();
    let gallery_of: Vec<usize> = split
        .gallery
        .iter()
        .map(|&i| id_index(identities[i].as_ref()).unwrap_or(0))
        .collect();
    if let Some(&p) = split
        .mated_probes
        .iter()
        .find(|&&p| id_index(identities[p].as_ref()).is_none())
    {
        return Err(invalid(format!("mated probe {p} has no enrolled mate")));
    }
    if let Some(&p) = split
        .unmated_probes
        .iter()
        .find(|&&p| id_index(identities[p].as_ref()).is_some())
    {
        return Err(invalid(format!("unmated probe {p} is enrolled")));
    }
    let g = gallery_ids.len();
    let scores = |p: usize| -> Vec<f32> {
        let mut s = vec![f32::INFINITY; g];
        for (&gi, &id) in split.gallery.iter().zip(&gallery_of) {
            s[id] = s[id].min(embeddings.distance(p, gi, distance));
        }
        s
    };
    // Per mated search: (rank of mate, mate distance, best non-mate distance).
    let mated: Vec<(usize, f32, f32)> = split
        .mated_probes
        .par_iter()
        .map(|&p| {
            let s = scores(p);
            let mate = id_index(identities[p].as_ref()).unwrap_or(0);
            let ms = s[mate];
            let rank = 1 + s
                .iter()
                .enumerate()
                .filter(|&(k, &v)| k != mate && v <= ms)
                .count();
            let best_other = s
                .iter()
                .enumerate()
                .filter(|&(k, _)| k != mate)
                .map(|(_, &v)| v)
                .fold(f32::INFINITY, f32::min);
            (rank, ms, best_other)
        })
        .collect();
    let mut unmated: Vec<f32> = split
        .unmated_probes
        .par_iter()
        .map(|&p| scores(p).into_iter().fold(f32::INFINITY, f32::min))
        .collect();
    if config.leave_mate_out_unmated {
        unmated.extend(mated.iter().map(|m| m.2).filter(|v| v.is_finite()));
    }
    unmated.sort_unstable_by(f32::total_cmp);
    let nm = mated.len();
    let hit = |r: usize| {
        if nm == 0 {
            0.0
        } else {
            mated.iter().filter(|m| m.0 <= r).count() as f64 / nm as f64
        }
    };
    let l = config.candidate_list_length.max(1);
    let fnir_at_fpir = config
        .fpir_targets
        .iter()
        .map(|&target| {
            let op = threshold_for_rate(&unmated, target);
            FnirAtFpir {
                target_fpir: target,
                threshold: op.map(|o| o.threshold),
                fpir: op.map(|o| o.rate),
                fnir: op.filter(|_| nm > 0).map(|o| {
                    mated
                        .iter()
                        .filter(|m| !(m.0 <= l && m.1 <= o.threshold))
                        .count() as f64
                        / nm as f64
                }),
            }
        })
        .collect();
    Ok(IdentificationReport {
        split: split.description.clone(),
        gallery_identities: g,
        gallery_photos: split.gallery.len(),
        mated_searches: nm,
        unmated_searches: unmated.len(),
        rank1: hit(1),
        rank10: hit(10),
        cmc: (1..=g.min(20)).map(hit).collect(),
        candidate_list_length: l,
        fnir_at_fpir,
        rules: format!(
            "rank-k: the mate is among the k closest identities (ties count against it). FPIR(T): fraction of unmated searches \
             whose closest identity is at distance <= T{}. FNIR(T): fraction of mated searches whose mate is not within the \
             top {l} candidates at distance <= T. T is the largest threshold with FPIR <= target; a target is measurable only \
             when target x unmated searches >= 1.",
            if config.leave_mate_out_unmated {
                " (unmated searches include every mated probe searched without its mate)"
            } else {
                ""
            }
        ),
    })
}
