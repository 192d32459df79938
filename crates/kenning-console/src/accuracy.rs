//! Measured accuracy: `kenning eval fairness` reports, the ones shipped with
//! the built-in recogniser and any an admin drops into `DATA/eval/`, so a
//! reader sees the demographic differentials of the calibration in force
//! without a terminal.

use std::path::Path;

use kenning_eval::fairness::{FairnessReport, ThresholdResult};
use serde::Deserialize;

/// Reports measured for the built-in recogniser's shipped calibration
/// (`recognisers/dlib-resnet-v1/eval/run.sh` makes them).
const SHIPPED: &[(&str, &str)] = &[
    (
        "recognisers/dlib-resnet-v1/eval/fairness-gender-race.json",
        include_str!("../../../recognisers/dlib-resnet-v1/eval/fairness-gender-race.json"),
    ),
    (
        "recognisers/dlib-resnet-v1/eval/fairness-gender.json",
        include_str!("../../../recognisers/dlib-resnet-v1/eval/fairness-gender.json"),
    ),
];

/// The folder of extra reports, relative to the data directory.
pub const EVAL_DIR: &str = "eval";

/// A `kenning eval fairness` JSON report.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalReport {
    /// Where it came from (shipped file or data directory file).
    #[serde(skip)]
    pub source: String,
    /// The command that measured it.
    #[serde(default)]
    pub command: Option<String>,
    /// The recogniser measured.
    #[serde(default)]
    pub recogniser: Option<String>,
    /// The impostor photos' folder.
    #[serde(default)]
    pub data: Option<String>,
    /// The label columns forming the groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The measurements.
    pub fairness: FairnessReport,
}

impl EvalReport {
    /// The calibration it measured, spelled as searches record it
    /// (`dlib-resnet-v1 (fair)`).
    pub fn calibration(&self) -> String {
        let kind = if self.fairness.scoring.starts_with("fair calibration") {
            "fair"
        } else {
            "global"
        };
        format!(
            "{} ({kind})",
            self.recogniser.as_deref().unwrap_or("unknown recogniser")
        )
    }

    /// A short title.
    pub fn title(&self) -> String {
        let groups = if self.groups.is_empty() {
            "groups".to_owned()
        } else {
            self.groups.join(" x ")
        };
        format!("{} by {groups}", self.calibration())
    }
}

fn parse(source: &str, text: &str) -> Result<EvalReport, String> {
    let mut r: EvalReport =
        serde_json::from_str(text).map_err(|e| format!("{source}: not a fairness report: {e}"))?;
    r.source = source.to_owned();
    Ok(r)
}

/// The shipped reports, then those in `DATA/eval/*.json` (by file name);
/// files that are not fairness reports are named in the second list.
pub fn load(data_dir: &Path) -> (Vec<EvalReport>, Vec<String>) {
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for (source, text) in SHIPPED {
        match parse(source, text) {
            Ok(r) => reports.push(r),
            Err(e) => problems.push(e),
        }
    }
    let dir = data_dir.join(EVAL_DIR);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for p in files {
        let source = p.display().to_string();
        match std::fs::read_to_string(&p) {
            Ok(text) => match parse(&source, &text) {
                Ok(r) => reports.push(r),
                Err(e) => problems.push(e),
            },
            Err(e) => problems.push(format!("{source}: {e}")),
        }
    }
    (reports, problems)
}

/// The differential one report measured at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Differential {
    /// The report's title.
    pub report: String,
    /// The threshold, as the report labels it.
    pub threshold: String,
    /// FMR over all impostor pairs.
    pub overall_fmr: Option<f64>,
    /// FNMR over all genuine pairs.
    pub overall_fnmr: Option<f64>,
    /// The groups with the highest and lowest same-group FMR.
    pub worst: String,
    /// The group with the lowest.
    pub best: String,
    /// Highest over lowest FMR (`None` when the lowest is 0).
    pub ratio: Option<f64>,
    /// When the lowest is 0: the ratio is at least this.
    pub at_least: Option<f64>,
}

fn differential(r: &EvalReport, t: &ThresholdResult) -> Option<Differential> {
    let ratio = t.fmr_ratio.as_ref()?;
    Some(Differential {
        report: r.title(),
        threshold: t.label.clone(),
        overall_fmr: t.overall_fmr,
        overall_fnmr: t.overall_fnmr,
        worst: ratio.max_group.replace('|', ", "),
        best: ratio.min_group.replace('|', ", "),
        ratio: ratio.ratio,
        at_least: ratio.lower_bound,
    })
}

/// What the reports measured for `calibration` at the Similarity
/// thresholds they were run at (the figures the accountability report
/// quotes).
pub fn differentials(reports: &[EvalReport], calibration: &str) -> Vec<Differential> {
    reports
        .iter()
        .filter(|r| r.calibration() == calibration)
        .flat_map(|r| {
            r.fairness
                .thresholds
                .iter()
                .filter(|t| t.label.starts_with("Similarity"))
                .filter_map(|t| differential(r, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_reports_parse_and_name_the_calibration_in_force() {
        let (reports, problems) = load(Path::new("/nonexistent"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(reports.len(), SHIPPED.len());
        let cal = kenning_models_calibration();
        let d = differentials(&reports, &cal);
        assert!(
            d.iter().any(|d| d.threshold.starts_with("Similarity 80")),
            "{cal}: {d:?}"
        );
        for d in &d {
            assert!(d.overall_fmr.is_some_and(|f| f > 0.0 && f < 0.01), "{d:?}");
            assert!(d.ratio.is_some() || d.at_least.is_some(), "{d:?}");
        }
    }

    /// The built-in recogniser's name and default calibration, as searches
    /// record them.
    fn kenning_models_calibration() -> String {
        "dlib-resnet-v1 (fair)".into()
    }
}
