//! Draws one per-group FMR chart comparing several `kenning eval fairness`
//! JSON reports at one threshold each (e.g. global against fair calibration,
//! docs/plots/fair-*.svg):
//!
//! ```text
//! cargo run -p kenning-eval --example compare_fairness -- OUT.svg "TITLE" \
//!     "THRESHOLD LABEL PREFIX" TARGET_FMR NAME=REPORT.json [NAME=REPORT.json ...]
//! ```

use kenning_eval::bar_chart_svg;
use kenning_eval::fairness::FairnessReport;
use kenning_eval::report::group_rate_chart;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, title, label, target, runs @ ..] = args.as_slice() else {
        return Err("usage: OUT.svg TITLE LABEL_PREFIX TARGET_FMR NAME=REPORT.json...".into());
    };
    let target: f64 = target.parse()?;
    let mut reports = Vec::new();
    for run in runs {
        let (name, path) = run.split_once('=').ok_or("runs are NAME=REPORT.json")?;
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let report: FairnessReport = serde_json::from_value(json["fairness"].clone())?;
        reports.push((name.to_string(), report));
    }
    let mut picked = Vec::new();
    for (name, r) in &reports {
        let t = r
            .thresholds
            .iter()
            .find(|t| t.label.starts_with(label.as_str()))
            .ok_or_else(|| format!("{name}: no threshold labelled {label}..."))?;
        picked.push((name.as_str(), t));
    }
    let chart = group_rate_chart(title, &picked, false, Some((target, "target".into())));
    std::fs::write(out, bar_chart_svg(&chart))?;
    Ok(())
}
