//! The accountability report as a page, a standalone HTML file and a PDF,
//! from the counts `kenning_accountability::report` takes from the trail.

use kenning_accountability::report::{AccountabilityReport, GroupSection, Tally};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::accuracy::{differentials, Differential, EvalReport};
use crate::pdf::{Document, Font};
use crate::ui::{int, sig2};

/// The rows of a tally: what each count means, and the count.
fn rows(t: &Tally) -> Vec<(&'static str, String)> {
    vec![
        ("Searches run", int(t.searches)),
        (
            "Searches that returned candidates",
            int(t.searches_with_candidates),
        ),
        ("Candidates returned", int(t.candidates_returned)),
        (
            "Candidates queued for human review",
            int(t.candidates_queued_for_review),
        ),
        (
            "Candidates confirmed by review",
            int(t.candidates_confirmed),
        ),
        ("Candidates rejected by review", int(t.candidates_rejected)),
        (
            "Candidates still awaiting review",
            int(t.candidates_pending),
        ),
        ("Reviewers' decisions", int(t.review_decisions)),
        (
            "Searches refused by policy",
            int(t.searches_refused_by_policy),
        ),
        (
            "Searches refused otherwise or failed",
            int(t.searches_refused_other),
        ),
        (
            "False matches the searches could be expected to return",
            sig2(t.expected_false_matches),
        ),
        ("CompareFaces comparisons", int(t.compare_faces)),
        ("Faces enrolled", int(t.faces_indexed)),
        ("Faces deleted by people", int(t.faces_deleted)),
        (
            "Faces deleted by the retention policy",
            int(t.faces_deleted_by_retention),
        ),
    ]
}

/// Columns of the per-purpose and per-case tables.
const GROUP_COLUMNS: [&str; 7] = [
    "",
    "Searches",
    "Candidates",
    "Confirmed",
    "Rejected",
    "Pending",
    "Refused by policy",
];

/// The purposes or cases with something in the columns shown.
fn shown(groups: &[GroupSection]) -> Vec<&GroupSection> {
    groups
        .iter()
        .filter(|g| group_row(&g.name, &g.tally)[1..].iter().any(|v| v != "0"))
        .collect()
}

fn group_row(name: &str, t: &Tally) -> Vec<String> {
    vec![
        name.to_owned(),
        int(t.searches),
        int(t.candidates_returned),
        int(t.candidates_confirmed),
        int(t.candidates_rejected),
        int(t.candidates_pending),
        int(t.searches_refused_by_policy),
    ]
}

fn ratio_words(d: &Differential) -> String {
    match (d.ratio, d.at_least) {
        (Some(r), _) => format!("{r:.1}x"),
        (None, Some(l)) if l >= 1.0 => {
            format!("at least {l:.1}x (lowest group had no false match)")
        }
        (None, Some(_)) => "not measurable: the lowest group had no false match".into(),
        _ => "-".into(),
    }
}

fn rate(r: Option<f64>) -> String {
    kenning_eval::report::fmt_rate(r)
}

/// What the report's filters were, in words.
fn scope_words(r: &AccountabilityReport) -> String {
    let mut parts = vec![format!("from {} to {} (UTC, end exclusive)", r.from, r.to)];
    for (k, v) in [
        ("collection", &r.collection),
        ("purpose", &r.purpose),
        ("case", &r.case),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k} {v}"));
        }
    }
    parts.join(", ")
}

fn policy_words(p: &serde_json::Value) -> String {
    if p.is_null() {
        return "not recorded in this trail".into();
    }
    let mut w = Vec::new();
    w.push(
        if p["RequireCase"] == true {
            "case reference required"
        } else {
            "case reference optional"
        }
        .to_owned(),
    );
    w.push(match p["RequiredReviewers"].as_u64().unwrap_or(0) {
        0 => "no human review".to_owned(),
        n => format!("{n} reviewer(s) must confirm each candidate"),
    });
    if let Some(t) = p["MinFaceMatchThreshold"].as_f64() {
        w.push(format!("threshold at least {t}"));
    }
    if let Some(m) = p["MaxExpectedFalseMatches"].as_f64() {
        w.push(format!("at most {m} expected false matches per search"));
    }
    if let Some(d) = p["Retention"]["Days"].as_u64() {
        w.push(format!(
            "faces deleted {d} days after {}",
            if p["Retention"]["After"] == "LAST_MATCH" {
                "the last match"
            } else {
                "indexing"
            }
        ));
    }
    w.join("; ")
}

const HOW: &str = "Counted from the audit trail alone: every search, refusal, review decision and \
gallery change is a record in it, written as part of the operation. A search is counted in the period \
it ran; a review closes (confirmed or rejected) in the period of its deciding record; candidates still \
awaiting review are those queued in the period that no decision has closed by the time the report was \
made. Refusals by policy are searches that broke a rule of the collection's policy (case reference, \
minimum threshold, expected false matches). Expected false matches add up, over the searches that ran, \
the faces searched times the false-match rate of the threshold used. Differentials are measured by \
kenning eval fairness on labelled photos and are properties of the calibration, not of this period's \
searches.";

