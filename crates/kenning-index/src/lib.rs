//! Vector index for face embeddings.
//!
//! Maps `u64` ids (the store's handles for its FaceIds) to fixed-dimension
//! f32 embeddings and answers k-nearest-neighbour queries with exact
//! distances, ascending.
//!
//! # Search
//! Below [`IndexConfig::exact_below`] live vectors a query scans every f32
//! vector: at that size a scan is faster than a graph walk and trivially exact.
//! Above it, an HNSW graph over int8 codes (per-dimension offset, one global
//! scale) finds `ef_search` candidates, and those candidates are re-ranked with
//! their full-precision vectors, so reported distances and the final order are
//! always exact; only recall is approximate.
//!
//! # Concurrency: readers never wait
//! Searches take `&self` and perform only atomic loads. Writers (insert,
//! remove, compact, save) are serialised by a mutex among themselves, but no
//! reader ever takes it. The graph lives in append-only chunked arenas that
//! are never reallocated, new nodes are written completely before they are
//! published with a release store of the node count, and neighbour lists are
//! rewritten in place with atomic word stores, so a search running during an
//! insert sees either the old or the new state of each list, both valid.
//! A batch from [`Index::insert_many`] is written, published (exact scans see
//! it at once), then linked into the graph by several threads that coordinate
//! through striped per-node locks; readers never take those either.
//! Compaction builds a new graph on the side and publishes it with an atomic
//! pointer swap (`arc-swap`); searches already running finish on the old one.
//!
//! # Persistence
//! [`Index::save`] writes one file (temp file, fsync, rename, fsync of the
//! directory) with a checksummed header and 4 KiB-aligned sections: quantiser,
//! graph nodes, upper levels, f32 vectors, each with an xxh3 checksum.
//! [`Index::load`] verifies everything and maps the file copy-on-write instead
//! of reading it, so opening costs little more than the checksum pass; the
//! f32 section stays a file mapping the kernel can page out, which keeps
//! resident memory near the int8 graph. A damaged, truncated or stale file is
//! reported as a typed [`IndexError`] so the caller can rebuild from its records.

// Unsafe code lives in `arena` (raw chunk pointers), `persist` (the file
// mapping), `distance` (SIMD) and `graph` (a prefetch hint); every unsafe
// operation sits in its own block with its reason, also inside unsafe fns.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod arena;
pub mod distance;
mod error;
mod graph;
mod persist;
mod quant;

pub use error::IndexError;
pub use persist::Expect;

use arc_swap::ArcSwap;
use graph::{Cand, Graph, Shape, DELETED, META, TRAIN_SIZE};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, IndexError>;

/// How distances are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Euclidean distance between raw vectors (dlib's native metric).
    Euclidean,
    /// Cosine distance `1 - cos(a, b)`; vectors and queries are L2-normalised
    /// on the way in.
    Cosine,
}

impl Metric {
    /// Reported distance from a squared Euclidean distance.
    fn reported(self, sq: f32) -> f32 {
        match self {
            Metric::Euclidean => sq.max(0.0).sqrt(),
            // For unit vectors |a-b|^2 = 2 - 2cos.
            Metric::Cosine => (sq * 0.5).max(0.0),
        }
    }
    /// Squared Euclidean bound equivalent to a reported distance bound.
    fn to_sq(self, d: f32) -> f32 {
        match self {
            Metric::Euclidean => d.max(0.0) * d.max(0.0),
            Metric::Cosine => d * 2.0,
        }
    }
}

/// Index parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexConfig {
    /// Vector dimension (128 for the default dlib recogniser).
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Below this many live vectors, search scans all vectors exactly. At
    /// 128-d on one core the scan (~30 ns/vector) stops beating the graph
    /// (ef 64 + re-rank) at about 3,300 vectors (docs/benchmarks.md); the
    /// default rounds that up a little since exact results cost no recall.
    /// Use roughly a quarter of it for 512-d vectors.
    pub exact_below: usize,
    /// HNSW links per node on upper levels; level 0 keeps `2 * m`.
    pub m: usize,
    /// Beam width while inserting; higher builds a better graph, slower.
    pub ef_construction: usize,
    /// Default beam width while searching up to 1M live vectors (raised to
    /// `k` when `k` is larger); all candidates found are re-ranked exactly.
    /// Beyond 1M the default grows in proportion to the size, up to 4x at 4M,
    /// because a bigger graph needs a wider beam for the same recall. 256
    /// gives recall@1 0.995 and recall@10 0.97 at 1M face-like vectors; 1024
    /// gives recall@1 0.99 at 10M (docs/benchmarks.md).
    pub ef_search: usize,
    /// Seed for level assignment.
    pub seed: u64,
    /// Threads used to link batches from [`Index::insert_many`]; 0 means one
    /// per core. Not stored in saved files.
    pub build_threads: usize,
}

