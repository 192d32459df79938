//! The small-face rule: a correction of a pair's score by the sizes of its
//! two faces, applied on top of whichever calibration is in force (issue
//! 16, goal 4).
//!
//! Small faces look alike to a recogniser: two ~20-pixel faces of different
//! people score as more alike than two large ones, so the calibration
//! (fitted on large faces) promises too few false matches for them. Faces
//! are put in size bands; for each pair of bands (the smaller face's band
//! and the larger face's) the fit measures, on impostor pairs, the
//! calibrated score (log10 FMR under the calibration) that a fraction f of
//! that cell's pairs reach, and the score the same fraction of the
//! reference cell's pairs reach (both faces in the top band: the faces the
//! calibrations were fitted on). A pair's score is mapped to the reference
//! score with the same impostor tail (quantile mapping), and never below its
//! own: the rule only ever raises the FMR, i.e. lowers Similarity, so a
//! search radius computed without it still covers every match and the
//! candidates can be re-scored exactly. Scores rather than raw distances
//! are mapped because a fair calibration already moves each region of
//! embedding space; the rule corrects what is left. A face of unknown size
//! (indexed before sizes were stored) leaves its pairs unchanged.

use serde::{Deserialize, Serialize};

/// How a face's size is measured (what QualityFilter's minimum size
/// measures too, before the box is clipped to the image).
pub const SIZE_MEASURE: &str = "shorter side of the detector's box, in source-image pixels";

/// A face's size from its detector box's width and height in pixels.
pub fn face_pixels(width: f64, height: f64) -> f32 {
    width.min(height) as f32
}

/// One cell: pairs whose smaller face is in band `bands[0]` and larger face
/// in band `bands[1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandCell {
    /// Band of the smaller face, band of the larger (`bands[0] <= bands[1]`).
    pub bands: [usize; 2],
    /// Impostor pairs the cell's map was measured on.
    pub pairs: u64,
    /// `(score in this cell, reference score reached by the same fraction
    /// of impostor pairs)`, scores in log10 FMR, both strictly increasing.
    /// Empty: no correction.
    pub map: Vec<(f64, f64)>,
}

impl BandCell {
    /// The reference-equivalent of score `d` in this cell: linear between
    /// points, the nearest point's shift beyond them, and never below `d`.
    pub fn map(&self, d: f64) -> f64 {
        let p = &self.map;
        let (Some(&first), Some(&last)) = (p.first(), p.last()) else {
            return d;
        };
        let mapped = if d <= first.0 {
            d + (first.1 - first.0)
        } else if d >= last.0 {
            d + (last.1 - last.0)
        } else {
            let i = p.partition_point(|q| q.0 <= d);
            let (a, b) = (p[i - 1], p[i]);
            a.1 + (d - a.0) * (b.1 - a.1) / (b.0 - a.0)
        };
        mapped.max(d)
    }
}

/// Why a quality-band file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QualityBandsError {
    /// Not valid JSON for quality bands.
    #[error("quality bands: {0}")]
    Json(#[from] serde_json::Error),
    /// Parsed, but inconsistent.
    #[error("quality bands: {0}")]
    Invalid(String),
}

/// Face-size bands and the distance correction of each pair of bands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityBands {
    /// Recogniser the bands were fitted for.
    pub recogniser: String,
    /// What they were fitted on and how.
    pub source: String,
    /// How a face's size is measured ([`SIZE_MEASURE`]).
    pub measure: String,
    /// Band edges in pixels, increasing: band `i` holds sizes with `i`
    /// edges at or below them (the last band is the reference).
    pub edges: Vec<f32>,
    /// The cells that have a correction; a cell not listed has none.
    pub cells: Vec<BandCell>,
}

impl QualityBands {
    /// The band of a face of `pixels`.
    pub fn band(&self, pixels: f32) -> usize {
        self.edges.iter().filter(|&&e| pixels >= e).count()
    }

    /// The cell of a pair of faces of `a` and `b` pixels: the band of the
    /// smaller face, then the band of the larger.
    pub fn cell_of(&self, a: f32, b: f32) -> [usize; 2] {
        let (a, b) = (self.band(a), self.band(b));
        [a.min(b), a.max(b)]
    }

    /// The cell of a pair, when both sizes are known and it has a map.
    pub fn cell(&self, a: Option<f32>, b: Option<f32>) -> Option<&BandCell> {
        let key = self.cell_of(a?, b?);
        self.cells.iter().find(|c| c.bands == key)
    }

    /// The score (log10 FMR) a pair of faces of sizes `a` and `b` whose
    /// calibrated score is `log_fmr` gets: at least `log_fmr`, at most 0,
    /// and `log_fmr` itself when either size is unknown.
    pub fn adjust(&self, log_fmr: f64, a: Option<f32>, b: Option<f32>) -> f64 {
        self.cell(a, b)
            .map_or(log_fmr, |c| c.map(log_fmr).min(0.0).max(log_fmr))
    }