/// The report's body (for the console page and the standalone file).
pub fn body(r: &AccountabilityReport, evals: &[EvalReport]) -> Markup {
    html! {
        article.report {
            h1 { "Accountability report" }
            p { (scope_words(r)) ". Generated " (r.generated_at) "." }
            section {
                h2 { "Audit trail" }
                dl.facts {
                    dt { "Chain" } dd { @if r.chain.valid { "verified: every record matches its hash and its place" } @else { strong { "BROKEN: " (r.chain.first_bad_record.as_deref().unwrap_or("")) } } }
                    dt { "Records in the trail" } dd { (int(r.chain.records)) }
                    dt { "Records counted here" } dd { (int(r.records_counted)) }
                    dt { "Head hash" } dd.mono #head-hash { (r.chain.head.as_deref().unwrap_or("(empty trail)")) }
                }
                p.hint { "Keep the head hash somewhere the trail's keepers cannot change. Later, " code { "kenning audit verify --expect-head HASH" } " shows that the records this report counted are still there, unaltered." }
            }
            section {
                h2 { "Totals" }
                table.tally { tbody { @for (k, v) in rows(&r.totals) { tr { th scope="row" { (k) } td.num { (v) } } } } }
                @if !r.refusals_by_rule.is_empty() {
                    h3 { "Searches refused, by the rule they broke" }
                    table { tbody { @for (rule, n) in &r.refusals_by_rule { tr { th scope="row" { (rule) } td.num { (int(*n)) } } } } }
                }
            }
            section {
                h2 { "Per collection" }
                @if r.collections.is_empty() { p { "No collection activity in this period." } }
                @for c in &r.collections {
                    h3 { (c.collection_id) }
                    p { "Policy in force at the end of the period: " (policy_words(c.policy.as_ref().unwrap_or(&serde_json::Value::Null))) "."
                        @if c.policy_changes > 0 { " The policy was changed " (c.policy_changes) " time(s) in the period." } }
                    table.tally { tbody { @for (k, v) in rows(&c.tally) { tr { th scope="row" { (k) } td.num { (v) } } } } }
                    @if !c.thresholds.is_empty() {
                        h4 { "Thresholds used" }
                        table {
                            thead { tr { th { "Similarity threshold" } th { "False-match rate it promises" } th.num { "Searches" } } }
                            tbody { @for t in &c.thresholds { tr { td { (t.threshold) } td { "1 in " (sig2(1.0 / t.false_match_rate)) } td.num { (int(t.searches)) } } } }
                        }
                    }
                    @for cal in &c.calibrations {
                        h4 { "Calibration: " (cal) }
                        @let ds = differentials(evals, cal);
                        @if ds.is_empty() {
                            p { "No measurement of this calibration's demographic differentials is available to the service." }
                        } @else {
                            div.table-wrap { table {
                                thead { tr { th { "Measured" } th { "At" } th { "Overall FMR" } th { "Overall FNMR" } th { "Highest FMR group" } th { "Lowest FMR group" } th { "Ratio" } } }
                                tbody { @for d in &ds { tr {
                                    td { (d.report) } td { (d.threshold) } td { (rate(d.overall_fmr)) } td { (rate(d.overall_fnmr)) }
                                    td { (d.worst) } td { (d.best) } td { (ratio_words(d)) }
                                } } }
                            } }
                        }
                    }
                }
            }
            @for (title, first, groups) in [("Per purpose", "Purpose", shown(&r.purposes)), ("Per case", "Case", shown(&r.cases))] {
                section {
                    h2 { (title) }
                    @if groups.is_empty() { p { "Nothing in this period." } } @else {
                        div.table-wrap { table {
                            thead { tr { @for (i, c) in GROUP_COLUMNS.iter().enumerate() { th class=[(i > 0).then_some("num")] { (if i == 0 { first } else { c }) } } } }
                            tbody { @for g in groups { tr { @for (i, v) in group_row(&g.name, &g.tally).iter().enumerate() {
                                @if i == 0 { th scope="row" { (v) } } @else { td.num { (v) } }
                            } } } }
                        } }
                    }
                }
            }
            section {
                h2 { "How this was counted" }
                p { (HOW) }
            }
        }
    }
}

/// The report as a standalone HTML file (the console's stylesheet inline).
pub fn standalone_html(r: &AccountabilityReport, evals: &[EvalReport]) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Accountability report " (r.from) " to " (r.to) }
                style { (PreEscaped(crate::assets::CSS)) }
            }
            body { main { (body(r, evals)) } }
        }
    }
    .into_string()
}

