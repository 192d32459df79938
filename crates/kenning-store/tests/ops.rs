//! Every store operation and its error cases, through the public API.

use std::sync::Arc;

use kenning_core::{BoundingBox, ErrorCode, WireError};
use kenning_store::*;

const DIM: u32 = 4;

fn model() -> FaceModel {
    FaceModel {
        name: "dlib-resnet".into(),
        version: "1".into(),
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn new_coll(id: &str) -> NewCollection {
    NewCollection {
        id: id.into(),
        face_model: model(),
        dim: DIM,
        policy: "{}".into(),
    }
}

fn face(x: f32) -> NewFace {
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
        embedding: vec![x, x + 1.0, x + 2.0, x + 3.0],
        indexed_at_ms: None,
        pixels: None,
    }
}

/// A store with collection `c` holding `n` faces; returns their FaceIds.
fn with_faces(n: usize) -> (tempfile::TempDir, Store, Vec<String>) {
    let (dir, store) = open();
    store.create_collection(new_coll("c")).unwrap();
    let faces = store
        .add_faces("c", &model(), (0..n).map(|i| face(i as f32)).collect())
        .unwrap();
    let ids = faces.iter().map(|f| f.face_id.to_string()).collect();
    (dir, store, ids)
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> ErrorCode {
    r.unwrap_err().code()
}

#[test]
fn store_is_send_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let (_d, store, _) = with_faces(10);
    let store = Arc::new(store);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || (0..50).all(|_| s.describe_collection("c").is_ok()))
        })
        .collect();
    for i in 0..20 {
        store
            .add_faces("c", &model(), vec![face(i as f32)])
            .unwrap();
    }
    assert!(readers.into_iter().all(|h| h.join().unwrap()));
    assert_eq!(store.describe_collection("c").unwrap().face_count, 30);
}

