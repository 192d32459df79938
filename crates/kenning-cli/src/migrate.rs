//! `kenning migrate`: copies an embedded data directory into a PostgreSQL
//! database (docs/scale-out.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use kenning_accountability::keys::{Kek, KeyRecord, KeyStore, TokenRecord};
use kenning_accountability::probes::{ProbeDir, ProbeStore, PROBE_DIR};
use kenning_accountability::review::ReviewItem;
use kenning_accountability::{ReviewQueue, ReviewStore, REVIEW_FILE};
use kenning_audit::AuditLog;
use kenning_models::manifest::{LoadedManifest, BUILTIN};
use kenning_postgres::{ChainHead, ImportError, ImportSource, SourceError};
use kenning_store::evals::EVAL_DIR;
use kenning_store::{
    Collection, Distance, EvalDir, EvalReportStore, Face, FaceStore, Store, StoredReport, User,
    AUDIT_FILE,
};
use serde_json::json;

use crate::commands::Context;
use crate::storage::DatabaseArgs;

/// `kenning migrate`
#[derive(Args)]
pub struct MigrateArgs {
    /// The data directory to copy (no node may be serving it).
    #[arg(long)]
    from: PathBuf,
    /// The database to copy it into: postgresql://USER:PASSWORD@HOST[:PORT]/DB.
    /// Access-key secrets are sealed there with the master key
    /// (KENNING_MASTER_KEY or --master-key-file).
    #[arg(long, env = "KENNING_MIGRATE_TO", hide_env_values = true)]
    to: String,
    /// Delete whatever the database holds first (in the same transaction).
    #[arg(long)]
    replace: bool,
}

/// Things a data directory may hold that a database does not take yet.
const NOT_COPIED: &[(&str, &str)] = &[("video", "stored-video jobs and their results")];

