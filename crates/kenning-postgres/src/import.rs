//! Copying a node's data from elsewhere (an embedded data directory) into an
//! empty database, in one transaction: everything arrives or nothing does.
//!
//! Records are copied as they are, not replayed through the API: faces keep
//! their FaceIds, seq ids and times, and the audit chain its lines byte for
//! byte, so the database holds the same chain with the same head hash. Each
//! collection's faces arrive by binary COPY and its HNSW index is built
//! after them, which is much faster than inserting into it face by face.

use kenning_accountability::keys::{KeyRecord, TokenRecord};
use kenning_accountability::review::ReviewItem;
use kenning_store::{Collection, Distance, Face, StoreError, User};
use kenning_streams::store::ProcessorDef;

use crate::bulk::{build_hnsw, FaceCopy};
use crate::db::Fail;
use crate::faces::{collection_row, create_table, distance_name, to_i64, COLLECTION_COLUMNS};
use crate::Postgres;

/// Rows sent per statement.
const BATCH: usize = 1_000;

/// A failure reading the source, as the source describes it.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where an import reads from. Calls come in the order listed, each
/// collection's faces in pages until one comes back empty.
pub trait ImportSource {
    /// Every collection, with the distance its recogniser compares by.
    fn collections(&mut self) -> Result<Vec<(Collection, Distance)>, SourceError>;
    /// Up to `max` faces of `collection` with seq above `after`, in seq
    /// order, each with its embedding.
    fn faces(
        &mut self,
        collection: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<(Face, Vec<f32>)>, SourceError>;
    /// Every user of `collection`, faces in association order.
    fn users(&mut self, collection: &str) -> Result<Vec<User>, SourceError>;
    /// The audit trail's lines in order, each exactly as stored.
    fn audit_lines(
        &mut self,
    ) -> Result<Box<dyn Iterator<Item = Result<String, SourceError>> + '_>, SourceError>;
    /// The access keys, sealed with the database's master key.
    fn keys(&mut self) -> Result<Vec<KeyRecord>, SourceError>;
    /// The API tokens to copy (their hashes are keyed by the master key, so
    /// only a source sealed with the same key can give any).
    fn tokens(&mut self) -> Result<Vec<TokenRecord>, SourceError>;
    /// The review queue, oldest first.
    fn reviews(&mut self) -> Result<Vec<ReviewItem>, SourceError>;
    /// The request ids of the probe photos kept.
    fn probe_ids(&mut self) -> Result<Vec<String>, SourceError>;
    /// One probe photo (`None` if it went meanwhile).
    fn probe(&mut self, id: &str) -> Result<Option<Vec<u8>>, SourceError>;
    /// The stream processor definitions (none unless the source has any).
    fn stream_processors(&mut self) -> Result<Vec<ProcessorDef>, SourceError> {
        Ok(Vec::new())
    }
    /// The published evaluation reports (none unless the source has any).
    fn eval_reports(&mut self) -> Result<Vec<kenning_store::StoredReport>, SourceError> {
        Ok(Vec::new())
    }
}

/// What the import is told about the source's audit chain, checked before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainHead {
    /// Records in the chain.
    pub records: u64,
    /// The hash of its last record (`None` when empty).
    pub hash: Option<String>,
}

/// What an import copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Collections.
    pub collections: u64,
    /// Faces with their vectors.
    pub faces: u64,
    /// Users.
    pub users: u64,
    /// Audit records.
    pub audit_records: u64,
    /// Access keys.
    pub access_keys: u64,
    /// API tokens.
    pub api_tokens: u64,
    /// Review items.
    pub review_items: u64,
    /// Probe photos.
    pub probe_photos: u64,
    /// Stream processor definitions.
    pub stream_processors: u64,
    /// Published evaluation reports.
    pub eval_reports: u64,
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The target holds data and was not to be replaced.
    #[error(
        "the database at {location} is not empty ({what}); nothing was copied. Give --replace to \
         delete what it holds and copy the data directory in its place"
    )]
    NotEmpty {
        /// The database, without password.
        location: String,
        /// What it holds.
        what: String,
    },
    /// The target already holds the source's audit chain up to its head:
    /// an earlier run copied it (and nodes may have served it since).
    #[error(
        "the database at {location} already holds this data directory's audit chain up to its \
         head (record {records}, hash {hash}){since}: it was migrated before; nothing was copied"
    )]
    AlreadyImported {
        /// The database, without password.
        location: String,
        /// The source chain's length.
        records: u64,
        /// Its head hash.
        hash: String,
        /// Records the database holds beyond it, described.
        since: String,
    },
    /// The source could not be read.
    #[error("reading the source: {0}")]
    Source(SourceError),
    /// The source's audit trail does not end where it was verified to.
    #[error("the audit trail changed while it was copied ({0}); stop every node using it first")]
    ChainMoved(String),
    /// The database refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Stop {
    Fail(Fail),
    Import(ImportError),
}

