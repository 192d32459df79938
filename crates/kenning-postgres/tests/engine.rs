//! What only the PostgreSQL backend has: its schema versions, its query
//! plans, and how it reports a database it cannot use.

mod common;

use kenning_postgres::{migrate, ConnectError, Options, Postgres, Precision};
use kenning_store::{Distance, FaceModel, FaceStore, NewCollection, NewFace, StoreError, Uuid};

fn new_coll(id: &str, dim: u32) -> NewCollection {
    NewCollection {
        id: id.into(),
        face_model: FaceModel {
            name: "test".into(),
            version: "1".into(),
        },
        dim,
        policy: "{}".into(),
    }
}

fn face(seed: u64, dim: usize) -> NewFace {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    NewFace {
        image_id: Uuid::new_v4(),
        external_image_id: None,
        bounding_box: Default::default(),
        confidence: 99.0,
        embedding: (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect(),
        indexed_at_ms: None,
        pixels: None,
    }
}

#[test]
fn searches_use_the_collections_hnsw_index() {
    let Some(db) = common::TestDb::new("plan") else {
        return;
    };
    for precision in [Precision::Full, Precision::Half] {
        let options = Options {
            precision,
            ..Options::default()
        };
        let pg = Postgres::connect(&db.url, None, options).unwrap();
        let id = format!("c-{}", precision.type_name());
        pg.faces
            .create_collection(new_coll(&id, 32), Distance::Cosine)
            .unwrap();
        for chunk in 0..4 {
            let faces = (0..500).map(|i| face(chunk * 500 + i, 32)).collect();
            pg.faces
                .add_faces(&id, &new_coll(&id, 32).face_model, faces)
                .unwrap();
        }
        pg.faces.analyze(&id).unwrap();
        let plan =
            kenning_postgres::explain_search(&pg.faces, &id, &face(7, 32).embedding, 10).unwrap();
        assert!(
            plan.contains("Index Scan") && plan.contains("_hnsw"),
            "{precision:?}: the search does not use the HNSW index:\n{plan}"
        );
        assert!(plan.contains(precision.type_name()), "{plan}");
    }
}

#[test]
fn a_newer_schema_is_refused_and_nothing_changes() {
    let Some(db) = common::TestDb::new("newer schema") else {
        return;
    };
    Postgres::connect(&db.url, None, Options::default()).unwrap();
    let known = migrate::current_version();
    common::sql(
        &db.url,
        &format!(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ({}, 'future', 'x')",
            known + 1
        ),
    );
    let e = Postgres::connect(&db.url, None, Options::default())
        .err()
        .expect("a newer schema must be refused");
    let message = e.to_string();
    assert!(matches!(
        e,
        ConnectError::Migrate(migrate::MigrateError::Newer { .. })
    ));
    assert!(
        message.contains(&format!("schema version {}", known + 1))
            && message.contains("upgrade Kenning"),
        "{message}"
    );
    assert!(!message.contains(&db.password()), "password in {message}");
    // A migration edited after it was applied is refused too.
    common::sql(
        &db.url,
        &format!(
            "DELETE FROM schema_migrations WHERE version = {}; \
             UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            known + 1
        ),
    );
    let e = Postgres::connect(&db.url, None, Options::default())
        .err()
        .expect("an edited migration must be refused");
    assert!(
        e.to_string().contains("differs from this Kenning's copy"),
        "{e}"
    );
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://kenning:hunter2secret@127.0.0.1:{port}/kenning");
    let e = Postgres::connect(&url, None, Options::default())
        .err()
        .expect("nothing listens there");
    let message = e.to_string();
    assert!(matches!(e, ConnectError::Unreachable { .. }), "{message}");
    assert!(
        message.contains(&format!("postgresql://kenning@127.0.0.1:{port}/kenning")),
        "{message}"
    );
    assert!(!message.contains("hunter2secret"), "{message}");
}

#[test]
fn a_lost_database_is_unavailable_then_reconnected() {
    let Some(db) = common::TestDb::new("lost connection") else {
        return;
    };
    let pg = Postgres::connect(&db.url, None, Options::default()).unwrap();
    pg.faces
        .create_collection(new_coll("c", 4), Distance::Euclidean)
        .unwrap();
    // Every connection of this database is cut, as a restart would.
    common::sql(
        &common::server("lost connection").unwrap(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name()
        ),
    );
    let mut unavailable = 0;
    let mut recovered = false;
    for _ in 0..20 {
        match pg.faces.describe_collection("c") {
            Ok(c) => {
                assert_eq!(c.id, "c");
                recovered = true;
                break;
            }
            Err(e @ StoreError::Unavailable { .. }) => {
                assert_eq!(
                    kenning_core::WireError::code(&e),
                    kenning_core::ErrorCode::ThrottlingException
                );
                assert!(!e.to_string().contains(&db.password()), "{e}");
                unavailable += 1;
            }
            Err(e) => panic!("a lost connection must be Unavailable, not {e:?}"),
        }
    }
    assert!(recovered, "the pool never reconnected");
    assert!(
        unavailable <= 16,
        "each dead pooled connection fails at most once"
    );
}

/// Records each change's collection and face count, as the accountability
/// layer's auditor would record the call.
struct Counts;

impl kenning_store::Auditor for Counts {
    fn entry(&self, change: &kenning_store::Change<'_>) -> kenning_audit::Entry {
        kenning_audit::Entry {
            operation: "StoreChange".into(),
            outcome: "ok".into(),
            collection: Some(change.collection().id.clone()),
            face_count: Some(change.collection().face_count),
            ..kenning_audit::Entry::default()
        }
    }
    fn recorded(&self, _seq: u64) {}
}

/// The audit trail's (collection, face count) of every record, after
/// checking that the chain verifies.
fn trail(pg: &Postgres) -> Vec<(String, u64)> {
    let audit = pg.faces.audit();
    let report = audit.verify().unwrap();
    assert!(report.is_ok(), "the audit chain breaks: {report:?}");
    let records: Vec<_> = audit
        .records()
        .unwrap()
        .map(|r| {
            let (r, _) = r.unwrap();
            (
                r.entry.collection.unwrap_or_default(),
                r.entry.face_count.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(records.len() as u64, report.records);
    records
}

/// (distance bits, ExternalImageId) of a search's results, to compare two
/// collections holding the same faces under different FaceIds.
fn hits(pg: &Postgres, id: &str, query: &[f32]) -> Vec<(u32, Option<String>)> {
    let c = pg.faces.describe_collection(id).unwrap();
    pg.faces
        .nearest(
            &c,
            kenning_store::Nearest {
                query,
                distance: Distance::Euclidean,
                k: 10,
                max_distance: None,
                exclude: None,
                with_embeddings: false,
            },
        )
        .unwrap()
        .into_iter()
        .map(|n| (n.distance.to_bits(), n.face.external_image_id))
        .collect()
}

fn named(i: u64, dim: usize) -> NewFace {
    NewFace {
        external_image_id: Some(format!("f{i}")),
        ..face(i, dim)
    }
}

#[test]
fn bulk_loaded_faces_are_found_as_added_ones_and_audited() {
    let Some(db) = common::TestDb::new("bulk load") else {
        return;
    };
    // ef_search above the collection size: both graphs are searched
    // exhaustively, so any difference is the load's.
    let options = Options {
        ef_search: 1000,
        ..Options::default()
    };
    let pg = Postgres::connect(&db.url, None, options).unwrap();
    pg.faces.set_auditor(std::sync::Arc::new(Counts));
    let model = new_coll("x", 32).face_model;
    for id in ["added", "bulk"] {
        pg.faces
            .create_collection(new_coll(id, 32), Distance::Euclidean)
            .unwrap();
    }
    let n = 2_500u64;
    for start in (0..n).step_by(500) {
        let faces = (start..start + 500).map(|i| named(i, 32)).collect();
        pg.faces.add_faces("added", &model, faces).unwrap();
    }
    let before = trail(&pg).len();
    let load = pg
        .faces
        .bulk_add_faces(
            "bulk",
            &model,
            (0..2_000).map(|i| named(i, 32)),
            kenning_postgres::IndexBuild::Rebuild,
        )
        .unwrap();
    assert!(load.index_rebuilt);
    assert_eq!(load.faces.len(), 2_000);
    let seqs: Vec<u64> = load.faces.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (1..=2_000).collect::<Vec<_>>());
    // A second load into the live index (kept).
    let more = pg
        .faces
        .bulk_add_faces(
            "bulk",
            &model,
            (2_000..n).map(|i| named(i, 32)),
            kenning_postgres::IndexBuild::Auto,
        )
        .unwrap();
    assert!(!more.index_rebuilt, "500 faces into 2,000 keep the index");
    assert_eq!(more.faces[0].seq, 2_001);

    // One record per 1,000 faces, each with the count after its batch, in
    // the same verified chain as the ordinary calls' records.
    let records = trail(&pg);
    let bulk: Vec<u64> = records[before..].iter().map(|r| r.1).collect();
    assert_eq!(bulk, [1_000, 2_000, 2_500]);
    assert!(records[before..].iter().all(|r| r.0 == "bulk"));
    assert_eq!((load.audit_records, more.audit_records), (2, 1));

    let c = pg.faces.describe_collection("bulk").unwrap();
    assert_eq!((c.face_count, c.next_seq), (n, n + 1));
    let report = pg.faces.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.faces, 2 * n);
    let got = pg
        .faces
        .get_faces("bulk", &[load.faces[7].face_id.to_string()]);
    assert_eq!(got.unwrap()[0].as_ref(), Some(&load.faces[7]));

    for q in 0..20 {
        let query = face(10_000 + q, 32).embedding;
        let (a, b) = (hits(&pg, "added", &query), hits(&pg, "bulk", &query));
        assert_eq!(a.len(), 10);
        assert_eq!(
            a, b,
            "query {q}: the bulk-loaded collection answers differently"
        );
    }
    let plan =
        kenning_postgres::explain_search(&pg.faces, "bulk", &face(7, 32).embedding, 10).unwrap();
    assert!(
        plan.contains("Index Scan") && plan.contains("_hnsw"),
        "after a bulk load the search does not use the HNSW index:\n{plan}"
    );
}

/// A database with collection `c` of 300 faces, before a bulk load that must
/// leave it as it was: what it describes and audits, one query and its hits.
struct Settled {
    pg: Postgres,
    model: FaceModel,
    before: (kenning_store::Collection, Vec<(String, u64)>),
    query: Vec<f32>,
    found: Vec<(u32, Option<String>)>,
}

fn settled(db: &common::TestDb) -> Settled {
    let pg = Postgres::connect(&db.url, None, Options::default()).unwrap();
    pg.faces.set_auditor(std::sync::Arc::new(Counts));
    let model = new_coll("c", 32).face_model;
    pg.faces
        .create_collection(new_coll("c", 32), Distance::Euclidean)
        .unwrap();
    let faces = (0..300).map(|i| named(i, 32)).collect();
    pg.faces.add_faces("c", &model, faces).unwrap();
    let before = (pg.faces.describe_collection("c").unwrap(), trail(&pg));
    let query = face(99_999, 32).embedding;
    let found = hits(&pg, "c", &query);
    Settled {
        pg,
        model,
        before,
        query,
        found,
    }
}

#[test]
fn a_bulk_load_failing_half_way_leaves_nothing() {
    let Some(db) = common::TestDb::new("bulk load failure") else {
        return;
    };
    let Settled {
        pg,
        model,
        before,
        query,
        found,
    } = settled(&db);

    // Thousands of faces are on their way to the server when a bad one
    // comes: a non-finite value, then a wrong dimension.
    let bad = |i: u64| {
        let mut f = named(i, 32);
        if i == 3_000 {
            f.embedding[5] = f32::NAN;
        }
        f
    };
    let short = |i: u64| named(i, if i == 3_000 { 31 } else { 32 });
    for index in [
        kenning_postgres::IndexBuild::Rebuild,
        kenning_postgres::IndexBuild::Keep,
    ] {
        let e = pg
            .faces
            .bulk_add_faces("c", &model, (0..5_000).map(bad), index)
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidParameter(_)), "{e:?}");
        let e = pg
            .faces
            .bulk_add_faces("c", &model, (0..5_000).map(short), index)
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::DimensionMismatch {
                    expected: 32,
                    got: 31
                }
            ),
            "{e:?}"
        );
    }
    // A face of another recogniser is refused before anything is sent.
    let other = kenning_store::FaceModel {
        name: "other".into(),
        version: "1".into(),
    };
    let e = pg
        .faces
        .bulk_add_faces(
            "c",
            &other,
            (0..10).map(|i| named(i, 32)),
            Default::default(),
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::ModelMismatch { .. }), "{e:?}");

    assert_eq!(
        (pg.faces.describe_collection("c").unwrap(), trail(&pg)),
        before,
        "a failed load changed the collection or the audit trail"
    );
    let report = pg.faces.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.faces, 300, "rows of the failed loads remain");
    // The index dropped for the load is back, and finds what it found.
    let plan = kenning_postgres::explain_search(&pg.faces, "c", &query, 10).unwrap();
    assert!(plan.contains("_hnsw"), "{plan}");
    assert_eq!(hits(&pg, "c", &query), found);
}

