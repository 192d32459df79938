use serde::{Deserialize, Serialize};

use crate::ModelError;

/// A measured map from a recogniser's distance to its false-match rate.
///
/// Points are (log10 FMR, distance) pairs with log10 FMR decreasing, measured
/// on an impostor set. Between points the log FMR is interpolated linearly in
/// distance; below the smallest measured distance the last segment's slope is
/// extended, because fewer than one impostor pair in the set was that close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationTable {
    /// The recogniser (manifest name) whose distances this table maps.
    pub recogniser: String,
    /// What the table was measured on and how.
    pub source: String,
    /// How many impostor comparisons were measured.
    pub impostor_pairs: u64,
    /// (log10 FMR, distance) with both strictly decreasing.
    pub points: Vec<(f64, f64)>,
}

/// Lowest log10 FMR a table reports: below one in ten billion, Similarity is
/// 100 anyway.
const FLOOR_LOG_FMR: f64 = -10.0;

/// Each point must have at least this many impostor pairs below its
/// distance: with fewer, the counting noise (and any mislabelled same-person
/// pairs in the set) decides the tail, so the table extrapolates instead.
pub const MIN_PAIRS_PER_POINT: usize = 100;

impl CalibrationTable {
    /// Builds a table from impostor distances (sorted in place), with points
    /// every `step` in log10 FMR down to the smallest FMR the set can show.
    pub fn build(
        recogniser: &str,
        source: &str,
        impostor: &mut [f32],
        step: f64,
    ) -> Result<Self, ModelError> {
        let n = impostor.len();
        if n < 100 {
            return Err(ModelError::Manifest {
                name: recogniser.into(),
                reason: format!("{n} impostor distances are too few to calibrate"),
            });
        }
        impostor.sort_unstable_by(f32::total_cmp);
        let mut points: Vec<(f64, f64)> = Vec::new();
        let min_log = (MIN_PAIRS_PER_POINT as f64 / n as f64).log10();
        for i in 0.. {
            // Computed from the index, not accumulated, so table keys stay exact.
            let log_fmr = (-(i as f64) * step * 1e9).round() / 1e9;
            if log_fmr < min_log - 1e-12 {
                break;
            }
            // The distance below which a fraction 10^log_fmr of impostors fall.
            let k = ((10f64.powf(log_fmr) * n as f64).round() as usize).clamp(1, n) - 1;
            let d = f64::from(impostor[k]);
            if points.last().is_none_or(|&(_, last)| d < last) {
                points.push((log_fmr, d));
            }
        }
        let table = Self {
            recogniser: recogniser.into(),
            source: source.into(),
            impostor_pairs: n as u64,
            points,
        };
        table.validate()?;
        Ok(table)
    }

    /// The table as JSON, one point per line so diffs stay readable.
    pub fn to_json(&self) -> String {
        let head = serde_json::json!({
            "recogniser": self.recogniser,
            "source": self.source,
            "impostor_pairs": self.impostor_pairs,
        });
        let points: Vec<String> = self
            .points
            .iter()
            .map(|(l, d)| format!("    [{}, {d}]", l + 0.0))
            .collect();
        let head = head.to_string();
        format!(
            "{},\n  \"points\": [\n{}\n  ]\n}}\n",
            &head[..head.len() - 1],
            points.join(",\n")
        )
    }