impl IndexConfig {
    /// Defaults tuned on 128-d face-like vectors (docs/benchmarks.md).
    pub fn new(dim: usize, metric: Metric) -> Self {
        IndexConfig {
            dim,
            metric,
            exact_below: 4_000,
            m: 16,
            ef_construction: 100,
            ef_search: 256,
            seed: 0x006b_656e_6e69_6e67,
            build_threads: 0,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(IndexError::InvalidConfig(s.to_string()));
        if self.dim == 0 || self.dim > 1 << 16 {
            return bad("dim must be in 1..=65536");
        }
        if !(2..=128).contains(&self.m) {
            return bad("m must be in 2..=128");
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return bad("ef_construction and ef_search must be positive");
        }
        Ok(())
    }

    fn shape(&self) -> Shape {
        Shape {
            dim: self.dim,
            m: self.m,
            m0: 2 * self.m,
            ef_construction: self.ef_construction,
        }
    }
}

/// One search result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The id given at insertion.
    pub id: u64,
    /// Exact distance to the query under the index metric.
    pub distance: f32,
}

/// Writer-only state, behind the writer mutex.
struct Writer {
    /// id -> node. Built lazily on the first mutation after `load`, so opening
    /// a large index for searching does not pay for it.
    ids: Option<HashMap<u64, u32>>,
    rng: u64,
}

/// A vector index. Share it with `Arc<Index>`; all methods take `&self`.
pub struct Index {
    config: IndexConfig,
    graph: ArcSwap<Graph>,
    writer: Mutex<Writer>,
}

impl Index {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Result<Index> {
        config.validate()?;
        let graph = Graph::new(config.shape());
        Ok(Index::from_parts(config, graph, Some(HashMap::new())))
    }

    fn from_parts(config: IndexConfig, graph: Graph, ids: Option<HashMap<u64, u32>>) -> Index {
        let rng = config.seed | 1;
        Index {
            config,
            graph: ArcSwap::from_pointee(graph),
            writer: Mutex::new(Writer { ids, rng }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Number of live (not removed) vectors.
    pub fn len(&self) -> usize {
        self.graph.load().live.load(Ordering::Acquire)
    }

    /// True when no live vectors remain.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removed vectors still occupying the graph; [`Index::compact`] drops them.
    pub fn tombstones(&self) -> usize {
        let g = self.graph.load();
        g.len.load(Ordering::Relaxed) - g.live.load(Ordering::Relaxed)
    }

    /// Check a vector's shape and normalise it for the cosine metric.
    fn prepare(&self, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.config.dim {
            return Err(IndexError::DimensionMismatch {
                expected: self.config.dim,
                got: v.len(),
            });
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NonFinite);
        }
        let mut v = v.to_vec();
        if self.config.metric == Metric::Cosine && !normalise(&mut v) {
            return Err(IndexError::ZeroVector);
        }
        Ok(v)
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic mid-write can only leave a node unlinked, not unsafe state.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a vector under `id`. Fails with `DuplicateId` if `id` is live.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_many([(id, vector)])
    }

    /// Add several vectors under one writer lock, linking them into the
    /// graph on [`IndexConfig::build_threads`] threads. Stops at the first
    /// error; the vectors before it stay inserted.
    pub fn insert_many<'a>(&self, items: impl IntoIterator<Item = (u64, &'a [f32])>) -> Result<()> {
        let mut w = self.lock();
        let g = self.graph.load();
        let Writer { ids, rng } = &mut *w;
        self.append(
            &g,
            ids_of(ids, &g),
            rng,
            items.into_iter().map(|(id, v)| (id, Cow::Borrowed(v))),
        )
    }