/// Two nodes of one database create the same collection, user and stream
/// processor at the same moment, many times over: each time exactly one
/// succeeds and the other gets the operation's "exists" error (never two
/// rows, never a server error), and the audit chain records each creation
/// once.
#[test]
fn concurrent_creates_on_two_nodes_give_one_success_and_one_exists() {
    use kenning_streams::store::{sample_processor, ProcessorStore};
    use std::sync::{Arc, Barrier};
    let Some(db) = common::TestDb::new("concurrent creates") else {
        return;
    };
    let nodes: Vec<Arc<Postgres>> = (0..2)
        .map(|_| {
            let pg = Postgres::connect(&db.url, None, Options::default()).unwrap();
            pg.faces.set_auditor(Arc::new(Counts));
            Arc::new(pg)
        })
        .collect();
    const ROUNDS: usize = 25;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = nodes
        .iter()
        .map(|pg| {
            let (pg, barrier) = (pg.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut won = [0usize; 3];
                for r in 0..ROUNDS {
                    let id = format!("race{r}");
                    barrier.wait();
                    match pg
                        .faces
                        .create_collection(new_coll(&id, 8), Distance::Euclidean)
                    {
                        Ok(_) => won[0] += 1,
                        Err(StoreError::CollectionExists(c)) => assert_eq!(c, id),
                        Err(e) => panic!("CreateCollection {id}: {e:?}"),
                    }
                    barrier.wait();
                    match pg.faces.create_user(&id, "u1") {
                        Ok(_) => won[1] += 1,
                        Err(StoreError::UserExists(u)) => assert_eq!(u, "u1"),
                        Err(e) => panic!("CreateUser {id}: {e:?}"),
                    }
                    barrier.wait();
                    let mut def = sample_processor(&id);
                    def.collection_id = id.clone();
                    if pg.processors.insert(&def).unwrap() {
                        won[2] += 1;
                    }
                }
                won
            })
        })
        .collect();
    let won: Vec<[usize; 3]> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for kind in 0..3 {
        assert_eq!(
            won[0][kind] + won[1][kind],
            ROUNDS,
            "creations of kind {kind}: {won:?}"
        );
    }
    let count = |sql: &str| common::query(&db.url, sql)[0].parse::<usize>().unwrap();
    assert_eq!(count("SELECT count(*)::text FROM collections"), ROUNDS);
    assert_eq!(count("SELECT count(*)::text FROM users"), ROUNDS);
    assert_eq!(
        count("SELECT count(*)::text FROM stream_processors"),
        ROUNDS
    );
    let pg = &nodes[0];
    for r in 0..ROUNDS {
        let c = pg.faces.describe_collection(&format!("race{r}")).unwrap();
        assert_eq!(c.user_count, 1, "{c:?}");
    }
    // One record per collection and per user created, in one chain.
    assert_eq!(trail(pg).len(), 2 * ROUNDS);
    assert_eq!(pg.processors.all().unwrap().len(), ROUNDS);
}