impl From<Fail> for Stop {
    fn from(e: Fail) -> Self {
        Stop::Fail(e)
    }
}

impl From<tokio_postgres::Error> for Stop {
    fn from(e: tokio_postgres::Error) -> Self {
        Stop::Fail(e.into())
    }
}

fn source(e: SourceError) -> Stop {
    Stop::Import(ImportError::Source(e))
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, Stop> {
    serde_json::to_value(v).map_err(|e| Stop::Import(ImportError::Source(Box::new(e))))
}

/// Tables whose rows make a database non-empty, and what to call them.
const HELD: &[(&str, &str)] = &[
    ("collections", "collections"),
    ("audit_records", "audit records"),
    ("access_keys", "access keys"),
    ("api_tokens", "API tokens"),
    ("review_items", "review items"),
    ("review_probes", "probe photos"),
    ("stream_processors", "stream processors"),
    ("eval_reports", "evaluation reports"),
];

impl Postgres {
    /// Copies everything `src` holds into this database in one transaction
    /// and returns the counts. The database must hold nothing yet, unless
    /// `replace`, which deletes what it holds first (in the same
    /// transaction). `head` is the source chain as verified beforehand; the
    /// copied chain must end there. `kek_check` is the master key's check
    /// value, recorded in place of any other when replacing.
    pub fn import(
        &self,
        src: &mut dyn ImportSource,
        head: &ChainHead,
        replace: bool,
        kek_check: &str,
    ) -> Result<ImportReport, ImportError> {
        let db = &self.db;
        let out = db.block_on(async {
            let mut client = db.client().await?;
            let tx = client.transaction().await?;
            // One import at a time, and no node appends meanwhile.
            tx.execute("LOCK TABLE audit_head IN EXCLUSIVE MODE", &[])
                .await?;
            let mut held = Vec::new();
            for (table, name) in HELD {
                let n: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await?
                    .get(0);
                if n > 0 {
                    held.push(format!("{n} {name}"));
                }
            }
            if !held.is_empty() && !replace {
                return Err(Stop::Import(already(&tx, db.location(), head, held).await?));
            }
            if !held.is_empty() {
                empty(&tx).await?;
            }
            tx.execute("DELETE FROM kenning_meta WHERE key = 'kek_check'", &[])
                .await?;
            tx.execute(
                "INSERT INTO kenning_meta (key, value) VALUES ('kek_check', $1)",
                &[&kek_check],
            )
            .await?;
            let mut report = ImportReport::default();
            copy_collections(&tx, src, &db.options, &mut report).await?;
            copy_chain(&tx, src, head, &mut report).await?;
            copy_accountability(&tx, src, &mut report).await?;
            copy_processors(&tx, src, &mut report).await?;
            copy_eval_reports(&tx, src, &mut report).await?;
            tx.execute(
                "INSERT INTO kenning_meta (key, value) VALUES ('keys_version', '1') \
                 ON CONFLICT (key) DO UPDATE SET value = (kenning_meta.value::bigint + 1)::text",
                &[],
            )
            .await?;
            tx.commit().await?;
            Ok(report)
        });
        match out {
            Ok(r) => Ok(r),
            Err(Stop::Import(e)) => Err(e),
            Err(Stop::Fail(e)) => Err(ImportError::Store(db.error(e))),
        }
    }
}

/// The refusal for a non-empty target: "already imported" when it holds the
/// source's chain up to its head, else "not empty".
async fn already(
    tx: &deadpool_postgres::Transaction<'_>,
    location: &str,
    head: &ChainHead,
    held: Vec<String>,
) -> Result<ImportError, Stop> {
    if let Some(hash) = &head.hash {
        let row = tx
            .query_opt(
                "SELECT line FROM audit_records WHERE seq = $1",
                &[&to_i64(head.records)],
            )
            .await?;
        let stored = row.map(|r| r.get::<_, String>(0));
        if stored.is_some_and(|l| l.starts_with(&format!("{{\"hash\":\"{hash}\""))) {
            let last: i64 = tx
                .query_one("SELECT seq FROM audit_head", &[])
                .await?
                .get(0);
            let extra = u64::try_from(last)
                .unwrap_or(0)
                .saturating_sub(head.records);
            return Ok(ImportError::AlreadyImported {
                location: location.to_owned(),
                records: head.records,
                hash: hash.clone(),
                since: if extra > 0 {
                    format!(", and {extra} records written since")
                } else {
                    String::new()
                },
            });
        }
    }
    Ok(ImportError::NotEmpty {
        location: location.to_owned(),
        what: held.join(", "),
    })
}

/// Deletes everything a node keeps (not the schema, nor the clock).
async fn empty(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), Stop> {
    let keys: Vec<i64> = tx
        .query("SELECT key FROM collections", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for key in keys {
        tx.batch_execute(&format!("DROP TABLE faces_{key}")).await?;
    }
    tx.batch_execute(
        "TRUNCATE users, collections, audit_records, access_keys, api_tokens, review_items, \
         review_probes, stream_processors, eval_reports;
         UPDATE audit_head SET seq = 0, hash = repeat('0', 64);",
    )
    .await?;
    Ok(())
}

async fn copy_collections(
    tx: &deadpool_postgres::Transaction<'_>,
    src: &mut dyn ImportSource,
    options: &crate::Options,
    report: &mut ImportReport,
) -> Result<(), Stop> {
    let mut clock = 0u64;
    for (c, distance) in src.collections().map_err(source)? {
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO collections (id, arn, created_at_ms, model_name, model_version, \
                     dim, distance, precision, policy, face_count, user_count, generation, \
                     next_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     RETURNING {COLLECTION_COLUMNS}"
                ),
                &[
                    &c.id,
                    &c.arn,
                    &to_i64(c.created_at_ms),
                    &c.face_model.name,
                    &c.face_model.version,
                    &i32::try_from(c.dim).unwrap_or(i32::MAX),
                    &distance_name(distance),
                    &options.precision.type_name(),
                    &c.policy,
                    &to_i64(c.face_count),
                    &to_i64(c.user_count),
                    &to_i64(c.generation),
                    &to_i64(c.next_seq),
                ],
            )
            .await?;
        let row = collection_row(&row)?;
        clock = clock.max(c.generation);
        create_table(tx, &row).await?;
        // One binary COPY of the collection's faces (the source's pages
        // streamed into it), then its index built over them at once.
        let mut copy = FaceCopy::start(tx, &row).await?;
        let mut after = 0;
        loop {
            let page = src.faces(&c.id, after, BATCH).map_err(source)?;
            let Some((last, _)) = page.last() else { break };
            after = last.seq;
            for (face, vector) in &page {
                copy.write(face, vector).await?;
            }
            report.faces += page.len() as u64;
        }
        copy.finish().await?;
        build_hnsw(tx, &row, options).await?;
        tx.batch_execute(&format!("ANALYZE {}", row.faces()))
            .await?;
        for u in src.users(&c.id).map_err(source)? {
            tx.execute(
                "INSERT INTO users (collection, user_id, created_at_ms, face_ids) \
                 VALUES ($1, $2, $3, $4)",
                &[&row.key, &u.user_id, &to_i64(u.created_at_ms), &u.face_ids],
            )
            .await?;
            report.users += 1;
        }
        report.collections += 1;
    }
    if clock > 0 {
        // Generations keep rising from where the source's clock was.
        tx.execute(
            "SELECT setval('generation_clock', greatest($1, \
             (SELECT last_value FROM generation_clock)))",
            &[&to_i64(clock)],
        )
        .await?;
    }
    Ok(())
}

async fn copy_chain(
    tx: &deadpool_postgres::Transaction<'_>,
    src: &mut dyn ImportSource,
    head: &ChainHead,
    report: &mut ImportReport,
) -> Result<(), Stop> {
    let mut seqs = Vec::with_capacity(BATCH);
    let mut lines = Vec::with_capacity(BATCH);
    let mut last = None;
    {
        let mut it = src.audit_lines().map_err(source)?;
        loop {
            let line = it.next().transpose().map_err(source)?;
            if !lines.is_empty() && (line.is_none() || lines.len() == BATCH) {
                tx.execute(
                    "INSERT INTO audit_records (seq, line) SELECT * FROM unnest($1::bigint[], \
                     $2::text[])",
                    &[&seqs, &lines],
                )
                .await?;
                seqs.clear();
                lines.clear();
            }
            let Some(line) = line else { break };
            report.audit_records += 1;
            seqs.push(to_i64(report.audit_records));
            last = Some(line.clone());
            lines.push(line);
        }
    }
    // The chain's links were verified beforehand; what is checked here is
    // that the copy ends where the verified chain did.
    let ends_at = |hash: &str| {
        last.as_deref()
            .is_some_and(|l| l.starts_with(&format!("{{\"hash\":\"{hash}\"")))
    };
    match &head.hash {
        Some(hash) if report.audit_records == head.records && ends_at(hash) => {
            tx.execute(
                "UPDATE audit_head SET seq = $1, hash = $2",
                &[&to_i64(head.records), hash],
            )
            .await?;
        }
        None if report.audit_records == 0 => {}
        _ => {
            return Err(Stop::Import(ImportError::ChainMoved(format!(
                "{} records verified, {} read",
                head.records, report.audit_records
            ))))
        }
    }
    Ok(())
}

async fn copy_accountability(
    tx: &deadpool_postgres::Transaction<'_>,
    src: &mut dyn ImportSource,
    report: &mut ImportReport,
) -> Result<(), Stop> {
    for k in src.keys().map_err(source)? {
        tx.execute(
            "INSERT INTO access_keys (access_key_id, record, root, revoked) \
             VALUES ($1, $2, $3, $4)",
            &[&k.access_key_id, &json(&k)?, &k.root, &k.revoked.is_some()],
        )
        .await?;
        report.access_keys += 1;
    }
    for t in src.tokens().map_err(source)? {
        tx.execute(
            "INSERT INTO api_tokens (token_id, record, revoked) VALUES ($1, $2, $3)",
            &[&t.token_id, &json(&t)?, &t.revoked.is_some()],
        )
        .await?;
        report.api_tokens += 1;
    }
    for item in src.reviews().map_err(source)? {
        tx.execute(
            "INSERT INTO review_items (review_id, item) VALUES ($1, $2)",
            &[&item.review_id, &json(&item)?],
        )
        .await?;
        report.review_items += 1;
    }
    for id in src.probe_ids().map_err(source)? {
        if let Some(bytes) = src.probe(&id).map_err(source)? {
            tx.execute(
                "INSERT INTO review_probes (request_id, bytes) VALUES ($1, $2)",
                &[&id, &bytes],
            )
            .await?;
            report.probe_photos += 1;
        }
    }
    Ok(())
}

/// Stream processors keep their status: those RUNNING in the data
/// directory are taken up by the first node that serves the database with
/// their source and output configured; nobody holds them yet.
async fn copy_processors(
    tx: &deadpool_postgres::Transaction<'_>,
    src: &mut dyn ImportSource,
    report: &mut ImportReport,
) -> Result<(), Stop> {
    for def in src.stream_processors().map_err(source)? {
        let bytes = kenning_streams::store::encode(&def).map_err(|e| source(Box::new(e)))?;
        tx.execute(
            "INSERT INTO stream_processors (name, def, source, output) VALUES ($1, $2, $3, $4)",
            &[&def.name, &bytes, &def.source, &def.output],
        )
        .await?;
        report.stream_processors += 1;
    }
    Ok(())
}

/// Published evaluation reports, with the time they were last published.
async fn copy_eval_reports(
    tx: &deadpool_postgres::Transaction<'_>,
    src: &mut dyn ImportSource,
    report: &mut ImportReport,
) -> Result<(), Stop> {
    for r in src.eval_reports().map_err(source)? {
        tx.execute(
            "INSERT INTO eval_reports (name, report, updated_ms) VALUES ($1, $2, $3)",
            &[&r.name, &r.json, &to_i64(r.updated_ms)],
        )
        .await?;
        report.eval_reports += 1;
    }
    Ok(())
}
