//! Collections, faces and users in PostgreSQL, and search with pgvector.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use deadpool_postgres::{GenericClient, Transaction};
use kenning_audit::Trail;
use kenning_core::BoundingBox;
use kenning_store::{
    check_faces_fit, check_max_results, collection_arn, exact_distance, make_token, paginate,
    parse_face_id, parse_face_ids, plan_associate, plan_delete, plan_disassociate, read_seq_token,
    read_str_token, user_status, validate_collection_id, validate_new_faces, validate_user_id,
    Auditor, BatchOutcome, Change, Collection, Distance, Expiry, Face, FaceModel, FaceStore, Found,
    Nearest, Neighbour, NewCollection, NewFace, OnAssociated, Page, Result, StoreError, TokenKind,
    User, VerifyReport, DEFAULT_LIST_RESULTS, MAX_DELETE_IDS, MAX_LIST_RESULTS, MAX_LIST_USERS,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::audit::{self, PgAudit};
use crate::db::{Db, Options, Precision, Res};
use crate::vector::Vector;

pub(crate) const COLLECTION_COLUMNS: &str =
    "key, id, arn, created_at_ms, model_name, model_version, dim, \
     distance, precision, policy, face_count, user_count, generation, next_seq";
const FACE_COLUMNS: &str = "seq, face_id, image_id, external_image_id, bbox, confidence, \
     indexed_at_ms, last_matched_at_ms, user_id, pixels";

/// A collection's row: the record, and what its partition needs.
pub(crate) struct Row_ {
    pub(crate) key: i64,
    pub(crate) c: Collection,
    pub(crate) distance: Distance,
    pub(crate) precision: Precision,
}

impl Row_ {
    /// The collection's partition.
    pub(crate) fn faces(&self) -> String {
        format!("faces_{}", self.key)
    }

    /// The indexed expression: the embedding at the index's precision and
    /// dimension, so the planner matches it to the partition's HNSW index.
    fn indexed(&self, column: &str) -> String {
        let dim = self.c.dim;
        match self.precision {
            Precision::Full => format!("({column}::vector({dim}))"),
            Precision::Half => format!("({column}::vector({dim})::halfvec({dim}))"),
        }
    }
}

pub(crate) fn distance_name(d: Distance) -> &'static str {
    match d {
        Distance::Euclidean => "euclidean",
        Distance::Cosine => "cosine",
    }
}

fn operator(d: Distance) -> &'static str {
    match d {
        Distance::Euclidean => "<->",
        Distance::Cosine => "<=>",
    }
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn collection_row(row: &Row) -> Res<Row_> {
    let distance = match row.get::<_, &str>("distance") {
        "cosine" => Distance::Cosine,
        _ => Distance::Euclidean,
    };
    let precision: &str = row.get("precision");
    let precision = Precision::from_type_name(precision)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown vector precision {precision}")))?;
    Ok(Row_ {
        key: row.get("key"),
        distance,
        precision,
        c: Collection {
            id: row.get("id"),
            arn: row.get("arn"),
            created_at_ms: to_u64(row.get("created_at_ms")),
            face_model: FaceModel {
                name: row.get("model_name"),
                version: row.get("model_version"),
            },
            dim: u32::try_from(row.get::<_, i32>("dim")).unwrap_or(0),
            policy: row.get("policy"),
            face_count: to_u64(row.get("face_count")),
            user_count: to_u64(row.get("user_count")),
            generation: to_u64(row.get("generation")),
            next_seq: to_u64(row.get("next_seq")),
        },
    })
}

fn face_row(row: &Row) -> Face {
    let bbox: Vec<f32> = row.get("bbox");
    let b = |i: usize| bbox.get(i).copied().unwrap_or(0.0);
    Face {
        face_id: row.get("face_id"),
        image_id: row.get("image_id"),
        external_image_id: row.get("external_image_id"),
        bounding_box: BoundingBox {
            width: b(0),
            height: b(1),
            left: b(2),
            top: b(3),
        },
        confidence: row.get("confidence"),
        indexed_at_ms: to_u64(row.get("indexed_at_ms")),
        last_matched_at_ms: row.get::<_, Option<i64>>("last_matched_at_ms").map(to_u64),
        user_id: row.get("user_id"),
        seq: to_u64(row.get("seq")),
        pixels: row.get("pixels"),
    }
}

