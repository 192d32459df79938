use kenning_core::fair::FairCalibration;
use kenning_core::quality::QualityBands;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Which calibration turns a distance into Similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationKind {
    /// One distance-to-FMR table for every face ([`CalibrationTable`]).
    Global,
    /// Per region of the embedding space ([`FairCalibration`]), so that a
    /// Similarity promises the same false-match rate whatever group of
    /// people the faces come from.
    Fair,
}

impl CalibrationKind {
    /// `"global"` or `"fair"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Fair => "fair",
        }
    }
}

impl std::str::FromStr for CalibrationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" => Ok(Self::Global),
            "fair" => Ok(Self::Fair),
            other => Err(format!("calibration must be global or fair, not {other:?}")),
        }
    }
}

/// What a collection's Similarity keeps equal across groups of people: the
/// `Equalise` field of its policy, choosing among the recogniser's shipped
/// calibrations (issue 16, goal 5). No calibration does both at once, so
/// each choice is a point on the trade-off curve in docs/accuracy.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Equalise {
    /// False matches: the full per-region calibration, so a Similarity
    /// promises about the same false-match rate for every group, at the
    /// price of more misses for some groups than others.
    FalseMatches,
    /// Misses: one global threshold, whose misses are spread most evenly
    /// across groups, at the price of far more false matches in some groups.
    Misses,
    /// The calibration between the two that keeps the larger of the two
    /// disparities smallest: the recogniser's default.
    Balanced,
}

impl Equalise {
    /// Every choice, in the order documented.
    pub const ALL: [Self; 3] = [Self::FalseMatches, Self::Misses, Self::Balanced];

    /// The policy's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FalseMatches => "FalseMatches",
            Self::Misses => "Misses",
            Self::Balanced => "Balanced",
        }
    }

    /// The choice a stored collection policy (JSON) makes, if any. The
    /// policy itself is validated where it is set (kenning-accountability);
    /// a document without a valid `Equalise` field chooses nothing.
    pub fn from_policy(doc: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Only {
            #[serde(rename = "Equalise")]
            equalise: Option<Equalise>,
        }
        if doc.trim().is_empty() {
            return None;
        }
        serde_json::from_str::<Only>(doc).ok()?.equalise
    }
}

/// A calibration owned by a loaded manifest: either kind.
#[derive(Debug, Clone)]
pub enum OwnedCalibration {
    /// A global table.
    Global(CalibrationTable),
    /// A fair (per-region) calibration.
    Fair(FairCalibration),
}

impl OwnedCalibration {
    /// Borrowed, for scoring.
    pub fn as_calibration(&self) -> Calibration<'_> {
        match self {
            Self::Global(t) => Calibration::Global(t),
            Self::Fair(f) => Calibration::Fair(f),
        }
    }
}

