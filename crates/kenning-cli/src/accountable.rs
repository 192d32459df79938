//! Accountability subcommands: collection policies, the review queue, the
//! audit trail and retention.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use kenning_accountability::audit_path;
use serde_json::{json, Value};

use crate::commands::Context;
use crate::gallery::{body as given, policy_arg, DataArgs};
use crate::storage;

fn print(v: &Value) -> Result<i32> {
    println!("{}", serde_json::to_string(v)?);
    Ok(0)
}

/// `kenning policy ...`
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show a collection's policy.
    Get {
        /// Collection id.
        collection: String,
    },
    /// Replace a collection's policy (admin).
    Set {
        /// Collection id.
        collection: String,
        /// The policy: JSON or @file (see docs/accountability.md).
        policy: String,
    },
}

pub fn policy(ctx: &Context, data: &DataArgs, cmd: PolicyCommand) -> Result<i32> {
    let s = data.open(ctx)?;
    let v = match cmd {
        PolicyCommand::Get { collection } => {
            s.call("GetCollectionPolicy", json!({ "CollectionId": collection }))?
        }
        PolicyCommand::Set { collection, policy } => s.call(
            "PutCollectionPolicy",
            json!({ "CollectionId": collection, "Policy": policy_arg(&policy)? }),
        )?,
    };
    print(&v)
}

/// `kenning review ...`
#[derive(Subcommand)]
pub enum ReviewCommand {
    /// List review items (candidates from searches of collections under review).
    List {
        /// Only this collection's.
        #[arg(long)]
        collection: Option<String>,
        /// PENDING, CONFIRMED or REJECTED.
        #[arg(long)]
        status: Option<String>,
        /// Page size (1-1000, default 100).
        #[arg(long)]
        max_results: Option<u32>,
        /// Token from the previous page.
        #[arg(long)]
        next_token: Option<String>,
    },
    /// Confirm a candidate (reviewer).
    Confirm {
        /// ReviewId.
        review_id: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// Reject a candidate (reviewer).
    Reject {
        /// ReviewId.
        review_id: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
}

pub fn review(ctx: &Context, data: &DataArgs, cmd: ReviewCommand) -> Result<i32> {
    let s = data.open(ctx)?;
    let v = match cmd {
        ReviewCommand::List {
            collection,
            status,
            max_results,
            next_token,
        } => s.call(
            "ListReviewItems",
            given(json!({
                "CollectionId": collection,
                "Status": status,
                "MaxResults": max_results,
                "NextToken": next_token,
            })),
        )?,
        ReviewCommand::Confirm { review_id, comment } => s.call(
            "DecideReviewItem",
            json!({ "ReviewId": review_id, "Decision": "CONFIRM", "Comment": comment }),
        )?,
        ReviewCommand::Reject { review_id, comment } => s.call(
            "DecideReviewItem",
            json!({ "ReviewId": review_id, "Decision": "REJECT", "Comment": comment }),
        )?,
    };
    print(&v)
}

/// `kenning audit ...`
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain; names the first bad record. Exit 1 if
    /// the trail was tampered with.
    Verify {
        /// Also require a record with this hash (a head noted elsewhere
        /// earlier, e.g. from a previous verify: detects a truncated tail).
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// Write records as JSON lines (filter by case with the global --case).
    Export {
        /// From this time on (RFC 3339 or YYYY-MM-DD, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Before this time (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// Verify and export read the trail directly (the file, never opened for
/// writing, or the database's table) when acting as the local user (who can
/// read it anyway); with --key-id they go through the service's rules
/// (auditor role) and are themselves audited.
pub fn audit(ctx: &Context, data: &DataArgs, cmd: AuditCommand) -> Result<i32> {
    let path = audit_path(&data.data);
    let database = storage::trail(&data.db)?;
    let records = || -> Result<kenning_audit::RecordStream<'_>> {
        Ok(match &database {
            Some(t) => t.records()?,
            None => Box::new(kenning_audit::records(&path)?),
        })
    };
    match cmd {
        AuditCommand::Verify { expect_head } => {
            let v = if data.key_id.is_some() {
                data.open(ctx)?.call("VerifyAudit", json!({}))?
            } else {
                kenning_accountability::audit_report(&match &database {
                    Some(t) => t.verify()?,
                    None => kenning_audit::verify(&path)?,
                })
            };
            print(&v)?;
            if let Some(bad) = v.get("FirstBadRecord").filter(|b| !b.is_null()) {
                eprintln!(
                    "kenning: audit trail broken at line {}: {}",
                    bad["Line"],
                    bad["Reason"].as_str().unwrap_or("")
                );
                return Ok(1);
            }
            if let Some(head) = expect_head {
                // A head noted earlier must still be in the chain; since the
                // chain verified, everything up to it is as it was then.
                let mut found = false;
                for r in records()? {
                    if r?.1 == head {
                        found = true;
                        break;
                    }
                }
                if !found {
                    eprintln!(
                        "kenning: no record has the hash {head}: records were removed from the end, or the trail was replaced"
                    );
                    return Ok(1);
                }
            }
            Ok(0)
        }
        AuditCommand::Export { from, to, output } => {
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            let n = if data.key_id.is_some() {
                let s = data.open(ctx)?;
                let mut token: Option<String> = None;
                let mut n = 0;
                loop {
                    let page = s.call(
                        "ExportAudit",
                        given(json!({
                            "From": from, "To": to, "Case": data.case,
                            "MaxResults": 10_000, "NextToken": token,
                        })),
                    )?;
                    for r in page["Records"].as_array().into_iter().flatten() {
                        writeln!(out, "{r}")?;
                        n += 1;
                    }
                    token = page["NextToken"].as_str().map(str::to_owned);
                    if token.is_none() {
                        break n;
                    }
                }
            } else {
                let filter = kenning_audit::Filter {
                    from_ms: from.as_deref().map(kenning_audit::parse_time).transpose()?,
                    to_ms: to.as_deref().map(kenning_audit::parse_time).transpose()?,
                    case: data.case.clone(),
                    ..kenning_audit::Filter::default()
                };
                match &database {
                    Some(t) => t.export(&filter, &mut out)?,
                    None => kenning_audit::export(&path, &filter, &mut out)?,
                }
            };
            out.flush()?;
            eprintln!("kenning: {n} audit records exported");
            Ok(0)
        }
    }
}

/// `kenning retention ...`
#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Delete every face past its collection's retention, then erase
    /// deleted faces' bytes from the store and index files.
    Run,
}

pub fn retention(ctx: &Context, data: &DataArgs, cmd: RetentionCommand) -> Result<i32> {
    match cmd {
        RetentionCommand::Run => {
            let s = data.open(ctx)?;
            let v = s.call("RunRetention", json!({}))?;
            if !v["Collections"].is_array() {
                bail!("unexpected RunRetention response {v}");
            }
            print(&v)
        }
    }
}
