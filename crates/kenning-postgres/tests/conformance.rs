//! One suite, both backends: every test here runs unchanged against the
//! embedded data directory and against PostgreSQL, through the storage
//! interface the layers above use (tantivy's pattern: one trait,
//! interchangeable backends, one suite). Without a PostgreSQL server for the
//! run the database half is skipped with one line (and fails under CI).

mod common;

use std::sync::{Arc, Mutex};

use kenning_accountability::keys::{Kek, KeyError, KeyStore};
use kenning_accountability::probes::{ProbeDir, ProbeStore};
use kenning_accountability::review::{self, ReviewError, ReviewItem, ReviewStore, Status, Verdict};
use kenning_accountability::{Grant, ReviewQueue, REVIEW_FILE};
use kenning_audit::Entry;
use kenning_core::{BoundingBox, ErrorCode, WireError};
use kenning_store::*;

/// One backend under test.
struct Backend {
    name: &'static str,
    faces: Arc<dyn FaceStore>,
    reviews: Arc<dyn ReviewStore>,
    keys: KeyStore,
    probes: Arc<dyn ProbeStore>,
    _guard: Box<dyn std::any::Any>,
}

const MODEL: &str = "test-recogniser";

fn model() -> FaceModel {
    FaceModel {
        name: MODEL.into(),
        version: "1".into(),
    }
}

fn embedded(distance: Distance) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let faces =
        Arc::new(Embedded::open(dir.path(), [(MODEL.to_owned(), distance)].into()).unwrap());
    let reviews = ReviewQueue::open(&dir.path().join(REVIEW_FILE), faces.audit()).unwrap();
    Backend {
        name: "embedded",
        keys: KeyStore::new(dir.path()),
        probes: Arc::new(ProbeDir::open(dir.path()).unwrap()),
        faces,
        reviews: Arc::new(reviews),
        _guard: Box::new(dir),
    }
}

fn postgres(test: &str) -> Option<Backend> {
    let db = common::TestDb::new(test)?;
    let pg = kenning_postgres::Postgres::connect(&db.url, None, Default::default()).unwrap();
    let kek = Kek::from_bytes(&[7; 32]).unwrap();
    pg.keys.check_kek(&kek).unwrap();
    Some(Backend {
        name: "postgres",
        keys: KeyStore::with_vault(pg.keys.clone(), kek),
        faces: pg.faces,
        reviews: pg.reviews,
        probes: pg.probes,
        _guard: Box::new(db),
    })
}

/// Runs `check` against each backend.
fn each(test: &str, distance: Distance, mut check: impl FnMut(&Backend)) {
    let mut backends = vec![embedded(distance)];
    backends.extend(postgres(test));
    for b in &backends {
        eprintln!("{test}: {}", b.name);
        check(b);
    }
}

fn new_coll(id: &str, dim: u32) -> NewCollection {
    NewCollection {
        id: id.into(),
        face_model: model(),
        dim,
        policy: "{}".into(),
    }
}

