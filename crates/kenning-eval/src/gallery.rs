//! Self-calibration on a deployer's gallery: a collection of enrolled people
//! is itself an impostor set (every pair of faces of different people), so
//! the level of a shipped fair calibration can be refitted on the photos it
//! will actually be used on, and checked there.
//!
//! The shipped calibration's regions (centroids) and per-region tables are
//! kept, so pairs in different regions still get the same promise (the fair
//! structure, fitted on tens of millions of pairs); only the final map from
//! the combined score to the overall false-match rate is refitted on the
//! gallery's pairs. Below the deepest rate the gallery can measure (its
//! `min_count`-th closest pair) the shipped map's shape carries on, shifted
//! to meet the gallery's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::calibrate::{pooled_table, score_hists, CalibrationRow, FairCalibrationFit};
use crate::distance::{pairwise_fold, Embeddings};
use crate::error::{invalid, Result};
use crate::rng::SplitMix64;
use kenning_core::fair::{FairCalibration, LogFmrTable, FLOOR_LOG_FMR};

/// A fair calibration refitted on a gallery, with what it was fitted from.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryCalibration {
    /// The refitted calibration.
    pub calibration: FairCalibration,
    /// Photos used.
    pub photos: usize,
    /// Different people among them.
    pub subjects: usize,
    /// Impostor pairs the level was fitted on.
    pub impostor_pairs: u64,
    /// Pairs of different people left out as copies (closer than
    /// `exclude_below`).
    pub copies_left_out: u64,
}

/// Dense subject numbers, in order of first appearance.
fn numbered<S: AsRef<str>>(subjects: &[S]) -> (Vec<u32>, usize) {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let v = subjects
        .iter()
        .map(|s| {
            let next = ids.len() as u32;
            *ids.entry(s.as_ref()).or_insert(next)
        })
        .collect();
    (v, ids.len())
}

/// Refits `shipped`'s overall level on the impostor pairs of a gallery:
/// photos `embeddings` of people `subjects` (one label per photo; pairs of
/// one label are genuine and left out, as are pairs closer than
/// `exclude_below`, copies of one photo).
pub fn fit_gallery<S: AsRef<str> + Sync>(
    shipped: &FairCalibration,
    embeddings: &Embeddings,
    subjects: &[S],
    exclude_below: f64,
) -> Result<GalleryCalibration> {
    let n = embeddings.len();
    if subjects.len() != n {
        return Err(invalid("one subject per photo is needed"));
    }
    let (subject, people) = numbered(subjects);
    let cl: Vec<usize> = shipped
        .assign_all(embeddings)?
        .into_iter()
        .map(|c| c as usize)
        .collect();
    let copies = AtomicU64::new(0);
    let distance = shipped.distance;
    let impostor = |i: usize, j: usize| {
        if subject[i] == subject[j] {
            return None;
        }
        let d = embeddings.distance(i, j, distance);
        if f64::from(d) < exclude_below {
            copies.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(d)
    };
    let hists = score_hists(shipped, &cl, &vec![0; n], 1, &impostor);
    let measured = pooled_table(&hists, &shipped.config, FLOOR_LOG_FMR, 0.0);
    let pairs = measured.pairs;
    if measured.points.len() < 2 {
        return Err(invalid(format!(
            "{pairs} impostor pairs are too few to calibrate"
        )));
    }
    let mut calibration = shipped.clone();
    calibration.combined = join_tail(&measured, &shipped.combined);
    calibration.impostor_pairs = pairs;
    calibration.config.exclude_below = exclude_below;
    Ok(GalleryCalibration {
        calibration,
        photos: n,
        subjects: people,
        impostor_pairs: pairs,
        copies_left_out: copies.into_inner(),
    })
}

/// `measured` where it has points; below its deepest point, `shipped`'s
/// points shifted in log10 FMR to meet it there.
fn join_tail(measured: &LogFmrTable, shipped: &LogFmrTable) -> LogFmrTable {
    let (x0, l0) = measured.points[0];
    let shift = l0 - shipped.log_fmr(x0);
    let mut points: Vec<(f64, f64)> = shipped
        .points
        .iter()
        .map(|&(x, l)| (x, l + shift))
        .filter(|&(x, l)| x < x0 && l < l0 && l >= FLOOR_LOG_FMR)
        .collect();
    points.extend_from_slice(&measured.points);
    LogFmrTable {
        pairs: measured.pairs,
        points,
    }
}

/// Observed against promised false-match rates of a calibration on a
/// gallery's impostor pairs, and how sure the rate at one level is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GalleryCheck {
    /// Impostor pairs measured.
    pub impostor_pairs: u64,
    /// Pairs of different people left out as copies.
    pub copies_left_out: u64,
    /// One row per promised FMR, in the order asked.
    pub rows: Vec<CalibrationRow>,
    /// 95% interval of the observed FMR of the first row: a percentile
    /// bootstrap over photos (pairs sharing a photo are not independent);
    /// with no false match, the upper end is 3 / pairs.
    pub interval: (f64, f64),
}

