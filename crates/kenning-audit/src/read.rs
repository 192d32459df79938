//! Reading the log: verification, the record stream and exports.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Take, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::io_err;
use crate::{AuditError, Record, MAX_LINE_BYTES};

/// Domain separation, so a record hash can never be confused with the hash
/// of anything else, and the format can change without ambiguity.
const HASH_PREFIX: &[u8] = b"kenning-audit-v1\n";

/// The `prev` of the first record.
pub(crate) const ZERO_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record object's exact bytes.
pub(crate) fn record_hash(record_bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(HASH_PREFIX);
    h.update(record_bytes);
    hex::encode(h.finalize())
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The outcome of [`verify`]: how much of the chain holds, and where it
/// first breaks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Good records before the first bad one (all records if none is bad).
    pub records: u64,
    /// The hash of the last good record; keep it elsewhere to detect a later
    /// truncation or rewrite of the log. `None` when no record is good.
    pub head: Option<String>,
    /// The first line that breaks the chain, if any.
    pub first_bad: Option<BadRecord>,
}

impl VerifyReport {
    /// True when every line of the file is a good record.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// A line of the log that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    /// The 1-based line number.
    pub line: u64,
    /// The seq written in the line, if it could be read.
    pub seq: Option<u64>,
    /// What is wrong, in plain words.
    pub reason: String,
}

/// Which records [`export`] writes. Every condition that is set must hold;
/// text conditions compare whole values, exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Records at or after this instant (ms since the Unix epoch).
    pub from_ms: Option<u64>,
    /// Records strictly before this instant (ms since the Unix epoch).
    pub to_ms: Option<u64>,
    /// Records logged for this case.
    pub case: Option<String>,
    /// Records logged with this stated purpose.
    pub purpose: Option<String>,
    /// Records about this collection.
    pub collection: Option<String>,
    /// Records of requests by this access key (the caller).
    pub access_key: Option<String>,
    /// Records of this operation.
    pub operation: Option<String>,
    /// Records with this outcome: `ok`, an exception name, or `error` for
    /// every outcome but `ok` (refusals and failures).
    pub outcome: Option<String>,
}

impl Filter {
    /// Whether the record passes the filter.
    pub fn matches(&self, record: &Record) -> bool {
        let e = &record.entry;
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.from_ms.is_none_or(|from| record.time_ms >= from)
            && self.to_ms.is_none_or(|to| record.time_ms < to)
            && same(&self.case, e.case.as_deref())
            && same(&self.purpose, e.purpose.as_deref())
            && same(&self.collection, e.collection.as_deref())
            && same(&self.access_key, e.access_key.as_deref())
            && same(&self.operation, Some(&e.operation))
            && self.outcome.as_deref().is_none_or(|o| match o {
                "error" => e.outcome != "ok",
                o => e.outcome == o,
            })
    }
}

/// Checks every line of the log at `path`, streaming it, and reports the
/// first one that is not a well-formed record with a matching hash, the
/// next seq and the previous record's hash as `prev`.
///
/// Tampering is reported in the [`VerifyReport`], not as an error; errors
/// mean the file could not be read. Records appended while this runs are
/// not looked at: the file's length is taken once, under a shared lock, so
/// an append in progress is never mistaken for a torn line.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    verify_from(&mut Lines::open(path)?)
}

/// [`verify`] over the lines of a trail kept elsewhere (a database table),
/// in seq order, each without its newline.
pub fn verify_lines(
    location: &str,
    lines: impl Iterator<Item = Result<String, AuditError>>,
) -> Result<VerifyReport, AuditError> {
    verify_from(&mut Rows::new(location, lines))
}

fn verify_from(lines: &mut dyn LineSource) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    let mut prev_seq = 0u64;
    let mut prev_hash = ZERO_HASH.to_string();
    while let Some(kind) = lines.next_line()? {
        let bad = |seq, reason: String| BadRecord {
            line: lines.line_no(),
            seq,
            reason,
        };
        let decoded = match decode(kind, lines.buf()) {
            Ok(d) => d,
            Err((seq, reason)) => {
                report.first_bad = Some(bad(seq, reason));
                break;
            }
        };
        let seq = decoded.record.seq;
        let found = Some(seq);
        let reason = if record_hash(decoded.raw.get().as_bytes()) != decoded.hash {
            Some("the record's contents do not match its hash (modified)".to_string())
        } else if prev_seq.checked_add(1) != found {
            Some(format!(
                "seq {seq} where {} was expected (a record was removed, inserted or reordered)",
                u128::from(prev_seq) + 1
            ))
        } else if decoded.record.prev != prev_hash {
            Some(if prev_seq == 0 {
                "prev is not 64 zeros, as the first record's must be (records before it were \
                 removed)"
                    .to_string()
            } else {
                "prev does not match the hash of the record before it (a record was removed, \
                 inserted or reordered before this one)"
                    .to_string()
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            report.first_bad = Some(bad(found, reason));
            break;
        }
        report.records += 1;
        prev_seq = seq;
        prev_hash = decoded.hash;
        report.head = Some(prev_hash.clone());
    }
    Ok(report)
}

/// Streams the records of the log at `path` with their stored hashes, in
/// file order.
///
/// This reads; it does not check hashes or the chain (that is [`verify`]'s
/// job). A line that is not a readable record yields an error, after which
/// the iterator ends. Records appended after the call are not included.
pub fn records(
    path: &Path,
) -> Result<impl Iterator<Item = Result<(Record, String), AuditError>>, AuditError> {
    Ok(RecordIter {
        lines: Lines::open(path)?,
        done: false,
    })
}

/// [`records`] over the lines of a trail kept elsewhere, in seq order.
pub fn records_from_lines<'a>(
    location: &str,
    lines: impl Iterator<Item = Result<String, AuditError>> + 'a,
) -> impl Iterator<Item = Result<(Record, String), AuditError>> + 'a {
    RecordIter {
        lines: Rows::new(location, lines),
        done: false,
    }
}