fn face(v: Vec<f32>) -> NewFace {
    NewFace {
        image_id: Uuid::new_v4(),
        external_image_id: Some("img.jpg".into()),
        bounding_box: BoundingBox {
            width: 0.5,
            height: 0.25,
            left: 0.1,
            top: 0.2,
        },
        confidence: 99.5,
        embedding: v,
        indexed_at_ms: None,
        pixels: None,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> ErrorCode {
    r.unwrap_err().code()
}

fn ids(faces: &[Face]) -> Vec<String> {
    faces.iter().map(|f| f.face_id.to_string()).collect()
}

/// A deterministic pseudo-random vector.
fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Records every change the store audits, as the accountability layer would.
#[derive(Default)]
struct Recorder {
    seqs: Mutex<Vec<u64>>,
}

impl Auditor for Recorder {
    fn entry(&self, change: &Change<'_>) -> Entry {
        Entry {
            operation: "StoreChange".into(),
            outcome: "ok".into(),
            collection: Some(change.collection().id.clone()),
            face_count: Some(change.collection().face_count),
            ..Entry::default()
        }
    }
    fn recorded(&self, seq: u64) {
        self.seqs.lock().unwrap().push(seq);
    }
}

#[test]
fn collections_create_describe_list_delete() {
    each("collections", Distance::Euclidean, |b| {
        let s = &b.faces;
        let c = s
            .create_collection(new_coll("alpha", 4), Distance::Euclidean)
            .unwrap();
        assert_eq!(
            c.arn,
            "arn:aws:rekognition:local:000000000000:collection/alpha"
        );
        assert_eq!(
            (c.face_count, c.user_count, c.dim, c.next_seq),
            (0, 0, 4, 1)
        );
        assert!(c.created_at_ms > 1_600_000_000_000);
        assert_eq!(s.describe_collection("alpha").unwrap(), c);
        assert!(matches!(
            s.create_collection(new_coll("alpha", 4), Distance::Euclidean),
            Err(StoreError::CollectionExists(_))
        ));
        for bad in ["", "a b", "a:b", &"x".repeat(256)] {
            assert!(matches!(
                s.create_collection(new_coll(bad, 4), Distance::Euclidean),
                Err(StoreError::InvalidCollectionId(_))
            ));
            assert_eq!(
                code(s.describe_collection(bad)),
                ErrorCode::InvalidParameterException
            );
        }
        assert_eq!(
            code(s.create_collection(new_coll("zero", 0), Distance::Euclidean)),
            ErrorCode::InvalidParameterException
        );
        assert_eq!(
            code(s.describe_collection("nope")),
            ErrorCode::ResourceNotFoundException
        );
        // Byte order: upper case before lower case, as the embedded store keeps them.
        for id in ["b", "c", "D", "e"] {
            s.create_collection(new_coll(id, 4), Distance::Euclidean)
                .unwrap();
        }
        let p1 = s.list_collections(None, Some(2)).unwrap();
        let names = |p: &Page<Collection>| p.items.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(names(&p1), ["D", "alpha"]);
        let p2 = s
            .list_collections(p1.next_token.as_deref(), Some(2))
            .unwrap();
        assert_eq!(names(&p2), ["b", "c"]);
        let p3 = s
            .list_collections(p2.next_token.as_deref(), Some(2))
            .unwrap();
        assert_eq!((names(&p3), p3.next_token), (vec!["e".to_string()], None));
        assert_eq!(
            code(s.list_collections(None, Some(4097))),
            ErrorCode::InvalidParameterException
        );
        assert!(matches!(
            s.list_collections(Some("garbage"), None),
            Err(StoreError::InvalidToken)
        ));
        let before = s.describe_collection("b").unwrap().generation;
        let gone = s.delete_collection("alpha").unwrap();
        assert_eq!(gone.id, "alpha");
        assert_eq!(
            code(s.delete_collection("alpha")),
            ErrorCode::ResourceNotFoundException
        );
        let again = s
            .create_collection(new_coll("alpha", 4), Distance::Euclidean)
            .unwrap();
        assert!(again.generation > before && again.generation > gone.generation);
        let p = s
            .set_policy("b", r#"{"MinFaceMatchThreshold":90}"#)
            .unwrap();
        assert_eq!(s.describe_collection("b").unwrap().policy, p.policy);
        assert_eq!(p.generation, before, "policy changes keep the generation");
        assert!(s.verify().unwrap().problems.is_empty());
    });
}

#[test]
fn faces_add_list_get_delete() {
    each("faces", Distance::Euclidean, |b| {
        let s = &b.faces;
        s.create_collection(new_coll("c", 4), Distance::Euclidean)
            .unwrap();
        let g0 = s.describe_collection("c").unwrap().generation;
        let added = s
            .add_faces("c", &model(), (0..5).map(|i| face(vector(i, 4))).collect())
            .unwrap();
        assert_eq!(
            added.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(added[0].face_id.get_version_num(), 4);
        let c = s.describe_collection("c").unwrap();
        assert_eq!((c.face_count, c.next_seq), (5, 6));
        assert!(c.generation > g0);
        let id = added[1].face_id.to_string();
        let (f, v) = s.face_embedding("c", &id).unwrap();
        assert_eq!((f, v), (added[1].clone(), vector(1, 4)));
        let got = s
            .get_faces("c", &[id.clone(), Uuid::new_v4().to_string(), id.clone()])
            .unwrap();
        assert_eq!(
            got,
            vec![Some(added[1].clone()), None, Some(added[1].clone())]
        );
        // Refusals, and nothing is stored by a refused call.
        let other = FaceModel {
            name: "other".into(),
            version: "1".into(),
        };
        assert!(matches!(
            s.add_faces("c", &other, vec![face(vector(9, 4))]),
            Err(StoreError::ModelMismatch { .. })
        ));
        assert!(matches!(
            s.add_faces("c", &model(), vec![face(vector(9, 3))]),
            Err(StoreError::DimensionMismatch {
                expected: 4,
                got: 3
            })
        ));
        assert_eq!(
            code(s.add_faces("c", &model(), vec![face(vec![f32::NAN, 0.0, 0.0, 0.0])])),
            ErrorCode::InvalidParameterException
        );
        let mut bad = face(vector(9, 4));
        bad.external_image_id = Some("a b".into());
        assert!(matches!(
            s.add_faces("c", &model(), vec![bad]),
            Err(StoreError::InvalidExternalImageId(_))
        ));
        assert_eq!(
            code(s.add_faces("nope", &model(), vec![face(vector(9, 4))])),
            ErrorCode::ResourceNotFoundException
        );
        assert_eq!(s.describe_collection("c").unwrap().face_count, 5);
        assert!(s.add_faces("c", &model(), vec![]).unwrap().is_empty());
        // Paging in seq order.
        let p1 = s.list_faces("c", None, None, Some(2)).unwrap();
        assert_eq!(p1.items, added[..2]);
        let p2 = s
            .list_faces("c", None, p1.next_token.as_deref(), Some(10))
            .unwrap();
        assert_eq!((p2.items.as_slice(), p2.next_token), (&added[2..], None));
        assert!(matches!(
            s.list_faces("c", None, Some("zz"), None),
            Err(StoreError::InvalidToken)
        ));
        assert_eq!(
            code(s.face_embedding("c", &Uuid::new_v4().to_string())),
            ErrorCode::ResourceNotFoundException
        );
        assert_eq!(
            code(s.face_embedding("c", "not-a-uuid")),
            ErrorCode::InvalidParameterException
        );
        // Delete: missing ids are reported, duplicates count once.
        let missing = Uuid::new_v4();
        let out = s
            .delete_faces(
                "c",
                &[
                    ids(&added)[0].clone(),
                    missing.to_string(),
                    ids(&added)[0].clone(),
                ],
                OnAssociated::Refuse,
            )
            .unwrap();
        assert_eq!(out.done, vec![added[0].face_id]);
        assert_eq!(out.unsuccessful.len(), 1);
        assert_eq!(
            (out.unsuccessful[0].face_id, out.unsuccessful[0].reason),
            (missing, FaceReason::FaceNotFound)
        );
        assert_eq!(s.describe_collection("c").unwrap().face_count, 4);
        assert!(matches!(
            s.delete_faces("c", &[] as &[String], OnAssociated::Refuse),
            Err(StoreError::BadItemCount { .. })
        ));
        // Seqs are never reused.
        let more = s
            .add_faces("c", &model(), vec![face(vector(7, 4))])
            .unwrap();
        assert_eq!(more[0].seq, 6);
        assert!(s.verify().unwrap().problems.is_empty());
        s.erase().unwrap();
        assert_eq!(s.list_faces("c", None, None, None).unwrap().items.len(), 5);
    });
}

#[test]
fn users_associate_disassociate_delete() {
    each("users", Distance::Euclidean, |b| {
        let s = &b.faces;
        s.create_collection(new_coll("c", 4), Distance::Euclidean)
            .unwrap();
        let f = ids(&s
            .add_faces("c", &model(), (0..4).map(|i| face(vector(i, 4))).collect())
            .unwrap());
        let u = s.create_user("c", "u1").unwrap();
        assert_eq!((u.status, u.face_ids.len()), (UserStatus::Created, 0));
        assert!(matches!(
            s.create_user("c", "u1"),
            Err(StoreError::UserExists(_))
        ));
        assert_eq!(
            code(s.create_user("c", "bad user")),
            ErrorCode::InvalidParameterException
        );
        s.create_user("c", "u2").unwrap();
        assert_eq!(s.describe_collection("c").unwrap().user_count, 2);
        let missing = Uuid::new_v4().to_string();
        let out = s
            .associate_faces("c", "u1", &[f[1].clone(), f[0].clone(), missing.clone()])
            .unwrap();
        assert_eq!(
            out.done.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            [f[1].clone(), f[0].clone()]
        );
        assert_eq!(out.unsuccessful[0].reason, FaceReason::FaceNotFound);
        assert_eq!(out.user_status, Some(UserStatus::Active));
        let u1 = s.get_user("c", "u1").unwrap();
        assert_eq!(
            u1.face_ids.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            [f[1].clone(), f[0].clone()],
            "association order"
        );
        // Another user's face is reported, not taken.
        let out = s
            .associate_faces("c", "u2", &[f[0].clone(), f[2].clone()])
            .unwrap();
        assert_eq!(
            out.done.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            [f[2].clone()]
        );
        assert_eq!(
            (
                out.unsuccessful[0].reason,
                out.unsuccessful[0].user_id.as_deref()
            ),
            (FaceReason::AssociatedToADifferentUser, Some("u1"))
        );
        // Listing a user's faces, in seq order.
        let listed = s.list_faces("c", Some("u1"), None, None).unwrap();
        assert_eq!(ids(&listed.items), [f[0].clone(), f[1].clone()]);
        assert!(listed
            .items
            .iter()
            .all(|x| x.user_id.as_deref() == Some("u1")));
        // DeleteFaces refuses an associated face, or disassociates it.
        let out = s
            .delete_faces("c", &[f[0].clone()], OnAssociated::Refuse)
            .unwrap();
        assert_eq!(
            out.unsuccessful[0].reason,
            FaceReason::AssociatedToAnExistingUser
        );
        let out = s
            .delete_faces("c", &[f[0].clone()], OnAssociated::Disassociate)
            .unwrap();
        assert_eq!(out.done.len(), 1);
        assert_eq!(s.get_user("c", "u1").unwrap().face_ids.len(), 1);
        // Disassociate: a free face counts as done, another user's is reported.
        let out = s
            .disassociate_faces("c", "u1", &[f[1].clone(), f[3].clone(), f[2].clone()])
            .unwrap();
        assert_eq!(
            out.done.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            [f[1].clone(), f[3].clone()]
        );
        assert_eq!(
            out.unsuccessful[0].reason,
            FaceReason::AssociatedToADifferentUser
        );
        assert_eq!(out.user_status, Some(UserStatus::Created));
        // The per-user limit fails the whole call.
        let many = s
            .add_faces(
                "c",
                &model(),
                (0..100).map(|i| face(vector(100 + i, 4))).collect(),
            )
            .unwrap();
        let mut all = ids(&many);
        all.push(f[3].clone());
        assert!(matches!(
            s.associate_faces("c", "u2", &all[..100]),
            Err(StoreError::UserFaceLimit {
                would_have: 101,
                ..
            })
        ));
        assert_eq!(s.get_user("c", "u2").unwrap().face_ids.len(), 1);
        // DeleteUser leaves its faces, disassociated.
        let gone = s.delete_user("c", "u2").unwrap();
        assert_eq!(gone.face_ids.len(), 1);
        let (face2, _) = s.face_embedding("c", &f[2]).unwrap();
        assert_eq!(face2.user_id, None);
        assert!(matches!(
            s.get_user("c", "u2"),
            Err(StoreError::UserNotFound(_))
        ));
        let page = s.list_users("c", None, Some(1)).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next_token, None);
        assert_eq!(s.describe_collection("c").unwrap().user_count, 1);
        assert!(s.verify().unwrap().problems.is_empty());
    });
}

#[test]
fn retention_queries_by_indexing_and_last_match() {
    each("retention", Distance::Euclidean, |b| {
        let s = &b.faces;
        s.create_collection(new_coll("c", 4), Distance::Euclidean)
            .unwrap();
        let day = 86_400_000;
        let now = 1_800_000_000_000u64;
        let faces: Vec<NewFace> = (0..4)
            .map(|i| NewFace {
                indexed_at_ms: Some(now - (4 - i) * day),
                ..face(vector(i, 4))
            })
            .collect();
        let added = s.add_faces("c", &model(), faces).unwrap();
        let old = s
            .expired_faces("c", Expiry::IndexedBefore(now - 2 * day), 10)
            .unwrap();
        assert_eq!(ids(&old), ids(&added[..2]), "oldest first");
        assert_eq!(
            s.expired_faces("c", Expiry::IndexedBefore(now), 1)
                .unwrap()
                .len(),
            1
        );
        // A match moves a face's retention clock; times never go back.
        assert_eq!(s.touch_faces("c", &[added[0].seq, 999], now).unwrap(), 1);
        assert_eq!(s.touch_faces("c", &[added[0].seq], now - day).unwrap(), 0);
        let idle = s
            .expired_faces("c", Expiry::LastMatchedBefore(now - day), 10)
            .unwrap();
        assert_eq!(ids(&idle), ids(&added[1..3]));
        let (f0, _) = s
            .face_embedding("c", &added[0].face_id.to_string())
            .unwrap();
        assert_eq!(f0.last_matched_at_ms, Some(now));
    });
}

/// A face's size (the small-face rule's input) is stored and read back by
/// every read path, search included; a face without one stays without.
#[test]
fn face_sizes_round_trip() {
    each("face_sizes", Distance::Cosine, |b| {
        let s = &b.faces;
        let c = s
            .create_collection(new_coll("c", 16), Distance::Cosine)
            .unwrap();
        let sized = NewFace {
            pixels: Some(23.5),
            ..face(vector(1, 16))
        };
        let added = s
            .add_faces("c", &model(), vec![sized, face(vector(2, 16))])
            .unwrap();
        let sizes = |faces: &[Face]| faces.iter().map(|f| f.pixels).collect::<Vec<_>>();
        assert_eq!(sizes(&added), [Some(23.5), None], "{}", b.name);
        let listed = s.list_faces("c", None, None, None).unwrap().items;
        assert_eq!(sizes(&listed), [Some(23.5), None], "{}", b.name);
        let (f, _) = s
            .face_embedding("c", &added[0].face_id.to_string())
            .unwrap();
        assert_eq!(f.pixels, Some(23.5));
        let c = s.describe_collection(&c.id).unwrap();
        let q = vector(1, 16);
        let hits = s
            .nearest(
                &c,
                Nearest {
                    query: &q,
                    distance: Distance::Cosine,
                    k: 2,
                    max_distance: None,
                    exclude: None,
                    with_embeddings: true,
                },
            )
            .unwrap();
        assert_eq!(hits[0].face.pixels, Some(23.5), "{}", b.name);
        assert_eq!(hits[1].face.pixels, None, "{}", b.name);
    });
}

#[test]
fn nearest_neighbours_are_exact_and_identical() {
    for distance in [Distance::Euclidean, Distance::Cosine] {
        let mut results = Vec::new();
        each("nearest", distance, |b| {
            let s = &b.faces;
            let c = s.create_collection(new_coll("c", 16), distance).unwrap();
            let added = s
                .add_faces(
                    "c",
                    &model(),
                    (0..300).map(|i| face(vector(i, 16))).collect(),
                )
                .unwrap();
            // Two copies of one vector: a tie, broken by seq.
            let twins = s
                .add_faces(
                    "c",
                    &model(),
                    vec![face(vector(5, 16)), face(vector(5, 16))],
                )
                .unwrap();
            let c = s.describe_collection(&c.id).unwrap();
            let q = vector(5, 16);
            let search = |k, max_distance, exclude, with_embeddings| {
                s.nearest(
                    &c,
                    Nearest {
                        query: &q,
                        distance,
                        k,
                        max_distance,
                        exclude,
                        with_embeddings,
                    },
                )
                .unwrap()
            };
            let hits = search(10, None, None, true);
            // Brute force with the same exact distance.
            let mut truth: Vec<(f32, u64)> = added
                .iter()
                .chain(&twins)
                .map(|f| {
                    let v = if f.seq > 300 {
                        vector(5, 16)
                    } else {
                        vector(f.seq - 1, 16)
                    };
                    (exact_distance(distance, &q, &v), f.seq)
                })
                .collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(
                hits.iter()
                    .map(|h| (h.distance, h.face.seq))
                    .collect::<Vec<_>>(),
                truth[..10]
            );
            assert_eq!(hits[0].embedding, q);
            assert_eq!(hits[0].distance, 0.0);
            assert_eq!(
                hits[..3].iter().map(|h| h.face.seq).collect::<Vec<_>>(),
                [6, 301, 302]
            );
            // A radius, an excluded face, no embeddings unless asked.
            let radius = truth[6].0;
            let near = search(100, Some(radius), Some(6), false);
            assert_eq!(
                near.iter().map(|h| h.face.seq).collect::<Vec<_>>(),
                truth[1..7].iter().map(|t| t.1).collect::<Vec<_>>()
            );
            assert!(near.iter().all(|h| h.embedding.is_empty()));
            assert!(search(0, None, None, false).is_empty());
            // Deleted faces are not found.
            s.delete_faces("c", &[twins[0].face_id.to_string()], OnAssociated::Refuse)
                .unwrap();
            let after = search(3, None, None, false);
            assert_eq!(
                after.iter().map(|h| h.face.seq).collect::<Vec<_>>(),
                [6, 302, truth[3].1]
            );
            results.push(
                hits.iter()
                    .map(|h| (h.face.seq, h.distance.to_bits()))
                    .collect::<Vec<_>>(),
            );
        });
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "{distance:?}: backends differ: {results:?}"
        );
    }
}

#[test]
fn changes_are_audited_in_their_transaction() {
    each("audit", Distance::Euclidean, |b| {
        let s = &b.faces;
        let recorder = Arc::new(Recorder::default());
        s.set_auditor(recorder.clone());
        s.create_collection(new_coll("c", 4), Distance::Euclidean)
            .unwrap();
        let f = s
            .add_faces("c", &model(), vec![face(vector(1, 4))])
            .unwrap();
        s.create_user("c", "u").unwrap();
        s.associate_faces("c", "u", &ids(&f)).unwrap();
        s.disassociate_faces("c", "u", &ids(&f)).unwrap();
        s.delete_user("c", "u").unwrap();
        s.set_policy("c", "{}").unwrap();
        s.delete_faces("c", &ids(&f), OnAssociated::Refuse).unwrap();
        s.delete_collection("c").unwrap();
        // Refused calls write nothing.
        assert!(s.delete_collection("c").is_err());
        let trail = s.audit();
        trail
            .append(Entry {
                operation: "SearchFacesByImage".into(),
                outcome: "ok".into(),
                ..Entry::default()
            })
            .unwrap();
        assert_eq!(*recorder.seqs.lock().unwrap(), (1..=9).collect::<Vec<_>>());
        let report = trail.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.records, 10);
        let records: Vec<_> = trail.records().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 10);
        assert_eq!(report.head.as_deref(), Some(records[9].1.as_str()));
        assert_eq!(records[1].0.entry.face_count, Some(1));
        assert_eq!(records[9].0.entry.operation, "SearchFacesByImage");
        let mut out = Vec::new();
        let filter = kenning_audit::Filter::default();
        assert_eq!(trail.export(&filter, &mut out).unwrap(), 10);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 10);
    });
}

