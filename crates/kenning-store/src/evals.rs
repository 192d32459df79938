//! Published evaluation reports (`kenning eval fairness --json` output) that
//! the console's accuracy page and the accountability report show.
//!
//! [`EvalReportStore`] is the interface. [`EvalDir`] keeps them as files in
//! the data directory's `eval` folder, where admins used to drop them, so an
//! existing deployment keeps its reports; the PostgreSQL backend keeps them
//! in the database every node reads, so all nodes show the same reports.
//! [`conformance`] is the behaviour both must have. The store keeps the text
//! as given: checking that it is a report is the caller's job.
//!
//! A change is written with its audit record, which the caller gives: the
//! database commits both in one transaction; the data directory appends the
//! record to its trail file just before the change takes effect (as the
//! embedded collection store and key vault do), so no change is ever
//! unrecorded, and a crash between the two leaves a record of a change that
//! did not happen.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use kenning_audit::{AuditLog, Entry};

use crate::error::{Result, StoreError};
use crate::types::IdRule;

/// The folder of reports, relative to the data directory.
pub const EVAL_DIR: &str = "eval";

/// The largest report accepted, in bytes (the shipped ones are under 40 KB).
pub const MAX_REPORT_BYTES: usize = 1 << 20;

/// A report's name: what it is published, replaced and deleted under.
pub const REPORT_NAME: IdRule = IdRule {
    max: 128,
    extra: "",
};

/// A report as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// Its name.
    pub name: String,
    /// The JSON text as published.
    pub json: String,
    /// When it was last published, ms since the epoch.
    pub updated_ms: u64,
}

/// Where published evaluation reports live.
pub trait EvalReportStore: Send + Sync {
    /// Every report, by name.
    fn list(&self) -> Result<Vec<StoredReport>>;
    /// Report `name`.
    fn get(&self, name: &str) -> Result<Option<StoredReport>>;
    /// Stores `json` as report `name` durably, replacing any of that name,
    /// with the audit record `record` gives for it (told whether one was
    /// replaced); whether one was replaced. An audit failure is
    /// [`StoreError::Hook`], and nothing is stored.
    fn put(
        &self,
        name: &str,
        json: &str,
        now_ms: u64,
        record: &dyn Fn(bool) -> Entry,
    ) -> Result<bool>;
    /// Removes report `name` with the audit record `record`; whether there
    /// was one (when there was none, nothing is recorded).
    fn delete(&self, name: &str, record: Entry) -> Result<bool>;
}

/// Checks a name given for a new report and its size.
pub fn validate_report(name: &str, json: &str) -> Result<()> {
    if !REPORT_NAME.accepts(name) {
        return Err(StoreError::InvalidParameter(format!(
            "invalid report name {name:?}: must match {} and be 1-{} characters",
            REPORT_NAME.pattern(),
            REPORT_NAME.max
        )));
    }
    if json.len() > MAX_REPORT_BYTES {
        return Err(StoreError::InvalidParameter(format!(
            "the report is {} bytes; at most {MAX_REPORT_BYTES} are accepted",
            json.len()
        )));
    }
    Ok(())
}

/// Reports as `NAME.json` files in a data directory's `eval` folder; changes
/// are recorded in the data directory's audit trail.
pub struct EvalDir {
    dir: PathBuf,
    audit: PathBuf,
    /// One change at a time, so "replaced" and the record match the files.
    changing: Mutex<()>,
}

impl EvalDir {
    /// The reports of data directory `data_dir` (the folder is created on
    /// the first publication).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join(EVAL_DIR),
            audit: data_dir.join(crate::AUDIT_FILE),
            changing: Mutex::new(()),
        }
    }

    // Another handle on the trail file the store appends to: appends lock
    // the file and re-read its tail when it grew, so the chain stays one.
    fn record(&self, entry: Entry) -> Result<()> {
        AuditLog::open(&self.audit)
            .and_then(|log| log.append(entry))
            .map(|_| ())
            .map_err(|e| StoreError::Hook(e.to_string()))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn read(&self, name: &str, path: &Path) -> Result<Option<StoredReport>> {
        let json = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let updated_ms = std::fs::metadata(path)?
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Some(StoredReport {
            name: name.to_owned(),
            json,
            updated_ms,
        }))
    }
}

