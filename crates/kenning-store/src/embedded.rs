//! The embedded backend: the redb [`Store`] as the source of truth, one
//! Kenning index per collection as a cache beside it, and the audit trail as
//! a file, all in one data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kenning_audit::{AuditLog, Trail};
use kenning_core::fair::Distance;
use kenning_index::{Expect, Index, IndexConfig, IndexError};
use uuid::Uuid;

use crate::backend::{metric, Auditor, FaceStore, Nearest, Neighbour};
use crate::error::{Result, StoreError};
use crate::hook::{Change, CommitHook};
use crate::store::Store;
use crate::types::*;

/// The audit trail's file, relative to the data directory.
pub const AUDIT_FILE: &str = "audit/audit.jsonl";
/// The directory of the index files, relative to the data directory.
const INDEX_DIR: &str = "index";
/// Present while deleted records may still have bytes on disk; the next
/// [`FaceStore::erase`] erases them and removes it.
const ERASURE_PENDING: &str = "erasure-pending";

/// A collection's in-memory index and the lock that orders its writers.
struct LiveIndex {
    index: Index,
    /// Held across "commit to the store, then update the index" so the
    /// saved index always matches one store generation.
    writer: Mutex<()>,
    dirty: AtomicBool,
}

/// Writes each change's audit record to the trail file inside the store's
/// transaction, through whatever [`Auditor`] is installed.
struct AuditHook {
    log: Arc<AuditLog>,
    auditor: RwLock<Option<Arc<dyn Auditor>>>,
}

impl CommitHook for AuditHook {
    fn before_commit(&self, change: &Change<'_>) -> std::result::Result<(), String> {
        let auditor = self
            .auditor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(auditor) = auditor else {
            return Ok(());
        };
        let (record, _) = self
            .log
            .append(auditor.entry(change))
            .map_err(|e| e.to_string())?;
        auditor.recorded(record.seq);
        Ok(())
    }
}