fn user_row(row: &Row) -> User {
    let user_id: String = row.get("user_id");
    let face_ids: Vec<Uuid> = row.get("face_ids");
    User {
        status: user_status(face_ids.len()),
        user_id,
        created_at_ms: to_u64(row.get("created_at_ms")),
        face_ids,
    }
}

fn now_ms() -> u64 {
    kenning_audit::now_ms().unwrap_or(0)
}

/// Collections, faces and users of one PostgreSQL database.
pub struct PgFaces {
    db: Arc<Db>,
    audit: Arc<PgAudit>,
    auditor: RwLock<Option<Arc<dyn Auditor>>>,
}

impl PgFaces {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self {
            audit: Arc::new(PgAudit::new(db.clone())),
            db,
            auditor: RwLock::new(None),
        }
    }

    /// The database.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Writes the audit record of `change` in `tx`, if an auditor is
    /// installed (and says whether one was).
    pub(crate) async fn record(&self, tx: &Transaction<'_>, change: Change<'_>) -> Res<bool> {
        let auditor = self
            .auditor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(auditor) = auditor {
            let sealed = audit::append(tx, auditor.entry(&change)).await?;
            auditor.recorded(sealed.record.seq);
            return Ok(true);
        }
        Ok(false)
    }

    pub(crate) async fn collection(
        &self,
        client: &impl GenericClient,
        id: &str,
        lock: bool,
    ) -> Res<Row_> {
        validate_collection_id(id)?;
        let sql = format!(
            "SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        );
        match client.query_opt(&sql, &[&id]).await? {
            Some(row) => collection_row(&row),
            None => Err(StoreError::CollectionNotFound(id.into()).into()),
        }
    }

    pub(crate) async fn save_counts(tx: &Transaction<'_>, c: &Row_) -> Res<()> {
        tx.execute(
            "UPDATE collections SET face_count = $2, user_count = $3, generation = $4, \
             next_seq = $5 WHERE key = $1",
            &[
                &c.key,
                &to_i64(c.c.face_count),
                &to_i64(c.c.user_count),
                &to_i64(c.c.generation),
                &to_i64(c.c.next_seq),
            ],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn tick(tx: &Transaction<'_>) -> Res<u64> {
        let row = tx
            .query_one("SELECT nextval('generation_clock')", &[])
            .await?;
        Ok(to_u64(row.get(0)))
    }

    /// A collection's faces by FaceId: seq and user of each found.
    async fn found(
        client: &impl GenericClient,
        c: &Row_,
        ids: &[Uuid],
    ) -> Res<HashMap<Uuid, Found>> {
        let rows = client
            .query(
                &format!(
                    "SELECT face_id, seq, user_id FROM {} WHERE face_id = ANY($1)",
                    c.faces()
                ),
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, Uuid>(0),
                    Found {
                        seq: to_u64(r.get(1)),
                        user_id: r.get(2),
                    },
                )
            })
            .collect())
    }

    async fn user(client: &impl GenericClient, c: &Row_, user_id: &str, lock: bool) -> Res<User> {
        let sql = format!(
            "SELECT user_id, created_at_ms, face_ids FROM users WHERE collection = $1 \
             AND user_id = $2{}",
            if lock { " FOR UPDATE" } else { "" }
        );
        match client.query_opt(&sql, &[&c.key, &user_id]).await? {
            Some(row) => Ok(user_row(&row)),
            None => Err(StoreError::UserNotFound(user_id.into()).into()),
        }
    }

    /// Creates a collection's partition and its HNSW index.
    async fn create_partition(&self, tx: &Transaction<'_>, c: &Row_) -> Res<()> {
        create_table(tx, c).await?;
        create_hnsw(tx, c, &self.db.options).await
    }
}

/// Creates a collection's partition, without its HNSW index (a bulk load
/// builds that afterwards, much faster than inserting into it).
pub(crate) async fn create_table(tx: &Transaction<'_>, c: &Row_) -> Res<()> {
    let (table, dim, key) = (c.faces(), c.c.dim, c.key);
    tx.batch_execute(&format!(
        "CREATE TABLE {table} PARTITION OF faces FOR VALUES IN ({key});
         ALTER TABLE {table} ADD CHECK (vector_dims(embedding) = {dim});"
    ))
    .await?;
    Ok(())
}

