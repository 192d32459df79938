//! What only the PostgreSQL backend has: its schema versions, its query
//! plans, and how it reports a database it cannot use.

mod common;

use kenning_postgres::{migrate, ConnectError, Options, Postgres, Precision};
use kenning_store::{
    Distance, EvalReportStore, FaceModel, FaceStore, NewCollection, NewFace, StoreError, Uuid,
};

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
    use kenning_streams::StreamError;
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
                    match pg.processors.insert(&def, usize::MAX) {
                        Ok(()) => won[2] += 1,
                        Err(StreamError::InUse(m)) => assert!(m.contains("named"), "{m}"),
                        Err(e) => panic!("CreateStreamProcessor {id}: {e:?}"),
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

/// Two nodes create stream processors at the same moment, 25 rounds of
/// each kind: two processors of different names on one source give exactly
/// one success and one ResourceInUse naming the source; two new processors
/// with one place left under the limit give exactly one success and one
/// LimitExceeded, so the table never holds more than the limit. Then a
/// database of schema 7 holding two processors on one source (as racing
/// creates could leave) migrates: the older keeps the source.
#[test]
fn concurrent_processor_creates_hold_one_per_source_and_the_limit() {
    use kenning_streams::store::{sample_processor, ProcessorStore};
    use kenning_streams::StreamError;
    use std::sync::{Arc, Barrier};
    let Some(db) = common::TestDb::new("concurrent processor creates") else {
        return;
    };
    let nodes: Vec<Arc<Postgres>> = (0..2)
        .map(|_| Arc::new(Postgres::connect(&db.url, None, Options::default()).unwrap()))
        .collect();
    const ROUNDS: usize = 25;
    let barrier = Arc::new(Barrier::new(2));
    let count = || {
        common::query(&db.url, "SELECT count(*)::text FROM stream_processors")[0]
            .parse::<usize>()
            .unwrap()
    };
    // Each node's outcome per round; nothing panics in a thread, so a
    // failure cannot leave the other waiting at the barrier.
    let threads: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, pg)| {
            let (pg, barrier) = (pg.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for r in 0..ROUNDS {
                    // Same source, own name and output.
                    let mut def = sample_processor(&format!("n{n}-src{r}"));
                    def.source = format!("src{r}");
                    barrier.wait();
                    outcomes.push(pg.processors.insert(&def, usize::MAX));
                }
                for r in 0..ROUNDS {
                    // Everything its own, one place left under the limit.
                    let def = sample_processor(&format!("n{n}-lim{r}"));
                    barrier.wait();
                    outcomes.push(pg.processors.insert(&def, ROUNDS + r + 1));
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<Vec<Result<(), StreamError>>> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(outcomes[0].len(), 2 * ROUNDS);
    for (i, (x, y)) in outcomes[0].iter().zip(&outcomes[1]).enumerate() {
        let r = i % ROUNDS;
        let pair = [x, y];
        assert_eq!(
            pair.iter().filter(|o| o.is_ok()).count(),
            1,
            "round {i}: {pair:?}"
        );
        let refused = pair.into_iter().find_map(|o| o.as_ref().err()).unwrap();
        if i < ROUNDS {
            assert!(
                matches!(refused, StreamError::InUse(m) if m.contains(&format!("source \"src{r}\""))),
                "round {i}: {refused:?}"
            );
        } else {
            assert!(
                matches!(refused, StreamError::LimitExceeded(m)
                    if m.contains(&format!("allows {} ", ROUNDS + r + 1))),
                "round {i}: {refused:?}"
            );
        }
    }
    assert_eq!(count(), 2 * ROUNDS);
    let all = nodes[0].processors.all().unwrap();
    let mut sources: Vec<&str> = all.iter().map(|d| d.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    assert_eq!(sources.len(), all.len(), "a source taken twice");

    // Schema 7's table, with two processors on one source, migrated to 8.
    drop(nodes);
    common::sql(
        &db.url,
        "DELETE FROM stream_processors; \
         ALTER TABLE stream_processors DROP COLUMN source, DROP COLUMN output; \
         DELETE FROM schema_migrations WHERE version = 8",
    );
    let (mut first, mut second) = (sample_processor("first"), sample_processor("second"));
    (first.source, second.source) = ("door".into(), "door".into());
    (first.created_ms, second.created_ms) = (10, 20);
    for d in [&second, &first] {
        let json = String::from_utf8(kenning_streams::store::encode(d).unwrap()).unwrap();
        common::sql(
            &db.url,
            &format!(
                "INSERT INTO stream_processors (name, def) VALUES ('{}', convert_to('{}', 'UTF8'))",
                d.name,
                json.replace('\'', "''")
            ),
        );
    }
    let pg = Postgres::connect(&db.url, None, Options::default()).unwrap();
    assert_eq!(
        common::query(
            &db.url,
            "SELECT name || ' ' || coalesce(source, '-') || ' ' || coalesce(output, '-') \
             FROM stream_processors ORDER BY name"
        ),
        ["first door first", "second - second"]
    );
    let mut third = sample_processor("third");
    third.source = "door".into();
    assert!(matches!(
        pg.processors.insert(&third, usize::MAX),
        Err(StreamError::InUse(m)) if m.contains("source \"door\"")
    ));
    assert_eq!(pg.processors.all().unwrap().len(), 2);
}

/// Holds the audit chain's head row locked from another connection until
/// told to let go, so a change that reaches its audit record waits there.
fn hold_chain_head(url: &str) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    use std::str::FromStr;
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            let task = tokio::spawn(conn);
            client
                .batch_execute("BEGIN; SELECT seq FROM audit_head FOR UPDATE")
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
            client.batch_execute("ROLLBACK").await.unwrap();
            drop(client);
            let _ = task.await;
        });
    });
    locked_rx.recv().unwrap();
    (release_tx, holder)
}