impl EvalReportStore for EvalDir {
    // Files an admin dropped in by hand are listed under their stem, whatever
    // it is, so none is hidden.
    fn list(&self) -> Result<Vec<StoredReport>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for e in entries {
            let path = e?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if let Some(r) = self.read(name, &path)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Option<StoredReport>> {
        if !REPORT_NAME.accepts(name) {
            return Ok(None);
        }
        self.read(name, &self.file(name))
    }

    // Written to a temporary file and synced, then recorded, then renamed
    // over the old one and the folder synced: a crash leaves the old report
    // or the new one, and the record is written before the new one shows
    // (a failure before it leaves only the temporary file, overwritten by
    // the next publication of the name).
    fn put(
        &self,
        name: &str,
        json: &str,
        _now_ms: u64,
        record: &dyn Fn(bool) -> Entry,
    ) -> Result<bool> {
        use std::io::Write as _;
        validate_report(name, json)?;
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.dir)?;
        let path = self.file(name);
        let replaced = path.exists();
        let tmp = self.dir.join(format!(".{name}.json.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()?;
        }
        self.record(record(replaced))?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        Ok(replaced)
    }

    fn delete(&self, name: &str, record: Entry) -> Result<bool> {
        if !REPORT_NAME.accepts(name) {
            return Ok(false);
        }
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.file(name);
        if !path.exists() {
            return Ok(false);
        }
        self.record(record)?;
        std::fs::remove_file(path)?;
        sync_dir(&self.dir)?;
        Ok(true)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// The audit record a test gives for a change of report `name`.
#[doc(hidden)]
pub fn test_record(op: &str, name: &str, replaced: Option<bool>) -> Entry {
    Entry {
        operation: op.into(),
        outcome: "ok".into(),
        details: Some(serde_json::json!({ "Name": name, "Replaced": replaced })),
        ..Entry::default()
    }
}

/// The behaviour every [`EvalReportStore`] must have, for each backend's
/// tests: reports kept whole under their name, replaced and deleted by
/// name, listed by name, bad names and oversized reports refused, and each
/// change (and only a change) recorded once in `trail`, the backend's own.
#[doc(hidden)]
pub fn conformance(s: &dyn EvalReportStore, trail: &dyn kenning_audit::Trail) {
    let put = |name: &str, json: &str, ms: u64| {
        s.put(name, json, ms, &|replaced| {
            test_record("PutEvalReport", name, Some(replaced))
        })
    };
    let delete = |name: &str| s.delete(name, test_record("DeleteEvalReport", name, None));
    // The (operation, details) of every record so far, after checking the
    // chain verifies.
    let recorded = || -> Vec<(String, serde_json::Value)> {
        let report = trail.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        trail
            .records()
            .unwrap()
            .map(|r| {
                let (r, _) = r.unwrap();
                (r.entry.operation, r.entry.details.unwrap_or_default())
            })
            .collect()
    };
    let before = recorded().len();
    let since = |n: usize| recorded()[before + n..].to_vec();
    let rec = |op: &str, name: &str, replaced: Option<bool>| {
        (
            op.to_owned(),
            serde_json::json!({ "Name": name, "Replaced": replaced }),
        )
    };
    assert!(s.list().unwrap().is_empty());
    assert_eq!(s.get("site-a").unwrap(), None);
    let a = r#"{"fairness": {"scoring": "a"}}"#;
    let b = "{\"fairness\": {\"scoring\": \"b \u{e9}\"}}";
    assert!(!put("site-b", b, 2_000).unwrap());
    assert!(!put("site-a", a, 1_000).unwrap());
    let got = s.get("site-a").unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.json.as_str()), ("site-a", a));
    let names = |s: &dyn EvalReportStore| {
        s.list()
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.json))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(s),
        vec![("site-a".into(), a.into()), ("site-b".into(), b.into())]
    );
    // Publishing under a taken name replaces the report.
    assert!(put("site-a", b, 3_000).unwrap());
    assert_eq!(s.get("site-a").unwrap().unwrap().json, b);
    assert_eq!(s.list().unwrap().len(), 2);
    assert_eq!(
        since(0),
        vec![
            rec("PutEvalReport", "site-b", Some(false)),
            rec("PutEvalReport", "site-a", Some(false)),
            rec("PutEvalReport", "site-a", Some(true)),
        ]
    );
    // Names are checked; a refused report changes nothing and is not
    // recorded here (the caller records refusals).
    for bad in ["", "a/b", "../x", &"n".repeat(129), "with space"] {
        assert!(
            matches!(put(bad, a, 4_000), Err(StoreError::InvalidParameter(_))),
            "{bad:?}"
        );
    }
    let big = format!("{{\"x\": \"{}\"}}", "y".repeat(MAX_REPORT_BYTES));
    assert!(matches!(
        put("big", &big, 4_000),
        Err(StoreError::InvalidParameter(m)) if m.contains("bytes")
    ));
    assert_eq!(s.get("big").unwrap(), None);
    assert!(delete("site-a").unwrap());
    assert!(!delete("site-a").unwrap());
    assert!(!delete("a/b").unwrap());
    assert_eq!(s.get("site-a").unwrap(), None);
    assert_eq!(names(s), vec![("site-b".into(), b.into())]);
    assert!(delete("site-b").unwrap());
    assert!(s.list().unwrap().is_empty());
    assert_eq!(
        since(3),
        vec![
            rec("DeleteEvalReport", "site-a", None),
            rec("DeleteEvalReport", "site-b", None),
        ]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_of_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = EvalDir::new(dir.path());
        conformance(
            &s,
            &AuditLog::open(&dir.path().join(crate::AUDIT_FILE)).unwrap(),
        );
    }

    /// A publication whose audit record cannot be written is not made: the
    /// report stays as it was.
    #[test]
    fn nothing_is_published_unrecorded() {
        let dir = tempfile::tempdir().unwrap();
        let s = EvalDir::new(dir.path());
        let record = |r: bool| test_record("PutEvalReport", "site", Some(r));
        assert!(!s.put("site", "{}", 1, &record).unwrap());
        // The trail's path is taken by a directory: appends fail.
        let trail = dir.path().join(crate::AUDIT_FILE);
        std::fs::remove_file(&trail).unwrap();
        std::fs::create_dir(&trail).unwrap();
        assert!(matches!(
            s.put("site", "{\"new\": 1}", 2, &record),
            Err(StoreError::Hook(_))
        ));
        assert_eq!(s.get("site").unwrap().unwrap().json, "{}");
        assert!(matches!(
            s.delete("site", test_record("DeleteEvalReport", "site", None)),
            Err(StoreError::Hook(_))
        ));
        assert_eq!(s.list().unwrap().len(), 1);
    }

    /// Files admins dropped into `DATA/eval` before reports were published
    /// are still listed, whatever their names.
    #[test]
    fn files_dropped_in_by_hand_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(EVAL_DIR)).unwrap();
        std::fs::write(dir.path().join("eval/north door.json"), "{}").unwrap();
        std::fs::write(dir.path().join("eval/notes.txt"), "x").unwrap();
        let s = EvalDir::new(dir.path());
        let all = s.list().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].name.as_str(), all[0].json.as_str()),
            ("north door", "{}")
        );
        assert!(all[0].updated_ms > 0);
    }
}