    /// Band `b`'s range for reports: `<30`, `30-60`, `>=60`.
    pub fn band_name(&self, b: usize) -> String {
        let lo = b.checked_sub(1).and_then(|i| self.edges.get(i));
        match (lo, self.edges.get(b)) {
            (None, Some(hi)) => format!("<{hi}"),
            (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
            (Some(lo), None) => format!(">={lo}"),
            (None, None) => "all".into(),
        }
    }

    /// The cell of a pair of bands for reports: `<30 x 30-60 px`.
    pub fn cell_name(&self, bands: [usize; 2]) -> String {
        format!(
            "{} x {} px",
            self.band_name(bands[0]),
            self.band_name(bands[1])
        )
    }

    /// A short name for audit records and reports.
    pub fn label(&self) -> String {
        let edges: Vec<String> = self.edges.iter().map(|e| format!("{e}")).collect();
        format!(
            "{} small-face rule (bands at {} px)",
            self.recogniser,
            edges.join(", ")
        )
    }

    /// JSON text, one cell per line so diffs stay readable.
    pub fn to_json(&self) -> Result<String, QualityBandsError> {
        let head = serde_json::json!({
            "recogniser": self.recogniser,
            "source": self.source,
            "measure": self.measure,
            "edges": self.edges,
        })
        .to_string();
        let cells: Result<Vec<String>, _> = self
            .cells
            .iter()
            .map(|c| serde_json::to_string(c).map(|s| format!("    {s}")))
            .collect();
        Ok(format!(
            "{},\n  \"cells\": [\n{}\n  ]\n}}\n",
            &head[..head.len() - 1],
            cells?.join(",\n")
        ))
    }

    /// Reads JSON written by [`QualityBands::to_json`] and checks it.
    pub fn from_json(text: &str) -> Result<Self, QualityBandsError> {
        let q: Self = serde_json::from_str(text)?;
        q.validate()?;
        Ok(q)
    }

    /// Edges increasing and finite, cells within the bands, maps strictly
    /// increasing in both columns.
    pub fn validate(&self) -> Result<(), QualityBandsError> {
        let bad = |m: String| Err(QualityBandsError::Invalid(m));
        if self.edges.iter().any(|e| !e.is_finite() || *e <= 0.0)
            || self.edges.windows(2).any(|w| w[1] <= w[0])
        {
            return bad("edges must be positive and increasing".into());
        }
        let top = self.edges.len();
        for c in &self.cells {
            if c.bands[0] > c.bands[1] || c.bands[1] > top {
                return bad(format!("cell {:?} is not a pair of bands", c.bands));
            }
            let finite = c.map.iter().all(|p| p.0.is_finite() && p.1.is_finite());
            let rising = c.map.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1);
            if !finite || !rising {
                return bad(format!("cell {:?}: map must be increasing", c.bands));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bands at 30 and 60 px; pairs of two faces under 30 px reach each
    /// impostor fraction at a score 0.1 lower than the reference (map
    /// points by hand, scores in log10 FMR).
    fn bands() -> QualityBands {
        QualityBands {
            recogniser: "test".into(),
            source: "hand".into(),
            measure: SIZE_MEASURE.into(),
            edges: vec![30.0, 60.0],
            cells: vec![
                BandCell {
                    bands: [0, 0],
                    pairs: 1000,
                    map: vec![(-0.8, -0.7), (-0.6, -0.5), (-0.4, -0.4)],
                },
                // Below the reference: its map would make pairs look more
                // similar, which the rule refuses.
                BandCell {
                    bands: [0, 2],
                    pairs: 1000,
                    map: vec![(-0.7, -0.8), (-0.5, -0.6)],
                },
            ],
        }
    }

    #[test]
    fn bands_are_chosen_by_both_faces() {
        let q = bands();
        assert_eq!(
            (q.band(19.0), q.band(30.0), q.band(45.0), q.band(170.0)),
            (0, 1, 1, 2)
        );
        assert_eq!(q.cell(Some(20.0), Some(25.0)).unwrap().bands, [0, 0]);
        assert_eq!(q.cell(Some(200.0), Some(25.0)).unwrap().bands, [0, 2]);
        assert!(q.cell(Some(40.0), Some(25.0)).is_none());
        assert!(q.cell(None, Some(25.0)).is_none());
        assert_eq!(q.cell_name([0, 2]), "<30 x >=60 px");
        assert_eq!(q.band_name(1), "30-60");
        q.validate().unwrap();
        assert_eq!(QualityBands::from_json(&q.to_json().unwrap()).unwrap(), q);
    }

    #[test]
    fn small_pairs_move_out_by_the_measured_shift_and_never_in() {
        let q = bands();
        let small = |d| q.adjust(d, Some(20.0), Some(21.0));
        // On the points and between them, by hand.
        assert!((small(-0.8) - -0.7).abs() < 1e-12);
        assert!((small(-0.7) - -0.6).abs() < 1e-12);
        assert!((small(-0.5) - -0.45).abs() < 1e-12);
        // Beyond the points: the nearest point's shift (0.1 below, 0
        // above), and never above FMR 1.
        assert!((small(-5.0) - -4.9).abs() < 1e-12);
        assert!((small(-0.2) - -0.2).abs() < 1e-12);
        assert_eq!(q.adjust(-0.05, Some(20.0), Some(21.0)), -0.05);
        // A cell whose impostors score lower than the reference's is left
        // as it is, as is any pair with a face of unknown size.
        for d in [-0.9, -0.7, -0.55, -0.2] {
            assert_eq!(q.adjust(d, Some(20.0), Some(200.0)), d);
            assert_eq!(q.adjust(d, None, Some(20.0)), d);
            assert_eq!(q.adjust(d, Some(100.0), Some(200.0)), d);
        }
        // Monotone: a closer pair never ends up further than a farther one.
        let mut last = -10.0;
        for i in 0..1000 {
            let d = small(f64::from(i) / 1000.0 - 1.0);
            assert!(d >= last);
            last = d;
        }
    }

    #[test]
    fn inconsistent_bands_are_refused() {
        let mut q = bands();
        q.edges = vec![60.0, 30.0];
        assert!(q.validate().is_err());
        let mut q = bands();
        q.cells[0].map = vec![(-0.2, -0.3), (-0.1, -0.5)];
        assert!(q.validate().is_err());
        let mut q = bands();
        q.cells[0].bands = [1, 0];
        assert!(q.validate().is_err());
        assert!(QualityBands::from_json("{").is_err());
    }
}