/// Bootstrap replicates behind [`GalleryCheck::interval`].
const REPLICATES: usize = 1000;

/// Checks `fc` on the impostor pairs of a gallery (as for [`fit_gallery`]):
/// at each promised FMR in `levels`, the fraction of pairs whose predicted
/// FMR is at most the promise, and whether it is within `factor` of it.
pub fn check_gallery<S: AsRef<str> + Sync>(
    fc: &FairCalibration,
    embeddings: &Embeddings,
    subjects: &[S],
    exclude_below: f64,
    levels: &[f64],
    factor: f64,
) -> Result<GalleryCheck> {
    let n = embeddings.len();
    if subjects.len() != n {
        return Err(invalid("one subject per photo is needed"));
    }
    if levels.is_empty() {
        return Err(invalid("no level to check"));
    }
    let (subject, _) = numbered(subjects);
    let cl: Vec<usize> = fc
        .assign_all(embeddings)?
        .into_iter()
        .map(|c| c as usize)
        .collect();
    let first = levels[0].log10();
    // Per level: pairs at or under it; per photo: its pairs and its false
    // matches at the first level (for the bootstrap); copies.
    struct Acc {
        hits: Vec<u64>,
        pairs: u64,
        copies: u64,
        per_photo: Vec<(u64, u64)>,
    }
    let log_levels: Vec<f64> = levels.iter().map(|l| l.log10()).collect();
    let acc = pairwise_fold(
        n,
        || Acc {
            hits: vec![0; levels.len()],
            pairs: 0,
            copies: 0,
            per_photo: vec![(0, 0); n],
        },
        |a, i, j| {
            if subject[i] == subject[j] {
                return;
            }
            let d = embeddings.distance(i, j, fc.distance);
            if f64::from(d) < exclude_below {
                a.copies += 1;
                return;
            }
            a.pairs += 1;
            let l = fc.log_fmr_for_clusters(cl[i], cl[j], d);
            for (h, &level) in a.hits.iter_mut().zip(&log_levels) {
                *h += u64::from(l <= level);
            }
            let fm = u64::from(l <= first);
            for k in [i, j] {
                a.per_photo[k].0 += 1;
                a.per_photo[k].1 += fm;
            }
        },
        |mut a, b| {
            a.hits.iter_mut().zip(&b.hits).for_each(|(x, y)| *x += y);
            a.pairs += b.pairs;
            a.copies += b.copies;
            a.per_photo
                .iter_mut()
                .zip(&b.per_photo)
                .for_each(|(x, y)| *x = (x.0 + y.0, x.1 + y.1));
            a
        },
    );
    let pairs = acc.pairs;
    let rows = levels
        .iter()
        .zip(&acc.hits)
        .map(|(&p, &k)| CalibrationRow::new(p, k, pairs, factor))
        .collect();
    let interval = bootstrap_interval(&acc.per_photo, acc.hits[0], pairs);
    Ok(GalleryCheck {
        impostor_pairs: pairs,
        copies_left_out: acc.copies,
        rows,
        interval,
    })
}

