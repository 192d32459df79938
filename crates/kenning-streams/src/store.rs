//! Durable stream processor definitions: what Create was given, who created
//! and started each processor, and whether it should be running, so
//! processors survive a restart (or a crash) in a defined state.

use std::collections::BTreeMap;
use std::path::Path;

use kenning_video::jobs::Starter;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StreamError};

/// The store's file, relative to the data directory.
pub const PROCESSORS_FILE: &str = "streams/processors.redb";

const PROCESSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("processors");

/// A processor's status, as DescribeStreamProcessor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Created or stopped: not running.
    Stopped,
    /// Started: connecting to its source.
    Starting,
    /// Analysing frames.
    Running,
    /// Not running because of an error, or its source is unreachable and it
    /// is reconnecting (StatusMessage says which).
    Failed,
    /// Being stopped.
    Stopping,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "STOPPED",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Failed => "FAILED",
            Self::Stopping => "STOPPING",
        }
    }

    /// Every status, for metrics.
    pub const ALL: [Status; 5] = [
        Self::Stopped,
        Self::Starting,
        Self::Running,
        Self::Failed,
        Self::Stopping,
    ];
}

/// A stream processor as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessorDef {
    /// Name (unique).
    pub name: String,
    /// StreamProcessorArn.
    pub arn: String,
    /// Input.KinesisVideoStream.Arn as given.
    pub input_arn: String,
    /// The configured source it names.
    pub source: String,
    /// Output.KinesisDataStream.Arn as given.
    pub output_arn: String,
    /// The configured output it names.
    pub output: String,
    /// Settings.FaceSearch.CollectionId.
    pub collection_id: String,
    /// Settings.FaceSearch.FaceMatchThreshold as applied (80 or more).
    pub face_match_threshold: f64,
    /// RoleArn (checked for form only).
    pub role_arn: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// DataSharingPreference.OptIn (always false: nothing is shared).
    pub data_sharing_opt_in: Option<bool>,
    /// Milliseconds since the epoch.
    pub created_ms: u64,
    /// Milliseconds since the epoch.
    pub updated_ms: u64,
    /// STOPPED, RUNNING (it should be running: it is resumed after a
    /// restart) or FAILED.
    pub status: Status,
    /// Why it failed or stopped by itself.
    pub status_message: Option<String>,
    /// Who created it; its case reference is the processor's.
    pub created_by: Starter,
    /// Who started it last.
    pub started_by: Option<Starter>,
    /// The SessionId of the last start.
    pub session_id: Option<String>,
}

impl ProcessorDef {
    /// The case reference every match of the processor is audited under.
    pub fn case(&self) -> Option<&str> {
        self.created_by.case.as_deref()
    }
}

/// Processor definitions of one data directory, in a redb file.
pub struct ProcessorStore {
    db: Database,
}

impl ProcessorStore {
    /// Opens (or creates) the store of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(PROCESSORS_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StreamError::Store(e.to_string()))?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StreamError::Store(format!(
                "{} is in use by another process (a running kenning serve?)",
                path.display()
            )),
            other => StreamError::from(other),
        })?;
        let w = db.begin_write()?;
        w.open_table(PROCESSORS)?;
        w.commit()?;
        Ok(Self { db })
    }

    /// Every processor, by name.
    pub fn all(&self) -> Result<Vec<ProcessorDef>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PROCESSORS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Processor `name`.
    pub fn get(&self, name: &str) -> Result<Option<ProcessorDef>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PROCESSORS)?;
        let v = t.get(name)?;
        v.map(|v| decode(v.value())).transpose()
    }

    /// Writes `def` durably (redb commits are synced before they return).
    pub fn put(&self, def: &ProcessorDef) -> Result<()> {
        let bytes = serde_json::to_vec(def).map_err(|e| StreamError::Store(e.to_string()))?;
        let w = self.db.begin_write()?;
        w.open_table(PROCESSORS)?
            .insert(def.name.as_str(), bytes.as_slice())?;
        w.commit()?;
        Ok(())
    }

    /// Removes processor `name`.
    pub fn delete(&self, name: &str) -> Result<()> {
        let w = self.db.begin_write()?;
        w.open_table(PROCESSORS)?.remove(name)?;
        w.commit()?;
        Ok(())
    }
}

fn decode(b: &[u8]) -> Result<ProcessorDef> {
    serde_json::from_slice(b).map_err(|e| StreamError::Store(format!("a stored processor: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let def = ProcessorDef {
            name: "door".into(),
            arn: "arn:aws:rekognition:local:000000000000:streamprocessor/door".into(),
            input_arn: "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam/1".into(),
            source: "cam".into(),
            output_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/out".into(),
            output: "out".into(),
            collection_id: "staff".into(),
            face_match_threshold: 80.0,
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            tags: BTreeMap::new(),
            data_sharing_opt_in: None,
            created_ms: 1,
            updated_ms: 1,
            status: Status::Running,
            status_message: None,
            created_by: Starter {
                access_key: "AK".into(),
                grant: kenning_accountability::Grant::admin(),
                request_id: "r".into(),
                case: Some("CASE-1".into()),
                purpose: None,
            },
            started_by: None,
            session_id: None,
        };
        {
            let s = ProcessorStore::open(dir.path()).unwrap();
            s.put(&def).unwrap();
            assert!(matches!(
                ProcessorStore::open(dir.path()),
                Err(StreamError::Store(m)) if m.contains("in use")
            ));
        }
        let s = ProcessorStore::open(dir.path()).unwrap();
        assert_eq!(s.get("door").unwrap(), Some(def.clone()));
        assert_eq!(s.all().unwrap(), vec![def]);
        s.delete("door").unwrap();
        assert!(s.get("door").unwrap().is_none());
    }
}