struct RecordIter<L> {
    lines: L,
    done: bool,
}

impl<L: LineSource> Iterator for RecordIter<L> {
    type Item = Result<(Record, String), AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.lines.next_line() {
            Ok(None) => None,
            Ok(Some(kind)) => Some(
                decode(kind, self.lines.buf())
                    .map(|d| (d.record, d.hash))
                    .map_err(|(_, reason)| self.lines.corrupt(reason)),
            ),
            Err(e) => Some(Err(e)),
        };
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

/// The lines of the log at `path` exactly as stored, without their
/// newlines, in file order (to move the trail elsewhere byte for byte). A
/// line that is not a complete record's (interrupted, or longer than any
/// record) yields an error, after which the iterator ends; it does not check
/// hashes or the chain ([`verify`] does).
pub fn lines(path: &Path) -> Result<impl Iterator<Item = Result<String, AuditError>>, AuditError> {
    let mut lines = Lines::open(path)?;
    let mut done = false;
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let item = match lines.next_line() {
            Ok(None) => None,
            Ok(Some(LineKind::Complete)) => Some(
                String::from_utf8(std::mem::take(&mut lines.buf))
                    .map_err(|_| lines.corrupt("the line is not UTF-8".into())),
            ),
            Ok(Some(kind)) => Some(Err(lines.corrupt(match decode(kind, &[]) {
                Err((_, reason)) => reason,
                Ok(_) => String::new(),
            }))),
            Err(e) => Some(Err(e)),
        };
        done = !matches!(item, Some(Ok(_)));
        item
    }))
}

/// Writes the records of the log at `path` that pass `filter` to `out`, one
/// JSON object per line, and returns how many it wrote.
///
/// Each line is the record object exactly as logged with `"hash":"<hex>",`
/// inserted as its first key, so a recipient can check every exported record
/// on its own: delete that key and hash what is left as the log does. Like
/// [`records`], this does not verify the chain; run [`verify`] for that.
pub fn export(path: &Path, filter: &Filter, out: &mut dyn Write) -> Result<u64, AuditError> {
    export_from(&mut Lines::open(path)?, filter, out)
}

/// [`export`] from the lines of a trail kept elsewhere, in seq order.
pub fn export_lines(
    location: &str,
    lines: impl Iterator<Item = Result<String, AuditError>>,
    filter: &Filter,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    export_from(&mut Rows::new(location, lines), filter, out)
}

fn export_from(
    lines: &mut dyn LineSource,
    filter: &Filter,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let mut out = BufWriter::new(out);
    let mut written = 0;
    while let Some(kind) = lines.next_line()? {
        let decoded = decode(kind, lines.buf()).map_err(|(_, reason)| lines.corrupt(reason))?;
        if !filter.matches(&decoded.record) {
            continue;
        }
        // decode() checked the hash is plain hex and the record an object
        // with fields, so splicing after its '{' keeps the line valid JSON.
        let rest = &decoded.raw.get()[1..];
        writeln!(out, "{{\"hash\":\"{}\",{rest}", decoded.hash).map_err(AuditError::Output)?;
        written += 1;
    }
    out.flush().map_err(AuditError::Output)?;
    Ok(written)
}

/// How a line read from the log ended.
pub(crate) enum LineKind {
    /// Ended by '\n'.
    Complete,
    /// The file ended first: an interrupted append.
    Unterminated,
    /// Longer than [`MAX_LINE_BYTES`]; the buffer holds only its beginning.
    TooLong,
}

/// Where records are read from, a line at a time.
trait LineSource {
    /// Reads the next line into the buffer, without its newline.
    fn next_line(&mut self) -> Result<Option<LineKind>, AuditError>;
    /// The line last read.
    fn buf(&self) -> &[u8];
    /// Its 1-based number.
    fn line_no(&self) -> u64;
    /// The error for a line that is not a record.
    fn corrupt(&self, reason: String) -> AuditError;
}

/// Lines kept one per row somewhere else (always complete: a row holds a
/// whole record or none).
struct Rows<I> {
    location: PathBuf,
    rows: I,
    buf: Vec<u8>,
    line_no: u64,
}

impl<I> Rows<I> {
    fn new(location: &str, rows: I) -> Self {
        Rows {
            location: PathBuf::from(location),
            rows,
            buf: Vec::new(),
            line_no: 0,
        }
    }
}

