//! Rough throughput and size figures; run by hand:
//! `cargo test --release -p kenning-store --test scale -- --ignored --nocapture`

use std::time::Instant;

use kenning_core::BoundingBox;
use kenning_store::{FaceModel, NewCollection, NewFace, Store, Uuid, DB_FILE};

#[test]
#[ignore]
fn bulk_add_scan_and_size() {
    const N: usize = 200_000;
    const BATCH: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let model = FaceModel {
        name: "m".into(),
        version: "1".into(),
    };
    store
        .create_collection(NewCollection {
            id: "c".into(),
            face_model: model.clone(),
            dim: 128,
            policy: String::new(),
        })
        .unwrap();
    let t = Instant::now();
    for b in 0..N / BATCH {
        let faces = (0..BATCH)
            .map(|i| NewFace {
                image_id: Uuid::new_v4(),
                external_image_id: Some(format!("img-{b}-{i}.jpg")),
                bounding_box: BoundingBox {
                    width: 0.2,
                    height: 0.3,
                    left: 0.1,
                    top: 0.1,
                },
                confidence: 99.0,
                embedding: (0..128)
                    .map(|k| ((b * BATCH + i) * 31 + k) as f32 * 1e-3)
                    .collect(),
                indexed_at_ms: None,
                pixels: None,
            })
            .collect();
        store.add_faces("c", &model, faces).unwrap();
    }
    let add = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0;
    for e in store.embeddings("c").unwrap() {
        assert_eq!(e.unwrap().1.len(), 128);
        n += 1;
    }
    let scan = t.elapsed().as_secs_f64();
    let seqs: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
    let t = Instant::now();
    for _ in 0..100 {
        store.faces_by_seq("c", &seqs).unwrap();
    }
    let lookup = t.elapsed().as_secs_f64() / 100.0;
    let bytes = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
    drop(store);
    let t = Instant::now();
    let store = Store::open(dir.path()).unwrap();
    let open = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.compact().unwrap();
    let compact = t.elapsed().as_secs_f64();
    let compacted = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
    eprintln!(
        "{N} faces: add {:.0} faces/s (batches of {BATCH}), scan {:.0} vectors/s, \
         100 faces by seq {:.2} ms, open {:.3} s, {} B/face on disk ({} after a {:.1} s compact)",
        N as f64 / add,
        n as f64 / scan,
        lookup * 1e3,
        open,
        bytes / N as u64,
        compacted / N as u64,
        compact
    );
}