/// Collections in one data directory: `store.redb`, `index/<id>.kix` and
/// `audit/audit.jsonl`. One process at a time may open it.
pub struct Embedded {
    store: Store,
    dir: PathBuf,
    distances: HashMap<String, Distance>,
    hook: Arc<AuditHook>,
    live: RwLock<HashMap<String, Arc<LiveIndex>>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn index_io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| {
        StoreError::Index(IndexError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

impl Embedded {
    /// Opens (or creates) the data directory `dir`; each collection's index
    /// measures the distance `distances` gives for its recogniser (by name):
    /// collections of different recognisers live side by side.
    pub fn open(dir: &Path, distances: HashMap<String, Distance>) -> Result<Self> {
        let store = Store::open(dir)?;
        let index_dir = dir.join(INDEX_DIR);
        std::fs::create_dir_all(&index_dir).map_err(index_io(&index_dir))?;
        let log = AuditLog::open(&dir.join(AUDIT_FILE))?;
        let hook = Arc::new(AuditHook {
            log: Arc::new(log),
            auditor: RwLock::new(None),
        });
        store.set_commit_hook(hook.clone());
        let this = Self {
            store,
            dir: dir.to_owned(),
            distances,
            hook,
            live: RwLock::new(HashMap::new()),
        };
        this.remove_orphan_index_files();
        Ok(this)
    }

    /// The redb store underneath (for tests and tools that work below the
    /// backend interface).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn index_path(&self, id: &str) -> PathBuf {
        self.dir.join(INDEX_DIR).join(format!("{id}.kix"))
    }

    fn remove_orphan_index_files(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join(INDEX_DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".kix"))
            else {
                continue;
            };
            if matches!(
                self.store.describe_collection(id),
                Err(StoreError::CollectionNotFound(_))
            ) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// The collection's live index, loaded from its file or rebuilt from the
    /// store when the file is missing, stale or corrupt.
    fn live(&self, c: &Collection) -> Result<Arc<LiveIndex>> {
        if let Some(l) = self
            .live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&c.id)
        {
            return Ok(l.clone());
        }
        let mut map = self.live.write().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = map.get(&c.id) {
            return Ok(l.clone());
        }
        let path = self.index_path(&c.id);
        let expect = Expect {
            dim: Some(c.dim as usize),
            metric: Some(metric(self.distance(c)?)),
            count: Some(c.face_count as usize),
            generation: Some(c.generation),
        };
        let index = match Index::load(&path, &expect) {
            Ok(index) => index,
            Err(_) => self.rebuild(c, &path)?,
        };
        let live = Arc::new(LiveIndex {
            index,
            writer: Mutex::new(()),
            dirty: AtomicBool::new(false),
        });
        map.insert(c.id.clone(), live.clone());
        Ok(live)
    }

    fn rebuild(&self, c: &Collection, path: &Path) -> Result<Index> {
        let embeddings = self.store.embeddings(&c.id)?;
        let generation = embeddings.generation();
        let index = Index::new(IndexConfig::new(
            embeddings.dim() as usize,
            metric(self.distance(c)?),
        ))?;
        let mut batch: Vec<(u64, Vec<f32>)> = Vec::new();
        let flush = |batch: &mut Vec<(u64, Vec<f32>)>| -> Result<()> {
            index.insert_many(batch.iter().map(|(id, v)| (*id, v.as_slice())))?;
            batch.clear();
            Ok(())
        };
        for item in embeddings {
            batch.push(item?);
            if batch.len() == 50_000 {
                flush(&mut batch)?;
            }
        }
        flush(&mut batch)?;
        index.save(path, generation)?;
        Ok(index)
    }

    /// The distance collection `c`'s vectors are compared by.
    fn distance(&self, c: &Collection) -> Result<Distance> {
        self.model_distance(&c.face_model).ok_or_else(|| {
            StoreError::InvalidParameter(format!(
                "collection {} holds vectors of recogniser {}, whose distance this service does not know",
                c.id, c.face_model
            ))
        })
    }

    fn model_distance(&self, m: &FaceModel) -> Option<Distance> {
        self.distances.get(&m.name).copied()
    }

    fn check_distance(&self, m: &FaceModel, distance: Distance) -> Result<()> {
        match self.model_distance(m) {
            Some(d) if d == distance => Ok(()),
            known => Err(StoreError::InvalidParameter(format!(
                "recogniser {m}'s vectors are compared by {known:?} distance in this data directory, not {distance:?}"
            ))),
        }
    }

    fn mark_erasure_pending(&self) {
        // Losing the marker only delays erasure to the next pass that finds
        // something else to delete, so a failure here is not fatal.
        let _ = std::fs::write(self.dir.join(ERASURE_PENDING), b"");
    }

    fn each_collection(&self, mut f: impl FnMut(&Collection) -> Result<()>) -> Result<()> {
        let mut token = None;
        loop {
            let page = self.store.list_collections(token.as_deref(), None)?;
            for c in &page.items {
                f(c)?;
            }
            token = page.next_token;
            if token.is_none() {
                return Ok(());
            }
        }
    }
}

fn insert_ignoring_duplicates(index: &Index, vectors: &[(u64, &[f32])]) -> Result<()> {
    match index.insert_many(vectors.iter().copied()) {
        Ok(()) => Ok(()),
        Err(IndexError::DuplicateId(_)) => {
            // The index was rebuilt from a snapshot that already held some of
            // these faces; add the rest one by one.
            for &(id, v) in vectors {
                if !index.contains(id) {
                    index.insert(id, v)?;
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

impl FaceStore for Embedded {
    fn set_auditor(&self, auditor: Arc<dyn Auditor>) {
        *self.hook.auditor.write().unwrap_or_else(|e| e.into_inner()) = Some(auditor);
    }

    fn audit(&self) -> Arc<dyn Trail> {
        self.hook.log.clone()
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn create_collection(&self, new: NewCollection, distance: Distance) -> Result<Collection> {
        self.check_distance(&new.face_model, distance)?;
        self.store.create_collection(new)
    }

    fn describe_collection(&self, id: &str) -> Result<Collection> {
        self.store.describe_collection(id)
    }

    fn list_collections(
        &self,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Collection>> {
        self.store.list_collections(token, max_results)
    }

    fn delete_collection(&self, id: &str) -> Result<Collection> {
        let mut map = self.live.write().unwrap_or_else(|e| e.into_inner());
        let live = map.remove(id);
        let _guard = live
            .as_ref()
            .map(|l| l.writer.lock().unwrap_or_else(|e| e.into_inner()));
        let c = self.store.delete_collection(id)?;
        let _ = std::fs::remove_file(self.index_path(id));
        self.mark_erasure_pending();
        Ok(c)
    }

    fn set_policy(&self, id: &str, policy: &str) -> Result<Collection> {
        self.store.set_policy(id, policy)
    }

    fn set_calibration(&self, id: &str, calibration: Option<&str>) -> Result<Collection> {
        self.store.set_calibration(id, calibration)
    }

    fn calibration(&self, id: &str) -> Result<Option<String>> {
        self.store.calibration(id)
    }

    fn add_faces(
        &self,
        collection: &str,
        model: &FaceModel,
        faces: Vec<NewFace>,
    ) -> Result<Vec<Face>> {
        let c = self.store.describe_collection(collection)?;
        let live = self.live(&c)?;
        let _guard = live.writer.lock().unwrap_or_else(|e| e.into_inner());
        let vectors: Vec<Vec<f32>> = faces.iter().map(|f| f.embedding.clone()).collect();
        let stored = self.store.add_faces(collection, model, faces)?;
        let pairs: Vec<(u64, &[f32])> = stored
            .iter()
            .zip(&vectors)
            .map(|(s, v)| (s.seq, v.as_slice()))
            .collect();
        insert_ignoring_duplicates(&live.index, &pairs)?;
        live.dirty.store(true, Ordering::Release);
        Ok(stored)
    }

    fn get_faces(&self, collection: &str, face_ids: &[String]) -> Result<Vec<Option<Face>>> {
        self.store.get_faces(collection, face_ids)
    }

    fn face_embedding(&self, collection: &str, face_id: &str) -> Result<(Face, Vec<f32>)> {
        self.store.face_embedding(collection, face_id)
    }

    fn list_faces(
        &self,
        collection: &str,
        user_id: Option<&str>,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Face>> {
        self.store
            .list_faces(collection, user_id, token, max_results)
    }

    fn delete_faces(
        &self,
        collection: &str,
        face_ids: &[String],
        on_associated: OnAssociated,
    ) -> Result<BatchOutcome> {
        let c = self.store.describe_collection(collection)?;
        let live = self.live(&c)?;
        let _guard = live.writer.lock().unwrap_or_else(|e| e.into_inner());
        let before = self
            .store
            .get_faces(collection, face_ids)
            .unwrap_or_default();
        let seqs: HashMap<Uuid, u64> = before
            .into_iter()
            .flatten()
            .map(|f| (f.face_id, f.seq))
            .collect();
        let outcome = self
            .store
            .delete_faces(collection, face_ids, on_associated)?;
        for face in &outcome.done {
            if let Some(seq) = seqs.get(face) {
                live.index.remove(*seq);
            }
        }
        live.dirty.store(true, Ordering::Release);
        if !outcome.done.is_empty() {
            self.mark_erasure_pending();
        }
        Ok(outcome)
    }

    fn touch_faces(&self, collection: &str, seqs: &[u64], at_ms: u64) -> Result<usize> {
        self.store.touch_faces(collection, seqs, at_ms)
    }

    fn expired_faces(&self, collection: &str, expiry: Expiry, limit: usize) -> Result<Vec<Face>> {
        self.store.expired_faces(collection, expiry, limit)
    }

    fn create_user(&self, collection: &str, user_id: &str) -> Result<User> {
        self.store.create_user(collection, user_id)
    }

    fn get_user(&self, collection: &str, user_id: &str) -> Result<User> {
        self.store.get_user(collection, user_id)
    }

    fn delete_user(&self, collection: &str, user_id: &str) -> Result<User> {
        let user = self.store.delete_user(collection, user_id)?;
        self.mark_erasure_pending();
        Ok(user)
    }

    fn list_users(
        &self,
        collection: &str,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<User>> {
        self.store.list_users(collection, token, max_results)
    }

    fn associate_faces(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<BatchOutcome> {
        self.store.associate_faces(collection, user_id, face_ids)
    }

    fn disassociate_faces(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<BatchOutcome> {
        self.store.disassociate_faces(collection, user_id, face_ids)
    }

    fn nearest(&self, c: &Collection, q: Nearest<'_>) -> Result<Vec<Neighbour>> {
        self.check_distance(&c.face_model, q.distance)?;
        let live = self.live(c)?;
        let want = q.k.saturating_add(usize::from(q.exclude.is_some()));
        let hits: Vec<_> = live
            .index
            .search(q.query, want, q.max_distance)?
            .into_iter()
            .filter(|h| Some(h.id) != q.exclude)
            .take(q.k)
            .collect();
        let seqs: Vec<u64> = hits.iter().map(|h| h.id).collect();
        let faces = self.store.faces_by_seq(&c.id, &seqs)?;
        let mut vectors = if q.with_embeddings {
            self.store.embeddings_by_seq(&c.id, &seqs)?
        } else {
            Vec::new()
        };
        vectors.resize(seqs.len(), Some(Vec::new()));
        Ok(hits
            .iter()
            .zip(faces)
            .zip(vectors)
            .filter_map(|((h, face), embedding)| {
                // A face deleted since the search began is not reported.
                Some(Neighbour {
                    face: face?,
                    distance: h.distance,
                    embedding: embedding?,
                })
            })
            .collect())
    }

    fn erase(&self) -> Result<()> {
        let marker = self.dir.join(ERASURE_PENDING);
        if !marker.exists() {
            return Ok(());
        }
        self.store.compact()?;
        self.each_collection(|c| {
            let l = self.live(c)?;
            let _guard = l.writer.lock().unwrap_or_else(|e| e.into_inner());
            if l.index.tombstones() > 0 {
                l.index.compact()?;
                l.dirty.store(true, Ordering::Release);
            }
            Ok(())
        })?;
        self.flush()?;
        let _ = std::fs::remove_file(marker);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let live: Vec<(String, Arc<LiveIndex>)> = self
            .live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, l) in live {
            if !l.dirty.load(Ordering::Acquire) {
                continue;
            }
            let _guard = l.writer.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(c) = self.store.describe_collection(&id) else {
                continue;
            };
            if l.index.tombstones() > l.index.len() / 4 {
                l.index.compact()?;
            }
            l.index.save(self.index_path(&id), c.generation)?;
            l.dirty.store(false, Ordering::Release);
        }
        Ok(())
    }

    fn verify(&self) -> Result<VerifyReport> {
        self.store.verify()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Best effort: an index not saved here is rebuilt on the next open.
        let _ = self.flush();
    }
}
