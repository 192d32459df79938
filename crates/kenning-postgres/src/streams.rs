//! Stream processor definitions in the database, with a lease per running
//! processor: the node that holds it runs it and renews the lease; when a
//! node dies, its leases run out and another node takes its processors over.

use std::sync::Arc;

use kenning_streams::store::{
    check_new, decode, encode, CounterSnapshot, ProcessorDef, ProcessorStore,
};
use kenning_streams::{Result, StreamError};
use tokio_postgres::error::SqlState;

use crate::db::{claim_lease, Db, Res};

/// An arbitrary but fixed key for the advisory lock under which creations
/// are checked and written ("kenproc" in ASCII), so the count each node
/// checks its limit against is the count it inserts into.
const CREATE_LOCK: i64 = 0x006b_656e_7072_6f63;

/// The stream processors of one database.
pub struct PgProcessors {
    db: Arc<Db>,
}

impl PgProcessors {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Res<T>>) -> Result<T> {
        self.db
            .run(f)
            .map_err(|e| StreamError::Store(e.to_string()))
    }
}

/// A stored definition, or the error that says which one is unreadable.
fn read(bytes: &[u8]) -> Res<ProcessorDef> {
    decode(bytes).map_err(|e| kenning_store::StoreError::Corrupt(e.to_string()).into())
}

fn write(def: &ProcessorDef) -> Res<Vec<u8>> {
    encode(def).map_err(|e| kenning_store::StoreError::Corrupt(e.to_string()).into())
}

impl ProcessorStore for PgProcessors {
    fn all(&self) -> Result<Vec<ProcessorDef>> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .query("SELECT def FROM stream_processors ORDER BY name", &[])
                .await?
                .iter()
                .map(|r| read(r.get(0)))
                .collect()
        })
    }

    fn get(&self, name: &str) -> Result<Option<ProcessorDef>> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .query_opt(
                    "SELECT def FROM stream_processors WHERE name = $1",
                    &[&name],
                )
                .await?
                .map(|r| read(r.get(0)))
                .transpose()
        })
    }

    // Creations from every node take turns under the advisory lock (held to
    // the commit), so each checks the rows the one before it wrote; the
    // unique name, source and output columns hold even without it.
    fn insert(&self, def: &ProcessorDef, max: usize) -> Result<()> {
        let checked = self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
                .await?;
            let stored = tx
                .query("SELECT def FROM stream_processors", &[])
                .await?
                .iter()
                .map(|r| read(r.get(0)))
                .collect::<Res<Vec<_>>>()?;
            if let Err(e) = check_new(&stored, def, max) {
                return Ok(Err(e));
            }
            let inserted = tx
                .execute(
                    "INSERT INTO stream_processors (name, def, source, output) \
                     VALUES ($1, $2, $3, $4)",
                    &[&def.name, &write(def)?, &def.source, &def.output],
                )
                .await;
            let taken = inserted.as_ref().err().and_then(|e| {
                let db = e.as_db_error()?;
                (db.code() == &SqlState::UNIQUE_VIOLATION).then(|| db.constraint())
            });
            if let Some(constraint) = taken {
                return Ok(Err(StreamError::InUse(match constraint {
                    Some("stream_processors_source") => format!(
                        "another stream processor already reads source {:?}; one processor per input",
                        def.source
                    ),
                    Some("stream_processors_output") => format!(
                        "another stream processor already writes to output {:?}; one processor per output",
                        def.output
                    ),
                    _ => format!("a stream processor named {:?} already exists", def.name),
                })));
            }
            inserted?;
            tx.commit().await?;
            Ok(Ok(()))
        })?;
        checked
    }

    fn put(&self, def: &ProcessorDef) -> Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            // The lease columns are left as they are, and a processor's
            // source and output never change.
            client
                .execute(
                    "INSERT INTO stream_processors (name, def, source, output) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET def = EXCLUDED.def",
                    &[&def.name, &write(def)?, &def.source, &def.output],
                )
                .await?;
            Ok(())
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute("DELETE FROM stream_processors WHERE name = $1", &[&name])
                .await?;
            Ok(())
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn claim(&self, name: &str, owner: &str, now_ms: u64, until_ms: u64) -> Result<bool> {
        self.run(async {
            let client = self.db.client().await?;
            claim_lease(
                &client,
                "stream_processors",
                "name",
                name,
                owner,
                now_ms,
                until_ms,
            )
            .await
        })
    }

    fn save_counters(&self, name: &str, counters: &CounterSnapshot) -> Result<()> {
        let json =
            serde_json::to_string(counters).map_err(|e| StreamError::Store(e.to_string()))?;
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "UPDATE stream_processors SET counters = $3 WHERE name = $1 AND owner = $2",
                    &[&name, &counters.node, &json],
                )
                .await?;
            Ok(())
        })
    }

    fn counters(&self, name: &str) -> Result<Option<CounterSnapshot>> {
        let json: Option<String> = self.run(async {
            let client = self.db.client().await?;
            Ok(client
                .query_opt(
                    "SELECT counters FROM stream_processors WHERE name = $1",
                    &[&name],
                )
                .await?
                .and_then(|r| r.get(0)))
        })?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StreamError::Store(format!("stored counters of {name}: {e}")))
        })
        .transpose()
    }

    fn release(&self, name: &str, owner: Option<&str>) -> Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "UPDATE stream_processors SET owner = NULL, lease_until_ms = 0 \
                     WHERE name = $1 AND ($2::text IS NULL OR owner = $2)",
                    &[&name, &owner],
                )
                .await?;
            Ok(())
        })
    }
}
