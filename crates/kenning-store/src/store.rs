use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::hook::{Change, CommitHook};
use crate::types::*;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "store.redb";
/// Scratch file `compact` writes before renaming it over [`DB_FILE`].
const TMP_FILE: &str = "store.redb.compacting";
/// On-disk format written by this build; bumped on incompatible changes.
pub const FORMAT_VERSION: u64 = 1;

type Bytes = &'static [u8];

// Store-wide tables.
const COLLECTIONS: TableDefinition<&str, Bytes> = TableDefinition::new("collections");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Collection id -> its own calibration document (CalibrateCollection); a
/// store-wide table so stores made before it existed need no conversion.
const CALIBRATIONS: TableDefinition<&str, &str> = TableDefinition::new("calibrations");
const META_FORMAT: &str = "format";
const META_CLOCK: &str = "clock";

// Each collection owns six tables named `<kind>/<collection id>`, so deleting
// a collection drops whole B-trees instead of scanning a shared keyspace.
const T_FACES: &str = "faces"; // seq -> postcard FaceRow
const T_VECTORS: &str = "vectors"; // seq -> raw f32 LE embedding
const T_IDS: &str = "face_ids"; // FaceId as u128 -> seq
const T_USERS: &str = "users"; // UserId -> postcard UserRow
const T_INDEXED: &str = "by_indexed"; // (indexed_at_ms, seq) -> ()
const T_ACTIVE: &str = "by_activity"; // (last_matched_at_ms or indexed_at_ms, seq) -> ()

fn tname(kind: &str, coll: &str) -> String {
    format!("{kind}/{coll}")
}

