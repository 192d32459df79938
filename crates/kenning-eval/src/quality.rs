//! Fitting and checking the small-face rule (kenning_core::quality) from
//! impostor pairs of faces of known size: the pairs are split into cells
//! by the size bands of their two faces, and each cell's quantiles of the
//! calibrated score (log10 FMR) are matched to the reference cell's (both
//! faces in the top band) at the same fractions of pairs.

use kenning_core::quality::{BandCell, QualityBands, SIZE_MEASURE};
use rayon::prelude::*;
use serde::Serialize;

use crate::calibrate::impostor_fmr_points;
use crate::distance::{Distance, Embeddings};
use crate::error::{invalid, Result};

/// How the bands are fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityFitConfig {
    /// Band edges in pixels, increasing.
    pub edges: Vec<f32>,
    /// Map points per decade of FMR.
    pub per_decade: usize,
    /// A map stops where fewer than this many impostor pairs of the cell
    /// (or of the reference) lie below a point.
    pub min_count: u64,
}

impl Default for QualityFitConfig {
    fn default() -> Self {
        Self {
            edges: vec![30.0, 60.0],
            per_decade: 10,
            min_count: 20,
        }
    }
}

/// Faces of known size with their people: what the rule is fitted and
/// checked on.
pub struct SizedFaces<'a> {
    /// The embeddings.
    pub embeddings: &'a Embeddings,
    /// Each face's size ([`SIZE_MEASURE`]).
    pub pixels: &'a [f32],
    /// Each face's person: pairs of one person are never impostors.
    pub identities: &'a [String],
    /// How embeddings are compared.
    pub distance: Distance,
}

impl SizedFaces<'_> {
    fn check(&self) -> Result<()> {
        let n = self.embeddings.len();
        if self.pixels.len() != n || self.identities.len() != n {
            return Err(invalid(format!(
                "{n} embeddings, {} sizes and {} identities",
                self.pixels.len(),
                self.identities.len()
            )));
        }
        Ok(())
    }

    /// Every impostor pair `(i, j, distance)` handed to `visit`, one row of
    /// pairs at a time on all cores; `visit` folds into per-thread state.
    fn fold_impostors<T: Send>(
        &self,
        init: impl Fn() -> T + Sync + Send,
        visit: impl Fn(&mut T, usize, usize, f32) + Sync + Send,
        merge: impl Fn(T, T) -> T + Sync + Send,
    ) -> T {
        let n = self.embeddings.len();
        (0..n)
            .into_par_iter()
            .fold(&init, |mut acc, i| {
                for j in i + 1..n {
                    if self.identities[i] != self.identities[j] {
                        let d = self.embeddings.distance(i, j, self.distance);
                        visit(&mut acc, i, j, d);
                    }
                }
                acc
            })
            .reduce(&init, merge)
    }
}

/// Index of cell `[a, b]` (`a <= b`) among `bands` bands.
fn cell_index(a: usize, b: usize, bands: usize) -> usize {
    let (a, b) = (a.min(b), a.max(b));
    a * bands + b
}

/// Fits the rule: one map per cell with enough impostor pairs, from the
/// cell's quantiles of `score(i, j, distance)` (the calibrated log10 FMR of
/// the pair; smaller is more similar) to the reference cell's at the same
/// fraction of pairs.
pub fn fit_quality_bands(
    faces: &SizedFaces<'_>,
    config: &QualityFitConfig,
    recogniser: &str,
    source: &str,
    score: impl Fn(usize, usize, f64) -> f64 + Sync + Send,
) -> Result<QualityBands> {
    faces.check()?;
    let mut q = QualityBands {
        recogniser: recogniser.into(),
        source: source.into(),
        measure: SIZE_MEASURE.into(),
        edges: config.edges.clone(),
        cells: Vec::new(),
    };
    q.validate().map_err(|e| invalid(e.to_string()))?;
    let bands = config.edges.len() + 1;
    let band: Vec<usize> = faces.pixels.iter().map(|&p| q.band(p)).collect();
    let by_cell = faces.fold_impostors(
        || vec![Vec::<f32>::new(); bands * bands],
        |acc, i, j, d| {
            acc[cell_index(band[i], band[j], bands)].push(score(i, j, f64::from(d)) as f32)
        },
        |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.extend(y);
            }
            a
        },
    );
    let top = bands - 1;
    let reference = &by_cell[cell_index(top, top, bands)];
    if (reference.len() as u64) < config.min_count * 100 {
        return Err(invalid(format!(
            "{} impostor pairs of two faces of {} px or more are too few for a reference",
            reference.len(),
            config.edges.last().copied().unwrap_or(0.0)
        )));
    }
    let ref_points = impostor_fmr_points(reference, config.per_decade, config.min_count);
    for a in 0..bands {
        for b in a..bands {
            if (a, b) == (top, top) {
                continue;
            }
            let cell = &by_cell[cell_index(a, b, bands)];
            let points = impostor_fmr_points(cell, config.per_decade, config.min_count);
            let mut map: Vec<(f64, f64)> = Vec::new();
            // Fractions run from 1 down; the map runs from low scores up.
            for p in points.iter().rev() {
                let Some(r) = ref_points
                    .iter()
                    .find(|r| (r.log10_fmr - p.log10_fmr).abs() < 1e-9)
                else {
                    continue;
                };
                let point = (f64::from(p.distance), f64::from(r.distance));
                if map.last().is_none_or(|l| point.0 > l.0 && point.1 > l.1) {
                    map.push(point);
                }
            }
            if map.len() >= 2 {
                q.cells.push(BandCell {
                    bands: [a, b],
                    pairs: cell.len() as u64,
                    map,
                });
            }
        }
    }
    Ok(q)
}