/// Creates the HNSW index of a collection's partition.
pub(crate) async fn create_hnsw(tx: &Transaction<'_>, c: &Row_, o: &Options) -> Res<()> {
    let table = c.faces();
    let opclass = format!(
        "{}_{}_ops",
        c.precision.type_name(),
        match c.distance {
            Distance::Euclidean => "l2",
            Distance::Cosine => "cosine",
        }
    );
    tx.batch_execute(&format!(
        "CREATE INDEX {table}_hnsw ON {table} USING hnsw ({} {opclass})
             WITH (m = {}, ef_construction = {});",
        c.indexed("embedding"),
        o.m,
        o.ef_construction,
    ))
    .await?;
    Ok(())
}

/// Inserts faces with their embeddings into a collection's partition in one
/// statement (the collection's counters are the caller's).
pub(crate) async fn insert_faces(
    tx: &Transaction<'_>,
    c: &Row_,
    faces: &[Face],
    vectors: &[Vector],
) -> Res<()> {
    let (mut seqs, mut ids, mut images, mut exts, mut boxes, mut confs) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut times, mut matched, mut users, mut pixels) = (vec![], vec![], vec![], vec![]);
    for f in faces {
        let b = f.bounding_box;
        seqs.push(to_i64(f.seq));
        ids.push(f.face_id);
        images.push(f.image_id);
        exts.push(f.external_image_id.as_deref());
        // A text literal of the array: tokio-postgres sends no 2-D arrays.
        boxes.push(format!("{{{},{},{},{}}}", b.width, b.height, b.left, b.top));
        confs.push(f.confidence);
        times.push(to_i64(f.indexed_at_ms));
        matched.push(f.last_matched_at_ms.map(to_i64));
        users.push(f.user_id.as_deref());
        pixels.push(f.pixels);
    }
    // A v4 collision is astronomically unlikely; the unique index on
    // (collection, face_id) would refuse it rather than orphan a face.
    tx.execute(
        &format!(
            "INSERT INTO {} (collection, seq, face_id, image_id, external_image_id, \
             bbox, confidence, indexed_at_ms, last_matched_at_ms, user_id, embedding, pixels) \
             SELECT $1, s, f, i, e, b::real[], c, t, m, u, v, p FROM unnest($2::bigint[], \
             $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::real[], $8::bigint[], \
             $9::bigint[], $10::text[], $11::vector[], $12::real[]) \
             AS x(s, f, i, e, b, c, t, m, u, v, p)",
            c.faces()
        ),
        &[
            &c.key, &seqs, &ids, &images, &exts, &boxes, &confs, &times, &matched, &users,
            &vectors, &pixels,
        ],
    )
    .await?;
    Ok(())
}

impl FaceStore for PgFaces {
    fn set_auditor(&self, auditor: Arc<dyn Auditor>) {
        *self.auditor.write().unwrap_or_else(|e| e.into_inner()) = Some(auditor);
    }

    fn audit(&self) -> Arc<dyn Trail> {
        self.audit.clone()
    }

    fn location(&self) -> String {
        self.db.location().to_owned()
    }

