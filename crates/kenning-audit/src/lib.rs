//! Kenning's tamper-evident audit log: an append-only, hash-chained
//! JSON-lines file that says who did what to which faces, and when.
//!
//! # Format
//! One record per line, nothing else in the file:
//!
//! ```text
//! {"hash":"<64 lowercase hex>","record":{"seq":1,"time":"2026-11-22T06:21:13.123Z","time_ms":1795328473123,"prev":"000…000","operation":"SearchFacesByImage","outcome":"ok",…}}
//! ```
//!
//! The record object holds `seq` (1 for the first record, then +1 per line),
//! `time` (RFC 3339 UTC with milliseconds), `time_ms` (the same instant in
//! milliseconds since the Unix epoch), `prev` (the previous record's hash; 64
//! zeros for the first record), then the fields of the [`Entry`] the caller
//! logged. Optional fields are left out when empty.
//!
//! `hash = hex(SHA-256(b"kenning-audit-v1\n" ++ record bytes))`, where the
//! record bytes are the record object exactly as it appears in the line.
//! [`verify`] hashes those bytes straight from the file and never a
//! re-serialisation, so a change of even one byte (or of the key order, or
//! of the spelling of a number) is caught.
//!
//! # What the chain detects
//! Each record commits to its predecessor through `prev`, and to its own
//! position through `seq`. [`verify`] therefore detects a record that was
//! modified, deleted, inserted or moved anywhere in the file except at the
//! very end, and reports the first line where the chain breaks.
//!
//! What it cannot detect on its own is the removal of the newest records
//! (truncation): what remains is still a well-formed chain. That is
//! detectable only against a head hash kept somewhere the attacker could not
//! also change (a second machine, a ticket, a printout), which is why
//! [`VerifyReport::head`] reports the hash of the last good record: keep it,
//! and a later verification must show that hash somewhere in the chain.
//! Likewise somebody able to write the file can rewrite the whole chain from
//! the point they changed; again only a head hash kept elsewhere catches that.
//!
//! # Writers
//! [`AuditLog::append`] serialises writers inside a process with a mutex and
//! across processes with an exclusive lock on the file, writes each line with
//! one `write_all`, and syncs it to disk before returning, so an
//! acknowledged record survives a crash. A crash in the middle of an append
//! can leave a final line without its newline; that record was never
//! acknowledged, and [`AuditLog::open`] cuts it off.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod log;
mod read;
mod time;

use serde::{Deserialize, Serialize};

pub use error::AuditError;
pub use log::{now_ms, seal, AuditLog, Sealed};
pub use read::{
    export, export_lines, lines, records, records_from_lines, verify, verify_lines, BadRecord,
    Filter, VerifyReport,
};
pub use time::{format_time, parse_time};

/// Records as they come back from a trail, each with its stored hash.
pub type RecordStream<'a> = Box<dyn Iterator<Item = Result<(Record, String), AuditError>> + 'a>;

/// Where a node keeps its audit trail: this file ([`AuditLog`]) or a
/// database table. Every trail stores the same lines, so a chain verifies
/// the same wherever it is kept and can be moved from one to the other.
pub trait Trail: Send + Sync {
    /// Appends `entry` as the next record, durably, and returns it with its hash.
    fn append(&self, entry: Entry) -> Result<(Record, String), AuditError>;
    /// Checks the whole chain (see [`verify`]).
    fn verify(&self) -> Result<VerifyReport, AuditError>;
    /// Every record with its stored hash, in order (see [`records`]).
    fn records(&self) -> Result<RecordStream<'_>, AuditError>;
    /// Writes the records that pass `filter` (see [`export`]).
    fn export(&self, filter: &Filter, out: &mut dyn std::io::Write) -> Result<u64, AuditError>;
    /// Where the trail is, for messages (a path, or a database URL without password).
    fn location(&self) -> String;
}

impl Trail for AuditLog {
    fn append(&self, entry: Entry) -> Result<(Record, String), AuditError> {
        AuditLog::append(self, entry)
    }
    fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify(self.path())
    }
    fn records(&self) -> Result<RecordStream<'_>, AuditError> {
        Ok(Box::new(records(self.path())?))
    }
    fn export(&self, filter: &Filter, out: &mut dyn std::io::Write) -> Result<u64, AuditError> {
        export(self.path(), filter, out)
    }
    fn location(&self) -> String {
        self.path().display().to_string()
    }
}

/// The longest line (excluding its newline) the log writes or reads: 16 MiB.
///
/// [`AuditLog::append`] refuses larger entries, and readers treat a longer
/// line as a bad record instead of trying to hold it in memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// What a caller records; the log adds seq, time and chaining.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The API request this entry belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The access key the request was signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The role the access key acted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The operation, e.g. "SearchFacesByImage" or "DeleteFaces".
    pub operation: String,
    /// "ok", or the exception name the operation was refused or failed with.
    pub outcome: String,
    /// A human-readable explanation, typically of a refusal or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The collection operated on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// How many faces the operation touched or searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_count: Option<u64>,
    /// The similarity threshold a search used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The false match rate that threshold corresponds to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_match_rate: Option<f64>,
    /// False matches to expect from this search (rate times faces searched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_false_matches: Option<f64>,
    /// SHA-256 (hex) of the probe image, so the image need not be kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_sha256: Option<String>,
    /// The candidates a search returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// The case (investigation) the request was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// The stated purpose of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Change details (face ids added or removed, a policy document, a review decision, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// One face a search returned, with its similarity to the probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The matched face.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_id: Option<String>,
    /// The user the face belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The caller's own id for the image the face came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_image_id: Option<String>,
    /// Similarity to the probe, in percent.
    pub similarity: f64,
}

/// A record as stored: an [`Entry`] with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log: 1 for the first record, then +1 per record.
    pub seq: u64,
    /// When the record was appended, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The same instant, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The hash of the previous record; 64 zeros for the first.
    pub prev: String,
    /// What the caller logged.
    #[serde(flatten)]
    pub entry: Entry,
}