/// Publishing or deleting an evaluation report writes the report and its
/// audit record in one transaction: a backend terminated (as a crash or an
/// administrator would) after the report's row was written and while the
/// record waits for the chain head leaves the report as it was and no
/// record; retried, both are there.
#[test]
fn an_eval_reports_change_and_its_audit_record_commit_together() {
    use kenning_store::evals::test_record;
    let Some(db) = common::TestDb::new("eval report audit") else {
        return;
    };
    let pg = std::sync::Arc::new(Postgres::connect(&db.url, None, Options::default()).unwrap());
    let put = |pg: &Postgres, json: &str| {
        pg.evals.put("site", json, 1, &|r: bool| {
            test_record("PutEvalReport", "site", Some(r))
        })
    };
    // (operation, Replaced) of every record of the chain, which verifies.
    let records = |pg: &Postgres| -> Vec<(String, serde_json::Value)> {
        let audit = pg.faces.audit();
        assert!(audit.verify().unwrap().is_ok());
        audit
            .records()
            .unwrap()
            .map(|r| {
                let e = r.unwrap().0.entry;
                (e.operation, e.details.unwrap()["Replaced"].clone())
            })
            .collect()
    };
    let v1 = r#"{"fairness": {"scoring": "v1"}}"#;
    let v2 = r#"{"fairness": {"scoring": "v2"}}"#;
    assert!(!put(&pg, v1).unwrap());
    let before = records(&pg);
    assert_eq!(
        before,
        [("PutEvalReport".to_owned(), serde_json::json!(false))]
    );

    for op in ["PutEvalReport", "DeleteEvalReport"] {
        let (release, holder) = hold_chain_head(&db.url);
        let change = {
            let pg = pg.clone();
            let op = op.to_owned();
            std::thread::spawn(move || {
                if op == "PutEvalReport" {
                    put(&pg, v2).map(|_| ())
                } else {
                    pg.evals
                        .delete("site", test_record(&op, "site", None))
                        .map(|_| ())
                }
            })
        };
        // The change's backend waits for the head's lock: its report row is
        // written (uncommitted) by then.
        let admin = &db.url;
        let waiting = format!(
            "SELECT pid::text FROM pg_stat_activity WHERE datname = '{}' \
             AND wait_event_type = 'Lock' AND query LIKE '%FROM audit_head FOR UPDATE'",
            db.name()
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let pid = loop {
            if let Some(pid) = common::query(admin, &waiting).pop() {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "{op} never waited");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let rows = common::query(admin, &format!("SELECT pg_terminate_backend({pid})::text"));
        assert_eq!(rows, ["true"]);
        let e = change.join().unwrap().unwrap_err();
        assert!(matches!(e, StoreError::Unavailable { .. }), "{op}: {e:?}");
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(pg.evals.get("site").unwrap().unwrap().json, v1, "{op}");
        assert_eq!(records(&pg), before, "{op}: a record without its change");
    }

    // Retried, each change comes with its record.
    assert!(put(&pg, v2).unwrap());
    assert_eq!(pg.evals.get("site").unwrap().unwrap().json, v2);
    assert!(pg
        .evals
        .delete("site", test_record("DeleteEvalReport", "site", None))
        .unwrap());
    assert_eq!(pg.evals.get("site").unwrap(), None);
    let mut expected = before;
    expected.push(("PutEvalReport".into(), serde_json::json!(true)));
    expected.push(("DeleteEvalReport".into(), serde_json::Value::Null));
    assert_eq!(records(&pg), expected);
}
