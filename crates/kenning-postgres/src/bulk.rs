//! Bulk loads: many faces into one collection by binary COPY, in one
//! transaction with their audit records, the collection's HNSW index built
//! once afterwards when the load is large (building a graph over loaded rows
//! is many times faster than inserting into it row by row).

use std::pin::Pin;
use std::time::Instant;

use deadpool_postgres::Transaction;
use kenning_store::{
    check_faces_fit, validate_new_faces, Change, Face, FaceModel, NewFace, Result, StoreError,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::db::{Options, Res};
use crate::faces::{create_hnsw, to_i64, PgFaces, Row_};
use crate::vector::VectorRef;

/// Faces named by one audit record of a bulk load: the records read like
/// the IndexFaces calls that would have added the same faces in batches.
pub const AUDIT_BATCH: usize = 1_000;

/// Below this many faces, [`IndexBuild::Auto`] keeps the index.
const REBUILD_MIN: usize = 10_000;

/// How a bulk load treats the collection's HNSW index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexBuild {
    /// Rebuild when the load holds at least 10,000 faces and at least as
    /// many as the collection already has (by the iterator's lower size
    /// bound); keep the index otherwise.
    #[default]
    Auto,
    /// Keep the index: every copied face is inserted into it. Searches of
    /// the collection go on meanwhile.
    Keep,
    /// Drop the index before the copy and build it once afterwards. Searches
    /// of the collection wait for the load to commit (the drop locks the
    /// collection's partition); other collections are not affected.
    Rebuild,
}

/// What a bulk load did.
#[derive(Debug, Clone, Default)]
pub struct BulkLoad {
    /// The faces added, in the order given (seqs consecutive).
    pub faces: Vec<Face>,
    /// Whether the HNSW index was built anew after the copy.
    pub index_rebuilt: bool,
    /// Seconds spent copying the rows (with the index kept: and inserting
    /// them into it).
    pub copy_seconds: f64,
    /// Seconds spent building the index (0 when kept).
    pub index_seconds: f64,
    /// Seconds spent refreshing the planner's statistics.
    pub analyze_seconds: f64,
    /// Audit records written (one per [`AUDIT_BATCH`] faces).
    pub audit_records: u64,
}

const COPY_COLUMNS: &str = "collection, seq, face_id, image_id, external_image_id, bbox, \
     confidence, indexed_at_ms, last_matched_at_ms, user_id, embedding, pixels";

/// A binary COPY into a collection's partition, in progress. Dropped
/// without [`FaceCopy::finish`], the copy is aborted and its transaction
/// fails: nothing of it is ever committed.
pub(crate) struct FaceCopy {
    writer: Pin<Box<BinaryCopyInWriter>>,
    key: i64,
}

impl FaceCopy {
    /// Starts copying into `c`'s partition within `tx`.
    pub(crate) async fn start(tx: &Transaction<'_>, c: &Row_) -> Res<Self> {
        let table = c.faces();
        // The column types as the server names them (pgvector's `vector`
        // has no fixed OID).
        let types: Vec<Type> = tx
            .prepare(&format!("SELECT {COPY_COLUMNS} FROM {table} LIMIT 0"))
            .await?
            .columns()
            .iter()
            .map(|col| col.type_().clone())
            .collect();
        let sink = tx
            .copy_in(&format!(
                "COPY {table} ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        Ok(Self {
            writer: Box::pin(BinaryCopyInWriter::new(sink, &types)),
            key: c.key,
        })
    }

    /// Sends one face with its embedding.
    pub(crate) async fn write(&mut self, f: &Face, embedding: &[f32]) -> Res<()> {
        let b = f.bounding_box;
        let bbox: &[f32] = &[b.width, b.height, b.left, b.top];
        let row: [&(dyn ToSql + Sync); 12] = [
            &self.key,
            &to_i64(f.seq),
            &f.face_id,
            &f.image_id,
            &f.external_image_id.as_deref(),
            &bbox,
            &f.confidence,
            &to_i64(f.indexed_at_ms),
            &f.last_matched_at_ms.map(to_i64),
            &f.user_id.as_deref(),
            &VectorRef(embedding),
            &f.pixels,
        ];
        self.writer.as_mut().write(&row).await?;
        Ok(())
    }

    /// Ends the copy; returns the rows the server took.
    pub(crate) async fn finish(mut self) -> Res<u64> {
        Ok(self.writer.as_mut().finish().await?)
    }
}

