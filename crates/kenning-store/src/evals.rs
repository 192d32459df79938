//! Published evaluation reports (`kenning eval fairness --json` output) that
//! the console's accuracy page and the accountability report show.
//!
//! [`EvalReportStore`] is the interface. [`EvalDir`] keeps them as files in
//! the data directory's `eval` folder, where admins used to drop them, so an
//! existing deployment keeps its reports; the PostgreSQL backend keeps them
//! in the database every node reads, so all nodes show the same reports.
//! [`conformance`] is the behaviour both must have. The store keeps the text
//! as given: checking that it is a report is the caller's job.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

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
    /// Stores `json` as report `name` durably, replacing any of that name;
    /// whether one was replaced.
    fn put(&self, name: &str, json: &str, now_ms: u64) -> Result<bool>;
    /// Removes report `name`; whether there was one.
    fn delete(&self, name: &str) -> Result<bool>;
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

/// Reports as `NAME.json` files in a data directory's `eval` folder.
pub struct EvalDir {
    dir: PathBuf,
}

impl EvalDir {
    /// The reports of data directory `data_dir` (the folder is created on
    /// the first publication).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join(EVAL_DIR),
        }
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

    // Written to a temporary file, synced and renamed over the old one, and
    // the folder synced: a crash leaves the old report or the new one.
    fn put(&self, name: &str, json: &str, _now_ms: u64) -> Result<bool> {
        use std::io::Write as _;
        validate_report(name, json)?;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.file(name);
        let replaced = path.exists();
        let tmp = self.dir.join(format!(".{name}.json.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        Ok(replaced)
    }

    fn delete(&self, name: &str) -> Result<bool> {
        if !REPORT_NAME.accepts(name) {
            return Ok(false);
        }
        match std::fs::remove_file(self.file(name)) {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
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

/// The behaviour every [`EvalReportStore`] must have, for each backend's
/// tests: reports kept whole under their name, replaced and deleted by
/// name, listed by name, bad names and oversized reports refused.
#[doc(hidden)]
pub fn conformance(s: &dyn EvalReportStore) {
    assert!(s.list().unwrap().is_empty());
    assert_eq!(s.get("site-a").unwrap(), None);
    let a = r#"{"fairness": {"scoring": "a"}}"#;
    let b = "{\"fairness\": {\"scoring\": \"b \u{e9}\"}}";
    assert!(!s.put("site-b", b, 2_000).unwrap());
    assert!(!s.put("site-a", a, 1_000).unwrap());
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
    assert!(s.put("site-a", b, 3_000).unwrap());
    assert_eq!(s.get("site-a").unwrap().unwrap().json, b);
    assert_eq!(s.list().unwrap().len(), 2);
    // Names are checked; a refused report changes nothing.
    for bad in ["", "a/b", "../x", &"n".repeat(129), "with space"] {
        assert!(
            matches!(s.put(bad, a, 4_000), Err(StoreError::InvalidParameter(_))),
            "{bad:?}"
        );
    }
    let big = format!("{{\"x\": \"{}\"}}", "y".repeat(MAX_REPORT_BYTES));
    assert!(matches!(
        s.put("big", &big, 4_000),
        Err(StoreError::InvalidParameter(m)) if m.contains("bytes")
    ));
    assert_eq!(s.get("big").unwrap(), None);
    assert!(s.delete("site-a").unwrap());
    assert!(!s.delete("site-a").unwrap());
    assert!(!s.delete("a/b").unwrap());
    assert_eq!(s.get("site-a").unwrap(), None);
    assert_eq!(names(s), vec![("site-b".into(), b.into())]);
    assert!(s.delete("site-b").unwrap());
    assert!(s.list().unwrap().is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_of_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        conformance(&EvalDir::new(dir.path()));
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
