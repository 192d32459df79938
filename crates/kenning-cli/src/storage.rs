//! Where a node keeps its state: the data directory (embedded, the default)
//! or a PostgreSQL database shared by any number of nodes (`--database`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use kenning_accountability::keys::{Kek, KeyStore};
use kenning_accountability::probes::{ProbeDir, ProbeStore};
use kenning_accountability::{ReviewQueue, ReviewStore, REVIEW_FILE};
use kenning_audit::Trail;
use kenning_models::Recognisers;
use kenning_postgres::{Options, Postgres, Precision};
use kenning_store::{Embedded, EvalDir, EvalReportStore, FaceStore};

use crate::commands::wire;

/// The database options (global).
#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Keep everything (collections, faces, users, reviews, keys, audit trail)
    /// in this PostgreSQL database instead of the data directory, so any
    /// number of nodes can serve it: postgresql://USER:PASSWORD@HOST[:PORT][,HOST2[:PORT2]]/DB.
    /// With several hosts, writes go to the one that accepts them.
    #[arg(long, global = true, env = "KENNING_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Send searches to this database (a streaming standby of --database).
    /// A face indexed a moment ago may not be found there yet unless the
    /// standby is synchronous with remote_apply (docs/scale-out.md).
    #[arg(
        long,
        global = true,
        env = "KENNING_READ_DATABASE",
        hide_env_values = true,
        requires = "database"
    )]
    pub read_database: Option<String>,
    /// File holding the master key that seals access-key secrets in the
    /// database (32 bytes as 64 hex digits or base64; every node needs the
    /// same one). Or set KENNING_MASTER_KEY.
    #[arg(long, global = true, env = "KENNING_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// How new collections' HNSW indexes hold vectors in the database:
    /// full (float4) or half (float2; the table keeps float4 for re-ranking).
    #[arg(long, global = true, default_value = "full")]
    pub vector_precision: Precision,
    /// The database's HNSW beam width for searches (hnsw.ef_search).
    #[arg(long, global = true, default_value_t = Options::default().ef_search)]
    pub ef_search: u32,
    /// Memory (MiB, the server's maintenance_work_mem) for building a
    /// collection's HNSW index over loaded faces (`kenning migrate`): about
    /// 1 KiB per 128-d face holds the whole graph, which keeps the build fast.
    #[arg(long, global = true, default_value_t = Options::default().build_memory_mb)]
    pub index_build_memory: u32,
}

/// A node's storage, opened.
pub struct Storage {
    /// Collections, faces, users, search; they write the audit trail.
    pub faces: Arc<dyn FaceStore>,
    /// The review queue.
    pub reviews: Arc<dyn ReviewStore>,
    /// The access keys.
    pub keys: KeyStore,
    /// The probe photos of searches under review.
    pub probes: Arc<dyn ProbeStore>,
    /// Stored-video jobs, when they are kept in a database (else the video
    /// service keeps them in the data directory).
    pub jobs: Option<Arc<dyn kenning_video::JobStore>>,
    /// Stream processors, when they are kept in a database (else the
    /// stream service keeps them in the data directory).
    pub processors: Option<Arc<dyn kenning_streams::store::ProcessorStore>>,
    /// Published evaluation reports.
    pub evals: Arc<dyn EvalReportStore>,
}

impl DatabaseArgs {
    fn options(&self) -> Options {
        Options {
            precision: self.vector_precision,
            ef_search: self.ef_search,
            build_memory_mb: self.index_build_memory,
            ..Options::default()
        }
    }

    /// Connects to the database, if one was given.
    pub fn connect(&self) -> Result<Option<Postgres>> {
        let Some(url) = &self.database else {
            return Ok(None);
        };
        Ok(Some(Postgres::connect(
            url,
            self.read_database.as_deref(),
            self.options(),
        )?))
    }

    /// The master key, from KENNING_MASTER_KEY or --master-key-file.
    pub fn master_key(&self) -> Result<Kek> {
        let env = std::env::var("KENNING_MASTER_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        match (&env, &self.master_key_file) {
            (Some(_), Some(_)) => {
                bail!("give the master key in KENNING_MASTER_KEY or --master-key-file, not both")
            }
            (Some(k), None) => Ok(Kek::parse(k.as_bytes())?),
            (None, Some(f)) => {
                let bytes = std::fs::read(f)
                    .with_context(|| format!("reading the master key file {}", f.display()))?;
                Ok(Kek::parse(&bytes)?)
            }
            (None, None) => bail!(
                "a database keeps access keys sealed with a master key that is never stored in \
                 it: set KENNING_MASTER_KEY or --master-key-file (32 bytes, e.g. `openssl rand \
                 -hex 32`), the same on every node"
            ),
        }
    }

    /// The access keys of the database.
    fn pg_keys(&self, pg: &Postgres) -> Result<KeyStore> {
        let kek = self.master_key()?;
        pg.keys.check_kek(&kek)?;
        Ok(KeyStore::with_vault(pg.keys.clone(), kek))
    }
}

/// Opens the storage: the database if one was given, else the data
/// directory `data` (whose collections may be of any of `recognisers`).
pub fn open(
    db: &DatabaseArgs,
    data: &std::path::Path,
    recognisers: &Recognisers,
) -> Result<Storage> {
    if let Some(pg) = db.connect()? {
        let keys = db.pg_keys(&pg)?;
        return Ok(Storage {
            faces: pg.faces,
            reviews: pg.reviews,
            probes: pg.probes,
            jobs: Some(pg.jobs),
            processors: Some(pg.processors),
            evals: pg.evals,
            keys,
        });
    }
    let faces =
        Arc::new(Embedded::open(data, kenning_collections::distances(recognisers)).map_err(wire)?);
    let reviews = ReviewQueue::open(&data.join(REVIEW_FILE), faces.audit())?;
    Ok(Storage {
        faces,
        reviews: Arc::new(reviews),
        keys: KeyStore::new(data),
        probes: Arc::new(ProbeDir::open(data)?),
        jobs: None,
        processors: None,
        evals: Arc::new(EvalDir::new(data)),
    })
}

/// The access keys alone (for `kenning keys` and authentication), without
/// opening the collections.
pub fn keys(db: &DatabaseArgs, data: &std::path::Path) -> Result<KeyStore> {
    match db.connect()? {
        Some(pg) => db.pg_keys(&pg),
        None => Ok(KeyStore::new(data)),
    }
}

/// The published evaluation reports alone (for `kenning report`).
pub fn evals(db: &DatabaseArgs, data: &std::path::Path) -> Result<Arc<dyn EvalReportStore>> {
    Ok(match db.connect()? {
        Some(pg) => pg.evals,
        None => Arc::new(EvalDir::new(data)),
    })
}

/// The audit trail alone (for `kenning audit`), read where it is kept. The
/// file is read as it is (never opened for writing).
pub fn trail(db: &DatabaseArgs) -> Result<Option<Arc<dyn Trail>>> {
    Ok(db.connect()?.map(|pg| pg.faces.audit()))
}
