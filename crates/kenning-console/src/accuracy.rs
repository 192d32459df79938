//! Measured accuracy: `kenning eval fairness` reports, the ones shipped with
//! the built-in recogniser and any an admin publishes (PutEvalReport), so a
//! reader sees the demographic differentials of the calibration in force
//! without a terminal.

use kenning_eval::fairness::ThresholdResult;

/// Reports measured for the built-in recognisers' shipped calibrations
/// (`recognisers/*/eval/run.sh` make them).
const SHIPPED: &[(&str, &str)] = &[
    (
        "recognisers/sface-2021dec/eval/fairness-gender-race.json",
        include_str!("../../../recognisers/sface-2021dec/eval/fairness-gender-race.json"),
    ),
    (
        "recognisers/sface-2021dec/eval/fairness-gender.json",
        include_str!("../../../recognisers/sface-2021dec/eval/fairness-gender.json"),
    ),
    (
        "recognisers/dlib-resnet-v1/eval/fairness-gender-race.json",
        include_str!("../../../recognisers/dlib-resnet-v1/eval/fairness-gender-race.json"),
    ),
    (
        "recognisers/dlib-resnet-v1/eval/fairness-gender.json",
        include_str!("../../../recognisers/dlib-resnet-v1/eval/fairness-gender.json"),
    ),
];

pub use kenning_eval::published::EvalReport;
use kenning_store::EvalReportStore;

fn parse(source: &str, text: &str) -> Result<EvalReport, String> {
    EvalReport::parse(source, text)
}

/// The shipped reports, then those published in `store` (by name; on the
/// embedded backend, the files in `DATA/eval/`); stored reports that are not
/// fairness reports are named in the second list.
pub fn load(store: &dyn EvalReportStore) -> (Vec<EvalReport>, Vec<String>) {
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for (source, text) in SHIPPED {
        match parse(source, text) {
            Ok(r) => reports.push(r),
            Err(e) => problems.push(e),
        }
    }
    match store.list() {
        Ok(stored) => {
            for r in stored {
                match parse(&format!("published report {}", r.name), &r.json) {
                    Ok(r) => reports.push(r),
                    Err(e) => problems.push(e),
                }
            }
        }
        Err(e) => problems.push(format!("the published reports cannot be read: {e}")),
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
        let dir = tempfile::tempdir().unwrap();
        let (reports, problems) = load(&kenning_store::EvalDir::new(dir.path()));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(reports.len(), SHIPPED.len());
        // Both built-in recognisers' default calibrations, as searches
        // record them.
        for cal in ["sface-2021dec (fair)", "dlib-resnet-v1 (fair)"] {
            let d = differentials(&reports, cal);
            assert!(
                d.iter().any(|d| d.threshold.starts_with("Similarity 80")),
                "{cal}: {d:?}"
            );
            for d in &d {
                assert!(d.overall_fmr.is_some_and(|f| f > 0.0 && f < 0.01), "{d:?}");
                assert!(d.ratio.is_some() || d.at_least.is_some(), "{d:?}");
            }
        }
    }
}