/// Runs `$body` once for each of a collection's tables, with `$def` bound to
/// its typed definition (the types differ, so a loop cannot do this).
macro_rules! for_each_table {
    ($coll:expr, $def:ident => $body:expr) => {{
        let coll: &str = $coll;
        for_each_table!(@one coll, T_FACES, u64, Bytes, $def => $body);
        for_each_table!(@one coll, T_VECTORS, u64, Bytes, $def => $body);
        for_each_table!(@one coll, T_IDS, u128, u64, $def => $body);
        for_each_table!(@one coll, T_USERS, &str, Bytes, $def => $body);
        for_each_table!(@one coll, T_INDEXED, (u64, u64), (), $def => $body);
        for_each_table!(@one coll, T_ACTIVE, (u64, u64), (), $def => $body);
    }};
    (@one $coll:ident, $kind:ident, $k:ty, $v:ty, $def:ident => $body:expr) => {{
        let name = tname($kind, $coll);
        let $def = TableDefinition::<$k, $v>::new(&name);
        $body;
    }};
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A collection's tables, opened in one transaction. `Table` for writes,
/// `ReadOnlyTable` for snapshots; the helpers below work on either.
struct Tables<F, V, I, U, T> {
    faces: F,
    vectors: V,
    ids: I,
    users: U,
    indexed: T,
    active: T,
}

type WTables<'t> = Tables<
    Table<'t, u64, Bytes>,
    Table<'t, u64, Bytes>,
    Table<'t, u128, u64>,
    Table<'t, &'static str, Bytes>,
    Table<'t, (u64, u64), ()>,
>;
type RTables = Tables<
    ReadOnlyTable<u64, Bytes>,
    ReadOnlyTable<u64, Bytes>,
    ReadOnlyTable<u128, u64>,
    ReadOnlyTable<&'static str, Bytes>,
    ReadOnlyTable<(u64, u64), ()>,
>;

impl<'t> WTables<'t> {
    fn open(txn: &'t WriteTransaction, coll: &str) -> Result<Self> {
        Ok(Tables {
            faces: txn.open_table(TableDefinition::new(&tname(T_FACES, coll)))?,
            vectors: txn.open_table(TableDefinition::new(&tname(T_VECTORS, coll)))?,
            ids: txn.open_table(TableDefinition::new(&tname(T_IDS, coll)))?,
            users: txn.open_table(TableDefinition::new(&tname(T_USERS, coll)))?,
            indexed: txn.open_table(TableDefinition::new(&tname(T_INDEXED, coll)))?,
            active: txn.open_table(TableDefinition::new(&tname(T_ACTIVE, coll)))?,
        })
    }

    fn delete(txn: &WriteTransaction, coll: &str) -> Result<()> {
        for_each_table!(coll, def => txn.delete_table(def)?);
        Ok(())
    }

    /// Removes a face from every table; the caller adjusts the user row and counters.
    fn remove_face(&mut self, seq: u64, row: &FaceRow) -> Result<()> {
        self.faces.remove(seq)?;
        self.vectors.remove(seq)?;
        self.ids.remove(u128::from_be_bytes(row.face_id))?;
        self.indexed.remove((row.indexed_at_ms, seq))?;
        self.active.remove((row.activity_ms(), seq))?;
        Ok(())
    }

    fn put_face(&mut self, seq: u64, row: &FaceRow) -> Result<()> {
        self.faces.insert(seq, encode(row).as_slice())?;
        Ok(())
    }

    fn put_user(&mut self, user_id: &str, row: &UserRow) -> Result<()> {
        self.users.insert(user_id, encode(row).as_slice())?;
        Ok(())
    }
}

impl RTables {
    fn open(txn: &ReadTransaction, coll: &str) -> Result<Self> {
        Ok(Tables {
            faces: txn.open_table(TableDefinition::new(&tname(T_FACES, coll)))?,
            vectors: txn.open_table(TableDefinition::new(&tname(T_VECTORS, coll)))?,
            ids: txn.open_table(TableDefinition::new(&tname(T_IDS, coll)))?,
            users: txn.open_table(TableDefinition::new(&tname(T_USERS, coll)))?,
            indexed: txn.open_table(TableDefinition::new(&tname(T_INDEXED, coll)))?,
            active: txn.open_table(TableDefinition::new(&tname(T_ACTIVE, coll)))?,
        })
    }
}

fn face_row(t: &impl ReadableTable<u64, Bytes>, seq: u64) -> Result<Option<FaceRow>> {
    t.get(seq)?.map(|g| decode_face_row(g.value())).transpose()
}

/// Seq and row of a FaceId, if the face exists.
fn face_by_id(
    faces: &impl ReadableTable<u64, Bytes>,
    ids: &impl ReadableTable<u128, u64>,
    id: Uuid,
) -> Result<Option<(u64, FaceRow)>> {
    let Some(seq) = ids.get(id.as_u128())?.map(|g| g.value()) else {
        return Ok(None);
    };
    match face_row(faces, seq)? {
        Some(row) => Ok(Some((seq, row))),
        None => Err(StoreError::Corrupt(format!(
            "face {id} indexed at seq {seq} but has no row"
        ))),
    }
}

/// A face's seq and user, for the batch planners.
fn found<F, V, U, T>(
    t: &Tables<F, V, impl ReadableTable<u128, u64>, U, T>,
    id: Uuid,
) -> Result<Option<Found>>
where
    F: ReadableTable<u64, Bytes>,
{
    Ok(face_by_id(&t.faces, &t.ids, id)?.map(|(seq, row)| Found {
        seq,
        user_id: row.user_id,
    }))
}

fn user_row(t: &impl ReadableTable<&'static str, Bytes>, id: &str) -> Result<Option<UserRow>> {
    t.get(id)?.map(|g| decode(g.value(), "user")).transpose()
}

fn collection_row(t: &impl ReadableTable<&'static str, Bytes>, id: &str) -> Result<Collection> {
    validate_collection_id(id)?;
    match t.get(id)? {
        Some(g) => decode(g.value(), "collection"),
        None => Err(StoreError::CollectionNotFound(id.into())),
    }
}

fn put_collection(txn: &WriteTransaction, c: &Collection) -> Result<()> {
    txn.open_table(COLLECTIONS)?
        .insert(c.id.as_str(), encode(c).as_slice())?;
    Ok(())
}

/// Copies one table between databases, in key order.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<()> {
    let mut dst = to.open_table(def)?;
    for e in from.open_table(def)?.iter()? {
        let (k, v) = e?;
        dst.insert(k.value(), v.value())?;
    }
    Ok(())
}

/// Advances the store-wide clock and returns the new value (see [`Collection::generation`]).
fn tick(txn: &WriteTransaction) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(META_CLOCK)?.map_or(0, |g| g.value()) + 1;
    meta.insert(META_CLOCK, next)?;
    Ok(next)
}

/// An open database file. `compact` replaces the file and retires the old
/// handle; writers that queued on a retired handle retry on the new one.
struct Handle {
    db: Database,
    retired: AtomicBool,
}

impl Handle {
    fn new(db: Database) -> Arc<Self> {
        Arc::new(Handle {
            db,
            retired: AtomicBool::new(false),
        })
    }
}

/// A read transaction and the handle it reads from, kept alive together.
struct Snapshot {
    // Declared first so it is dropped before the handle.
    txn: ReadTransaction,
    _handle: Arc<Handle>,
}