    fn append<'a>(
        &self,
        g: &Graph,
        ids: &mut HashMap<u64, u32>,
        rng: &mut u64,
        items: impl Iterator<Item = (u64, Cow<'a, [f32]>)>,
    ) -> Result<()> {
        let start = g.len.load(Ordering::Relaxed) as u32;
        let mut result = Ok(());
        for (id, v) in items {
            let v = match self.prepare(&v) {
                Ok(v) => v,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if ids.contains_key(&id) {
                result = Err(IndexError::DuplicateId(id));
                break;
            }
            if g.written.load(Ordering::Relaxed) + 1 >= g.nodes.capacity() {
                result = Err(IndexError::Full);
                break;
            }
            let level = g.draw_level(rng);
            ids.insert(id, g.push(id, &v, level));
        }
        // Publish before linking: exact scans see the batch at once, graph
        // walks as each node gets linked.
        g.publish();
        let end = g.len.load(Ordering::Relaxed) as u32;
        let threads = match self.config.build_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        if g.quant.get().is_some() {
            g.link_range(start..end, threads);
        } else if end as usize >= TRAIN_SIZE {
            g.train_and_link(threads);
        }
        result
    }

    /// Remove `id`; returns whether it was present. The node stays in the
    /// graph as a tombstone (still used for navigation, never returned) until
    /// [`Index::compact`].
    pub fn remove(&self, id: u64) -> bool {
        let mut w = self.lock();
        let g = self.graph.load();
        match ids_of(&mut w.ids, &g).remove(&id) {
            Some(n) => {
                g.node(n)[META].fetch_or(DELETED, Ordering::Release);
                g.live.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Whether `id` is live.
    pub fn contains(&self, id: u64) -> bool {
        let mut w = self.lock();
        let g = self.graph.load();
        ids_of(&mut w.ids, &g).contains_key(&id)
    }

    /// Rebuild without tombstones and publish the result atomically. Searches
    /// keep running on the old graph meanwhile; other writers wait. Costs a
    /// full rebuild, so call it when tombstones are a sizeable fraction.
    pub fn compact(&self) -> Result<()> {
        let mut w = self.lock();
        let old = self.graph.load_full();
        if old.len.load(Ordering::Relaxed) == old.live.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fresh = Graph::new(self.config.shape());
        let mut ids = HashMap::new();
        let live = (0..old.len.load(Ordering::Relaxed) as u32).filter(|&n| !old.is_deleted(n));
        self.append(
            &fresh,
            &mut ids,
            &mut w.rng,
            live.map(|n| (old.external_id(n), Cow::Borrowed(old.vector(n)))),
        )?;
        self.graph.store(Arc::new(fresh));
        w.ids = Some(ids);
        Ok(())
    }

    /// The `k` nearest live vectors to `query`, ascending by exact distance,
    /// optionally only those within `max_distance`.
    pub fn search(&self, query: &[f32], k: usize, max_distance: Option<f32>) -> Result<Vec<Hit>> {
        self.search_with(query, k, max_distance, self.default_ef())
    }

    /// The beam width [`Index::search`] uses at the current size.
    pub fn default_ef(&self) -> usize {
        let millions = self.len() as f64 / 1e6;
        (self.config.ef_search as f64 * millions.clamp(1.0, 4.0)) as usize
    }

    /// As [`Index::search`] with an explicit beam width `ef` (raised to `k`).
    /// Larger `ef` trades latency for recall; it has no effect on exact search.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        max_distance: Option<f32>,
        ef: usize,
    ) -> Result<Vec<Hit>> {
        let q = self.prepare(query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let max_sq = max_distance.map_or(f32::INFINITY, |d| self.config.metric.to_sq(d));
        let g = self.graph.load();
        let hits = if !g.ready.load(Ordering::Acquire)
            || g.live.load(Ordering::Relaxed) < self.config.exact_below
        {
            g.exact(&q, k, max_sq)
        } else {
            let cands = g.ann_candidates(&q, ef.max(k));
            // Each full vector is a likely cache miss: keep a few loads in
            // flight ahead of the one being compared.
            const AHEAD: usize = 8;
            let mut exact: Vec<Cand> = Vec::with_capacity(cands.len());
            for (i, c) in cands.iter().enumerate() {
                if let Some(a) = cands.get(i + AHEAD) {
                    graph::prefetch_words(g.vector(a.id));
                }
                if g.is_deleted(c.id) {
                    continue;
                }
                let d = distance::l2_sq(&q, g.vector(c.id));
                if d <= max_sq {
                    exact.push(Cand { d, id: c.id });
                }
            }
            exact.sort_unstable();
            exact.truncate(k);
            exact
        };
        Ok(hits
            .iter()
            .map(|c| Hit {
                id: g.external_id(c.id),
                distance: self.config.metric.reported(c.d),
            })
            .collect())
    }

    /// Exact search regardless of size (ground truth, audits).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        max_distance: Option<f32>,
    ) -> Result<Vec<Hit>> {
        let q = self.prepare(query)?;
        let max_sq = max_distance.map_or(f32::INFINITY, |d| self.config.metric.to_sq(d));
        let g = self.graph.load();
        let hits = if k == 0 {
            Vec::new()
        } else {
            g.exact(&q, k, max_sq)
        };
        Ok(hits
            .iter()
            .map(|c| Hit {
                id: g.external_id(c.id),
                distance: self.config.metric.reported(c.d),
            })
            .collect())
    }
}

/// Scales `v` to unit length (as the cosine metric stores and queries
/// vectors); false, leaving `v` as it was, for a zero or non-finite norm.
fn normalise(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// The distance the index reports between `a` and `b`, computed exactly as
/// its re-rank computes it, bit for bit: for callers that rank vectors kept
/// elsewhere and must agree with the index.
pub fn exact_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    let sq = match metric {
        Metric::Euclidean => distance::l2_sq(a, b),
        Metric::Cosine => {
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            normalise(&mut a);
            normalise(&mut b);
            distance::l2_sq(&a, &b)
        }
    };
    metric.reported(sq)
}

/// The id map, rebuilt from the graph on first use after a load.
fn ids_of<'a>(ids: &'a mut Option<HashMap<u64, u32>>, g: &Graph) -> &'a mut HashMap<u64, u32> {
    ids.get_or_insert_with(|| {
        let len = g.len.load(Ordering::Relaxed) as u32;
        let mut map = HashMap::with_capacity(g.live.load(Ordering::Relaxed));
        map.extend(
            (0..len)
                .filter(|&n| !g.is_deleted(n))
                .map(|n| (g.external_id(n), n)),
        );
        map
    })
}
