//! `kenning report`: the accountability report for a period, from the
//! audit trail, as HTML, JSON or PDF.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use kenning_accountability::audit_path;
use kenning_accountability::report::{
    accountability_report, file_report, AccountabilityReport, ReportQuery,
};
use serde_json::json;

use crate::commands::Context;
use crate::gallery::{body as given, DataArgs};

/// Arguments of `kenning report`.
#[derive(Args)]
pub struct ReportArgs {
    /// Start of the period (YYYY-MM-DD or RFC 3339, inclusive).
    #[arg(long)]
    from: String,
    /// End of the period (exclusive).
    #[arg(long)]
    to: String,
    /// html (printable), json or pdf.
    #[arg(long, default_value = "html", value_parser = ["html", "json", "pdf"])]
    format: String,
    /// Only this collection (the global --case and --purpose narrow it too).
    #[arg(long)]
    collection: Option<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Counts the report straight from the trail as the local user (who can
/// read the file anyway); with --key-id it goes through the service's rules
/// (auditor or admin role, its scope) and is itself recorded.
pub fn report(ctx: &Context, data: &DataArgs, a: &ReportArgs) -> Result<i32> {
    let r: AccountabilityReport = if data.key_id.is_some() {
        let v = data.open(ctx)?.call(
            "GetAccountabilityReport",
            given(json!({
                "From": a.from, "To": a.to, "CollectionId": a.collection,
                "Purpose": data.purpose, "Case": data.case,
            })),
        )?;
        serde_json::from_value(v)?
    } else {
        let q = ReportQuery {
            from_ms: kenning_audit::parse_time(&a.from)?,
            to_ms: kenning_audit::parse_time(&a.to)?,
            collection: a.collection.clone(),
            purpose: data.purpose.clone(),
            case: data.case.clone(),
        };
        if q.to_ms <= q.from_ms {
            bail!("InvalidParameterException: --to must be after --from");
        }
        // The database's trail, or the data directory's file (never opened
        // for writing).
        match crate::storage::trail(&data.db)? {
            Some(t) => accountability_report(t.verify()?, t.records()?, &q, |_| true)?,
            None => file_report(&audit_path(&data.data), &q, |_| true)?,
        }
    };
    let (evals, problems) =
        kenning_console::accuracy::load(crate::storage::evals(&data.db, &data.data)?.as_ref());
    for p in problems {
        eprintln!("kenning: {p}");
    }
    let bytes = match a.format.as_str() {
        "json" => {
            let mut b = serde_json::to_vec_pretty(&r)?;
            b.push(b'\n');
            b
        }
        "pdf" => kenning_console::report::pdf(&r, &evals),
        _ => kenning_console::report::standalone_html(&r, &evals).into_bytes(),
    };
    match &a.output {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)?,
    }
    if !r.chain.valid {
        eprintln!(
            "kenning: the audit trail is broken ({}); the report counts only what precedes it",
            r.chain.first_bad_record.as_deref().unwrap_or("")
        );
        return Ok(1);
    }
    Ok(0)
}