impl std::ops::Deref for Snapshot {
    type Target = ReadTransaction;
    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

/// The durable store: one redb file in the data directory holding every
/// collection, face, embedding and user. Cheap to share (`Arc<Store>`); reads
/// run on MVCC snapshots and never wait for a writer (not even for
/// [`Store::compact`]), writes are serialised by redb and durable (fsync)
/// when the call returns.
pub struct Store {
    dir: PathBuf,
    // Held only long enough to clone or swap the Arc.
    current: RwLock<Arc<Handle>>,
    // One compaction at a time.
    compacting: Mutex<()>,
    hook: RwLock<Option<Arc<dyn CommitHook>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. After a crash redb
    /// recovers to the last committed transaction; this never needs manual repair.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        // A compaction that crashed before its rename leaves a scratch file.
        match std::fs::remove_file(dir.join(TMP_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let db = match Database::builder().create(dir.join(DB_FILE)) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::InUse(dir)),
            other => other?,
        };
        let store = Store {
            dir,
            current: RwLock::new(Handle::new(db)),
            compacting: Mutex::new(()),
            hook: RwLock::new(None),
        };
        store.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_FORMAT)?.map(|g| g.value());
            match found {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(found) => {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    })
                }
            }
            drop(meta);
            txn.open_table(COLLECTIONS)?;
            txn.open_table(CALIBRATIONS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Installs the hook every later change passes through before it commits
    /// (replacing any earlier one).
    pub fn set_commit_hook(&self, hook: Arc<dyn CommitHook>) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Runs the commit hook, if any, on `change`.
    fn staged(&self, change: Change<'_>) -> Result<()> {
        let hook = self.hook.read().unwrap_or_else(|e| e.into_inner()).clone();
        match hook {
            Some(h) => h.before_commit(&change).map_err(StoreError::Hook),
            None => Ok(()),
        }
    }

    /// The data directory this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn handle(&self) -> Arc<Handle> {
        // The lock only guards an Arc swap, so a poisoned lock is still sound.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn read(&self) -> Result<Snapshot> {
        let handle = self.handle();
        Ok(Snapshot {
            txn: handle.db.begin_read()?,
            _handle: handle,
        })
    }

    /// Runs `f` in a write transaction and commits durably; on error nothing is written.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let (_handle, mut txn) = loop {
            let handle = self.handle();
            let txn = handle.db.begin_write()?;
            // We may have queued behind a compaction that has since replaced
            // the file; writing to the retired one would be lost.
            if !handle.retired.load(Ordering::Acquire) {
                break (handle, txn);
            }
            txn.abort()?;
        };
        // Quick repair stores the allocator state with each commit, so opening
        // after kill -9 is instant instead of a walk over the whole file.
        txn.set_quick_repair(true);
        match f(&txn) {
            Ok(out) => {
                txn.commit()?;
                Ok(out)
            }
            Err(e) => {
                txn.abort()?;
                Err(e)
            }
        }
    }

    // ------------------------------------------------------------ collections

    /// CreateCollection. Fails with `CollectionExists` or an id/parameter error.
    pub fn create_collection(&self, new: NewCollection) -> Result<Collection> {
        new.validate()?;
        self.write(|txn| {
            if txn.open_table(COLLECTIONS)?.get(new.id.as_str())?.is_some() {
                return Err(StoreError::CollectionExists(new.id.clone()));
            }
            let c = Collection {
                arn: collection_arn(&new.id),
                created_at_ms: now_ms(),
                face_model: new.face_model.clone(),
                dim: new.dim,
                policy: new.policy.clone(),
                face_count: 0,
                user_count: 0,
                generation: tick(txn)?,
                next_seq: 1,
                id: new.id.clone(),
            };
            put_collection(txn, &c)?;
            // Create the tables now so readers can always open them.
            WTables::open(txn, &c.id)?;
            self.staged(Change::CollectionCreated { collection: &c })?;
            Ok(c)
        })
    }

    /// DescribeCollection.
    pub fn describe_collection(&self, id: &str) -> Result<Collection> {
        collection_row(&self.read()?.open_table(COLLECTIONS)?, id)
    }

    /// ListCollections in id order; `max_results` 1-4096, default 1000.
    pub fn list_collections(
        &self,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Collection>> {
        let max = check_max_results(max_results, DEFAULT_LIST_RESULTS, MAX_LIST_RESULTS)?;
        let after = token
            .map(|t| read_str_token(TokenKind::Collections, t))
            .transpose()?;
        let table = self.read()?.open_table(COLLECTIONS)?;
        let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let items = table
            .range::<&str>((start, Bound::Unbounded))?
            .take(max + 1)
            .map(|e| decode(e?.1.value(), "collection"))
            .collect::<Result<Vec<Collection>>>()?;
        Ok(paginate(items, max, |c| {
            make_token(TokenKind::Collections, c.id.as_bytes())
        }))
    }

    /// DeleteCollection: removes the collection with all its faces, vectors
    /// and users in one transaction; returns the record as it was, after commit.
    pub fn delete_collection(&self, id: &str) -> Result<Collection> {
        self.write(|txn| {
            let c = collection_row(&txn.open_table(COLLECTIONS)?, id)?;
            txn.open_table(COLLECTIONS)?.remove(id)?;
            txn.open_table(CALIBRATIONS)?.remove(id)?;
            WTables::delete(txn, id)?;
            // Keep the clock moving so a re-created collection starts above
            // every generation the old one reached.
            tick(txn)?;
            self.staged(Change::CollectionDeleted { collection: &c })?;
            Ok(c)
        })
    }

    /// Replaces a collection's policy document (does not change `generation`).
    pub fn set_policy(&self, id: &str, policy: &str) -> Result<Collection> {
        self.write(|txn| {
            let mut c = collection_row(&txn.open_table(COLLECTIONS)?, id)?;
            c.policy = policy.into();
            put_collection(txn, &c)?;
            self.staged(Change::PolicySet { collection: &c })?;
            Ok(c)
        })
    }

    /// Sets a collection's own calibration document, or with `None` removes
    /// it (the shipped calibration is back); does not change `generation`.
    pub fn set_calibration(&self, id: &str, calibration: Option<&str>) -> Result<Collection> {
        self.write(|txn| {
            let c = collection_row(&txn.open_table(COLLECTIONS)?, id)?;
            let mut t = txn.open_table(CALIBRATIONS)?;
            match calibration {
                Some(doc) => {
                    t.insert(id, doc)?;
                }
                None => {
                    t.remove(id)?;
                }
            }
            drop(t);
            self.staged(Change::CalibrationSet {
                collection: &c,
                calibration,
            })?;
            Ok(c)
        })
    }

    /// A collection's own calibration document, if one is set.
    pub fn calibration(&self, id: &str) -> Result<Option<String>> {
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, id)?;
        let t = txn.open_table(CALIBRATIONS)?;
        let doc = t.get(id)?.map(|g| g.value().to_owned());
        Ok(doc)
    }

    // ------------------------------------------------------------ faces

    /// IndexFaces' write: adds all faces in one transaction and returns them
    /// with their new FaceIds and seq ids. Refuses vectors of another model.
    pub fn add_faces(
        &self,
        collection: &str,
        model: &FaceModel,
        faces: Vec<NewFace>,
    ) -> Result<Vec<Face>> {
        validate_new_faces(&faces)?;
        let now = now_ms();
        self.write(|txn| {
            let mut c = collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
            check_faces_fit(&c, model, &faces)?;
            if faces.is_empty() {
                return Ok(Vec::new());
            }
            let mut t = WTables::open(txn, collection)?;
            let mut out = Vec::with_capacity(faces.len());
            for f in faces {
                let seq = c.next_seq;
                c.next_seq += 1;
                // A v4 collision is astronomically unlikely, but overwriting an
                // id mapping would orphan a face, so check rather than trust.
                let mut face_id = Uuid::new_v4();
                while t.ids.get(face_id.as_u128())?.is_some() {
                    face_id = Uuid::new_v4();
                }
                let b = f.bounding_box;
                let row = FaceRow {
                    face_id: *face_id.as_bytes(),
                    image_id: *f.image_id.as_bytes(),
                    external_image_id: f.external_image_id,
                    bbox: [b.width, b.height, b.left, b.top],
                    confidence: f.confidence,
                    indexed_at_ms: f.indexed_at_ms.unwrap_or(now),
                    last_matched_at_ms: None,
                    user_id: None,
                    pixels: f.pixels,
                };
                t.put_face(seq, &row)?;
                t.vectors
                    .insert(seq, encode_vector(&f.embedding).as_slice())?;
                t.ids.insert(face_id.as_u128(), seq)?;
                t.indexed.insert((row.indexed_at_ms, seq), ())?;
                t.active.insert((row.activity_ms(), seq), ())?;
                out.push(row.to_face(seq));
            }
            drop(t);
            c.face_count += out.len() as u64;
            c.generation = tick(txn)?;
            put_collection(txn, &c)?;
            self.staged(Change::FacesAdded {
                collection: &c,
                faces: &out,
            })?;
            Ok(out)
        })
    }

    /// One face by FaceId (`FaceNotFound` if absent).
    pub fn get_face(&self, collection: &str, face_id: &str) -> Result<Face> {
        let id = parse_face_id(face_id)?;
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let t = RTables::open(&txn, collection)?;
        face_by_id(&t.faces, &t.ids, id)?
            .map(|(seq, row)| row.to_face(seq))
            .ok_or_else(|| StoreError::FaceNotFound(face_id.into()))
    }

    /// Faces by FaceId (up to 4096), in request order; `None` where absent.
    pub fn get_faces<S: AsRef<str>>(
        &self,
        collection: &str,
        face_ids: &[S],
    ) -> Result<Vec<Option<Face>>> {
        if face_ids.len() > MAX_DELETE_IDS {
            return Err(StoreError::BadItemCount {
                what: "FaceIds",
                max: MAX_DELETE_IDS,
                got: face_ids.len(),
            });
        }
        let ids = face_ids
            .iter()
            .map(|s| parse_face_id(s.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let t = RTables::open(&txn, collection)?;
        ids.into_iter()
            .map(|id| Ok(face_by_id(&t.faces, &t.ids, id)?.map(|(seq, row)| row.to_face(seq))))
            .collect()
    }

    /// A face and its embedding (SearchFaces by FaceId).
    pub fn face_embedding(&self, collection: &str, face_id: &str) -> Result<(Face, Vec<f32>)> {
        let id = parse_face_id(face_id)?;
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let t = RTables::open(&txn, collection)?;
        let (seq, row) = face_by_id(&t.faces, &t.ids, id)?
            .ok_or_else(|| StoreError::FaceNotFound(face_id.into()))?;
        let v = t.vectors.get(seq)?.map(|g| decode_vector(g.value()));
        let v = v.ok_or_else(|| StoreError::Corrupt(format!("face {id} has no vector")))?;
        Ok((row.to_face(seq), v))
    }

    /// Faces by seq id (search results), in request order; `None` where gone.
    pub fn faces_by_seq(&self, collection: &str, seqs: &[u64]) -> Result<Vec<Option<Face>>> {
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let t = RTables::open(&txn, collection)?;
        seqs.iter()
            .map(|&s| Ok(face_row(&t.faces, s)?.map(|r| r.to_face(s))))
            .collect()
    }

    /// Full-precision embeddings by seq id (exact re-ranking), in request order.
    pub fn embeddings_by_seq(
        &self,
        collection: &str,
        seqs: &[u64],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let vectors = RTables::open(&txn, collection)?.vectors;
        seqs.iter()
            .map(|&s| Ok(vectors.get(s)?.map(|g| decode_vector(g.value()))))
            .collect()
    }

    /// Every (seq, embedding) of a collection from one consistent snapshot, in
    /// seq order, with that snapshot's generation (for rebuilding the index).
    pub fn embeddings(&self, collection: &str) -> Result<Embeddings> {
        let txn = self.read()?;
        let c = collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let range = RTables::open(&txn, collection)?.vectors.range::<u64>(..)?;
        Ok(Embeddings {
            range,
            _snapshot: txn,
            generation: c.generation,
            len: c.face_count,
            dim: c.dim,
        })
    }

    /// ListFaces in seq (indexing) order, optionally only a user's faces;
    /// `max_results` 1-4096, default 1000.
    pub fn list_faces(
        &self,
        collection: &str,
        user_id: Option<&str>,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Face>> {
        let max = check_max_results(max_results, DEFAULT_LIST_RESULTS, MAX_LIST_RESULTS)?;
        let after = token.map(read_seq_token).transpose()?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let t = RTables::open(&txn, collection)?;
        let items = match user_id {
            None => t
                .faces
                .range::<u64>((start, Bound::Unbounded))?
                .take(max + 1)
                .map(|e| {
                    let (k, v) = e?;
                    Ok(decode_face_row(v.value())?.to_face(k.value()))
                })
                .collect::<Result<Vec<_>>>()?,
            Some(u) => {
                validate_user_id(u)?;
                let user =
                    user_row(&t.users, u)?.ok_or_else(|| StoreError::UserNotFound(u.into()))?;
                let mut faces = Vec::with_capacity(user.faces.len());
                for f in &user.faces {
                    if let Some((seq, row)) = face_by_id(&t.faces, &t.ids, Uuid::from_bytes(*f))? {
                        if after.is_none_or(|a| seq > a) {
                            faces.push(row.to_face(seq));
                        }
                    }
                }
                faces.sort_by_key(|f| f.seq);
                faces
            }
        };
        Ok(paginate(items, max, |f| {
            make_token(TokenKind::Faces, &f.seq.to_be_bytes())
        }))
    }

    /// DeleteFaces (1-4096 ids, one transaction). Faces owned by a user are
    /// refused or disassociated first, per `on_associated`.
    pub fn delete_faces<S: AsRef<str>>(
        &self,
        collection: &str,
        face_ids: &[S],
        on_associated: OnAssociated,
    ) -> Result<BatchOutcome> {
        let ids = parse_face_ids(face_ids, "FaceIds", MAX_DELETE_IDS)?;
        self.write(|txn| {
            let mut c = collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
            let mut t = WTables::open(txn, collection)?;
            let (out, delete) = plan_delete(ids, on_associated, |id| found(&t, id))?;
            for (id, f) in delete {
                if let Some(user) = &f.user_id {
                    if let Some(mut u) = user_row(&t.users, user)? {
                        u.faces.retain(|x| x != id.as_bytes());
                        t.put_user(user, &u)?;
                    }
                }
                let row = face_row(&t.faces, f.seq)?
                    .ok_or_else(|| StoreError::Corrupt(format!("face {id} lost its row")))?;
                t.remove_face(f.seq, &row)?;
            }
            drop(t);
            if !out.done.is_empty() {
                c.face_count -= out.done.len() as u64;
                c.generation = tick(txn)?;
                put_collection(txn, &c)?;
            }
            self.staged(Change::FacesDeleted {
                collection: &c,
                outcome: &out,
            })?;
            Ok(out)
        })
    }

    /// Records that searches matched these faces at `at_ms` (one transaction
    /// for the whole batch; unknown seqs are skipped, times never go back).
    /// Returns how many faces changed. Does not change `generation`.
    pub fn touch_faces(&self, collection: &str, seqs: &[u64], at_ms: u64) -> Result<usize> {
        self.write(|txn| {
            collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
            let mut t = WTables::open(txn, collection)?;
            let mut n = 0;
            for &seq in seqs {
                let Some(mut row) = face_row(&t.faces, seq)? else {
                    continue;
                };
                if row.last_matched_at_ms.is_some_and(|m| m >= at_ms) {
                    continue;
                }
                t.active.remove((row.activity_ms(), seq))?;
                row.last_matched_at_ms = Some(at_ms);
                t.active.insert((row.activity_ms(), seq), ())?;
                t.put_face(seq, &row)?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// Retention query: up to `limit` faces matching `expiry`, oldest first.
    /// Feed them to [`Store::delete_faces`] with [`OnAssociated::Disassociate`]
    /// and repeat until empty.
    pub fn expired_faces(
        &self,
        collection: &str,
        expiry: Expiry,
        limit: usize,
    ) -> Result<Vec<Face>> {
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let t = RTables::open(&txn, collection)?;
        let (index, before) = match expiry {
            Expiry::IndexedBefore(ms) => (&t.indexed, ms),
            Expiry::LastMatchedBefore(ms) => (&t.active, ms),
        };
        let mut out = Vec::new();
        for e in index.range::<(u64, u64)>(..(before, 0))?.take(limit) {
            let (_, seq) = e?.0.value();
            let row = face_row(&t.faces, seq)?.ok_or_else(|| {
                StoreError::Corrupt(format!("retention index names missing seq {seq}"))
            })?;
            out.push(row.to_face(seq));
        }
        Ok(out)
    }

    // ------------------------------------------------------------ users

    /// CreateUser.
    pub fn create_user(&self, collection: &str, user_id: &str) -> Result<User> {
        validate_user_id(user_id)?;
        self.write(|txn| {
            let mut c = collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
            let mut t = WTables::open(txn, collection)?;
            if t.users.get(user_id)?.is_some() {
                return Err(StoreError::UserExists(user_id.into()));
            }
            let row = UserRow {
                created_at_ms: now_ms(),
                faces: Vec::new(),
            };
            t.put_user(user_id, &row)?;
            drop(t);
            c.user_count += 1;
            put_collection(txn, &c)?;
            self.staged(Change::UserCreated {
                collection: &c,
                user_id,
            })?;
            Ok(row.to_user(user_id))
        })
    }

    /// One user with its faces.
    pub fn get_user(&self, collection: &str, user_id: &str) -> Result<User> {
        validate_user_id(user_id)?;
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let users = RTables::open(&txn, collection)?.users;
        user_row(&users, user_id)?
            .map(|r| r.to_user(user_id))
            .ok_or_else(|| StoreError::UserNotFound(user_id.into()))
    }

    /// DeleteUser: disassociates its faces (they stay) and removes the user.
    pub fn delete_user(&self, collection: &str, user_id: &str) -> Result<User> {
        validate_user_id(user_id)?;
        self.write(|txn| {
            let mut c = collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
            let mut t = WTables::open(txn, collection)?;
            let row = user_row(&t.users, user_id)?
                .ok_or_else(|| StoreError::UserNotFound(user_id.into()))?;
            for f in &row.faces {
                if let Some((seq, mut face)) = face_by_id(&t.faces, &t.ids, Uuid::from_bytes(*f))? {
                    face.user_id = None;
                    t.put_face(seq, &face)?;
                }
            }
            t.users.remove(user_id)?;
            drop(t);
            c.user_count -= 1;
            put_collection(txn, &c)?;
            let user = row.to_user(user_id);
            self.staged(Change::UserDeleted {
                collection: &c,
                user: &user,
            })?;
            Ok(user)
        })
    }

    /// ListUsers in id order; `max_results` 1-500, default 500.
    pub fn list_users(
        &self,
        collection: &str,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<User>> {
        let max = check_max_results(max_results, MAX_LIST_USERS, MAX_LIST_USERS)?;
        let after = token
            .map(|t| read_str_token(TokenKind::Users, t))
            .transpose()?;
        let txn = self.read()?;
        collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
        let users = RTables::open(&txn, collection)?.users;
        let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let items = users
            .range::<&str>((start, Bound::Unbounded))?
            .take(max + 1)
            .map(|e| {
                let (k, v) = e?;
                Ok(decode::<UserRow>(v.value(), "user")?.to_user(k.value()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(items, max, |u| {
            make_token(TokenKind::Users, u.user_id.as_bytes())
        }))
    }

    /// AssociateFaces (1-100 ids). Missing faces and faces of other users are
    /// reported, not fatal; exceeding 100 faces per user fails the whole call.
    pub fn associate_faces<S: AsRef<str>>(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[S],
    ) -> Result<BatchOutcome> {
        validate_user_id(user_id)?;
        let ids = parse_face_ids(face_ids, "FaceIds", MAX_ASSOCIATE_IDS)?;
        self.write(|txn| {
            let c = collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
            let mut t = WTables::open(txn, collection)?;
            let mut user = user_row(&t.users, user_id)?
                .ok_or_else(|| StoreError::UserNotFound(user_id.into()))?;
            let (mut out, fresh) =
                plan_associate(user_id, user.faces.len(), ids, |id| found(&t, id))?;
            for (id, seq) in fresh {
                let mut row = face_row(&t.faces, seq)?
                    .ok_or_else(|| StoreError::Corrupt(format!("face {id} lost its row")))?;
                row.user_id = Some(user_id.into());
                t.put_face(seq, &row)?;
                user.faces.push(*id.as_bytes());
            }
            t.put_user(user_id, &user)?;
            out.user_status = Some(user.status());
            drop(t);
            self.staged(Change::FacesAssociated {
                collection: &c,
                user_id,
                outcome: &out,
            })?;
            Ok(out)
        })
    }

    /// DisassociateFaces (1-100 ids). A face not associated with anyone counts
    /// as done (the caller's intent holds); another user's face is reported.
    pub fn disassociate_faces<S: AsRef<str>>(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[S],
    ) -> Result<BatchOutcome> {
        validate_user_id(user_id)?;
        let ids = parse_face_ids(face_ids, "FaceIds", MAX_ASSOCIATE_IDS)?;
        self.write(|txn| {
            let c = collection_row(&txn.open_table(COLLECTIONS)?, collection)?;
            let mut t = WTables::open(txn, collection)?;
            let mut user = user_row(&t.users, user_id)?
                .ok_or_else(|| StoreError::UserNotFound(user_id.into()))?;
            let (mut out, clear) = plan_disassociate(user_id, ids, |id| found(&t, id))?;
            for (id, seq) in clear {
                let mut row = face_row(&t.faces, seq)?
                    .ok_or_else(|| StoreError::Corrupt(format!("face {id} lost its row")))?;
                row.user_id = None;
                t.put_face(seq, &row)?;
                user.faces.retain(|f| f != id.as_bytes());
            }
            t.put_user(user_id, &user)?;
            out.user_status = Some(user.status());
            drop(t);
            self.staged(Change::FacesDisassociated {
                collection: &c,
                user_id,
                outcome: &out,
            })?;
            Ok(out)
        })
    }

    // ------------------------------------------------------------ maintenance

    /// Rewrites the database into a fresh file holding only live records and
    /// atomically replaces the old one, so deleted faces' vectors and metadata
    /// are gone from the file (redb's in-place compaction leaves old bytes in
    /// pages it does not move). Call after deletions that must be physical
    /// (retention, erasure requests, DeleteCollection). Writers wait while it
    /// copies (about 30 us per face); readers carry on. Crash-safe: until the
    /// rename the old file is intact, after it the new one is complete and
    /// durable.
    pub fn compact(&self) -> Result<()> {
        let _one = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.handle();
        // Holding the write lock freezes the old file: the snapshot below is
        // then everything that will ever be committed to it.
        let freeze = old.db.begin_write()?;
        let path = self.dir.join(DB_FILE);
        let tmp = self.dir.join(TMP_FILE);
        let _ = std::fs::remove_file(&tmp);
        let copied = (|| {
            let mut fresh = Database::builder().create(&tmp)?;
            let from = old.db.begin_read()?;
            let to = fresh.begin_write()?;
            copy_table(&from, &to, META)?;
            copy_table(&from, &to, COLLECTIONS)?;
            copy_table(&from, &to, CALIBRATIONS)?;
            for e in from.open_table(COLLECTIONS)?.iter()? {
                let id = e?.0.value().to_string();
                for_each_table!(&id, def => copy_table(&from, &to, def)?);
            }
            to.commit()?;
            // The copy grew the file in big steps; compacting it while
            // nothing else can see it trims that slack (~45%).
            while fresh.compact()? {}
            // The open handle follows the renamed file.
            std::fs::rename(&tmp, &path)?;
            Ok::<_, StoreError>(fresh)
        })();
        let fresh = match copied {
            Ok(fresh) => fresh,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                freeze.abort()?;
                return Err(e);
            }
        };
        // Retire before releasing the freeze so queued writers retry on the new file.
        old.retired.store(true, Ordering::Release);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Handle::new(fresh);
        freeze.abort()?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Checks every collection's tables against each other and its counters.
    /// Slow (reads everything); for tests, `kenning store verify` and after recovery.
    pub fn verify(&self) -> Result<VerifyReport> {
        let txn = self.read()?;
        let mut report = VerifyReport::default();
        let colls = txn.open_table(COLLECTIONS)?;
        for e in colls.iter()? {
            let c: Collection = decode(e?.1.value(), "collection")?;
            report.collections += 1;
            let mut bad = |m: String| report.problems.push(format!("{}: {m}", c.id));
            let t = RTables::open(&txn, &c.id)?;
            let n = t.faces.len()?;
            for (what, len) in [
                ("vectors", t.vectors.len()?),
                ("face_ids", t.ids.len()?),
                ("by_indexed", t.indexed.len()?),
                ("by_activity", t.active.len()?),
            ] {
                if len != n {
                    bad(format!("{what} has {len} entries, faces has {n}"));
                }
            }
            if n != c.face_count {
                bad(format!("FaceCount {} but {n} faces", c.face_count));
            }
            if t.users.len()? != c.user_count {
                bad(format!(
                    "UserCount {} but {} users",
                    c.user_count,
                    t.users.len()?
                ));
            }
            for e in t.faces.iter()? {
                let (k, v) = e?;
                let (seq, row): (u64, FaceRow) = (k.value(), decode_face_row(v.value())?);
                if seq >= c.next_seq {
                    bad(format!("seq {seq} >= next_seq {}", c.next_seq));
                }
                let id = u128::from_be_bytes(row.face_id);
                if t.ids.get(id)?.map(|g| g.value()) != Some(seq) {
                    bad(format!(
                        "face_ids does not map {} to {seq}",
                        Uuid::from_u128(id)
                    ));
                }
                match t.vectors.get(seq)? {
                    Some(v) if v.value().len() == c.dim as usize * 4 => {}
                    _ => bad(format!("seq {seq} has no vector of dimension {}", c.dim)),
                }
                if t.indexed.get((row.indexed_at_ms, seq))?.is_none()
                    || t.active.get((row.activity_ms(), seq))?.is_none()
                {
                    bad(format!("seq {seq} missing from a retention index"));
                }
                if let Some(u) = &row.user_id {
                    let owns =
                        user_row(&t.users, u)?.is_some_and(|r| r.faces.contains(&row.face_id));
                    if !owns {
                        bad(format!("seq {seq} names user {u}, which does not list it"));
                    }
                }
                report.faces += 1;
            }
            for e in t.users.iter()? {
                let (k, v) = e?;
                let row: UserRow = decode(v.value(), "user")?;
                for f in &row.faces {
                    let ok = face_by_id(&t.faces, &t.ids, Uuid::from_bytes(*f))?
                        .is_some_and(|(_, r)| r.user_id.as_deref() == Some(k.value()));
                    if !ok {
                        bad(format!(
                            "user {} lists face {} it does not own",
                            k.value(),
                            Uuid::from_bytes(*f)
                        ));
                    }
                }
                report.users += 1;
            }
        }
        Ok(report)
    }
}

/// Iterator over a collection's (seq, embedding) pairs from one snapshot; see
/// [`Store::embeddings`]. Holding it pins the snapshot (and, across a
/// `compact`, the old file) until dropped.
pub struct Embeddings {
    // Declared before the snapshot so it is dropped first.
    range: redb::Range<'static, u64, Bytes>,
    _snapshot: Snapshot,
    generation: u64,
    len: u64,
    dim: u32,
}

impl Embeddings {
    /// The collection's generation in this snapshot.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// Number of faces in this snapshot.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True when the collection has no faces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Embedding dimension.
    pub fn dim(&self) -> u32 {
        self.dim
    }
}

impl Iterator for Embeddings {
    type Item = Result<(u64, Vec<f32>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.range.next().map(|e| {
            let (k, v) = e?;
            Ok((k.value(), decode_vector(v.value())))
        })
    }
}