    fn create_collection(&self, new: NewCollection, distance: Distance) -> Result<Collection> {
        new.validate()?;
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let generation = Self::tick(&tx).await?;
            let created_at_ms = now_ms();
            let precision = self.db.options.precision;
            let row = tx
                .query_opt(
                    &format!(
                        "INSERT INTO collections (id, arn, created_at_ms, model_name, \
                         model_version, dim, distance, precision, policy, generation) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (id) DO NOTHING RETURNING {COLLECTION_COLUMNS}"
                    ),
                    &[
                        &new.id,
                        &collection_arn(&new.id),
                        &to_i64(created_at_ms),
                        &new.face_model.name,
                        &new.face_model.version,
                        &i32::try_from(new.dim).unwrap_or(i32::MAX),
                        &distance_name(distance),
                        &precision.type_name(),
                        &new.policy,
                        &to_i64(generation),
                    ],
                )
                .await?;
            let Some(row) = row else {
                return Err(StoreError::CollectionExists(new.id.clone()).into());
            };
            let c = collection_row(&row)?;
            self.create_partition(&tx, &c).await?;
            self.record(&tx, Change::CollectionCreated { collection: &c.c })
                .await?;
            tx.commit().await?;
            Ok(c.c)
        })
    }

    fn describe_collection(&self, id: &str) -> Result<Collection> {
        self.db.run(async {
            let client = self.db.client().await?;
            Ok(self.collection(&client, id, false).await?.c)
        })
    }

    fn list_collections(
        &self,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Collection>> {
        let max = check_max_results(max_results, DEFAULT_LIST_RESULTS, MAX_LIST_RESULTS)?;
        let after = token
            .map(|t| read_str_token(TokenKind::Collections, t))
            .transpose()?;
        self.db.run(async {
            let client = self.db.client().await?;
            // Byte order, as the embedded store lists them.
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLLECTION_COLUMNS} FROM collections \
                         WHERE $1::text IS NULL OR id COLLATE \"C\" > $1 \
                         ORDER BY id COLLATE \"C\" LIMIT $2"
                    ),
                    &[&after, &to_i64(max as u64 + 1)],
                )
                .await?;
            let items = rows
                .iter()
                .map(|r| collection_row(r).map(|c| c.c))
                .collect::<Res<Vec<_>>>()?;
            Ok(paginate(items, max, |c| {
                make_token(TokenKind::Collections, c.id.as_bytes())
            }))
        })
    }

    fn delete_collection(&self, id: &str) -> Result<Collection> {
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let c = self.collection(&tx, id, true).await?;
            tx.batch_execute(&format!("DROP TABLE {}", c.faces()))
                .await?;
            tx.execute("DELETE FROM collections WHERE key = $1", &[&c.key])
                .await?;
            // Keep the clock moving so a re-created collection starts above
            // every generation the old one reached.
            Self::tick(&tx).await?;
            self.record(&tx, Change::CollectionDeleted { collection: &c.c })
                .await?;
            tx.commit().await?;
            Ok(c.c)
        })
    }

    fn set_policy(&self, id: &str, policy: &str) -> Result<Collection> {
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let mut c = self.collection(&tx, id, true).await?;
            tx.execute(
                "UPDATE collections SET policy = $2 WHERE key = $1",
                &[&c.key, &policy],
            )
            .await?;
            c.c.policy = policy.into();
            self.record(&tx, Change::PolicySet { collection: &c.c })
                .await?;
            tx.commit().await?;
            Ok(c.c)
        })
    }

    fn set_calibration(&self, id: &str, calibration: Option<&str>) -> Result<Collection> {
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let c = self.collection(&tx, id, true).await?;
            tx.execute(
                "UPDATE collections SET calibration = $2 WHERE key = $1",
                &[&c.key, &calibration],
            )
            .await?;
            self.record(
                &tx,
                Change::CalibrationSet {
                    collection: &c.c,
                    calibration,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(c.c)
        })
    }

    fn calibration(&self, id: &str) -> Result<Option<String>> {
        validate_collection_id(id)?;
        self.db.run(async {
            let client = self.db.client().await?;
            let sql = "SELECT calibration FROM collections WHERE id = $1";
            match client.query_opt(sql, &[&id]).await? {
                Some(row) => Ok(row.get::<_, Option<String>>(0)),
                None => Err(StoreError::CollectionNotFound(id.into()).into()),
            }
        })
    }

    fn add_faces(
        &self,
        collection: &str,
        model: &FaceModel,
        faces: Vec<NewFace>,
    ) -> Result<Vec<Face>> {
        validate_new_faces(&faces)?;
        let now = now_ms();
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let mut c = self.collection(&tx, collection, true).await?;
            check_faces_fit(&c.c, model, &faces)?;
            if faces.is_empty() {
                return Ok(Vec::new());
            }
            let mut out = Vec::with_capacity(faces.len());
            let mut vectors = Vec::with_capacity(faces.len());
            for f in faces {
                let seq = c.c.next_seq;
                c.c.next_seq += 1;
                out.push(f.to_face(Uuid::new_v4(), seq, now));
                vectors.push(Vector(f.embedding));
            }
            insert_faces(&tx, &c, &out, &vectors).await?;
            c.c.face_count += out.len() as u64;
            c.c.generation = Self::tick(&tx).await?;
            Self::save_counts(&tx, &c).await?;
            self.record(
                &tx,
                Change::FacesAdded {
                    collection: &c.c,
                    faces: &out,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(out)
        })
    }

    fn get_faces(&self, collection: &str, face_ids: &[String]) -> Result<Vec<Option<Face>>> {
        if face_ids.len() > MAX_DELETE_IDS {
            return Err(StoreError::BadItemCount {
                what: "FaceIds",
                max: MAX_DELETE_IDS,
                got: face_ids.len(),
            });
        }
        let ids = face_ids
            .iter()
            .map(|s| parse_face_id(s))
            .collect::<Result<Vec<_>>>()?;
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {FACE_COLUMNS} FROM {} WHERE face_id = ANY($1)",
                        c.faces()
                    ),
                    &[&ids],
                )
                .await?;
            let by_id: HashMap<Uuid, Face> = rows
                .iter()
                .map(|r| {
                    let f = face_row(r);
                    (f.face_id, f)
                })
                .collect();
            Ok(ids.iter().map(|id| by_id.get(id).cloned()).collect())
        })
    }

    fn face_embedding(&self, collection: &str, face_id: &str) -> Result<(Face, Vec<f32>)> {
        let id = parse_face_id(face_id)?;
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            let row = client
                .query_opt(
                    &format!(
                        "SELECT {FACE_COLUMNS}, embedding FROM {} WHERE face_id = $1",
                        c.faces()
                    ),
                    &[&id],
                )
                .await?
                .ok_or_else(|| StoreError::FaceNotFound(face_id.into()))?;
            Ok((face_row(&row), row.get::<_, Vector>("embedding").0))
        })
    }

    fn list_faces(
        &self,
        collection: &str,
        user_id: Option<&str>,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Face>> {
        let max = check_max_results(max_results, DEFAULT_LIST_RESULTS, MAX_LIST_RESULTS)?;
        let after = token.map(read_seq_token).transpose()?;
        if let Some(u) = user_id {
            validate_user_id(u)?;
        }
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            let items = match user_id {
                None => client
                    .query(
                        &format!(
                            "SELECT {FACE_COLUMNS} FROM {} WHERE seq > $1 ORDER BY seq LIMIT $2",
                            c.faces()
                        ),
                        &[&to_i64(after.unwrap_or(0)), &to_i64(max as u64 + 1)],
                    )
                    .await?
                    .iter()
                    .map(face_row)
                    .collect(),
                Some(u) => {
                    let user = Self::user(&client, &c, u, false).await?;
                    let rows = client
                        .query(
                            &format!(
                                "SELECT {FACE_COLUMNS} FROM {} WHERE face_id = ANY($1) \
                                 AND seq > $2 ORDER BY seq",
                                c.faces()
                            ),
                            &[&user.face_ids, &to_i64(after.unwrap_or(0))],
                        )
                        .await?;
                    rows.iter().map(face_row).collect()
                }
            };
            Ok(paginate(items, max, |f| {
                make_token(TokenKind::Faces, &f.seq.to_be_bytes())
            }))
        })
    }

    fn delete_faces(
        &self,
        collection: &str,
        face_ids: &[String],
        on_associated: OnAssociated,
    ) -> Result<BatchOutcome> {
        let ids = parse_face_ids(face_ids, "FaceIds", MAX_DELETE_IDS)?;
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let mut c = self.collection(&tx, collection, true).await?;
            let found = Self::found(&tx, &c, &ids).await?;
            let (out, delete) = plan_delete(ids, on_associated, |id| Ok(found.get(&id).cloned()))?;
            for (id, f) in &delete {
                if let Some(user) = &f.user_id {
                    tx.execute(
                        "UPDATE users SET face_ids = array_remove(face_ids, $3) \
                         WHERE collection = $1 AND user_id = $2",
                        &[&c.key, user, id],
                    )
                    .await?;
                }
            }
            let seqs: Vec<i64> = delete.iter().map(|(_, f)| to_i64(f.seq)).collect();
            if !seqs.is_empty() {
                tx.execute(
                    &format!("DELETE FROM {} WHERE seq = ANY($1)", c.faces()),
                    &[&seqs],
                )
                .await?;
                c.c.face_count -= seqs.len() as u64;
                c.c.generation = Self::tick(&tx).await?;
                Self::save_counts(&tx, &c).await?;
            }
            self.record(
                &tx,
                Change::FacesDeleted {
                    collection: &c.c,
                    outcome: &out,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(out)
        })
    }

    fn touch_faces(&self, collection: &str, seqs: &[u64], at_ms: u64) -> Result<usize> {
        let seqs: Vec<i64> = seqs.iter().map(|&s| to_i64(s)).collect();
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            let n = client
                .execute(
                    &format!(
                        "UPDATE {} SET last_matched_at_ms = $2 WHERE seq = ANY($1) \
                         AND (last_matched_at_ms IS NULL OR last_matched_at_ms < $2)",
                        c.faces()
                    ),
                    &[&seqs, &to_i64(at_ms)],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn expired_faces(&self, collection: &str, expiry: Expiry, limit: usize) -> Result<Vec<Face>> {
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            let (column, before) = match expiry {
                Expiry::IndexedBefore(ms) => ("indexed_at_ms", ms),
                Expiry::LastMatchedBefore(ms) => {
                    ("coalesce(last_matched_at_ms, indexed_at_ms)", ms)
                }
            };
            let rows = client
                .query(
                    &format!(
                        "SELECT {FACE_COLUMNS} FROM {} WHERE collection = $1 AND {column} < $2 \
                         ORDER BY {column}, seq LIMIT $3",
                        c.faces()
                    ),
                    &[&c.key, &to_i64(before), &to_i64(limit as u64)],
                )
                .await?;
            Ok(rows.iter().map(face_row).collect())
        })
    }

    fn create_user(&self, collection: &str, user_id: &str) -> Result<User> {
        validate_user_id(user_id)?;
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let mut c = self.collection(&tx, collection, true).await?;
            let row = tx
                .query_opt(
                    "INSERT INTO users (collection, user_id, created_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING RETURNING user_id, created_at_ms, face_ids",
                    &[&c.key, &user_id, &to_i64(now_ms())],
                )
                .await?
                .ok_or_else(|| StoreError::UserExists(user_id.into()))?;
            c.c.user_count += 1;
            Self::save_counts(&tx, &c).await?;
            self.record(
                &tx,
                Change::UserCreated {
                    collection: &c.c,
                    user_id,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(user_row(&row))
        })
    }

    fn get_user(&self, collection: &str, user_id: &str) -> Result<User> {
        validate_user_id(user_id)?;
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            Self::user(&client, &c, user_id, false).await
        })
    }

    fn delete_user(&self, collection: &str, user_id: &str) -> Result<User> {
        validate_user_id(user_id)?;
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let mut c = self.collection(&tx, collection, true).await?;
            let user = Self::user(&tx, &c, user_id, true).await?;
            tx.execute(
                &format!(
                    "UPDATE {} SET user_id = NULL WHERE face_id = ANY($1) AND user_id = $2",
                    c.faces()
                ),
                &[&user.face_ids, &user_id],
            )
            .await?;
            tx.execute(
                "DELETE FROM users WHERE collection = $1 AND user_id = $2",
                &[&c.key, &user_id],
            )
            .await?;
            c.c.user_count -= 1;
            Self::save_counts(&tx, &c).await?;
            self.record(
                &tx,
                Change::UserDeleted {
                    collection: &c.c,
                    user: &user,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(user)
        })
    }

    fn list_users(
        &self,
        collection: &str,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<User>> {
        let max = check_max_results(max_results, MAX_LIST_USERS, MAX_LIST_USERS)?;
        let after = token
            .map(|t| read_str_token(TokenKind::Users, t))
            .transpose()?;
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            let rows = client
                .query(
                    "SELECT user_id, created_at_ms, face_ids FROM users WHERE collection = $1 \
                     AND ($2::text IS NULL OR user_id COLLATE \"C\" > $2) \
                     ORDER BY user_id COLLATE \"C\" LIMIT $3",
                    &[&c.key, &after, &to_i64(max as u64 + 1)],
                )
                .await?;
            let items = rows.iter().map(user_row).collect();
            Ok(paginate(items, max, |u| {
                make_token(TokenKind::Users, u.user_id.as_bytes())
            }))
        })
    }

    fn associate_faces(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<BatchOutcome> {
        self.link_user_faces(collection, user_id, face_ids, true)
    }

    fn disassociate_faces(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<BatchOutcome> {
        self.link_user_faces(collection, user_id, face_ids, false)
    }

    fn nearest(&self, collection: &Collection, q: Nearest<'_>) -> Result<Vec<Neighbour>> {
        if q.k == 0 {
            return Ok(Vec::new());
        }
        if q.query.len() != collection.dim as usize || !q.query.iter().all(|x| x.is_finite()) {
            return Err(StoreError::DimensionMismatch {
                expected: collection.dim,
                got: q.query.len(),
            });
        }
        self.db.run(async {
            let mut client = self.db.reader().await?;
            let c = self.collection(&client, &collection.id, false).await?;
            if c.distance != q.distance {
                return Err(StoreError::InvalidParameter(format!(
                    "collection {} measures {} distance, not {}",
                    c.c.id,
                    distance_name(c.distance),
                    distance_name(q.distance)
                ))
                .into());
            }
            let want = q.k.saturating_add(usize::from(q.exclude.is_some()));
            let tx = client.transaction().await?;
            let ef = (want as u32).max(self.db.options.ef_search).min(1000);
            tx.batch_execute(&format!(
                "SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = relaxed_order"
            ))
            .await?;
            // The database's distance may differ from the exact one in the
            // last bits, so its radius is a little looser; the exact filter
            // follows below.
            let radius = q.max_distance.map(|d| f64::from(d) * (1.0 + 1e-5) + 1e-6);
            let rows = tx
                .query(
                    &search_sql(&c),
                    &[&Vector(q.query.to_vec()), &to_i64(want as u64), &radius],
                )
                .await?;
            tx.commit().await?;
            let mut found: Vec<Neighbour> = rows
                .iter()
                .filter_map(|r| {
                    let face = face_row(r);
                    if Some(face.seq) == q.exclude {
                        return None;
                    }
                    let embedding = r.get::<_, Vector>("embedding").0;
                    let distance = exact_distance(q.distance, q.query, &embedding);
                    if q.max_distance.is_some_and(|m| distance > m) {
                        return None;
                    }
                    Some(Neighbour {
                        face,
                        distance,
                        embedding,
                    })
                })
                .collect();
            found.sort_by(|a, b| {
                a.distance
                    .total_cmp(&b.distance)
                    .then(a.face.seq.cmp(&b.face.seq))
            });
            found.truncate(q.k);
            if !q.with_embeddings {
                found.iter_mut().for_each(|n| n.embedding = Vec::new());
            }
            Ok(found)
        })
    }

    fn erase(&self) -> Result<()> {
        // VACUUM removes deleted rows from the tables and their HNSW indexes
        // (it cannot run in a transaction, nor for all partitions at once
        // through the parent without locking them in turn; that is fine).
        self.db.run(async {
            let client = self.db.client().await?;
            client.batch_execute("VACUUM faces, users").await?;
            Ok(())
        })
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn verify(&self) -> Result<VerifyReport> {
        self.db.run(async {
            let client = self.db.client().await?;
            let mut report = VerifyReport::default();
            let rows = client
                .query(&format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY id"), &[])
                .await?;
            for row in &rows {
                let c = collection_row(row)?;
                report.collections += 1;
                let counts = client
                    .query_one(
                        &format!(
                            "SELECT count(*), count(*) FILTER (WHERE vector_dims(embedding) <> $1), \
                             coalesce(max(seq), 0), \
                             (SELECT count(*) FROM users WHERE collection = $2) \
                             FROM {}",
                            c.faces()
                        ),
                        &[&i32::try_from(c.c.dim).unwrap_or(0), &c.key],
                    )
                    .await?;
                let (faces, bad_dim, max_seq, users): (i64, i64, i64, i64) =
                    (counts.get(0), counts.get(1), counts.get(2), counts.get(3));
                let mut bad = |m: String| report.problems.push(format!("{}: {m}", c.c.id));
                if to_u64(faces) != c.c.face_count {
                    bad(format!("FaceCount {} but {faces} faces", c.c.face_count));
                }
                if to_u64(users) != c.c.user_count {
                    bad(format!("UserCount {} but {users} users", c.c.user_count));
                }
                if bad_dim > 0 {
                    bad(format!("{bad_dim} vectors not of dimension {}", c.c.dim));
                }
                if to_u64(max_seq) >= c.c.next_seq {
                    bad(format!("seq {max_seq} >= next_seq {}", c.c.next_seq));
                }
                let mismatched = client
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM {} f WHERE f.user_id IS NOT NULL AND NOT EXISTS \
                             (SELECT 1 FROM users u WHERE u.collection = $1 \
                              AND u.user_id = f.user_id AND f.face_id = ANY(u.face_ids))",
                            c.faces()
                        ),
                        &[&c.key],
                    )
                    .await?
                    .get::<_, i64>(0);
                if mismatched > 0 {
                    bad(format!("{mismatched} faces name a user that does not list them"));
                }
                report.faces += to_u64(faces);
                report.users += to_u64(users);
            }
            Ok(report)
        })
    }
}

impl PgFaces {
    /// Refreshes the planner's statistics of a collection's partition (after
    /// a bulk load, so searches keep using the HNSW index).
    pub fn analyze(&self, collection: &str) -> Result<()> {
        self.db.run(async {
            let client = self.db.client().await?;
            let c = self.collection(&client, collection, false).await?;
            client
                .batch_execute(&format!("ANALYZE {}", c.faces()))
                .await?;
            Ok(())
        })
    }

    /// AssociateFaces (`associate`) or DisassociateFaces in one
    /// transaction: the faces' owner, the user's face list and the change
    /// record commit together.
    fn link_user_faces(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[String],
        associate: bool,
    ) -> Result<BatchOutcome> {
        validate_user_id(user_id)?;
        let ids = parse_face_ids(face_ids, "FaceIds", kenning_store::MAX_ASSOCIATE_IDS)?;
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let c = self.collection(&tx, collection, true).await?;
            let mut user = Self::user(&tx, &c, user_id, true).await?;
            let found = Self::found(&tx, &c, &ids).await?;
            let find = |id| Ok(found.get(&id).cloned());
            let (mut out, changed) = if associate {
                plan_associate(user_id, user.face_ids.len(), ids, find)?
            } else {
                plan_disassociate(user_id, ids, find)?
            };
            let seqs: Vec<i64> = changed.iter().map(|f| to_i64(f.1)).collect();
            let owner = associate.then_some(user_id);
            tx.execute(
                &format!("UPDATE {} SET user_id = $2 WHERE seq = ANY($1)", c.faces()),
                &[&seqs, &owner],
            )
            .await?;
            if associate {
                user.face_ids.extend(changed.iter().map(|f| f.0));
            } else {
                user.face_ids.retain(|f| !changed.iter().any(|c| c.0 == *f));
            }
            Self::save_user_faces(&tx, &c, &user).await?;
            out.user_status = Some(user_status(user.face_ids.len()));
            let (collection, outcome) = (&c.c, &out);
            let change = if associate {
                Change::FacesAssociated {
                    collection,
                    user_id,
                    outcome,
                }
            } else {
                Change::FacesDisassociated {
                    collection,
                    user_id,
                    outcome,
                }
            };
            self.record(&tx, change).await?;
            tx.commit().await?;
            Ok(out)
        })
    }

    async fn save_user_faces(tx: &Transaction<'_>, c: &Row_, user: &User) -> Res<()> {
        tx.execute(
            "UPDATE users SET face_ids = $3 WHERE collection = $1 AND user_id = $2",
            &[&c.key, &user.user_id, &user.face_ids],
        )
        .await?;
        Ok(())
    }
}