#[test]
fn a_collections_own_calibration_is_kept_audited_and_removed() {
    each("calibration", Distance::Cosine, |b| {
        let s = &b.faces;
        let recorder = Arc::new(Recorder::default());
        s.set_auditor(recorder.clone());
        s.create_collection(new_coll("c", 4), Distance::Cosine)
            .unwrap();
        s.create_collection(new_coll("d", 4), Distance::Cosine)
            .unwrap();
        assert_eq!(s.calibration("c").unwrap(), None);
        let doc = r#"{"Summary":{"Photos":1200},"Calibration":{}}"#;
        let c = s.set_calibration("c", Some(doc)).unwrap();
        assert_eq!(c.id, "c");
        assert_eq!(s.calibration("c").unwrap().as_deref(), Some(doc));
        // Another collection keeps the shipped calibration.
        assert_eq!(s.calibration("d").unwrap(), None);
        // Re-fitting replaces; a reset removes; both are recorded.
        s.set_calibration("c", Some("{}")).unwrap();
        assert_eq!(s.calibration("c").unwrap().as_deref(), Some("{}"));
        s.set_calibration("c", None).unwrap();
        assert_eq!(s.calibration("c").unwrap(), None);
        assert_eq!(recorder.seqs.lock().unwrap().len(), 2 + 3);
        assert_eq!(
            code(s.set_calibration("nope", Some("{}"))),
            ErrorCode::ResourceNotFoundException
        );
        assert_eq!(
            code(s.calibration("nope")),
            ErrorCode::ResourceNotFoundException
        );
        // A re-created collection starts with the shipped calibration.
        s.set_calibration("d", Some(doc)).unwrap();
        s.delete_collection("d").unwrap();
        s.create_collection(new_coll("d", 4), Distance::Cosine)
            .unwrap();
        assert_eq!(s.calibration("d").unwrap(), None);
    });
}