#[test]
fn collections_create_describe_list_delete() {
    let (_d, store) = open();
    let c = store.create_collection(new_coll("alpha")).unwrap();
    assert_eq!(
        c.arn,
        "arn:aws:rekognition:local:000000000000:collection/alpha"
    );
    assert_eq!(
        (c.face_count, c.user_count, c.dim, c.next_seq),
        (0, 0, DIM, 1)
    );
    assert!(c.created_at_ms > 1_600_000_000_000);
    assert_eq!(store.describe_collection("alpha").unwrap(), c);
    assert_eq!(
        code(store.create_collection(new_coll("alpha"))),
        ErrorCode::ResourceAlreadyExistsException
    );
    assert!(matches!(
        store.create_collection(new_coll("alpha")),
        Err(StoreError::CollectionExists(_))
    ));
    for bad in ["", "a b", "a:b", &"x".repeat(256)] {
        assert!(matches!(
            store.create_collection(new_coll(bad)),
            Err(StoreError::InvalidCollectionId(_))
        ));
        assert_eq!(
            code(store.describe_collection(bad)),
            ErrorCode::InvalidParameterException
        );
    }
    let mut zero = new_coll("zero");
    zero.dim = 0;
    assert_eq!(
        code(store.create_collection(zero)),
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        code(store.describe_collection("nope")),
        ErrorCode::ResourceNotFoundException
    );

    for id in ["b", "c", "d", "e"] {
        store.create_collection(new_coll(id)).unwrap();
    }
    let p1 = store.list_collections(None, Some(2)).unwrap();
    assert_eq!(
        p1.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["alpha", "b"]
    );
    let p2 = store
        .list_collections(p1.next_token.as_deref(), Some(2))
        .unwrap();
    assert_eq!(
        p2.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c", "d"]
    );
    let p3 = store
        .list_collections(p2.next_token.as_deref(), Some(2))
        .unwrap();
    assert_eq!(p3.items.len(), 1);
    assert_eq!(p3.next_token, None);
    assert_eq!(store.list_collections(None, None).unwrap().items.len(), 5);
    assert_eq!(
        code(store.list_collections(None, Some(0))),
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        code(store.list_collections(None, Some(4097))),
        ErrorCode::InvalidParameterException
    );
    assert!(matches!(
        store.list_collections(Some("garbage"), None),
        Err(StoreError::InvalidToken)
    ));

    let before = store.describe_collection("b").unwrap().generation;
    let gone = store.delete_collection("alpha").unwrap();
    assert_eq!(gone.id, "alpha");
    assert_eq!(
        code(store.describe_collection("alpha")),
        ErrorCode::ResourceNotFoundException
    );
    assert_eq!(
        code(store.delete_collection("alpha")),
        ErrorCode::ResourceNotFoundException
    );
    // Re-created collections get generations above anything seen before.
    let again = store.create_collection(new_coll("alpha")).unwrap();
    assert!(again.generation > before && again.generation > gone.generation);

    let p = store.set_policy("b", r#"{"min_threshold":90}"#).unwrap();
    assert_eq!(store.describe_collection("b").unwrap().policy, p.policy);
    assert_eq!(
        p.generation, before,
        "policy changes do not invalidate the index"
    );
}

#[test]
fn add_and_get_faces() {
    let (_d, store) = open();
    store.create_collection(new_coll("c")).unwrap();
    let g0 = store.describe_collection("c").unwrap().generation;
    let added = store
        .add_faces("c", &model(), vec![face(1.0), face(2.0)])
        .unwrap();
    assert_eq!(added.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(added[0].face_id.get_version_num(), 4);
    assert_eq!(added[0].bounding_box.left, 0.1);
    assert_eq!(added[0].external_image_id.as_deref(), Some("img.jpg"));
    let c = store.describe_collection("c").unwrap();
    assert_eq!((c.face_count, c.next_seq), (2, 3));
    assert!(c.generation > g0);

    let id = added[1].face_id.to_string();
    assert_eq!(store.get_face("c", &id).unwrap(), added[1]);
    let (f, v) = store.face_embedding("c", &id).unwrap();
    assert_eq!((f.seq, v), (2, vec![2.0, 3.0, 4.0, 5.0]));
    let missing = Uuid::new_v4().to_string();
    assert_eq!(
        code(store.get_face("c", &missing)),
        ErrorCode::ResourceNotFoundException
    );
    assert!(matches!(
        store.get_face("c", "not-a-uuid"),
        Err(StoreError::InvalidFaceId(_))
    ));
    assert_eq!(
        code(store.get_face("nope", &id)),
        ErrorCode::ResourceNotFoundException
    );
    let got = store
        .get_faces("c", &[id.as_str(), missing.as_str()])
        .unwrap();
    assert_eq!(got[0].as_ref().unwrap().seq, 2);
    assert!(got[1].is_none());

    let by_seq = store.faces_by_seq("c", &[2, 99, 1]).unwrap();
    assert_eq!(
        by_seq
            .iter()
            .map(|f| f.as_ref().map(|f| f.seq))
            .collect::<Vec<_>>(),
        [Some(2), None, Some(1)]
    );
    let vecs = store.embeddings_by_seq("c", &[1, 7]).unwrap();
    assert_eq!(vecs, [Some(vec![1.0, 2.0, 3.0, 4.0]), None]);

    let it = store.embeddings("c").unwrap();
    assert_eq!(
        (it.generation(), it.len(), it.dim()),
        (c.generation, 2, DIM)
    );
    let all: Vec<_> = it.map(|e| e.unwrap()).collect();
    assert_eq!(
        all,
        [(1, vec![1.0, 2.0, 3.0, 4.0]), (2, vec![2.0, 3.0, 4.0, 5.0])]
    );

    // Empty batches are fine and change nothing.
    assert!(store.add_faces("c", &model(), vec![]).unwrap().is_empty());
    assert_eq!(
        store.describe_collection("c").unwrap().generation,
        c.generation
    );
}

#[test]
fn add_faces_errors_write_nothing() {
    let (_d, store) = open();
    store.create_collection(new_coll("c")).unwrap();
    let other = FaceModel {
        name: "arcface".into(),
        version: "1".into(),
    };
    let err = store.add_faces("c", &other, vec![face(1.0)]).unwrap_err();
    assert!(matches!(err, StoreError::ModelMismatch { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::InvalidParameterException);
    let newer = FaceModel {
        version: "2".into(),
        ..model()
    };
    assert!(matches!(
        store.add_faces("c", &newer, vec![face(1.0)]),
        Err(StoreError::ModelMismatch { .. })
    ));

    let mut short = face(1.0);
    short.embedding.pop();
    let r = store.add_faces("c", &model(), vec![face(1.0), short]);
    assert!(matches!(
        r,
        Err(StoreError::DimensionMismatch {
            expected: 4,
            got: 3
        })
    ));
    let mut nan = face(1.0);
    nan.embedding[0] = f32::NAN;
    assert_eq!(
        code(store.add_faces("c", &model(), vec![nan])),
        ErrorCode::InvalidParameterException
    );
    let mut bad_ext = face(1.0);
    bad_ext.external_image_id = Some("has space".into());
    assert!(matches!(
        store.add_faces("c", &model(), vec![bad_ext]),
        Err(StoreError::InvalidExternalImageId(_))
    ));
    assert_eq!(
        code(store.add_faces("nope", &model(), vec![face(1.0)])),
        ErrorCode::ResourceNotFoundException
    );

    let c = store.describe_collection("c").unwrap();
    assert_eq!(
        (c.face_count, c.next_seq),
        (0, 1),
        "failed batches leave no trace"
    );
}

#[test]
fn list_faces_paginates() {
    let (_d, store, ids) = with_faces(7);
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_faces("c", None, token.as_deref(), Some(3))
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|f| f.face_id.to_string()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(
        store.list_faces("c", None, None, None).unwrap().items.len(),
        7
    );
    assert_eq!(
        store
            .list_faces("c", None, None, Some(4096))
            .unwrap()
            .items
            .len(),
        7
    );
    assert_eq!(
        code(store.list_faces("c", None, None, Some(0))),
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        code(store.list_faces("c", None, None, Some(4097))),
        ErrorCode::InvalidParameterException
    );
    // A token of another listing, or a forged one, is refused.
    let users_token = {
        for u in ["a", "b"] {
            store.create_user("c", u).unwrap();
        }
        store
            .list_users("c", None, Some(1))
            .unwrap()
            .next_token
            .unwrap()
    };
    assert!(matches!(
        store.list_faces("c", None, Some(&users_token), None),
        Err(StoreError::InvalidToken)
    ));
    assert!(matches!(
        store.list_faces("c", None, Some("é"), None),
        Err(StoreError::InvalidToken)
    ));
    // Deleting the face a token points after does not break the listing.
    let p = store.list_faces("c", None, None, Some(2)).unwrap();
    store
        .delete_faces("c", &ids[1..2], OnAssociated::Refuse)
        .unwrap();
    let rest = store
        .list_faces("c", None, p.next_token.as_deref(), None)
        .unwrap();
    assert_eq!(rest.items.first().unwrap().face_id.to_string(), ids[2]);

    // Filtered by user.
    store
        .associate_faces("c", "a", &[&ids[4], &ids[0], &ids[6]])
        .unwrap();
    let p = store.list_faces("c", Some("a"), None, Some(2)).unwrap();
    assert_eq!(p.items.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 5]);
    let p = store
        .list_faces("c", Some("a"), p.next_token.as_deref(), Some(2))
        .unwrap();
    assert_eq!((p.items.len(), p.next_token), (1, None));
    assert_eq!(
        code(store.list_faces("c", Some("ghost"), None, None)),
        ErrorCode::ResourceNotFoundException
    );
}

#[test]
fn delete_faces_reports_unsuccessful() {
    let (_d, store, ids) = with_faces(4);
    store.create_user("c", "u1").unwrap();
    store.associate_faces("c", "u1", &ids[3..4]).unwrap();
    let g = store.describe_collection("c").unwrap().generation;
    let missing = Uuid::new_v4().to_string();
    let out = store
        .delete_faces(
            "c",
            &[&ids[0], &missing, &ids[3], &ids[1], &ids[0]],
            OnAssociated::Refuse,
        )
        .unwrap();
    assert_eq!(
        out.done.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        [ids[0].clone(), ids[1].clone()]
    );
    assert_eq!(out.unsuccessful.len(), 2);
    assert_eq!(out.unsuccessful[0].reason, FaceReason::FaceNotFound);
    assert_eq!(
        out.unsuccessful[1].reason.as_str(),
        "ASSOCIATED_TO_AN_EXISTING_USER"
    );
    assert_eq!(out.unsuccessful[1].user_id.as_deref(), Some("u1"));
    let c = store.describe_collection("c").unwrap();
    assert_eq!(c.face_count, 2);
    assert!(c.generation > g);
    assert!(store
        .get_faces("c", &ids[..2])
        .unwrap()
        .iter()
        .all(Option::is_none));
    assert_eq!(store.embeddings_by_seq("c", &[1, 2]).unwrap(), [None, None]);

    // Disassociate mode deletes owned faces and updates the user.
    let out = store
        .delete_faces("c", &ids[3..4], OnAssociated::Disassociate)
        .unwrap();
    assert_eq!(out.done.len(), 1);
    assert!(store.get_user("c", "u1").unwrap().face_ids.is_empty());

    // Nothing deleted: generation stays.
    let g = store.describe_collection("c").unwrap().generation;
    store
        .delete_faces("c", &[&missing], OnAssociated::Refuse)
        .unwrap();
    assert_eq!(store.describe_collection("c").unwrap().generation, g);

    let none: [&str; 0] = [];
    assert!(matches!(
        store.delete_faces("c", &none, OnAssociated::Refuse),
        Err(StoreError::BadItemCount { .. })
    ));
    let many = vec![missing.clone(); 4097];
    assert_eq!(
        code(store.delete_faces("c", &many, OnAssociated::Refuse)),
        ErrorCode::InvalidParameterException
    );
    assert!(matches!(
        store.delete_faces("c", &["xyz"], OnAssociated::Refuse),
        Err(StoreError::InvalidFaceId(_))
    ));
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn users_lifecycle() {
    let (_d, store, ids) = with_faces(3);
    let u = store.create_user("c", "user:1").unwrap();
    assert_eq!((u.status, u.face_ids.len()), (UserStatus::Created, 0));
    assert_eq!(u.status.as_str(), "CREATED");
    assert_eq!(
        code(store.create_user("c", "user:1")),
        ErrorCode::ConflictException
    );
    assert!(matches!(
        store.create_user("c", "bad user"),
        Err(StoreError::InvalidUserId(_))
    ));
    assert!(matches!(
        store.create_user("c", &"u".repeat(129)),
        Err(StoreError::InvalidUserId(_))
    ));
    assert_eq!(
        code(store.create_user("nope", "u")),
        ErrorCode::ResourceNotFoundException
    );
    store.create_user("c", "user:2").unwrap();
    assert_eq!(store.describe_collection("c").unwrap().user_count, 2);

    let missing = Uuid::new_v4().to_string();
    let out = store
        .associate_faces("c", "user:1", &[&ids[0], &ids[1], &missing])
        .unwrap();
    assert_eq!(out.done.len(), 2);
    assert_eq!(out.unsuccessful[0].reason.as_str(), "FACE_NOT_FOUND");
    assert_eq!(out.user_status, Some(UserStatus::Active));
    // Re-associating to the same user is idempotent; another user is refused.
    let out = store.associate_faces("c", "user:1", &ids[..1]).unwrap();
    assert_eq!(out.done.len(), 1);
    let out = store.associate_faces("c", "user:2", &ids[..2]).unwrap();
    assert!(out.done.is_empty());
    assert!(out
        .unsuccessful
        .iter()
        .all(|u| u.reason == FaceReason::AssociatedToADifferentUser
            && u.user_id.as_deref() == Some("user:1")));
    assert_eq!(
        store.get_face("c", &ids[0]).unwrap().user_id.as_deref(),
        Some("user:1")
    );
    assert_eq!(
        code(store.associate_faces("c", "ghost", &ids[..1])),
        ErrorCode::ResourceNotFoundException
    );

    let out = store
        .disassociate_faces("c", "user:2", &[&ids[0], &ids[2], &missing])
        .unwrap();
    assert_eq!(
        out.done.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        [ids[2].clone()]
    );
    assert_eq!(
        out.unsuccessful[0].reason,
        FaceReason::AssociatedToADifferentUser
    );
    assert_eq!(out.unsuccessful[1].reason, FaceReason::FaceNotFound);
    let out = store.disassociate_faces("c", "user:1", &ids[1..2]).unwrap();
    assert_eq!(
        (out.done.len(), out.user_status),
        (1, Some(UserStatus::Active))
    );
    assert_eq!(store.get_user("c", "user:1").unwrap().face_ids.len(), 1);

    let page = store.list_users("c", None, Some(1)).unwrap();
    assert_eq!(page.items[0].user_id, "user:1");
    let page = store
        .list_users("c", page.next_token.as_deref(), Some(1))
        .unwrap();
    assert_eq!(
        (page.items[0].user_id.as_str(), page.next_token),
        ("user:2", None)
    );
    assert_eq!(
        code(store.list_users("c", None, Some(501))),
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        code(store.list_users("c", None, Some(0))),
        ErrorCode::InvalidParameterException
    );

    // Deleting a user keeps its faces but frees them.
    let gone = store.delete_user("c", "user:1").unwrap();
    assert_eq!(gone.face_ids.len(), 1);
    assert_eq!(store.get_face("c", &ids[0]).unwrap().user_id, None);
    assert_eq!(
        code(store.get_user("c", "user:1")),
        ErrorCode::ResourceNotFoundException
    );
    assert_eq!(
        code(store.delete_user("c", "user:1")),
        ErrorCode::ResourceNotFoundException
    );
    let c = store.describe_collection("c").unwrap();
    assert_eq!((c.user_count, c.face_count), (1, 3));
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn user_association_limits() {
    let (_d, store) = open();
    store.create_collection(new_coll("c")).unwrap();
    let faces = store
        .add_faces("c", &model(), (0..150).map(|i| face(i as f32)).collect())
        .unwrap();
    let ids: Vec<String> = faces.iter().map(|f| f.face_id.to_string()).collect();
    store.create_user("c", "u").unwrap();
    // At most 100 ids per call.
    assert!(matches!(
        store.associate_faces("c", "u", &ids[..101]),
        Err(StoreError::BadItemCount {
            max: 100,
            got: 101,
            ..
        })
    ));
    let none: [&str; 0] = [];
    assert_eq!(
        code(store.associate_faces("c", "u", &none)),
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        code(store.disassociate_faces("c", "u", &ids[..101])),
        ErrorCode::InvalidParameterException
    );
    // At most 100 faces per user, checked before anything is written.
    store.associate_faces("c", "u", &ids[..90]).unwrap();
    let err = store.associate_faces("c", "u", &ids[90..101]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UserFaceLimit {
                would_have: 101,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.get_user("c", "u").unwrap().face_ids.len(), 90);
    store.associate_faces("c", "u", &ids[90..100]).unwrap();
    assert_eq!(store.get_user("c", "u").unwrap().face_ids.len(), 100);
}

#[test]
fn touch_and_retention() {
    let (_d, store) = open();
    store.create_collection(new_coll("c")).unwrap();
    let faces: Vec<NewFace> = (0..5u64)
        .map(|i| NewFace {
            indexed_at_ms: Some(1000 * (i + 1)),
            ..face(i as f32)
        })
        .collect();
    let added = store.add_faces("c", &model(), faces).unwrap();
    let g = store.describe_collection("c").unwrap().generation;
    // Faces 1 and 2 were matched late; 99 does not exist.
    assert_eq!(store.touch_faces("c", &[1, 2, 99], 10_000).unwrap(), 2);
    assert_eq!(
        store.touch_faces("c", &[1], 9_000).unwrap(),
        0,
        "times never go back"
    );
    assert_eq!(
        store
            .get_face("c", &added[0].face_id.to_string())
            .unwrap()
            .last_matched_at_ms,
        Some(10_000)
    );
    assert_eq!(store.describe_collection("c").unwrap().generation, g);
    assert_eq!(
        code(store.touch_faces("nope", &[1], 1)),
        ErrorCode::ResourceNotFoundException
    );

    let seqs = |v: Vec<Face>| v.into_iter().map(|f| f.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(
            store
                .expired_faces("c", Expiry::IndexedBefore(3001), 100)
                .unwrap()
        ),
        [1, 2, 3]
    );
    assert_eq!(
        seqs(
            store
                .expired_faces("c", Expiry::IndexedBefore(3001), 2)
                .unwrap()
        ),
        [1, 2]
    );
    assert_eq!(
        seqs(
            store
                .expired_faces("c", Expiry::LastMatchedBefore(3001), 100)
                .unwrap()
        ),
        [3]
    );
    assert_eq!(
        seqs(
            store
                .expired_faces("c", Expiry::LastMatchedBefore(20_000), 100)
                .unwrap()
        ),
        [3, 4, 5, 1, 2]
    );

    // A retention pass: query, delete, repeat.
    loop {
        let batch = store
            .expired_faces("c", Expiry::LastMatchedBefore(6_000), 2)
            .unwrap();
        if batch.is_empty() {
            break;
        }
        let ids: Vec<String> = batch.iter().map(|f| f.face_id.to_string()).collect();
        store
            .delete_faces("c", &ids, OnAssociated::Disassociate)
            .unwrap();
    }
    assert_eq!(
        seqs(store.list_faces("c", None, None, None).unwrap().items),
        [1, 2]
    );
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn delete_collection_removes_everything_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_collection(new_coll("c")).unwrap();
        store.create_collection(new_coll("keep")).unwrap();
        store
            .add_faces("c", &model(), vec![face(1.0), face(2.0)])
            .unwrap();
        store.add_faces("keep", &model(), vec![face(3.0)]).unwrap();
        store.create_user("c", "u").unwrap();
        let gone = store.delete_collection("c").unwrap();
        assert_eq!((gone.face_count, gone.user_count), (2, 1));
        // Same id again starts empty, with fresh tables.
        store.create_collection(new_coll("c")).unwrap();
        assert_eq!(
            store.list_faces("c", None, None, None).unwrap().items.len(),
            0
        );
        assert_eq!(store.list_users("c", None, None).unwrap().items.len(), 0);
        assert_eq!(store.embeddings("c").unwrap().count(), 0);
        store.compact().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.describe_collection("keep").unwrap().face_count, 1);
    assert_eq!(
        store.embeddings("keep").unwrap().next().unwrap().unwrap().1,
        [3.0, 4.0, 5.0, 6.0]
    );
    let r = store.verify().unwrap();
    assert_eq!((r.collections, r.faces, r.problems.len()), (2, 1, 0));
}

#[test]
fn compact_keeps_snapshots_readable_and_racing_writes_durable() {
    let (dir, store, ids) = with_faces(50);
    store
        .delete_faces("c", &ids[..25], OnAssociated::Refuse)
        .unwrap();
    let mut it = store.embeddings("c").unwrap();
    assert_eq!(it.next().unwrap().unwrap().0, 26);
    let store = Arc::new(store);
    // Writers racing compactions must land in the file that stays.
    let writer = {
        let s = store.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                s.add_faces("c", &model(), vec![face(i as f32)]).unwrap();
            }
        })
    };
    for _ in 0..3 {
        store.compact().unwrap();
    }
    writer.join().unwrap();
    assert_eq!(it.count(), 24, "an open snapshot keeps reading what it saw");
    assert_eq!(store.describe_collection("c").unwrap().face_count, 45);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.embeddings("c").unwrap().count(), 45);
    assert!(store.verify().unwrap().problems.is_empty());
    assert!(!dir.path().join("store.redb.compacting").exists());
}

#[test]
fn second_open_of_same_dir_fails_cleanly() {
    let (dir, _store) = open();
    let err = Store::open(dir.path()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InternalServerError, "{err}");
}

/// Records what it sees, and refuses while `fail` is set.
#[derive(Default)]
struct Recorder {
    seen: std::sync::Mutex<Vec<String>>,
    fail: std::sync::atomic::AtomicBool,
}

impl CommitHook for Recorder {
    fn before_commit(&self, change: &Change<'_>) -> std::result::Result<(), String> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("audit disk full".into());
        }
        let c = change.collection();
        let what = match change {
            Change::CollectionCreated { .. } => "created".to_owned(),
            Change::CollectionDeleted { .. } => "deleted".to_owned(),
            Change::PolicySet { collection } => format!("policy {}", collection.policy),
            Change::CalibrationSet { calibration, .. } => {
                format!("calibration {}", calibration.unwrap_or("shipped"))
            }
            Change::FacesAdded { faces, .. } => format!("added {}", faces.len()),
            Change::FacesDeleted { outcome, .. } => format!("removed {}", outcome.done.len()),
            Change::UserCreated { user_id, .. } => format!("user {user_id}"),
            Change::UserDeleted { user, .. } => format!("unuser {}", user.user_id),
            Change::FacesAssociated { outcome, .. } => format!("assoc {}", outcome.done.len()),
            Change::FacesDisassociated { outcome, .. } => {
                format!("disassoc {}", outcome.done.len())
            }
        };
        self.seen
            .lock()
            .unwrap()
            .push(format!("{} {} {what}", c.id, c.face_count));
        Ok(())
    }
}

