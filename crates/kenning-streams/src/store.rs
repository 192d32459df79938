//! Durable stream processor definitions: what Create was given, who created
//! and started each processor, and whether it should be running, so
//! processors survive a restart (or a crash) in a defined state.
//!
//! [`ProcessorStore`] is the interface; [`RedbProcessorStore`] keeps them in
//! the data directory, and the PostgreSQL backend in the database shared by
//! several nodes, where a running processor is held by one node at a time
//! under a lease ([`ProcessorStore::claim`]) and taken over by another when
//! its node dies. [`conformance`] is the behaviour both must have.

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

/// A running processor's counters as its node last saved them (with its
/// lease renewal), so every node can report them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CounterSnapshot {
    /// Frames the source delivered (after sampling).
    pub frames_in: u64,
    /// Frames analysed.
    pub frames_analysed: u64,
    /// Frames skipped because analysis was behind.
    pub frames_skipped: u64,
    /// Faces detected.
    pub faces: u64,
    /// New matches of a track to a collection face.
    pub matches: u64,
    /// Reconnection attempts.
    pub reconnects: u64,
    /// Records sent to the output.
    pub records: u64,
    /// How far the last analysed frame was behind live, in microseconds.
    pub lag_us: u64,
    /// The node that ran the processor.
    pub node: String,
    /// When they were read there, ms since the epoch.
    pub at_ms: u64,
    /// The processor's status on that node then (FAILED while it
    /// reconnects, say): what other nodes describe while the session it
    /// belongs to runs there. Not part of the wire's `Counters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The message of that status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// The SessionId of the run they were read in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl CounterSnapshot {
    /// The fields that are the wire's `Counters` (the status, its message
    /// and the session are reported as the processor's own).
    pub const NOT_COUNTERS: [&'static str; 3] = ["Status", "StatusMessage", "SessionId"];

    /// The status saved with these counters, when they were read in session
    /// `session` of the processor.
    pub fn status_of_session(&self, session: Option<&str>) -> Option<(Status, Option<String>)> {
        let same = session.is_some() && self.session_id.as_deref() == session;
        same.then_some(self.status)
            .flatten()
            .map(|s| (s, self.status_message.clone()))
    }
}

/// Where processor definitions live.
pub trait ProcessorStore: Send + Sync {
    /// Every processor.
    fn all(&self) -> Result<Vec<ProcessorDef>>;
    /// Processor `name`.
    fn get(&self, name: &str) -> Result<Option<ProcessorDef>>;
    /// Stores new processor `def` if [`check_new`] allows it next to the
    /// stored ones (name, source and output free, fewer than `max`
    /// processors), checked and written as one step, so that two nodes
    /// creating at once cannot both pass: its error otherwise.
    fn insert(&self, def: &ProcessorDef, max: usize) -> Result<()>;
    /// Writes `def` durably, replacing the stored one.
    fn put(&self, def: &ProcessorDef) -> Result<()>;
    /// Removes processor `name`.
    fn delete(&self, name: &str) -> Result<()>;

    /// Whether several nodes share this store. Then a node runs a processor
    /// only while it holds its lease ([`ProcessorStore::claim`]), renewing
    /// it, and takes over RUNNING processors whose node stopped renewing.
    fn shared(&self) -> bool {
        false
    }
    /// Makes `owner` the holder of processor `name` until `until_ms` if
    /// nobody holds it, `owner` does already, or the holder's lease ended
    /// before `now_ms`; whether `owner` holds it now. A store of one node
    /// gives every processor to whoever asks.
    fn claim(&self, _name: &str, _owner: &str, _now_ms: u64, _until_ms: u64) -> Result<bool> {
        Ok(true)
    }
    /// Gives up the lease on `name` if `owner` holds it, or whoever holds
    /// it when `owner` is `None` (the processor was stopped elsewhere).
    fn release(&self, _name: &str, _owner: Option<&str>) -> Result<()> {
        Ok(())
    }
    /// Saves the counters of processor `name` if its node `counters.node`
    /// holds it (a shared store; a store of one node keeps none, its
    /// counters being those of the processor running here).
    fn save_counters(&self, _name: &str, _counters: &CounterSnapshot) -> Result<()> {
        Ok(())
    }
    /// The counters last saved for processor `name`.
    fn counters(&self, _name: &str) -> Result<Option<CounterSnapshot>> {
        Ok(None)
    }
}

/// Processor definitions of one data directory, in a redb file.
pub struct RedbProcessorStore {
    db: Database,
}

impl RedbProcessorStore {
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
}