#[test]
fn the_chain_does_not_fork_under_concurrent_writers() {
    each("concurrent", Distance::Euclidean, |b| {
        let s = b.faces.clone();
        s.set_auditor(Arc::new(Recorder::default()));
        s.create_collection(new_coll("c", 4), Distance::Euclidean)
            .unwrap();
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        s.add_faces("c", &model(), vec![face(vector(t * 100 + i, 4))])
                            .unwrap();
                        s.audit()
                            .append(Entry {
                                operation: "SearchFaces".into(),
                                outcome: "ok".into(),
                                ..Entry::default()
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let report = s.audit().verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.records, 81);
        assert_eq!(s.describe_collection("c").unwrap().face_count, 40);
        let seqs: Vec<u64> = s
            .list_faces("c", None, None, None)
            .unwrap()
            .items
            .iter()
            .map(|f| f.seq)
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    });
}

fn item(id: &str, required: u8) -> ReviewItem {
    ReviewItem::fixture(id, required)
}

fn entry(op: &str) -> Entry {
    Entry {
        operation: op.into(),
        outcome: "ok".into(),
        ..Entry::default()
    }
}

#[test]
fn review_queue_two_reviewer_rule() {
    each("reviews", Distance::Euclidean, |b| {
        let q = b.reviews.as_ref();
        q.enqueue(
            &mut [item("a", 2), item("b", 1), item("c", 2)],
            entry("SearchFacesByImage"),
        )
        .unwrap();
        let decide = |id, who, verdict, comment| {
            review::decide(q, id, who, verdict, comment, |_| entry("DecideReviewItem"))
        };
        assert!(matches!(
            decide("a", "OPERATOR", Verdict::Confirm, "same face"),
            Err(ReviewError::OwnSearch(_))
        ));
        assert_eq!(
            decide("a", "R1", Verdict::Confirm, "same scar")
                .unwrap()
                .status,
            Status::Pending
        );
        assert!(matches!(
            decide("a", "R1", Verdict::Confirm, "again"),
            Err(ReviewError::AlreadyDecided(_))
        ));
        assert_eq!(q.get("a").unwrap().decisions.len(), 1);
        assert_eq!(
            decide("a", "R2", Verdict::Confirm, "agree").unwrap().status,
            Status::Confirmed
        );
        assert!(matches!(
            decide("a", "R3", Verdict::Reject, "late"),
            Err(ReviewError::Closed { .. })
        ));
        assert_eq!(
            decide("c", "R2", Verdict::Reject, "different ears")
                .unwrap()
                .status,
            Status::Rejected
        );
        assert!(matches!(
            decide("b", "R1", Verdict::Confirm, " "),
            Err(ReviewError::Invalid(_))
        ));
        assert!(matches!(
            decide("zz", "R1", Verdict::Confirm, "x"),
            Err(ReviewError::NotFound(_))
        ));
        let p = q.list(&|_| true, None, 2).unwrap();
        assert_eq!(
            p.items
                .iter()
                .map(|i| i.review_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let rest = q.list(&|_| true, p.next_token.as_deref(), 2).unwrap();
        assert_eq!(rest.items[0].review_id, "c");
        assert!(rest.next_token.is_none());
        let pending = q.list(&|i| i.status == Status::Pending, None, 10).unwrap();
        assert_eq!(pending.items.len(), 1);
        assert!(q.list(&|_| true, Some("x"), 2).is_err());
        // The search and the four decisions, each with its audit record.
        let report = b.faces.audit().verify().unwrap();
        assert_eq!(report.records, 4);
    });
}

#[test]
fn access_keys_and_tokens_sealed_listed_revoked() {
    use secrecy::ExposeSecret;
    each("keys", Distance::Euclidean, |b| {
        let k = &b.keys;
        let key = k
            .create(false, &Grant::admin(), |_| entry("CreateAccessKey"))
            .unwrap();
        let secret = key.secret_access_key.expose_secret();
        let active = k.active().unwrap();
        assert_eq!(active[&key.access_key_id].secret.expose_secret(), secret);
        let stored = k.vault().records().unwrap();
        assert_eq!(stored.len(), 1);
        assert!(!stored[0].secret.contains(secret), "secret stored in clear");
        let v1 = k.vault().version().unwrap();
        // One live root key, however many nodes try.
        let root = k
            .create(true, &Grant::admin(), |_| entry("CreateAccessKey"))
            .unwrap();
        assert!(matches!(
            k.create(true, &Grant::admin(), |_| entry("CreateAccessKey")),
            Err(KeyError::RootExists)
        ));
        assert_eq!(k.root().unwrap(), Some(root.access_key_id.clone()));
        // API tokens speak for their key until revoked, stored as hashes.
        let t = k
            .create_token(&key.access_key_id, Some("ci".into()), None, |_| {
                entry("CreateApiToken")
            })
            .unwrap();
        let token = t.token.expose_secret();
        assert_eq!(
            k.token_principal(token).unwrap().access_key,
            key.access_key_id
        );
        let hashes = k.vault().tokens().unwrap();
        assert_eq!(hashes.len(), 1);
        assert!(!hashes[0].hash.contains(token.rsplit('_').next().unwrap()));
        k.revoke_token(&t.info.token_id, |_| entry("RevokeApiToken"))
            .unwrap();
        assert!(matches!(k.token_principal(token), Err(KeyError::BadToken)));
        assert!(matches!(
            k.revoke_token(&t.info.token_id, |_| entry("RevokeApiToken")),
            Err(KeyError::NotFound(_))
        ));
        k.revoke(&key.access_key_id, entry("RevokeAccessKey"))
            .unwrap();
        assert_ne!(k.vault().version().unwrap(), v1);
        assert!(matches!(
            k.revoke(&key.access_key_id, entry("RevokeAccessKey")),
            Err(KeyError::NotFound(_))
        ));
        assert_eq!(k.active().unwrap().len(), 1);
        assert_eq!(k.list().unwrap().len(), 2);
        assert_eq!(k.list_tokens().unwrap().len(), 1);
        let report = b.faces.audit().verify().unwrap();
        assert_eq!(
            report.records, 5,
            "two keys and a token created, the token and a key revoked"
        );
    });
}

#[test]
fn probe_photos_kept_read_erased_and_swept() {
    each(
        "probe_photos_kept_read_erased_and_swept",
        Distance::Euclidean,
        |b| {
            let (a, c) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
            b.probes.put(&a, b"probe a").unwrap();
            b.probes.put(&c, b"probe c").unwrap();
            // Kept again (a retried search), the last bytes win.
            b.probes.put(&c, b"probe c again").unwrap();
            assert_eq!(b.probes.get(&a).unwrap().as_deref(), Some(&b"probe a"[..]));
            assert_eq!(
                b.probes.get(&c).unwrap().as_deref(),
                Some(&b"probe c again"[..])
            );
            assert_eq!(b.probes.get(&Uuid::new_v4().to_string()).unwrap(), None);
            let mut ids = b.probes.ids().unwrap();
            ids.sort();
            let mut want = vec![a.clone(), c.clone()];
            want.sort();
            assert_eq!(ids, want);
            // Only the search with a pending candidate keeps its probe.
            assert_eq!(b.probes.sweep(&|id| id == a).unwrap(), 1);
            assert_eq!(b.probes.get(&c).unwrap(), None);
            b.probes.erase(&a).unwrap();
            b.probes.erase(&a).unwrap();
            assert_eq!(b.probes.get(&a).unwrap(), None);
            assert!(b.probes.ids().unwrap().is_empty());
        },
    );
}

/// Stored-video jobs: the suite the embedded job store passes, run on the
/// database's, leases included (a job is held by one node at a time and
/// taken over when its owner's lease ends or is given up).
#[test]
fn video_jobs_with_leases() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = kenning_video::RedbJobStore::open(&dir.path().join("jobs.redb")).unwrap();
    kenning_video::jobs::conformance(&embedded);
    let Some(db) = common::TestDb::new("video_jobs_with_leases") else {
        return;
    };
    let pg = kenning_postgres::Postgres::connect(&db.url, None, Default::default()).unwrap();
    kenning_video::jobs::conformance(pg.jobs.as_ref());
}

/// Stream processors: the suite the embedded processor store passes, run
/// on the database's, leases included (a running processor is held by one
/// node at a time and taken over when its owner's lease ends or is given up).
#[test]
fn stream_processors_with_leases() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = kenning_streams::store::RedbProcessorStore::open(dir.path()).unwrap();
    kenning_streams::store::conformance(&embedded);
    let Some(db) = common::TestDb::new("stream_processors_with_leases") else {
        return;
    };
    let pg = kenning_postgres::Postgres::connect(&db.url, None, Default::default()).unwrap();
    kenning_streams::store::conformance(pg.processors.as_ref());
}

/// Published evaluation reports: the suite the data directory's reports
/// pass, run on the database's.
#[test]
fn eval_reports() {
    let dir = tempfile::tempdir().unwrap();
    let trail = kenning_audit::AuditLog::open(&dir.path().join(kenning_store::AUDIT_FILE)).unwrap();
    kenning_store::evals::conformance(&kenning_store::EvalDir::new(dir.path()), &trail);
    let Some(db) = common::TestDb::new("eval_reports") else {
        return;
    };
    let pg = kenning_postgres::Postgres::connect(&db.url, None, Default::default()).unwrap();
    kenning_store::evals::conformance(pg.evals.as_ref(), pg.faces.audit().as_ref());
}