/// The calibration that gives Similarity: a comparison's false-match rate
/// from the two embeddings and their distance.
///
/// With the global table the rate depends on the distance only. With a fair
/// calibration it also depends on the regions of embedding space the two
/// faces fall in, so one Similarity threshold means the same false-match
/// rate everywhere; a search must then look out to the loosest distance any
/// region allows ([`Calibration::search_radius`]) and filter its hits by
/// each pair's own Similarity.
#[derive(Debug, Clone, Copy)]
pub enum Calibration<'a> {
    /// A global distance-to-FMR table.
    Global(&'a CalibrationTable),
    /// A fair (per-region) calibration.
    Fair(&'a FairCalibration),
}

impl Calibration<'_> {
    /// Which kind this is.
    pub fn kind(&self) -> CalibrationKind {
        match self {
            Self::Global(_) => CalibrationKind::Global,
            Self::Fair(_) => CalibrationKind::Fair,
        }
    }

    /// log10 of the false-match rate of comparing `a` with `b` at `distance`.
    pub fn log_fmr(&self, a: &[f32], b: &[f32], distance: f64) -> f64 {
        self.log_fmr_in_regions(self.region(a), self.region(b), distance)
    }

    /// The region of embedding space `e` falls in (always 0 for a global
    /// table): what [`Calibration::log_fmr_in_regions`] needs, computed once
    /// per face when scoring many pairs.
    pub fn region(&self, e: &[f32]) -> usize {
        match self {
            Self::Global(_) => 0,
            Self::Fair(f) => f.assign(e),
        }
    }

    /// [`Calibration::log_fmr`] of two faces in regions `a` and `b`.
    pub fn log_fmr_in_regions(&self, a: usize, b: usize, distance: f64) -> f64 {
        match self {
            Self::Global(t) => t.log_fmr(distance),
            Self::Fair(f) => f
                .log_fmr_for_clusters(a, b, distance as f32)
                .clamp(FLOOR_LOG_FMR, 0.0),
        }
    }

    /// Similarity (0-100) of comparing `a` with `b` at `distance`:
    /// 40 + 10 log10(1/FMR).
    pub fn similarity(&self, a: &[f32], b: &[f32], distance: f64) -> f64 {
        similarity_from_log_fmr(self.log_fmr(a, b, distance))
    }

    /// [`Calibration::similarity`] of two faces of `pixels` (source-image
    /// pixels, `None` when unknown) with the small-face `rule` applied: the
    /// Similarity every operation that scores a pair reports. Never above
    /// the Similarity without the rule, so [`Calibration::search_radius`]
    /// still covers every match.
    pub fn similarity_of_faces(
        &self,
        a: &[f32],
        b: &[f32],
        distance: f64,
        rule: Option<&QualityBands>,
        pixels: [Option<f32>; 2],
    ) -> f64 {
        let regions = [self.region(a), self.region(b)];
        similarity_from_log_fmr(self.log_fmr_of_faces_in_regions(regions, distance, rule, pixels))
    }

    /// The log10 FMR behind [`Calibration::similarity_of_faces`], for two
    /// faces whose [`Calibration::region`]s are known: what scoring many
    /// pairs (`kenning eval`) calls, so it scores exactly as the service.
    pub fn log_fmr_of_faces_in_regions(
        &self,
        regions: [usize; 2],
        distance: f64,
        rule: Option<&QualityBands>,
        pixels: [Option<f32>; 2],
    ) -> f64 {
        let l = self.log_fmr_in_regions(regions[0], regions[1], distance);
        rule.map_or(l, |r| r.adjust(l, pixels[0], pixels[1]))
    }

    /// The largest distance at which some face can still reach Similarity
    /// `similarity` against `probe` (infinite when every distance does): the
    /// radius a search for `probe` must cover before filtering by Similarity.
    pub fn search_radius(&self, probe: &[f32], similarity: f64) -> f64 {
        let log_fmr = (40.0 - similarity) / 10.0;
        match self {
            Self::Global(t) => t.distance_for_log_fmr(log_fmr),
            Self::Fair(f) => {
                if log_fmr >= 0.0 {
                    return f64::INFINITY;
                }
                f64::from(f.max_distance_for(f.assign(probe), log_fmr))
            }
        }
    }
}

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
            let log_fmr = (-(i as f64) * step * 1e9).round() / 1e9 + 0.0;
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
        // FMR 1e-2 -> Similarity 60; FMR 1e-3 -> 70.
        assert!((t.similarity(0.01) - 60.0).abs() < 0.2);
        assert!((t.distance_for_similarity(70.0) - 1e-3).abs() < 2e-5);
        // The table stops where fewer than MIN_PAIRS_PER_POINT pairs remain.
        let last = t.points.last().unwrap().0;
        assert!((last - (MIN_PAIRS_PER_POINT as f64 / 1e5).log10()).abs() < 1e-9);
    }

    #[test]
    fn similarity_is_monotone_and_clamped() {
        let t = uniform_table();
        assert_eq!(t.similarity(5.0), 40.0);
        // A tail where log FMR falls linearly with distance, as face
        // distances do: FMR(d) = 10^(8 (d - 1)); extrapolated to d = 0 it
        // passes 1e-6, where Similarity is clamped to 100.
        let mut tail: Vec<f32> = (1..=100_000)
            .map(|i| 1.0 + (i as f32 / 100_000.0).log10() / 8.0)
            .collect();
        let steep = CalibrationTable::build("test", "log-linear", &mut tail, 0.1).unwrap();
        assert_eq!(steep.similarity(0.0), 100.0);
        assert!((steep.log_fmr(0.75) + 2.0).abs() < 0.02);
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
        let table = uniform_table();
        let back: CalibrationTable = serde_json::from_str(&table.to_json()).unwrap();
        assert_eq!(back.points.len(), table.points.len());
        for (a, b) in back.points.iter().zip(&table.points) {
            assert!(a.0 == b.0 && (a.1 - b.1).abs() < 1e-15, "{a:?} vs {b:?}");
        }
        let t = CalibrationTable {
            recogniser: "x".into(),
            source: String::new(),
            impostor_pairs: 0,
            points: vec![(0.0, 1.0), (-1.0, 1.0)],
        };
        assert!(t.validate().is_err());
        assert!(CalibrationTable::build("x", "", &mut [0.5; 10], 0.1).is_err());
    }

    /// Two regions (left and right half-planes): impostors in the right one
    /// lie twice as close together, so the same FMR sits at half the
    /// distance there (known answer: FMR = (d / scale)^4 up to 1).
    fn two_region_fair() -> FairCalibration {
        use kenning_core::fair::{
            ClusterCalibration, Distance, FairCalibrationConfig, LogFmrTable,
        };
        let table = |scale: f64| LogFmrTable {
            pairs: 1_000_000,
            points: (0..=24)
                .map(|i| {
                    let l = -6.0 + f64::from(i) * 0.25;
                    (scale * 10f64.powf(l / 4.0), l)
                })
                .collect(),
        };
        FairCalibration {
            recogniser: "test".into(),
            source: "synthetic".into(),
            distance: Distance::Euclidean,
            config: FairCalibrationConfig::default(),
            centroids: vec![vec![-1.0, 0.0], vec![1.0, 0.0]],
            clusters: vec![
                ClusterCalibration {
                    photos: 100,
                    table: Some(table(1.0)),
                },
                ClusterCalibration {
                    photos: 100,
                    table: Some(table(0.5)),
                },
            ],
            global: table(0.75),
            combined: LogFmrTable {
                pairs: 1_000_000,
                points: vec![(-15.0, -15.0), (0.0, 0.0)],
            },
            impostor_pairs: 1_000_000,
        }
    }

    #[test]
    fn fair_similarity_depends_on_the_region() {
        let fair = two_region_fair();
        let table = uniform_table();
        let (left, right) = ([-1.0f32, 0.1], [1.0f32, 0.1]);
        let f = Calibration::Fair(&fair);
        // FMR 1e-4 (Similarity 80) at distance 0.1 on the left, 0.05 on the right.
        assert!((f.similarity(&left, &left, 0.1) - 80.0).abs() < 1e-6);
        assert!((f.similarity(&right, &right, 0.05) - 80.0).abs() < 1e-6);
        assert!(f.similarity(&right, &right, 0.1) < 80.0 - 10.0);
        // A pair across regions: geometric mean of the two FMRs (up to the
        // tables' linear interpolation between points).
        let across = f.log_fmr(&left, &right, 0.1);
        assert!((across - (-4.0 + (-4.0 + 4.0 * 2f64.log10())) / 2.0).abs() < 0.01);
        // The global table ignores the embeddings.
        let g = Calibration::Global(&table);
        assert_eq!(
            g.similarity(&left, &left, 0.01),
            g.similarity(&right, &right, 0.01)
        );
        assert_eq!(
            (g.kind(), f.kind()),
            (CalibrationKind::Global, CalibrationKind::Fair)
        );
    }

    #[test]
    fn fair_search_radius_covers_every_match() {
        let fair = two_region_fair();
        let f = Calibration::Fair(&fair);
        let probes = [[-0.9f32, 0.2], [0.9f32, -0.2]];
        let others: Vec<[f32; 2]> = (0..200)
            .map(|i| {
                let x = -1.0 + f64::from(i) / 100.0;
                [x as f32, 0.3]
            })
            .collect();
        for probe in probes {
            for s in [60.0, 70.0, 80.0, 90.0] {
                let r = f.search_radius(&probe, s);
                assert!(r.is_finite() && r > 0.0);
                // Every face that reaches Similarity s at any distance does
                // so within the radius...
                for o in &others {
                    for k in 1..400 {
                        let d = f64::from(k) / 1000.0;
                        if f.similarity(&probe, o, d) >= s {
                            assert!(d <= r + 1e-6, "{probe:?} {o:?} {s}: {d} > {r}");
                        }
                    }
                }
                // ...and the radius is tight: some face reaches it there.
                let reached = others
                    .iter()
                    .any(|o| f.similarity(&probe, o, r * 0.999) >= s - 1e-6);
                assert!(reached, "{probe:?} {s}");
            }
        }
        assert_eq!(f.search_radius(&probes[0], 40.0), f64::INFINITY);
    }
}