/// The report as a PDF.
pub fn pdf(r: &AccountabilityReport, evals: &[EvalReport]) -> Vec<u8> {
    let head = r
        .chain
        .head
        .clone()
        .unwrap_or_else(|| "(empty trail)".into());
    let mut d = Document::new(
        "Kenning accountability report",
        &format!(
            "Kenning accountability report, {} to {}; audit head {head}",
            r.from, r.to
        ),
    );
    d.heading("Accountability report", 18.0);
    d.text(
        &format!("{}. Generated {}.", scope_words(r), r.generated_at),
        Font::Regular,
        10.0,
    );
    d.heading("Audit trail", 13.0);
    d.text(
        &if r.chain.valid {
            format!(
                "Chain verified: {} records, every one matching its hash and its place.",
                int(r.chain.records)
            )
        } else {
            format!(
                "Chain BROKEN: {}",
                r.chain.first_bad_record.as_deref().unwrap_or("")
            )
        },
        Font::Regular,
        10.0,
    );
    d.text(
        &format!(
            "Records counted here: {}. Head hash:",
            int(r.records_counted)
        ),
        Font::Regular,
        10.0,
    );
    d.text(&head, Font::Mono, 9.0);
    d.text(
        "Keep the head hash somewhere the trail's keepers cannot change; kenning audit verify --expect-head HASH later shows the records counted here are still there, unaltered.",
        Font::Regular,
        9.0,
    );
    let tally_rows = |t: &Tally| -> Vec<Vec<String>> {
        rows(t)
            .into_iter()
            .map(|(k, v)| vec![k.to_owned(), v])
            .collect()
    };
    d.heading("Totals", 13.0);
    d.table(&["", "Count"], &tally_rows(&r.totals), &[4.0, 1.0]);
    if !r.refusals_by_rule.is_empty() {
        let rows: Vec<Vec<String>> = r
            .refusals_by_rule
            .iter()
            .map(|(k, v)| vec![k.clone(), int(*v)])
            .collect();
        d.table(&["Searches refused by rule", "Count"], &rows, &[4.0, 1.0]);
    }
    d.heading("Per collection", 13.0);
    if r.collections.is_empty() {
        d.text(
            "No collection activity in this period.",
            Font::Regular,
            10.0,
        );
    }
    for c in &r.collections {
        d.heading(&c.collection_id, 11.0);
        d.text(
            &format!(
                "Policy in force at the end of the period: {}.",
                policy_words(c.policy.as_ref().unwrap_or(&serde_json::Value::Null))
            ),
            Font::Regular,
            9.5,
        );
        d.table(&["", "Count"], &tally_rows(&c.tally), &[4.0, 1.0]);
        if !c.thresholds.is_empty() {
            let rows: Vec<Vec<String>> = c
                .thresholds
                .iter()
                .map(|t| {
                    vec![
                        t.threshold.to_string(),
                        format!("1 in {}", sig2(1.0 / t.false_match_rate)),
                        int(t.searches),
                    ]
                })
                .collect();
            d.table(
                &["Similarity threshold", "False-match rate", "Searches"],
                &rows,
                &[2.0, 2.0, 1.0],
            );
        }
        for cal in &c.calibrations {
            let rows: Vec<Vec<String>> = differentials(evals, cal)
                .iter()
                .map(|x| {
                    vec![
                        x.threshold.clone(),
                        rate(x.overall_fmr),
                        rate(x.overall_fnmr),
                        x.worst.clone(),
                        x.best.clone(),
                        ratio_words(x),
                    ]
                })
                .collect();
            d.text(&format!("Calibration: {cal}"), Font::Bold, 9.5);
            if rows.is_empty() {
                d.text(
                    "No measurement of its demographic differentials is available.",
                    Font::Regular,
                    9.0,
                );
            } else {
                d.table(
                    &[
                        "At",
                        "FMR",
                        "FNMR",
                        "Highest FMR group",
                        "Lowest FMR group",
                        "Ratio",
                    ],
                    &rows,
                    &[2.2, 1.0, 1.0, 1.5, 1.5, 1.6],
                );
            }
        }
    }
    for (title, first, groups) in [
        ("Per purpose", "Purpose", shown(&r.purposes)),
        ("Per case", "Case", shown(&r.cases)),
    ] {
        d.heading(title, 13.0);
        if groups.is_empty() {
            d.text("Nothing in this period.", Font::Regular, 10.0);
            continue;
        }
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| group_row(&g.name, &g.tally))
            .collect();
        let mut header = GROUP_COLUMNS;
        header[0] = first;
        d.table(&header, &rows, &[2.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2]);
    }
    d.heading("How this was counted", 13.0);
    d.text(HOW, Font::Regular, 9.0);
    d.finish()
}