    /// Checks the table is usable: at least two points, both columns
    /// strictly decreasing, finite.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: &str| ModelError::Manifest {
            name: self.recogniser.clone(),
            reason: reason.into(),
        };
        if self.points.len() < 2 {
            return Err(bad("a calibration table needs at least two points"));
        }
        for w in self.points.windows(2) {
            let ((l0, d0), (l1, d1)) = (w[0], w[1]);
            if !(l0.is_finite() && d0.is_finite() && l1.is_finite() && d1.is_finite())
                || l1 >= l0
                || d1 >= d0
            {
                return Err(bad(
                    "calibration points must be finite and strictly decreasing",
                ));
            }
        }
        Ok(())
    }

    /// log10 of the false-match rate at `distance`.
    pub fn log_fmr(&self, distance: f64) -> f64 {
        let p = &self.points;
        let first = p[0];
        if distance >= first.1 {
            return first.0.min(0.0);
        }
        let i = p.partition_point(|&(_, d)| d > distance);
        let (a, b) = if i < p.len() {
            (p[i - 1], p[i])
        } else {
            (p[p.len() - 2], p[p.len() - 1])
        };
        let t = (distance - a.1) / (b.1 - a.1);
        (a.0 + t * (b.0 - a.0)).clamp(FLOOR_LOG_FMR, 0.0)
    }

    /// The false-match rate at `distance`.
    pub fn fmr(&self, distance: f64) -> f64 {
        10f64.powf(self.log_fmr(distance))
    }

    /// Similarity (0-100) for `distance`: 40 + 10 log10(1/FMR), clamped.
    pub fn similarity(&self, distance: f64) -> f64 {
        similarity_from_log_fmr(self.log_fmr(distance))
    }

    /// The largest distance whose Similarity is at least `similarity`.
    pub fn distance_for_similarity(&self, similarity: f64) -> f64 {
        self.distance_for_log_fmr((40.0 - similarity) / 10.0)
    }

    /// The distance at which log10 FMR equals `log_fmr` (inverse of
    /// [`Self::log_fmr`]).
    pub fn distance_for_log_fmr(&self, log_fmr: f64) -> f64 {
        let p = &self.points;
        if log_fmr >= p[0].0 {
            return f64::INFINITY;
        }
        let i = p.partition_point(|&(l, _)| l > log_fmr);
        let (a, b) = if i < p.len() {
            (p[i - 1], p[i])
        } else {
            (p[p.len() - 2], p[p.len() - 1])
        };
        let t = (log_fmr - a.0) / (b.0 - a.0);
        (a.1 + t * (b.1 - a.1)).max(0.0)
    }

    /// FMR promised by a Similarity threshold.
    pub fn fmr_at_similarity(similarity: f64) -> f64 {
        10f64.powf((40.0 - similarity) / 10.0)
    }
}

/// Similarity = clamp(40 + 10 log10(1/FMR), 0, 100).
pub fn similarity_from_log_fmr(log_fmr: f64) -> f64 {
    (40.0 - 10.0 * log_fmr).clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_table() -> CalibrationTable {
        // 100,000 impostor distances spread evenly over (0, 1]: FMR(d) = d.
        let mut d: Vec<f32> = (1..=100_000).map(|i| i as f32 / 100_000.0).collect();
        CalibrationTable::build("test", "uniform", &mut d, 0.1).unwrap()
    }

    #[test]
    fn table_recovers_a_known_distribution() {
        let t = uniform_table();
        for d in [0.5, 0.1, 0.01, 0.001] {
            let rel = t.fmr(d) / d;
            assert!((0.97..1.03).contains(&rel), "FMR({d}) = {}", t.fmr(d));
        }
        // FMR 1e-4 -> Similarity 80; FMR 1e-2 -> 60.
        assert!((t.similarity(0.01) - 60.0).abs() < 0.2);
        assert!((t.distance_for_similarity(80.0) - 1e-4).abs() < 2e-5);
    }

    #[test]
    fn similarity_is_monotone_and_clamped() {
        let t = uniform_table();
        assert_eq!(t.similarity(5.0), 40.0);
        assert_eq!(t.similarity(0.0), 100.0);
        let mut last = 0.0;
        for i in (0..1000).rev() {
            let s = t.similarity(i as f64 / 1000.0);
            assert!(s >= last);
            last = s;
        }
        assert_eq!(similarity_from_log_fmr(-7.0), 100.0);
        assert!((CalibrationTable::fmr_at_similarity(90.0) - 1e-5).abs() < 1e-12);
    }

    #[test]
    fn invalid_tables_are_refused() {
        let json = uniform_table().to_json();
        assert_eq!(
            serde_json::from_str::<CalibrationTable>(&json).unwrap(),
            uniform_table()
        );
        let t = CalibrationTable {
            recogniser: "x".into(),
            source: String::new(),
            impostor_pairs: 0,
            points: vec![(0.0, 1.0), (-1.0, 1.0)],
        };
        assert!(t.validate().is_err());
        assert!(CalibrationTable::build("x", "", &mut [0.5; 10], 0.1).is_err());
    }
}