/// The server ends the loading backend half way through a large bulk COPY
/// (`pg_terminate_backend` from another connection, as a database restart
/// or an administrator would): the load returns a clear error, the rows, the
/// audit chain and the HNSW index are as they were, and the same load
/// retried on the same node succeeds.
#[test]
fn a_bulk_load_whose_backend_is_terminated_leaves_nothing_and_can_be_retried() {
    use std::sync::mpsc;
    let Some(db) = common::TestDb::new("bulk load terminated") else {
        return;
    };
    let Settled {
        pg,
        model,
        before,
        query,
        found,
    } = settled(&db);

    const N: u64 = 50_000;
    const PAUSE_AT: u64 = 20_000;
    for index in [
        kenning_postgres::IndexBuild::Rebuild,
        kenning_postgres::IndexBuild::Keep,
    ] {
        // The load pauses mid-copy (thousands of rows already sent) until
        // its backend has been terminated, so the fault lands in the COPY.
        let (paused_tx, paused_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let admin = db.url.clone();
        let name = db.name().to_owned();
        let killer = std::thread::spawn(move || {
            paused_rx.recv().unwrap();
            let pids = common::query(
                &admin,
                &format!(
                    "SELECT pid::text FROM pg_stat_activity WHERE datname = '{name}' \
                     AND query LIKE 'COPY faces_%' AND state = 'active'"
                ),
            );
            assert_eq!(pids.len(), 1, "the loading backend: {pids:?}");
            let ended = common::query(
                &admin,
                &format!("SELECT pg_terminate_backend({})::text", pids[0]),
            );
            assert_eq!(ended, ["true"]);
            go_tx.send(()).unwrap();
        });
        let paused = std::cell::Cell::new(Some((paused_tx, go_rx)));
        let faces = (0..N).map(|i| {
            if i == PAUSE_AT {
                if let Some((tell, wait)) = paused.take() {
                    tell.send(()).unwrap();
                    wait.recv().unwrap();
                }
            }
            named(i, 32)
        });
        let e = pg
            .faces
            .bulk_add_faces("c", &model, faces, index)
            .unwrap_err();
        killer.join().unwrap();
        assert!(
            matches!(&e, StoreError::Unavailable { message, .. } if !message.is_empty()),
            "{index:?}: {e:?}"
        );
        assert!(
            !e.to_string().contains(&db.password()),
            "the error shows the password: {e}"
        );
        assert_eq!(
            (pg.faces.describe_collection("c").unwrap(), trail(&pg)),
            before,
            "{index:?}: a terminated load changed the collection or the audit trail"
        );
        let report = pg.faces.verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(
            report.faces, 300,
            "{index:?}: rows of the terminated load remain"
        );
        // The index is back and valid (whether the planner prefers it over a
        // scan of 300 rows with the aborted load's dead pages is its choice).
        let indexes = common::query(
            &db.url,
            "SELECT c.relname || ' ' || i.indisvalid::text FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE '%\\_hnsw'",
        );
        assert!(
            indexes.len() == 1 && indexes[0].ends_with(" true"),
            "{index:?}: {indexes:?}"
        );
        assert_eq!(hits(&pg, "c", &query), found);
    }

    // Retried on the same node (its pool replaces the dead connection).
    let load = pg
        .faces
        .bulk_add_faces(
            "c",
            &model,
            (0..N).map(|i| named(1_000_000 + i, 32)),
            kenning_postgres::IndexBuild::Auto,
        )
        .unwrap();
    assert_eq!(load.faces.len() as u64, N);
    let c = pg.faces.describe_collection("c").unwrap();
    assert_eq!(c.face_count, 300 + N);
    let records = trail(&pg);
    assert_eq!(records.len(), before.1.len() + (N as usize).div_ceil(1_000));
    let report = pg.faces.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.faces, 300 + N);
}