/// The data directory, read for an import.
struct DataDir {
    dir: PathBuf,
    store: Store,
    distances: HashMap<String, Distance>,
    keys: KeyStore,
    kek: Kek,
    tokens_left: usize,
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> SourceError {
    Box::new(e)
}

impl ImportSource for DataDir {
    fn collections(&mut self) -> Result<Vec<(Collection, Distance)>, SourceError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .list_collections(token.as_deref(), None)
                .map_err(boxed)?;
            for c in page.items {
                let distance = *self.distances.get(&c.face_model.name).ok_or_else(|| {
                    format!(
                        "collection {} holds vectors of recogniser {}, which this Kenning does \
                         not know (give its --manifest)",
                        c.id, c.face_model
                    )
                })?;
                out.push((c, distance));
            }
            token = page.next_token;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    fn faces(
        &mut self,
        collection: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<(Face, Vec<f32>)>, SourceError> {
        let token = (after > 0).then(|| {
            kenning_store::make_token(kenning_store::TokenKind::Faces, &after.to_be_bytes())
        });
        let max = u32::try_from(max)
            .unwrap_or(1000)
            .min(kenning_store::MAX_LIST_RESULTS);
        let faces = self
            .store
            .list_faces(collection, None, token.as_deref(), Some(max))
            .map_err(boxed)?
            .items;
        let seqs: Vec<u64> = faces.iter().map(|f| f.seq).collect();
        let vectors = self
            .store
            .embeddings_by_seq(collection, &seqs)
            .map_err(boxed)?;
        faces
            .into_iter()
            .zip(vectors)
            .map(|(f, v)| match v {
                Some(v) => Ok((f, v)),
                None => Err(format!("face {} of {collection} has no vector", f.face_id).into()),
            })
            .collect()
    }

    fn stream_processors(
        &mut self,
    ) -> Result<Vec<kenning_streams::store::ProcessorDef>, SourceError> {
        use kenning_streams::store::{ProcessorStore, RedbProcessorStore, PROCESSORS_FILE};
        // Opening creates the file: a data directory without one has none.
        if !self.dir.join(PROCESSORS_FILE).exists() {
            return Ok(Vec::new());
        }
        RedbProcessorStore::open(&self.dir)
            .and_then(|s| s.all())
            .map_err(boxed)
    }

    // Files dropped in by hand under names a database does not take are
    // refused here, naming them, rather than left behind silently.
    fn eval_reports(&mut self) -> Result<Vec<StoredReport>, SourceError> {
        let reports = EvalDir::new(&self.dir).list().map_err(boxed)?;
        for r in &reports {
            kenning_store::evals::validate_report(&r.name, &r.json).map_err(|e| {
                format!(
                    "{}/{EVAL_DIR}/{}.json: {e}; rename the file and run the migration again",
                    self.dir.display(),
                    r.name
                )
            })?;
        }
        Ok(reports)
    }

    fn users(&mut self, collection: &str) -> Result<Vec<User>, SourceError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .list_users(collection, token.as_deref(), None)
                .map_err(boxed)?;
            out.extend(page.items);
            token = page.next_token;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    fn audit_lines(
        &mut self,
    ) -> Result<Box<dyn Iterator<Item = Result<String, SourceError>> + '_>, SourceError> {
        let path = self.dir.join(AUDIT_FILE);
        if !path.exists() {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(Box::new(
            kenning_audit::lines(&path)
                .map_err(boxed)?
                .map(|l| l.map_err(boxed)),
        ))
    }

    fn keys(&mut self) -> Result<Vec<KeyRecord>, SourceError> {
        if !self.dir.join("keys.json").exists() {
            return Ok(Vec::new());
        }
        self.keys.resealed(&self.kek).map_err(boxed)
    }

    fn tokens(&mut self) -> Result<Vec<TokenRecord>, SourceError> {
        let tokens = self.keys.vault().tokens().map_err(boxed)?;
        if tokens.is_empty() || self.keys.sealed_with(&self.kek).map_err(boxed)? {
            return Ok(tokens);
        }
        self.tokens_left = tokens.len();
        Ok(Vec::new())
    }

    fn reviews(&mut self) -> Result<Vec<ReviewItem>, SourceError> {
        let path = self.dir.join(REVIEW_FILE);
        if !path.exists() {
            return Ok(Vec::new());
        }
        // The queue only writes its trail when it changes, which this never does.
        let trail = Arc::new(AuditLog::open(&self.dir.join(AUDIT_FILE)).map_err(boxed)?);
        let queue = ReviewQueue::open(&path, trail).map_err(boxed)?;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = queue
                .list(&|_| true, token.as_deref(), 1000)
                .map_err(boxed)?;
            out.extend(page.items);
            token = page.next_token;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    fn probe_ids(&mut self) -> Result<Vec<String>, SourceError> {
        if !self.dir.join(PROBE_DIR).exists() {
            return Ok(Vec::new());
        }
        ProbeDir::open(&self.dir)?.ids().map_err(boxed)
    }

    fn probe(&mut self, id: &str) -> Result<Option<Vec<u8>>, SourceError> {
        ProbeDir::open(&self.dir)?.get(id).map_err(boxed)
    }
}

/// How every recogniser this Kenning knows compares vectors: the built-in
/// ones and the one of --manifest.
fn distances(ctx: &Context) -> Result<HashMap<String, Distance>> {
    let mut out = HashMap::new();
    for b in BUILTIN {
        let m = LoadedManifest::builtin(b.name).map_err(crate::commands::wire)?;
        out.insert(m.manifest.name, m.manifest.embedding.distance);
    }
    if let Some(path) = &ctx.manifest {
        let m = LoadedManifest::from_file(path).map_err(crate::commands::wire)?;
        out.insert(m.manifest.name, m.manifest.embedding.distance);
    }
    Ok(out)
}

/// Copies the data directory `args.from` into the database `args.to`.
pub fn migrate(ctx: &Context, db: &DatabaseArgs, args: &MigrateArgs) -> Result<i32> {
    let from = &args.from;
    if !from.join(kenning_store::DB_FILE).exists() {
        bail!(
            "{} is not a Kenning data directory (it has no {})",
            from.display(),
            kenning_store::DB_FILE
        );
    }
    let audit = from.join(AUDIT_FILE);
    let verified = if audit.exists() {
        kenning_audit::verify(&audit)?
    } else {
        kenning_audit::VerifyReport::default()
    };
    if let Some(bad) = &verified.first_bad {
        bail!(
            "the audit trail {} does not verify (line {}: {}); a database takes only a chain \
             that verifies, so nothing was copied",
            audit.display(),
            bad.line,
            bad.reason
        );
    }
    let head = ChainHead {
        records: verified.records,
        hash: verified.head.clone(),
    };
    let target = DatabaseArgs {
        database: Some(args.to.clone()),
        read_database: None,
        ..db.clone()
    };
    let kek = target.master_key()?;
    let store = Store::open(from)
        .map_err(|e| anyhow!("{e} (stop the node serving {} first)", from.display()))?;
    let mut src = DataDir {
        dir: from.clone(),
        store,
        distances: distances(ctx)?,
        keys: KeyStore::new(from),
        kek: kek.clone(),
        tokens_left: 0,
    };
    let pg = target.connect()?.context("no database given")?;
    let started = std::time::Instant::now();
    let report = match pg.import(&mut src, &head, args.replace, &kek.check_value()) {
        Ok(r) => r,
        Err(e @ ImportError::AlreadyImported { .. }) => {
            eprintln!("kenning: {e}");
            println!(
                "{}",
                json!({ "AlreadyMigrated": true, "AuditHead": {
                    "Records": head.records, "Hash": head.hash } })
            );
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    let seconds = started.elapsed().as_secs_f64();
    // Check what arrived: the chain as the database now reads it, and the
    // collections' rows against their counters.
    let copied = pg.faces.audit().verify()?;
    if !copied.is_ok() || copied.records != head.records || copied.head != head.hash {
        bail!(
            "the audit chain in the database does not match the data directory's after the \
             copy: {copied:?} against {head:?}"
        );
    }
    let store_check = pg.faces.verify().map_err(crate::commands::wire)?;
    if !store_check.problems.is_empty() {
        bail!(
            "the copied collections do not check: {}",
            store_check.problems.join("; ")
        );
    }
    let not_copied: Vec<String> = NOT_COPIED
        .iter()
        .filter(|(dir, _)| dir_has_files(&from.join(dir)))
        .map(|(dir, what)| format!("{what} ({}/{dir})", from.display()))
        .chain((src.tokens_left > 0).then(|| {
            format!(
                "{} API tokens (their hashes are keyed by {}/keys.key; give that file as \
                 --master-key-file to keep them, or issue new ones)",
                src.tokens_left,
                from.display()
            )
        }))
        .collect();
    for n in &not_copied {
        eprintln!("kenning: not copied: {n}");
    }
    eprintln!(
        "kenning: copied {} collections, {} faces, {} users, {} audit records, {} access keys, \
         {} API tokens, {} review items, {} probe photos, {} stream processors and {} evaluation \
         reports into {} in \
         {seconds:.1} s; the audit chain verifies there with the same head",
        report.collections,
        report.faces,
        report.users,
        report.audit_records,
        report.access_keys,
        report.api_tokens,
        report.review_items,
        report.probe_photos,
        report.stream_processors,
        report.eval_reports,
        pg.faces.location()
    );
    println!(
        "{}",
        json!({
            "Migrated": report,
            "AuditHead": { "Records": copied.records, "Hash": copied.head },
            "NotCopied": not_copied,
            "Seconds": seconds,
        })
    );
    Ok(0)
}

fn dir_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}
