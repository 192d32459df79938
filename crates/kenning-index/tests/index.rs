use kenning_index::{Expect, Hit, Index, IndexConfig, IndexError, Metric};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// splitmix64-based generator so tests are deterministic without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-7), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn vec(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.gauss()).collect()
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Face-like set: identities with several noisy unit-norm samples each, on an
/// anisotropic spectrum. Returns (enrolled vectors, held-out queries).
fn face_like(n: usize, queries: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut r = Rng(seed);
    let shaped = |r: &mut Rng| {
        normalised(
            r.vec(dim)
                .iter()
                .enumerate()
                .map(|(j, x)| x * (-(j as f32) / 40.0).exp())
                .collect(),
        )
    };
    let mut centres = Vec::new();
    let mut base = Vec::with_capacity(n);
    while base.len() < n {
        let c = shaped(&mut r);
        for _ in 0..1 + r.next() % 6 {
            let noise = shaped(&mut r);
            base.push(normalised(
                c.iter().zip(&noise).map(|(a, b)| a + 0.5 * b).collect(),
            ));
        }
        centres.push(c);
    }
    base.truncate(n);
    let qs = (0..queries)
        .map(|_| {
            let c = &centres[(r.next() % (centres.len() as u64 - 1)) as usize];
            let noise = shaped(&mut r);
            normalised(c.iter().zip(&noise).map(|(a, b)| a + 0.5 * b).collect())
        })
        .collect();
    (base, qs)
}

fn naive(base: &[(u64, Vec<f32>)], q: &[f32], k: usize, max: Option<f32>) -> Vec<Hit> {
    let mut all: Vec<Hit> = base
        .iter()
        .map(|(id, v)| Hit {
            id: *id,
            distance: v
                .iter()
                .zip(q)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt(),
        })
        .filter(|h| max.is_none_or(|m| h.distance <= m))
        .collect();
    all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    all.truncate(k);
    all
}

/// `name` in a fresh temporary directory, which goes when the guard drops.
fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("kenning-index-test-")
        .tempdir()
        .unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn small_config(dim: usize) -> IndexConfig {
    let mut c = IndexConfig::new(dim, Metric::Euclidean);
    c.exact_below = 0;
    c
}

#[test]
fn exact_search_matches_naive_scan() {
    let mut r = Rng(1);
    let dim = 24;
    let base: Vec<(u64, Vec<f32>)> = (0..3000).map(|i| (i * 7 + 3, r.vec(dim))).collect();
    let mut cfg = IndexConfig::new(dim, Metric::Euclidean);
    cfg.exact_below = usize::MAX;
    let index = Index::new(cfg).unwrap();
    index
        .insert_many(base.iter().map(|(id, v)| (*id, &v[..])))
        .unwrap();
    assert_eq!(index.len(), 3000);
    for _ in 0..20 {
        let q = r.vec(dim);
        let own: std::collections::HashMap<u64, f32> = naive(&base, &q, usize::MAX, None)
            .into_iter()
            .map(|h| (h.id, h.distance))
            .collect();
        for (k, max) in [(1, None), (10, None), (50, Some(6.0)), (5000, Some(5.5))] {
            let got = index.search(&q, k, max).unwrap();
            let want = naive(&base, &q, k, max);
            // Same distances position by position; ids may differ only
            // between near-ties, so check each id's own distance instead.
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g.distance - w.distance).abs() < 1e-4);
                assert!((own[&g.id] - g.distance).abs() < 1e-4);
            }
        }
    }
    assert!(index.search(&q_of(dim + 1), 3, None).is_err());
    assert!(matches!(
        index.insert(3, &r.vec(dim)),
        Err(IndexError::DuplicateId(3))
    ));
    assert!(matches!(
        index.insert(1, &[f32::NAN; 24]),
        Err(IndexError::NonFinite)
    ));
}

fn q_of(dim: usize) -> Vec<f32> {
    vec![0.5; dim]
}