/// The search: the HNSW index's nearest candidates in a materialized CTE
/// (so the planner cannot fold the radius filter into the index scan and
/// cut it short), then the radius applied outside.
fn search_sql(c: &Row_) -> String {
    let op = operator(c.distance);
    let (probe, column) = (c.indexed("$1::vector"), c.indexed("embedding"));
    format!(
        "WITH nearest AS MATERIALIZED (
             SELECT {FACE_COLUMNS}, embedding, {column} {op} {probe} AS d
             FROM {table}
             ORDER BY {column} {op} {probe}
             LIMIT $2
         )
         SELECT * FROM nearest WHERE $3::float8 IS NULL OR d <= $3 ORDER BY d",
        table = c.faces()
    )
}

/// The query plan of a search in `collection` (for tests and operators:
/// it must scan the collection's HNSW index).
pub fn explain_search(
    faces: &PgFaces,
    collection: &str,
    query: &[f32],
    k: usize,
) -> Result<String> {
    faces.db.run(async {
        let mut client = faces.db.reader().await?;
        let c = faces.collection(&client, collection, false).await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            .await?;
        let rows = tx
            .query(
                &format!("EXPLAIN {}", search_sql(&c)),
                &[&Vector(query.to_vec()), &to_i64(k as u64), &None::<f64>],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    })
}