#[test]
fn commit_hook_sees_every_change_and_a_failing_hook_writes_nothing() {
    let (_dir, s) = open();
    let hook = Arc::new(Recorder::default());
    s.set_commit_hook(hook.clone());
    s.create_collection(new_coll("c")).unwrap();
    let faces = s
        .add_faces("c", &model(), vec![face(0.1), face(0.2)])
        .unwrap();
    s.set_policy("c", r#"{"RequireCase":true}"#).unwrap();
    s.set_calibration("c", Some("{}")).unwrap();
    s.set_calibration("c", None).unwrap();
    s.create_user("c", "u").unwrap();
    let ids: Vec<String> = faces.iter().map(|f| f.face_id.to_string()).collect();
    s.associate_faces("c", "u", &ids[..1]).unwrap();
    s.disassociate_faces("c", "u", &ids[..1]).unwrap();
    s.delete_user("c", "u").unwrap();
    s.delete_faces("c", &ids[1..], OnAssociated::Refuse)
        .unwrap();
    // Touching (a search side effect) is not a change to the gallery.
    s.touch_faces("c", &[faces[0].seq], 5).unwrap();
    assert_eq!(
        *hook.seen.lock().unwrap(),
        [
            "c 0 created",
            "c 2 added 2",
            r#"c 2 policy {"RequireCase":true}"#,
            "c 2 calibration {}",
            "c 2 calibration shipped",
            "c 2 user u",
            "c 2 assoc 1",
            "c 2 disassoc 1",
            "c 2 unuser u",
            "c 1 removed 1",
        ]
    );

    hook.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = s.add_faces("c", &model(), vec![face(0.3)]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InternalServerError);
    assert!(err.to_string().contains("audit disk full"), "{err}");
    assert_eq!(
        code(s.delete_collection("c")),
        ErrorCode::InternalServerError
    );
    assert_eq!(
        code(s.create_collection(new_coll("d"))),
        ErrorCode::InternalServerError
    );
    let c = s.describe_collection("c").unwrap();
    assert_eq!(c.face_count, 1, "the refused IndexFaces wrote nothing");
    assert!(s.describe_collection("d").is_err());
    assert_eq!(hook.seen.lock().unwrap().len(), 10);
}

#[test]
fn a_directory_open_elsewhere_is_refused_clearly() {
    let (dir, _store) = open();
    let Err(err) = Store::open(dir.path()) else {
        panic!("a second open of one directory succeeded");
    };
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    assert!(err.to_string().contains("in use by another process"));
}