impl<I: Iterator<Item = Result<String, AuditError>>> LineSource for Rows<I> {
    fn next_line(&mut self) -> Result<Option<LineKind>, AuditError> {
        let Some(row) = self.rows.next().transpose()? else {
            return Ok(None);
        };
        self.line_no += 1;
        self.buf = row.into_bytes();
        if self.buf.len() > MAX_LINE_BYTES {
            return Ok(Some(LineKind::TooLong));
        }
        Ok(Some(LineKind::Complete))
    }
    fn buf(&self) -> &[u8] {
        &self.buf
    }
    fn line_no(&self) -> u64 {
        self.line_no
    }
    fn corrupt(&self, reason: String) -> AuditError {
        AuditError::Corrupt {
            path: self.location.clone(),
            reason: format!("record {}: {reason}", self.line_no),
        }
    }
}

/// A line-by-line reader over a snapshot of the log, with bounded memory.
struct Lines {
    path: PathBuf,
    reader: BufReader<Take<File>>,
    buf: Vec<u8>,
    line_no: u64,
}

impl Lines {
    fn open(path: &Path) -> Result<Self, AuditError> {
        let file = File::open(path).map_err(io_err(path))?;
        // Appends hold the exclusive lock while they write and sync, so a
        // length taken under the shared lock ends at a record boundary.
        file.lock_shared().map_err(io_err(path))?;
        let len = file.metadata().map(|m| m.len());
        file.unlock().map_err(io_err(path))?;
        let len = len.map_err(io_err(path))?;
        Ok(Lines {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(256 << 10, file.take(len)),
            buf: Vec::new(),
            line_no: 0,
        })
    }
}

impl LineSource for Lines {
    fn next_line(&mut self) -> Result<Option<LineKind>, AuditError> {
        self.buf.clear();
        let kind = read_line(&mut self.reader, &mut self.buf, MAX_LINE_BYTES)
            .map_err(io_err(&self.path))?;
        if kind.is_some() {
            self.line_no += 1;
        }
        Ok(kind)
    }
    fn buf(&self) -> &[u8] {
        &self.buf
    }
    fn line_no(&self) -> u64 {
        self.line_no
    }
    fn corrupt(&self, reason: String) -> AuditError {
        AuditError::Corrupt {
            path: self.path.clone(),
            reason: format!("line {}: {reason}", self.line_no),
        }
    }
}

/// Reads up to and including the next '\n' (which is not stored), holding at
/// most `max + 1` bytes of the line so a huge line cannot exhaust memory.
fn read_line(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<LineKind>> {
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((!buf.is_empty()).then_some(LineKind::Unterminated));
        }
        let (chunk, newline) = match available.iter().position(|&c| c == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        let room = (max + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len() + usize::from(newline);
        r.consume(used);
        if buf.len() > max {
            return Ok(Some(LineKind::TooLong));
        }
        if newline {
            return Ok(Some(LineKind::Complete));
        }
    }
}

/// One line of the file, with the record's bytes kept exactly as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    hash: String,
    #[serde(borrow)]
    record: &'a RawValue,
}

/// A readable record line. Its hash is well-formed but not yet checked.
pub(crate) struct Decoded<'a> {
    pub(crate) hash: String,
    pub(crate) raw: &'a RawValue,
    pub(crate) record: Record,
}

/// Parses one line; on failure returns the seq if one could be read, and
/// why the line is not a record.
pub(crate) fn decode(kind: LineKind, line: &[u8]) -> Result<Decoded<'_>, (Option<u64>, String)> {
    match kind {
        LineKind::Complete => {}
        LineKind::TooLong => {
            return Err((
                None,
                format!("the line is longer than {MAX_LINE_BYTES} bytes, more than any record"),
            ))
        }
        LineKind::Unterminated => {
            return Err((
                None,
                "the last line has no newline: an append was interrupted before it finished and \
                 was never acknowledged (opening the log for writing removes it)"
                    .to_string(),
            ))
        }
    }
    let text = std::str::from_utf8(line)
        .map_err(|e| (None, format!("not a JSON record: not UTF-8 ({e})")))?;
    let parsed: Line<'_> =
        serde_json::from_str(text).map_err(|e| (None, format!("not a JSON record: {e}")))?;
    let raw = parsed.record;
    if !raw.get().starts_with('{') {
        return Err((
            None,
            "not a JSON record: \"record\" is not an object".to_string(),
        ));
    }
    let record: Record = serde_json::from_str(raw.get()).map_err(|e| {
        #[derive(Deserialize)]
        struct SeqOnly {
            seq: u64,
        }
        let seq = serde_json::from_str::<SeqOnly>(raw.get())
            .ok()
            .map(|s| s.seq);
        (
            seq,
            format!("not a JSON record: the record object is malformed: {e}"),
        )
    })?;
    if !is_hash(&parsed.hash) {
        return Err((
            Some(record.seq),
            "the hash is not 64 lowercase hex digits (modified)".to_string(),
        ));
    }
    Ok(Decoded {
        hash: parsed.hash,
        raw,
        record,
    })
}
