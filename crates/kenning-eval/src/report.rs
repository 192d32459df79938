//! Markdown renderings of every report, and charts built from them.

use std::fmt::Write;

use crate::calibrate::CalibrationCheck;
use crate::detect::DetectionReport;
use crate::fairness::{FairnessReport, GroupRate, RateRatio, ThresholdResult};
use crate::identify::IdentificationReport;
use crate::svg::{Bar, BarChart, BarGroup, Series};
use crate::verify::VerificationReport;

/// Renders a report as Markdown for people.
pub trait ToMarkdown {
    /// The Markdown text (starting with a level-2 heading).
    fn to_markdown(&self) -> String;
}

/// A rate for tables: percent with two decimals down to 0.01%, else
/// scientific notation.
pub fn fmt_rate(r: Option<f64>) -> String {
    match r {
        None => "not measurable".into(),
        Some(0.0) => "0".into(),
        Some(v) if v >= 1e-4 => format!("{:.2}%", v * 100.0),
        Some(v) => format!("{v:.2e}"),
    }
}

fn fmt_ci(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (None, None) => "-".into(),
        (lo, hi) => format!(
            "{} - {}",
            lo.map_or("?".into(), |v| fmt_rate(Some(v))),
            hi.map_or("unbounded".into(), |v| fmt_rate(Some(v)))
        ),
    }
}

/// A group name for a Markdown table cell: group names join label values
/// with `|`, which would otherwise split the cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn fmt_threshold(t: Option<f32>) -> String {
    t.map_or("-".into(), |t| format!("{t:.4}"))
}

impl ToMarkdown for VerificationReport {
    fn to_markdown(&self) -> String {
        let mut s = String::from("## Verification (1:1)\n\n");
        let _ = writeln!(
            s,
            "{} genuine and {} impostor pairs. {}\n",
            self.genuine_pairs, self.impostor_pairs, self.pair_source
        );
        if let Some(k) = &self.kfold {
            let _ = writeln!(
                s,
                "**{}-fold accuracy: {:.2}% ± {:.2}%** (threshold chosen on the other folds, mean ± sample std of held-out folds)\n",
                k.folds.len(),
                k.mean * 100.0,
                k.std * 100.0
            );
        }
        if let Some(e) = &self.eer {
            let _ = writeln!(
                s,
                "**Equal error rate: {}** (distance threshold {})\n",
                fmt_rate(Some(e.eer)),
                fmt_threshold(Some(e.threshold))
            );
        }
        s.push_str(
            "| target FMR | distance threshold | observed FMR | FNMR |\n|---|---|---|---|\n",
        );
        for r in &self.fnmr_at_fmr {
            let _ = writeln!(
                s,
                "| {:e} | {} | {} | {} |",
                r.target_fmr,
                fmt_threshold(r.threshold),
                fmt_rate(r.fmr),
                if r.threshold.is_some() {
                    fmt_rate(r.fnmr)
                } else {
                    "not measurable".into()
                }
            );
        }
        let _ = writeln!(s, "\nRule: {}.", self.measurability_rule);
        s
    }
}

impl VerificationReport {
    /// The DET curve as a plot series.
    pub fn det_series(&self, name: &str) -> Series {
        Series {
            name: name.into(),
            points: self.det.iter().map(|p| (p.fmr, p.fnmr)).collect(),
        }
    }
}

impl ToMarkdown for IdentificationReport {
    fn to_markdown(&self) -> String {
        let mut s = String::from("## Identification (1:N)\n\n");
        let _ = writeln!(
            s,
            "Gallery of {} identities ({} photos); {} mated and {} unmated searches. {}\n",
            self.gallery_identities,
            self.gallery_photos,
            self.mated_searches,
            self.unmated_searches,
            self.split
        );
        let _ = writeln!(
            s,
            "| rank-1 | rank-10 |\n|---|---|\n| {} | {} |\n",
            fmt_rate(Some(self.rank1)),
            fmt_rate(Some(self.rank10))
        );
        s.push_str(
            "| target FPIR | distance threshold | observed FPIR | FNIR |\n|---|---|---|---|\n",
        );
        for r in &self.fnir_at_fpir {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.target_fpir,
                fmt_threshold(r.threshold),
                fmt_rate(r.fpir),
                if r.threshold.is_some() {
                    fmt_rate(r.fnir)
                } else {
                    "not measurable".into()
                }
            );
        }
        let _ = writeln!(s, "\nDefinitions: {}", self.rules);
        s
    }
}