/// Observed against promised FMR in one cell at one Similarity.
#[derive(Debug, Clone, Serialize)]
pub struct CellFmr {
    /// Band of the smaller face, band of the larger.
    pub bands: [usize; 2],
    /// Impostor pairs in the cell.
    pub pairs: u64,
    /// Those at or above the Similarity without the rule.
    pub false_matches_before: u64,
    /// Those at or above it with the rule.
    pub false_matches_after: u64,
}

/// One Similarity's row of [`check_quality_bands`].
#[derive(Debug, Clone, Serialize)]
pub struct QualityRow {
    /// The Similarity threshold.
    pub similarity: f64,
    /// The FMR it promises.
    pub promised_fmr: f64,
    /// Per cell.
    pub cells: Vec<CellFmr>,
}

/// Counts each cell's false matches at each of `similarities`, scoring a
/// pair `(i, j)` at distance `d` by its calibrated log10 FMR
/// `score(i, j, d)`, once as is and once with the rule applied.
pub fn check_quality_bands(
    faces: &SizedFaces<'_>,
    rule: &QualityBands,
    similarities: &[f64],
    score: impl Fn(usize, usize, f64) -> f64 + Sync + Send,
) -> Result<Vec<QualityRow>> {
    faces.check()?;
    let bands = rule.edges.len() + 1;
    let cells = bands * bands;
    let s = similarities.len();
    let band: Vec<usize> = faces.pixels.iter().map(|&p| rule.band(p)).collect();
    // Per cell: pairs, then before/after counts per similarity.
    let width = 1 + 2 * s;
    let counts = faces.fold_impostors(
        || vec![0u64; cells * width],
        |acc, i, j, d| {
            let c = cell_index(band[i], band[j], bands) * width;
            acc[c] += 1;
            let before = score(i, j, f64::from(d));
            let after = rule.adjust(before, Some(faces.pixels[i]), Some(faces.pixels[j]));
            // Similarity = 40 + 10 log10(1 / FMR), clamped to 0-100.
            let (before, after) = (
                (40.0 - 10.0 * before).clamp(0.0, 100.0),
                (40.0 - 10.0 * after).clamp(0.0, 100.0),
            );
            for (k, &t) in similarities.iter().enumerate() {
                acc[c + 1 + k] += u64::from(before >= t);
                acc[c + 1 + s + k] += u64::from(after >= t);
            }
        },
        |mut a, b| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        },
    );
    Ok(similarities
        .iter()
        .enumerate()
        .map(|(k, &t)| QualityRow {
            similarity: t,
            promised_fmr: 10f64.powf((40.0 - t) / 10.0),
            cells: (0..bands)
                .flat_map(|a| (a..bands).map(move |b| (a, b)))
                .map(|(a, b)| {
                    let c = cell_index(a, b, bands) * width;
                    CellFmr {
                        bands: [a, b],
                        pairs: counts[c],
                        false_matches_before: counts[c + 1 + k],
                        false_matches_after: counts[c + 1 + s + k],
                    }
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2-d "embeddings", Euclidean: large faces spaced 1 apart on one axis,
    /// small faces 0.5 apart on the other, so a small pair's impostor
    /// distances are exactly half a large pair's at every quantile (and
    /// mixed pairs lie further apart than either).
    fn line() -> (Embeddings, Vec<f32>, Vec<String>) {
        let mut rows = Vec::new();
        let mut pixels = Vec::new();
        for i in 0..400 {
            rows.push(vec![0.0, i as f32]);
            pixels.push(100.0);
        }
        for i in 0..400 {
            rows.push(vec![i as f32 * 0.5, 0.0]);
            pixels.push(20.0);
        }
        let ids = (0..rows.len()).map(|i| i.to_string()).collect();
        (Embeddings::new(&rows).unwrap(), pixels, ids)
    }

    #[test]
    fn a_cell_twice_as_tight_maps_to_twice_the_distance() {
        let (e, pixels, ids) = line();
        let faces = SizedFaces {
            embeddings: &e,
            pixels: &pixels,
            identities: &ids,
            distance: Distance::Euclidean,
        };
        let config = QualityFitConfig {
            edges: vec![30.0],
            per_decade: 10,
            min_count: 20,
        };
        // The distance itself as the "score" (log10 FMR): smaller is more
        // similar, and the map is then in distances.
        let q = fit_quality_bands(&faces, &config, "t", "line", |_, _, d| d).unwrap();
        // Cells [0, 0] (small x small) and [0, 1] (small x large, all far
        // apart: no correction after clamping).
        let small = q.cells.iter().find(|c| c.bands == [0, 0]).unwrap();
        for &(d, r) in &small.map {
            assert!((r - 2.0 * d).abs() <= 1.0, "{d} -> {r}");
        }
        // (adjust never goes above a score of 0, so check in negatives.)
        let neg = fit_quality_bands(&faces, &config, "t", "line", |_, _, d| d - 1000.0).unwrap();
        let adj = neg.adjust(20.0 - 1000.0, Some(20.0), Some(25.0)) + 1000.0;
        assert!((adj - 40.0).abs() <= 1.0, "{adj}");
        assert_eq!(neg.adjust(-980.0, Some(20.0), Some(100.0)), -980.0);
        // Scored as log10 FMR = d / 10 - 6 (Similarity 100 - d) at
        // Similarity 79.75, i.e. at a distance between the offsets (20.25):
        // the small pairs' false matches fall to the large pairs' count, and
        // the large pairs are untouched.
        let log_fmr = |_: usize, _: usize, d: f64| d / 10.0 - 6.0;
        let q = fit_quality_bands(&faces, &config, "t", "line", log_fmr).unwrap();
        let rows = check_quality_bands(&faces, &q, &[79.75], log_fmr).unwrap();
        let cell = |b: [usize; 2]| rows[0].cells.iter().find(|c| c.bands == b).unwrap();
        let small = cell([0, 0]);
        let large = cell([1, 1]);
        // Small pairs within 20: 40 offsets of 0.5 -> sum (400 - k), k = 1..40.
        assert_eq!(
            small.false_matches_before,
            (1..=40).map(|k| 400 - k).sum::<u64>()
        );
        assert_eq!(
            large.false_matches_before,
            (1..=20).map(|k| 400 - k).sum::<u64>()
        );
        assert_eq!(large.false_matches_after, large.false_matches_before);
        let ratio = small.false_matches_after as f64 / large.false_matches_after as f64;
        assert!((0.9..1.1).contains(&ratio), "{ratio}");
    }

    #[test]
    fn too_few_reference_pairs_are_refused() {
        let e = Embeddings::new(&[vec![0.0], vec![1.0], vec![2.0]]).unwrap();
        let ids: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let faces = SizedFaces {
            embeddings: &e,
            pixels: &[100.0, 100.0, 20.0],
            identities: &ids,
            distance: Distance::Euclidean,
        };
        assert!(
            fit_quality_bands(&faces, &QualityFitConfig::default(), "t", "", |_, _, d| d).is_err()
        );
        let short = SizedFaces {
            pixels: &[1.0],
            ..faces
        };
        assert!(check_quality_bands(
            &short,
            &QualityBands::from_json(
                r#"{"recogniser":"t","source":"","measure":"","edges":[30],"cells":[]}"#
            )
            .unwrap(),
            &[80.0],
            |_, _, d| d
        )
        .is_err());
    }
}