/// Builds a collection's HNSW index over the rows already in its partition,
/// with the memory to hold the whole graph (past it pgvector goes on much
/// more slowly) and the server's parallel maintenance workers.
pub(crate) async fn build_hnsw(tx: &Transaction<'_>, c: &Row_, o: &Options) -> Res<()> {
    tx.batch_execute(&format!(
        "SET LOCAL maintenance_work_mem = '{}MB'",
        o.build_memory_mb.max(64)
    ))
    .await?;
    create_hnsw(tx, c, o).await
}

impl PgFaces {
    /// Adds `faces` to `collection` as one call: one transaction that
    /// copies them (binary COPY), rebuilds the HNSW index if `index` says so,
    /// refreshes the planner's statistics and writes their audit records
    /// (one per [`AUDIT_BATCH`] faces, locking the chain's head last), then
    /// commits. A failure anywhere, including a bad face half way, leaves the
    /// collection as it was. Faces are checked as IndexFaces checks them
    /// ([`add_faces`](kenning_store::FaceStore::add_faces)); they are streamed, not held (only their records are).
    pub fn bulk_add_faces<I>(
        &self,
        collection: &str,
        model: &FaceModel,
        faces: I,
        index: IndexBuild,
    ) -> Result<BulkLoad>
    where
        I: IntoIterator<Item = NewFace>,
    {
        let faces = faces.into_iter();
        let now = kenning_audit::now_ms().unwrap_or(0);
        let db = self.db();
        db.run(async {
            let mut client = db.client().await?;
            let tx = client.transaction().await?;
            let mut c = self.collection(&tx, collection, true).await?;
            check_faces_fit(&c.c, model, &[])?;
            let hint = faces.size_hint().0;
            let rebuild = match index {
                IndexBuild::Keep => false,
                IndexBuild::Rebuild => true,
                IndexBuild::Auto => hint >= REBUILD_MIN && hint as u64 >= c.c.face_count,
            };
            if rebuild {
                tx.batch_execute(&format!("DROP INDEX {}_hnsw", c.faces()))
                    .await?;
            }
            let mut load = BulkLoad {
                index_rebuilt: rebuild,
                ..BulkLoad::default()
            };
            let t = Instant::now();
            let mut copy = FaceCopy::start(&tx, &c).await?;
            for f in faces {
                let one = std::slice::from_ref(&f);
                validate_new_faces(one)?;
                check_faces_fit(&c.c, model, one)?;
                let face = f.to_face(Uuid::new_v4(), c.c.next_seq + load.faces.len() as u64, now);
                copy.write(&face, &f.embedding).await?;
                load.faces.push(face);
            }
            let copied = copy.finish().await?;
            if copied != load.faces.len() as u64 {
                return Err(StoreError::Corrupt(format!(
                    "the database took {copied} of {} faces copied",
                    load.faces.len()
                ))
                .into());
            }
            if load.faces.is_empty() {
                // Nothing to commit (a dropped index comes back with the rollback).
                return Ok(BulkLoad::default());
            }
            load.copy_seconds = t.elapsed().as_secs_f64();
            if rebuild {
                let t = Instant::now();
                build_hnsw(&tx, &c, &db.options).await?;
                load.index_seconds = t.elapsed().as_secs_f64();
            }
            let t = Instant::now();
            tx.batch_execute(&format!("ANALYZE {}", c.faces())).await?;
            load.analyze_seconds = t.elapsed().as_secs_f64();
            let before = c.c.clone();
            c.c.face_count += load.faces.len() as u64;
            c.c.next_seq += load.faces.len() as u64;
            c.c.generation = Self::tick(&tx).await?;
            Self::save_counts(&tx, &c).await?;
            // Each record shows the collection as it stood after its batch.
            let mut view = c.c.clone();
            for (i, batch) in load.faces.chunks(AUDIT_BATCH).enumerate() {
                let done = (i * AUDIT_BATCH + batch.len()) as u64;
                view.face_count = before.face_count + done;
                view.next_seq = before.next_seq + done;
                let recorded = self
                    .record(
                        &tx,
                        Change::FacesAdded {
                            collection: &view,
                            faces: batch,
                        },
                    )
                    .await?;
                load.audit_records += u64::from(recorded);
            }
            tx.commit().await?;
            Ok(load)
        })
    }
}