impl ToMarkdown for DetectionReport {
    fn to_markdown(&self) -> String {
        let mut s = String::from("## Detection\n\n");
        let o = &self.overall;
        let _ = writeln!(
            s,
            "| images | faces | found | false positives | recall | precision |\n|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} |\n",
            o.images,
            o.faces,
            o.found,
            o.false_positives,
            fmt_rate(self.recall),
            fmt_rate(self.precision)
        );
        let _ = writeln!(
            s,
            "{} ignored faces; {} detections fell on ignored faces; {} images without ground truth were not scored.\n",
            o.ignored_faces, o.ignored_detections, self.unlabelled_images_skipped
        );
        if !self.per_group.is_empty() {
            s.push_str(
                "| group | images | faces | found | detection rate |\n|---|---|---|---|---|\n",
            );
            for g in &self.per_group {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    cell(&g.group),
                    g.counts.images,
                    g.counts.faces,
                    g.counts.found,
                    fmt_rate(g.recall)
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "Matching rule: {}.", self.rule);
        s
    }
}

fn rate_table(s: &mut String, what: &str, rates: &[GroupRate], ratio: Option<&RateRatio>) {
    if rates.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "| group | subjects | pairs | {what}s | {what} | 95% CI |\n|---|---|---|---|---|---|"
    );
    for r in rates {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&r.group),
            r.subjects,
            r.pairs,
            r.errors,
            fmt_rate(Some(r.rate)),
            fmt_ci(r.ci_low, r.ci_high)
        );
    }
    if let Some(q) = ratio {
        let value = match (q.ratio, q.lower_bound) {
            (Some(r), _) => format!("{r:.1}"),
            (None, Some(lb)) => format!("at least {lb:.1} (lowest group had none; rule of three)"),
            (None, None) => "undefined (no errors in any group)".into(),
        };
        let ci = match (q.ci_low, q.ci_high) {
            (Some(lo), Some(hi)) => format!(", CI {lo:.1} - {hi:.1}"),
            (Some(lo), None) => format!(", CI {lo:.1} - unbounded"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "\nMax/min {what} ratio: **{value}** ({} / {}{ci}).",
            cell(&q.max_group),
            cell(&q.min_group)
        );
    }
    s.push('\n');
}

impl ToMarkdown for ThresholdResult {
    fn to_markdown(&self) -> String {
        let mut s = format!("### At {}\n\n", self.label);
        let Some(t) = self.threshold else {
            s.push_str("Not measurable on this set.\n");
            return s;
        };
        let _ = writeln!(
            s,
            "Threshold {t:.4}: overall FMR {} ({} false matches), overall FNMR {}.\n",
            fmt_rate(self.overall_fmr),
            self.overall_false_matches,
            self.overall_fnmr
                .map_or("- (no genuine pairs)".into(), |v| fmt_rate(Some(v)))
        );
        rate_table(&mut s, "FMR", &self.fmr_by_group, self.fmr_ratio.as_ref());
        rate_table(
            &mut s,
            "FNMR",
            &self.fnmr_by_group,
            self.fnmr_ratio.as_ref(),
        );
        s
    }
}

impl ToMarkdown for FairnessReport {
    fn to_markdown(&self) -> String {
        let mut s = String::from("## Demographic differentials\n\n");
        let _ = writeln!(
            s,
            "Scores: {}. {} photos, {} impostor pairs, {} genuine pairs.\n\n{}\n",
            self.scoring,
            self.impostor_photos,
            self.impostor_pairs,
            self.genuine_pairs,
            self.method
        );
        for t in &self.thresholds {
            s.push_str(&t.to_markdown());
        }
        s
    }
}

impl ToMarkdown for CalibrationCheck {
    fn to_markdown(&self) -> String {
        let mut s = String::from("## Calibration check\n\n");
        let _ = writeln!(s, "{} ({} impostor pairs). A promise holds when observed FMR is within a factor {} of it.\n", self.description, self.impostor_pairs, self.factor);
        s.push_str("| predicted FMR | observed FMR | false matches | observed/predicted | holds |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let holds = if !r.measurable {
                "not measurable"
            } else if r.within_factor {
                "yes"
            } else {
                "no"
            };
            let _ = writeln!(
                s,
                "| {:e} | {} | {} | {:.2} | {holds} |",
                r.predicted_fmr,
                fmt_rate(Some(r.observed_fmr)),
                r.false_matches,
                r.ratio
            );
        }
        s
    }
}

/// A per-group bar chart comparing several runs (e.g. global vs fair
/// calibration) at one threshold each: FMR when `fnmr` is false, else FNMR.
/// Groups are the union over runs, in order of first appearance.
pub fn group_rate_chart(
    title: &str,
    runs: &[(&str, &ThresholdResult)],
    fnmr: bool,
    reference: Option<(f64, String)>,
) -> BarChart {
    let rates = |t: &ThresholdResult| -> Vec<GroupRate> {
        if fnmr {
            t.fnmr_by_group.clone()
        } else {
            t.fmr_by_group.clone()
        }
    };
    let mut labels: Vec<String> = Vec::new();
    for (_, t) in runs {
        for r in rates(t) {
            if !labels.contains(&r.group) {
                labels.push(r.group);
            }
        }
    }
    let groups = labels
        .iter()
        .map(|label| BarGroup {
            label: label.clone(),
            bars: runs
                .iter()
                .map(|(_, t)| {
                    rates(t)
                        .into_iter()
                        .find(|r| &r.group == label)
                        .map(|r| Bar {
                            value: r.rate,
                            low: r.ci_low,
                            high: r.ci_high,
                        })
                })
                .collect(),
        })
        .collect();
    BarChart {
        title: title.into(),
        y_label: if fnmr { "FNMR" } else { "same-group FMR" }.into(),
        series: runs.iter().map(|(n, _)| n.to_string()).collect(),
        groups,
        log_y: !fnmr,
        reference,
    }
}