#[test]
fn cosine_distances_are_one_minus_cos() {
    let mut cfg = IndexConfig::new(3, Metric::Cosine);
    cfg.exact_below = usize::MAX;
    let index = Index::new(cfg).unwrap();
    index.insert(1, &[2.0, 0.0, 0.0]).unwrap();
    index.insert(2, &[0.0, 5.0, 0.0]).unwrap();
    index.insert(3, &[-1.0, 0.0, 0.0]).unwrap();
    let hits = index.search(&[1.0, 1.0, 0.0], 3, None).unwrap();
    assert_eq!(hits.len(), 3);
    assert!((hits[0].distance - (1.0 - std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-5);
    assert_eq!(hits[2].id, 3);
    assert!((hits[2].distance - (1.0 + std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-5);
    assert!(matches!(
        index.insert(4, &[0.0; 3]),
        Err(IndexError::ZeroVector)
    ));
    assert_eq!(
        index.search(&[1.0, 1.0, 0.0], 3, Some(0.5)).unwrap().len(),
        2
    );
}

#[test]
fn hnsw_recall_at_10_on_face_like_data() {
    let (base, queries) = face_like(20_000, 200, 128, 7);
    let mut cfg = small_config(128);
    cfg.build_threads = 2; // exercise parallel linking
    let index = Index::new(cfg).unwrap();
    index
        .insert_many(base.iter().enumerate().map(|(i, v)| (i as u64, &v[..])))
        .unwrap();
    let (mut found, mut first) = (0, 0);
    for q in &queries {
        let truth: Vec<u64> = index
            .search_exact(q, 10, None)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let got = index.search_with(q, 10, None, 128).unwrap();
        assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
        found += got.iter().filter(|h| truth.contains(&h.id)).count();
        first += (got[0].id == truth[0]) as usize;
    }
    let recall = found as f64 / (queries.len() * 10) as f64;
    eprintln!(
        "recall@10 = {recall}, recall@1 = {}",
        first as f64 / queries.len() as f64
    );
    assert!(recall >= 0.99, "recall@10 {recall}");
}

#[test]
fn removal_hides_ids_and_compaction_drops_them() {
    let (base, queries) = face_like(5000, 50, 32, 3);
    let index = Index::new(small_config(32)).unwrap();
    index
        .insert_many(base.iter().enumerate().map(|(i, v)| (i as u64, &v[..])))
        .unwrap();
    for id in (0..5000).step_by(3) {
        assert!(index.remove(id));
    }
    assert!(!index.remove(0));
    assert_eq!(index.len(), 5000 - 1667);
    assert_eq!(index.tombstones(), 1667);
    let check = |index: &Index| {
        for q in &queries {
            let hits = index.search_with(q, 20, None, 100).unwrap();
            assert_eq!(hits.len(), 20);
            assert!(hits.iter().all(|h| h.id % 3 != 0));
            let exact = index.search_exact(q, 20, None).unwrap();
            assert!(exact.iter().all(|h| h.id % 3 != 0));
        }
    };
    check(&index);
    // Searching for a removed vector must not return it.
    assert!(index.search(&base[3], 1, None).unwrap()[0].id != 3);
    index.compact().unwrap();
    assert_eq!(index.tombstones(), 0);
    assert_eq!(index.len(), 5000 - 1667);
    check(&index);
    // A removed id can come back.
    index.insert(3, &base[3]).unwrap();
    assert_eq!(index.search(&base[3], 1, None).unwrap()[0].id, 3);
}

#[test]
fn save_load_round_trip_and_stale_detection() {
    let (base, queries) = face_like(4000, 30, 64, 5);
    let index = Index::new(small_config(64)).unwrap();
    index
        .insert_many(
            base.iter()
                .enumerate()
                .map(|(i, v)| (i as u64 + 100, &v[..])),
        )
        .unwrap();
    index.remove(150);
    let (_dir, path) = tmp("roundtrip.idx");
    index.save(&path, 42).unwrap();
    let expect = Expect {
        dim: Some(64),
        metric: Some(Metric::Euclidean),
        count: Some(3999),
        generation: Some(42),
    };
    let loaded = Index::load(&path, &expect).unwrap();
    assert_eq!(loaded.len(), 3999);
    assert_eq!(loaded.config().m, index.config().m);
    for q in &queries {
        assert_eq!(
            index.search(q, 10, None).unwrap(),
            loaded.search(q, 10, None).unwrap()
        );
    }
    // The loaded index stays writable.
    loaded.insert(1, &queries[0]).unwrap();
    assert!(matches!(
        loaded.insert(101, &queries[0]),
        Err(IndexError::DuplicateId(101))
    ));
    assert_eq!(loaded.search(&queries[0], 1, None).unwrap()[0].id, 1);
    assert!(loaded.remove(100));

    for (bad, what) in [
        (
            Expect {
                count: Some(4000),
                ..Default::default()
            },
            "count",
        ),
        (
            Expect {
                generation: Some(41),
                ..Default::default()
            },
            "generation",
        ),
        (
            Expect {
                dim: Some(128),
                ..Default::default()
            },
            "dimension",
        ),
        (
            Expect {
                metric: Some(Metric::Cosine),
                ..Default::default()
            },
            "metric",
        ),
    ] {
        match Index::load(&path, &bad) {
            Err(IndexError::Stale { what: w, .. }) => assert_eq!(w, what),
            other => panic!("expected stale {what}, got {:?}", other.map(|_| ())),
        }
    }
    // Saving over an existing file replaces it atomically.
    loaded.save(&path, 43).unwrap();
    assert_eq!(
        Index::load(
            &path,
            &Expect {
                generation: Some(43),
                ..Default::default()
            }
        )
        .unwrap()
        .len(),
        3999
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn tiny_untrained_index_round_trips_and_keeps_growing() {
    // Fewer vectors than the quantiser's training sample: no graph yet.
    let (base, _) = face_like(1500, 1, 16, 17);
    let index = Index::new(small_config(16)).unwrap();
    index
        .insert_many(
            base[..10]
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, &v[..])),
        )
        .unwrap();
    let (_dir, path) = tmp("tiny.idx");
    index.save(&path, 0).unwrap();
    let loaded = Index::load(
        &path,
        &Expect {
            count: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(loaded.search(&base[4], 1, None).unwrap()[0].id, 4);
    // Growing past the training sample after a load builds the graph.
    let rest = base[10..]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64 + 10, &v[..]));
    loaded.insert_many(rest).unwrap();
    assert_eq!(loaded.len(), 1500);
    assert_eq!(
        loaded.search_with(&base[1234], 1, None, 32).unwrap()[0].id,
        1234
    );
    Index::new(small_config(16))
        .unwrap()
        .save(&path, 0)
        .unwrap();
    assert!(Index::load(&path, &Expect::default()).unwrap().is_empty());
    std::fs::remove_file(&path).ok();
}

#[test]
fn large_index_round_trip_uses_mapped_chunks() {
    // More than one 65536-node chunk so loading maps whole chunks and copies
    // the tail; small dim and m keep it fast.
    let mut r = Rng(9);
    let dim = 8;
    let mut cfg = small_config(dim);
    cfg.m = 6;
    cfg.ef_construction = 24;
    let index = Index::new(cfg).unwrap();
    let vecs: Vec<Vec<f32>> = (0..70_000).map(|_| r.vec(dim)).collect();
    index
        .insert_many(vecs.iter().enumerate().map(|(i, v)| (i as u64, &v[..])))
        .unwrap();
    let (_dir, path) = tmp("large.idx");
    index.save(&path, 1).unwrap();
    let loaded = Index::load(&path, &Expect::default()).unwrap();
    for v in vecs.iter().step_by(997) {
        assert_eq!(
            index.search(v, 5, None).unwrap(),
            loaded.search(v, 5, None).unwrap()
        );
        assert_eq!(
            index.search_exact(v, 5, None).unwrap(),
            loaded.search_exact(v, 5, None).unwrap()
        );
    }
    // Writes after load touch mapped (copy-on-write) and copied chunks alike.
    assert!(loaded.remove(5));
    for i in 0..2000u64 {
        loaded.insert(100_000 + i, &r.vec(dim)).unwrap();
    }
    assert_eq!(loaded.len(), 71_999);
    assert_eq!(loaded.search_exact(&vecs[6], 1, None).unwrap()[0].id, 6);
    std::fs::remove_file(&path).ok();
}

#[test]
fn corrupt_truncated_and_foreign_files_are_detected() {
    let (base, _) = face_like(3000, 1, 32, 11);
    let index = Index::new(small_config(32)).unwrap();
    index
        .insert_many(base.iter().enumerate().map(|(i, v)| (i as u64, &v[..])))
        .unwrap();
    let (_dir, path) = tmp("good.idx");
    index.save(&path, 7).unwrap();
    let good = std::fs::read(&path).unwrap();
    let (_bad_dir, bad) = tmp("bad.idx");
    // Flip one byte in the header, then in each section (spread through the file).
    for pos in [
        20usize,
        100,
        4096 + 7,
        good.len() / 3,
        good.len() / 2,
        good.len() - 3,
    ] {
        let mut b = good.clone();
        b[pos] ^= 0x40;
        std::fs::write(&bad, &b).unwrap();
        match Index::load(&bad, &Expect::default()) {
            Err(IndexError::Corrupt(_)) | Err(IndexError::UnsupportedVersion { .. }) => {}
            other => panic!(
                "byte {pos}: expected corruption error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    for len in [good.len() - 1, good.len() / 2, 4096, 100, 0] {
        std::fs::write(&bad, &good[..len]).unwrap();
        match Index::load(&bad, &Expect::default()) {
            Err(IndexError::Truncated { .. }) => {}
            Err(IndexError::NotAnIndex(_)) if len < 8 => {}
            other => panic!(
                "length {len}: expected truncation error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 10]);
    std::fs::write(&bad, &longer).unwrap();
    assert!(matches!(
        Index::load(&bad, &Expect::default()),
        Err(IndexError::Corrupt(_))
    ));
    std::fs::write(
        &bad,
        b"definitely not an index, just some text that is long enough",
    )
    .unwrap();
    assert!(matches!(
        Index::load(&bad, &Expect::default()),
        Err(IndexError::NotAnIndex(_))
    ));
    assert!(matches!(
        Index::load(tmp("missing.idx").1, &Expect::default()),
        Err(IndexError::Io { .. })
    ));
    assert!(Index::load(&path, &Expect::default()).is_ok());
    std::fs::remove_file(&path).ok();
    std::fs::remove_file(&bad).ok();
}

#[test]
fn readers_see_consistent_results_while_a_writer_inserts() {
    use std::sync::atomic::AtomicU64;
    let dim = 32;
    let (base, queries) = face_like(12_000, 64, dim, 13);
    let base = Arc::new(base);
    let mut cfg = small_config(dim);
    cfg.exact_below = 3000; // readers cross from exact to HNSW mid-run
    let index = Arc::new(Index::new(cfg).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    // Chunks inserted so far, and per reader the count as it stood when its
    // last finished search began: after each chunk the writer waits until
    // every reader has searched the index with it, so readers search every
    // state the index passes through (by construction, not by luck of
    // scheduling), while searches and inserts still overlap.
    let chunks = Arc::new(AtomicU64::new(0));
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..2).map(|_| AtomicU64::new(0)).collect());
    let mut readers: Vec<_> = (0..2)
        .map(|t| {
            let (index, base, done, queries, chunks, seen) = (
                index.clone(),
                base.clone(),
                done.clone(),
                queries.clone(),
                chunks.clone(),
                seen.clone(),
            );
            std::thread::spawn(move || {
                let mut searches = 0;
                while !done.load(Ordering::Acquire) {
                    let q = &queries[(searches + t) % queries.len()];
                    let inserted = chunks.load(Ordering::Acquire);
                    let before = index.len();
                    // Every chunk the writer has finished is visible.
                    assert!(
                        before as u64 >= inserted * 100,
                        "{before} < {inserted} chunks"
                    );
                    let hits = index.search(q, 10, None).unwrap();
                    assert!(hits.len() <= 10);
                    assert!(
                        hits.len() >= before.min(10) || before >= 3000,
                        "exact search lost results"
                    );
                    assert!(
                        hits.windows(2).all(|w| w[0].distance <= w[1].distance),
                        "unsorted"
                    );
                    let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    assert_eq!(ids.len(), hits.len(), "duplicate ids");
                    for h in &hits {
                        let v = &base[h.id as usize];
                        let d = v
                            .iter()
                            .zip(q)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>()
                            .sqrt();
                        assert!((d - h.distance).abs() < 1e-4, "distance not exact");
                    }
                    searches += 1;
                    seen[t].store(inserted, Ordering::Release);
                }
            })
        })
        .collect();
    for (b, chunk) in base.chunks(100).enumerate() {
        if b % 2 == 0 {
            index
                .insert_many(
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, v)| ((b * 100 + i) as u64, &v[..])),
                )
                .unwrap();
        } else {
            for (i, v) in chunk.iter().enumerate() {
                index.insert((b * 100 + i) as u64, v).unwrap();
            }
        }
        let n = b as u64 + 1;
        chunks.store(n, Ordering::Release);
        while seen.iter().any(|s| s.load(Ordering::Acquire) < n) {
            // A reader ends early only by failing: pass its panic on.
            if let Some(i) = readers.iter().position(|r| r.is_finished()) {
                std::panic::resume_unwind(readers.remove(i).join().unwrap_err());
            }
            std::thread::yield_now();
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(index.len(), 12_000);
    // Everything inserted is findable afterwards.
    for i in (0..12_000).step_by(500) {
        assert_eq!(
            index.search_with(&base[i], 1, None, 64).unwrap()[0].id,
            i as u64
        );
    }
}
