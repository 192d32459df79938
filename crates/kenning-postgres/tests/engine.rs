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