/// Percentile 95% interval of (false matches / pairs) resampling photos,
/// each photo bringing its pairs and false matches (each pair is counted
/// through both its photos, which cancels in the ratio).
fn bootstrap_interval(per_photo: &[(u64, u64)], false_matches: u64, pairs: u64) -> (f64, f64) {
    let n = per_photo.len();
    if pairs == 0 || n == 0 {
        return (0.0, 1.0);
    }
    if false_matches == 0 {
        return (0.0, (3.0 / pairs as f64).min(1.0));
    }
    let mut rng = SplitMix64::new(0x6361_6c69_6272_6174);
    let mut rates: Vec<f64> = (0..REPLICATES)
        .map(|_| {
            let (mut p, mut f) = (0u64, 0u64);
            for _ in 0..n {
                let (pp, ff) = per_photo[rng.below(n)];
                p += pp;
                f += ff;
            }
            if p == 0 {
                0.0
            } else {
                f as f64 / p as f64
            }
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let at = |q: f64| rates[((q * REPLICATES as f64) as usize).min(REPLICATES - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kenning_core::fair::{ClusterCalibration, Distance, FairCalibrationConfig};

    /// Photos on a unit circle at angles `theta`: cosine distance 1 - cos(a - b).
    fn circle(theta: &[f64]) -> Embeddings {
        let rows: Vec<Vec<f32>> = theta
            .iter()
            .map(|t| vec![t.cos() as f32, t.sin() as f32])
            .collect();
        Embeddings::new(&rows).unwrap()
    }

    /// One region whose table maps cosine distance d to log10(d / 2), and a
    /// combined map that promises 100x too low an FMR at every score, so
    /// the refit must supply the level.
    fn shipped() -> FairCalibration {
        let table = LogFmrTable {
            pairs: 1000,
            points: (0..=40)
                .map(|i| {
                    let l = -8.0 + f64::from(i) * 0.2;
                    (2.0 * 10f64.powf(l), l)
                })
                .collect(),
        };
        FairCalibration {
            recogniser: "test".into(),
            source: "synthetic".into(),
            distance: Distance::Cosine,
            config: FairCalibrationConfig::default(),
            centroids: vec![vec![1.0, 0.0]],
            clusters: vec![ClusterCalibration {
                photos: 10,
                table: Some(table.clone()),
            }],
            global: table,
            combined: LogFmrTable {
                pairs: 1000,
                points: vec![(-15.0, -17.0), (0.0, -2.0)],
            },
            impostor_pairs: 1000,
        }
    }

    /// `n` photos of `n` people at uniformly random angles on the unit
    /// circle. The angle between two is then uniform on [0, pi], so the
    /// impostor FMR at cosine distance d is exactly acos(1 - d) / pi.
    fn random_gallery(n: usize) -> (Embeddings, Vec<String>) {
        let mut rng = SplitMix64::new(7);
        let theta: Vec<f64> = (0..n).map(|_| std::f64::consts::TAU * rng.unit()).collect();
        (circle(&theta), (0..n).map(|i| format!("p{i}")).collect())
    }

    #[test]
    fn the_gallery_sets_the_level_and_the_shipped_shape_goes_on_below() {
        let n = 600;
        let (e, names) = random_gallery(n);
        let fit = fit_gallery(&shipped(), &e, &names, 0.0).unwrap();
        assert_eq!((fit.photos, fit.subjects), (n, n));
        assert_eq!(fit.impostor_pairs, (n * (n - 1) / 2) as u64);
        assert_eq!(fit.copies_left_out, 0);
        let fc = &fit.calibration;
        for want in [0.3, 0.1, 0.03, 0.01] {
            let d = (1.0 - (want * std::f64::consts::PI).cos()) as f32;
            let got = 10f64.powf(fc.log_fmr_for_clusters(0, 0, d));
            assert!((got / want - 1.0).abs() < 0.15, "FMR {want}: {got}");
        }
        // The regions and their tables are the shipped ones.
        assert_eq!(fc.centroids, shipped().centroids);
        assert_eq!(fc.clusters, shipped().clusters);
        // Below the deepest measured point (the 10th closest pair) the
        // shipped map's slope (1) carries on, moved to the gallery's level.
        let deepest = (10.0 / fit.impostor_pairs as f64).log10();
        let p = &fc.combined.points;
        assert!(p[0].1 < deepest - 1.0, "{p:?}");
        let slope = (p[1].1 - p[0].1) / (p[1].0 - p[0].0);
        assert!((slope - 1.0).abs() < 1e-9, "{p:?}");
        fc.validate().unwrap();
    }

    #[test]
    fn genuine_pairs_and_copies_are_left_out_and_too_few_pairs_refused() {
        let theta: Vec<f64> = (0..60).map(|i| f64::from(i) * 0.1).collect();
        let e = circle(&theta);
        // Photos 2i and 2i+1 are one person: 30 people.
        let names: Vec<String> = (0..60).map(|i| format!("p{}", i / 2)).collect();
        let fit = fit_gallery(&shipped(), &e, &names, 0.0).unwrap();
        assert_eq!(fit.subjects, 30);
        assert_eq!(fit.impostor_pairs, 60 * 59 / 2 - 30);
        // Neighbours 0.1 rad apart (distance 0.005) are copies below 0.01:
        // 29 such pairs are of different people.
        let fit = fit_gallery(&shipped(), &e, &names, 0.01).unwrap();
        assert_eq!(fit.copies_left_out, 29);
        assert_eq!(fit.impostor_pairs, 60 * 59 / 2 - 30 - 29);
        let three = circle(&[0.0, 1.0, 2.0]);
        let err = fit_gallery(&shipped(), &three, &["a", "b", "c"], 0.0).unwrap_err();
        assert!(err.to_string().contains("too few"), "{err}");
    }

    #[test]
    fn checks_count_pairs_under_each_promise() {
        let (e, names) = random_gallery(600);
        // The shipped map promises at most 1e-2 for any pair: at promise
        // 1e-2 every pair is accepted (ratio 100); at 1e-3 those with
        // sin^2(a / 2) <= 0.1, i.e. a <= 0.6435, 20.5% of pairs (ratio 205).
        let levels = [1e-2, 1e-3];
        let before = check_gallery(&shipped(), &e, &names, 0.0, &levels, 3.0).unwrap();
        assert_eq!(before.impostor_pairs, 179_700);
        assert!((before.rows[0].ratio - 100.0).abs() < 1e-9, "{before:?}");
        assert!(
            (before.rows[1].ratio / 205.0 - 1.0).abs() < 0.1,
            "{before:?}"
        );
        let fit = fit_gallery(&shipped(), &e, &names, 0.0).unwrap();
        let after = check_gallery(&fit.calibration, &e, &names, 0.0, &levels, 3.0).unwrap();
        for a in &after.rows {
            assert!(a.within_factor && (a.ratio - 1.0).abs() < 0.15, "{a:?}");
        }
        let (lo, hi) = after.interval;
        let fmr = after.rows[0].observed_fmr;
        assert!(lo < fmr && fmr < hi && hi < 2.0 * fmr, "{lo} {fmr} {hi}");
    }
}
