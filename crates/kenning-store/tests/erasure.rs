//! Deletion must really remove embeddings from the file, not just unlink them.

use kenning_core::BoundingBox;
use kenning_store::{FaceModel, NewCollection, NewFace, OnAssociated, Store, Uuid, DB_FILE};

const DIM: usize = 128;

fn model() -> FaceModel {
    FaceModel {
        name: "test".into(),
        version: "1".into(),
    }
}

/// A vector whose bytes are unlikely to occur by chance: a marker tag mixed
/// into every value, distinct per face.
fn marked(tag: u32, i: u32) -> Vec<f32> {
    (0..DIM as u32)
        .map(|k| f32::from_bits(0x3f00_0000 | (tag << 16) | (i << 7) | k))
        .collect()
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Which of `needles` occur anywhere in the file (at any byte offset). One
/// pass keyed on each needle's first 8 bytes keeps this fast in debug builds.
fn found_in_file(path: &std::path::Path, needles: &[Vec<u8>]) -> Vec<bool> {
    let hay = std::fs::read(path).unwrap();
    let mut by_prefix = std::collections::HashMap::new();
    for (i, n) in needles.iter().enumerate() {
        by_prefix
            .entry(n[..8].to_vec())
            .or_insert_with(Vec::new)
            .push(i);
    }
    let mut found = vec![false; needles.len()];
    for (at, w) in hay.windows(8).enumerate() {
        for &i in by_prefix.get(w).into_iter().flatten() {
            found[i] |= hay[at..].starts_with(&needles[i]);
        }
    }
    found
}

fn new_face(v: Vec<f32>) -> NewFace {
    NewFace {
        image_id: Uuid::new_v4(),
        external_image_id: None,
        bounding_box: BoundingBox::default(),
        confidence: 99.0,
        embedding: v,
        indexed_at_ms: None,
        pixels: None,
    }
}

#[test]
fn deleted_vectors_leave_the_file_after_compact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let store = Store::open(dir.path()).unwrap();
    for c in ["keep", "doomed"] {
        store
            .create_collection(NewCollection {
                id: c.into(),
                face_model: model(),
                dim: DIM as u32,
                policy: "{}".into(),
            })
            .unwrap();
    }
    // 200 faces per collection so vectors span many pages.
    let keep: Vec<Vec<f32>> = (0..200).map(|i| marked(1, i)).collect();
    let gone: Vec<Vec<f32>> = (0..200).map(|i| marked(2, i)).collect();
    let doomed: Vec<Vec<f32>> = (0..200).map(|i| marked(3, i)).collect();
    store
        .add_faces(
            "keep",
            &model(),
            keep.iter().cloned().map(new_face).collect(),
        )
        .unwrap();
    let added = store
        .add_faces(
            "keep",
            &model(),
            gone.iter().cloned().map(new_face).collect(),
        )
        .unwrap();
    store
        .add_faces(
            "doomed",
            &model(),
            doomed.iter().cloned().map(new_face).collect(),
        )
        .unwrap();
    store.compact().unwrap();
    let gone_bytes: Vec<Vec<u8>> = gone.iter().chain(&doomed).map(|v| bytes_of(v)).collect();
    let keep_bytes: Vec<Vec<u8>> = keep.iter().map(|v| bytes_of(v)).collect();
    assert!(
        found_in_file(&path, &gone_bytes).iter().all(|&f| f),
        "precondition: vectors are in the file"
    );

    let ids: Vec<String> = added.iter().map(|f| f.face_id.to_string()).collect();
    let out = store
        .delete_faces("keep", &ids, OnAssociated::Refuse)
        .unwrap();
    assert_eq!(out.done.len(), 200);
    store.delete_collection("doomed").unwrap();
    store.compact().unwrap();
    drop(store);

    let left = found_in_file(&path, &gone_bytes)
        .iter()
        .filter(|&&f| f)
        .count();
    assert_eq!(left, 0, "deleted embeddings still in the file");
    assert!(
        found_in_file(&path, &keep_bytes).iter().all(|&f| f),
        "kept embedding lost"
    );
    let store = Store::open(dir.path()).unwrap();
    let all: Vec<_> = store
        .embeddings("keep")
        .unwrap()
        .map(|e| e.unwrap().1)
        .collect();
    assert_eq!(all, keep);
    assert!(store.verify().unwrap().problems.is_empty());
}