impl ProcessorStore for RedbProcessorStore {
    fn all(&self) -> Result<Vec<ProcessorDef>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PROCESSORS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Option<ProcessorDef>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PROCESSORS)?;
        let v = t.get(name)?;
        v.map(|v| decode(v.value())).transpose()
    }

    // redb has one write transaction at a time: the check holds until the
    // commit.
    fn insert(&self, def: &ProcessorDef, max: usize) -> Result<()> {
        let bytes = encode(def)?;
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(PROCESSORS)?;
            let mut stored = Vec::new();
            for row in t.iter()? {
                stored.push(decode(row?.1.value())?);
            }
            check_new(&stored, def, max)?;
            t.insert(def.name.as_str(), bytes.as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    // redb commits are synced before they return.
    fn put(&self, def: &ProcessorDef) -> Result<()> {
        let bytes = encode(def)?;
        let w = self.db.begin_write()?;
        w.open_table(PROCESSORS)?
            .insert(def.name.as_str(), bytes.as_slice())?;
        w.commit()?;
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        let w = self.db.begin_write()?;
        w.open_table(PROCESSORS)?.remove(name)?;
        w.commit()?;
        Ok(())
    }
}

/// Whether new processor `def` may be stored next to `stored`: its name,
/// its source and its output each used by no stored processor (one
/// processor per input and per output, as Rekognition has), and fewer than
/// `max` stored (`kenning serve --stream-max-processors`).
pub fn check_new(stored: &[ProcessorDef], def: &ProcessorDef, max: usize) -> Result<()> {
    for d in stored {
        if d.name == def.name {
            return Err(StreamError::InUse(format!(
                "a stream processor named {:?} already exists",
                def.name
            )));
        }
    }
    if stored.len() >= max {
        return Err(StreamError::LimitExceeded(format!(
            "this service allows {max} stream processors (kenning serve --stream-max-processors)"
        )));
    }
    for d in stored {
        if d.source == def.source {
            return Err(StreamError::InUse(format!(
                "stream processor {:?} already reads source {:?}; one processor per input",
                d.name, def.source
            )));
        }
        if d.output == def.output {
            return Err(StreamError::InUse(format!(
                "stream processor {:?} already writes to output {:?}; one processor per output",
                d.name, def.output
            )));
        }
    }
    Ok(())
}

/// A definition as both backends store it (JSON).
pub fn encode(def: &ProcessorDef) -> Result<Vec<u8>> {
    serde_json::to_vec(def).map_err(|e| StreamError::Store(e.to_string()))
}

/// A definition [`encode`] stored.
pub fn decode(b: &[u8]) -> Result<ProcessorDef> {
    serde_json::from_slice(b).map_err(|e| StreamError::Store(format!("a stored processor: {e}")))
}

/// A processor for store tests, named `name`, reading source `name`.
#[doc(hidden)]
pub fn sample_processor(name: &str) -> ProcessorDef {
    ProcessorDef {
        name: name.into(),
        arn: crate::service::processor_arn(name),
        input_arn: format!("arn:aws:kinesisvideo:us-east-1:123456789012:stream/{name}/1"),
        source: name.into(),
        output_arn: format!("arn:aws:kinesis:us-east-1:123456789012:stream/{name}"),
        output: name.into(),
        collection_id: "staff".into(),
        face_match_threshold: 80.0,
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        tags: BTreeMap::from([("site".to_owned(), "north door".to_owned())]),
        data_sharing_opt_in: None,
        created_ms: 1,
        updated_ms: 1,
        status: Status::Stopped,
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
    }
}

/// The behaviour every [`ProcessorStore`] must have, for each backend's
/// tests: definitions kept whole, names unique, and (for a shared store)
/// leases.
#[doc(hidden)]
pub fn conformance(s: &dyn ProcessorStore) {
    let door = sample_processor("door");
    assert!(s.all().unwrap().is_empty());
    s.insert(&door, 2).unwrap();
    let mut other = sample_processor("door");
    other.collection_id = "visitors".into();
    let in_use = |r: Result<()>, what: &str| {
        assert!(
            matches!(&r, Err(StreamError::InUse(m)) if m.contains(what)),
            "{what}: {r:?}"
        );
    };
    in_use(s.insert(&other, 2), "named \"door\"");
    // One processor per source and per output.
    other.name = "porch".into();
    in_use(s.insert(&other, 2), "source \"door\"");
    other.source = "porch".into();
    in_use(s.insert(&other, 2), "output \"door\"");
    // And no more than the limit.
    other.output = "porch".into();
    assert!(matches!(
        s.insert(&other, 1),
        Err(StreamError::LimitExceeded(m)) if m.contains("allows 1 ")
    ));
    s.insert(&other, 2).unwrap();
    s.delete("porch").unwrap();
    assert_eq!(s.get("door").unwrap(), Some(door.clone()));
    let mut running = door.clone();
    running.status = Status::Running;
    running.session_id = Some("s1".into());
    running.status_message = Some("resumed".into());
    running.updated_ms = 2;
    s.put(&running).unwrap();
    let gate = sample_processor("gate");
    s.put(&gate).unwrap();
    let mut all = s.all().unwrap();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(all, vec![running.clone(), gate.clone()]);
    if s.shared() {
        // Node A holds the processor; B cannot take it while A's lease lasts...
        assert!(s.claim("door", "A", 1_000, 2_000).unwrap());
        assert!(!s.claim("door", "B", 1_500, 2_500).unwrap());
        assert!(s.claim("door", "A", 1_900, 3_000).unwrap());
        assert!(!s.claim("door", "B", 2_500, 3_500).unwrap());
        // ...each processor has its own lease...
        assert!(s.claim("gate", "B", 2_500, 3_500).unwrap());
        // ...B takes it over once A's lease ended (A died)...
        assert!(s.claim("door", "B", 3_100, 4_100).unwrap());
        assert!(!s.claim("door", "A", 3_200, 4_200).unwrap());
        // ...A giving up what it no longer holds changes nothing...
        s.release("door", Some("A")).unwrap();
        assert!(!s.claim("door", "A", 3_300, 4_300).unwrap());
        // ...B giving it up lets A take it at once...
        s.release("door", Some("B")).unwrap();
        assert!(s.claim("door", "A", 3_400, 4_400).unwrap());
        // ...and a stop on any node frees it from whoever holds it.
        s.release("door", None).unwrap();
        assert!(s.claim("door", "B", 3_500, 4_500).unwrap());
        // Writing the definition leaves the lease alone.
        s.put(&running).unwrap();
        assert!(!s.claim("door", "A", 3_600, 4_600).unwrap());
        // The holder's counters are kept for every node; another node's
        // (one that lost the lease) are not, nor does a definition's write
        // or a release drop them.
        assert_eq!(s.counters("door").unwrap(), None);
        let mut counted = CounterSnapshot {
            frames_in: 10,
            frames_analysed: 9,
            frames_skipped: 1,
            faces: 4,
            matches: 2,
            reconnects: 1,
            records: 3,
            lag_us: 1_500,
            node: "B".into(),
            at_ms: 3_600,
            status: Some(Status::Failed),
            status_message: Some("source door: refused; reconnecting".into()),
            session_id: Some("s1".into()),
        };
        s.save_counters("door", &counted).unwrap();
        let stale = CounterSnapshot {
            node: "A".into(),
            frames_in: 99,
            ..counted.clone()
        };
        s.save_counters("door", &stale).unwrap();
        assert_eq!(s.counters("door").unwrap(), Some(counted.clone()));
        counted.frames_analysed = 20;
        counted.at_ms = 3_700;
        s.save_counters("door", &counted).unwrap();
        s.put(&running).unwrap();
        s.release("door", Some("B")).unwrap();
        assert_eq!(s.counters("door").unwrap(), Some(counted));
        assert_eq!(s.counters("gate").unwrap(), None);
    } else {
        assert!(s.claim("door", "A", 1_000, 2_000).unwrap());
        assert!(s.claim("door", "B", 1_500, 2_500).unwrap());
        s.release("door", Some("B")).unwrap();
        let counted = CounterSnapshot {
            node: "B".into(),
            ..CounterSnapshot::default()
        };
        s.save_counters("door", &counted).unwrap();
        assert_eq!(s.counters("door").unwrap(), None);
    }
    s.delete("door").unwrap();
    assert!(s.get("door").unwrap().is_none());
    assert_eq!(s.all().unwrap(), vec![gate]);
    // A name (and its source and output) deleted can be taken again, with no
    // lease or counters left over.
    s.insert(&door, 2).unwrap();
    assert_eq!(s.counters("door").unwrap(), None);
    assert!(s.claim("door", "A", 3_700, 4_700).unwrap());
    s.delete("door").unwrap();
    s.delete("gate").unwrap();
    assert!(s.all().unwrap().is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_of_the_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        conformance(&RedbProcessorStore::open(dir.path()).unwrap());
    }

    #[test]
    fn definitions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut def = sample_processor("door");
        def.status = Status::Running;
        {
            let s = RedbProcessorStore::open(dir.path()).unwrap();
            s.put(&def).unwrap();
            assert!(matches!(
                RedbProcessorStore::open(dir.path()),
                Err(StreamError::Store(m)) if m.contains("in use")
            ));
        }
        let s = RedbProcessorStore::open(dir.path()).unwrap();
        assert_eq!(s.get("door").unwrap(), Some(def.clone()));
        assert_eq!(s.all().unwrap(), vec![def]);
        s.delete("door").unwrap();
        assert!(s.get("door").unwrap().is_none());
    }
}
