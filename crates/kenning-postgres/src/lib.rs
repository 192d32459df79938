//! Kenning's PostgreSQL backend: everything a node keeps (collections,
//! faces and their vectors, users, policies, the review queue with its probe
//! photos, the audit chain, the access keys, the stored-video jobs and the
//! stream processors) in one database, so any number of stateless
//! `kenning serve` nodes can share it.
//!
//! * Faces are partitioned by collection (`PARTITION BY LIST`): each
//!   collection gets its own partition and pgvector HNSW index, created in
//!   CreateCollection's transaction, over `vector(d)` or `halfvec(d)` with
//!   `d` and the distance taken from the collection's recogniser.
//! * A search asks the index for the nearest candidates (iterative scan,
//!   `SET LOCAL hnsw.ef_search`), and they are re-ranked here with the exact
//!   distance the embedded index computes, so Similarity is the same bits on
//!   both backends.
//! * Every call is one transaction together with its audit record; the
//!   chain's head row is locked by each append, so the chain never forks.
//! * The schema is versioned ([`migrate`]): a node applies what is missing
//!   at start and refuses a database newer than itself.
//!
//! The crate is synchronous at its surface, like the rest of Kenning: it runs
//! its own small tokio runtime for the pooled connections
//! (deadpool-postgres) and blocks on it. Never call it from async code; the
//! server calls it from its blocking pool.

#![warn(missing_docs)]

mod audit;
mod bulk;
mod db;
mod evals;
mod faces;
mod import;
mod jobs;
mod keys;
pub mod migrate;
mod reviews;
mod streams;
mod vector;

use std::sync::Arc;

pub use bulk::{BulkLoad, IndexBuild, AUDIT_BATCH};
use db::Db;
pub use db::{redact, Options, Precision};
pub use evals::PgEvals;
pub use faces::{explain_search, PgFaces};
pub use import::{ChainHead, ImportError, ImportReport, ImportSource, SourceError};
pub use jobs::PgJobs;
pub use keys::PgKeys;
pub use reviews::{PgProbes, PgReviews};
pub use streams::PgProcessors;

/// What connecting can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("invalid database URL {url}: {message}")]
    Url {
        /// The URL, without password.
        url: String,
        /// Why.
        message: String,
    },
    /// No server answered, or none of the hosts accepts writes.
    #[error("cannot connect to the database at {url}: {message}")]
    Unreachable {
        /// The URL, without password.
        url: String,
        /// What the connection attempt said.
        message: String,
    },
    /// The schema could not be brought up to date, or is newer than this build.
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    /// The tokio runtime could not start.
    #[error("starting the database runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// One database opened for a node: the face store (which writes the audit
/// trail), the review queue and the access keys, all in it.
pub struct Postgres {
    /// Collections, faces, users and search.
    pub faces: Arc<PgFaces>,
    /// The review queue.
    pub reviews: Arc<PgReviews>,
    /// The access keys (sealed; see [`PgKeys`]).
    pub keys: Arc<PgKeys>,
    /// The probe photos of searches under review.
    pub probes: Arc<PgProbes>,
    /// Stored-video jobs and their results.
    pub jobs: Arc<PgJobs>,
    /// Stream processor definitions and their leases.
    pub processors: Arc<PgProcessors>,
    /// Published evaluation reports.
    pub evals: Arc<PgEvals>,
    db: Arc<Db>,
}

impl Postgres {
    /// Connects to `url` (writes; multi-host URLs and
    /// `target_session_attrs=read-write` pick the primary), and to `read_url`
    /// for searches when given (a standby), brings the schema up to date and
    /// checks it.
    pub fn connect(
        url: &str,
        read_url: Option<&str>,
        options: Options,
    ) -> Result<Self, ConnectError> {
        let db = Arc::new(Db::connect(url, read_url, options)?);
        db.block_on(async {
            let mut client = db.client().await.map_err(|e| ConnectError::Unreachable {
                url: db.location().to_owned(),
                message: match db.error(e) {
                    kenning_store::StoreError::Unavailable { message, .. } => message,
                    other => other.to_string(),
                },
            })?;
            migrate::migrate(&mut client, db.location()).await?;
            Ok::<_, ConnectError>(())
        })?;
        Ok(Self {
            faces: Arc::new(PgFaces::new(db.clone())),
            reviews: Arc::new(PgReviews::new(db.clone())),
            probes: Arc::new(PgProbes::new(db.clone())),
            keys: Arc::new(PgKeys::new(db.clone())),
            jobs: Arc::new(PgJobs::new(db.clone())),
            processors: Arc::new(PgProcessors::new(db.clone())),
            evals: Arc::new(PgEvals::new(db.clone())),
            db,
        })
    }
}
