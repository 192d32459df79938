//! The shared index structure: node storage, exact scan and HNSW.
//!
//! One writer (serialised by `Index`) mutates a `Graph` while any number of
//! readers search it through `&Graph`. Readers only perform atomic loads and
//! never wait:
//! - a node's payload (id, vector, code) is written before the node is
//!   published by a release store of `len`; readers acquire `len` once per
//!   search and ignore any node id at or above it, so they never read a
//!   half-written node. Links are added after publication;
//! - neighbour lists of published nodes are rewritten in place, word by word;
//!   a reader may see a mix of the old and new list, but every entry is a valid
//!   published node, which is all the search needs;
//! - the graph is only used once `ready` is set (after the quantiser is trained
//!   and the first batch is linked); before that, and below `exact_below`,
//!   searches scan the f32 vectors exactly.
//!
//! Node layout (32-bit words): `[meta, upper, id_lo, id_hi, count0,
//! links0 x m0, code x ceil(dim/4)]`, so a graph hop touches one contiguous
//! block holding both the neighbour list and the int8 code. Levels above 0 live
//! in a second arena of `[count, links x m]` blocks, one per level, only for the
//! ~1/m of nodes that have them. Full-precision vectors live in a third arena
//! that is only touched for exact scans and re-ranking (and, for a loaded
//! index, is a file mapping the OS can page out).

use crate::arena::{as_f32, as_i8, store_words, Arena, CHUNK_ITEMS};
use crate::distance::{l2_sq, l2_sq_f32_i8, l2_sq_i8};
use crate::quant::Quantizer;
use std::cell::RefCell;
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

pub(crate) const META: usize = 0;
pub(crate) const UPPER: usize = 1;
pub(crate) const ID_LO: usize = 2;
pub(crate) const ID_HI: usize = 3;
pub(crate) const COUNT0: usize = 4;
pub(crate) const LINKS0: usize = 5;

/// `meta` bit marking a removed node (kept in the graph for navigation).
pub(crate) const DELETED: u32 = 1 << 8;
/// Entry point value meaning "no node linked yet".
pub(crate) const NO_ENTRY: u64 = u64::MAX;
/// Vectors used to fit the quantiser before the graph is built.
pub(crate) const TRAIN_SIZE: usize = 1024;
const MAX_LEVEL: usize = 16;
/// Upper bound on links per node at any level (`2 * m` with m <= 128).
const MAX_LINKS: usize = 256;

/// Hint the CPU to bring every cache line overlapping `items` closer. Only a
/// hint: it never faults and changes no result.
#[inline(always)]
pub(crate) fn prefetch_words<T>(items: &[T]) {
    let start = items.as_ptr() as usize;
    let end = start + std::mem::size_of_val(items);
    let mut line = start & !63;
    while line < end {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch never dereferences architecturally, so any address
        // is allowed; SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line as *const i8)
        };
        line += 64;
    }
}

/// A candidate: approximate or exact squared distance and node number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}
impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// Graph parameters fixed at creation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub dim: usize,
    pub m: usize,
    pub m0: usize,
    pub ef_construction: usize,
}

impl Shape {
    pub fn code_words(&self) -> usize {
        self.dim.div_ceil(4)
    }
    /// Where a node's code starts, right after its links.
    pub fn code_offset(&self) -> usize {
        LINKS0 + self.m0
    }
    pub fn node_words(&self) -> usize {
        self.code_offset() + self.code_words()
    }
    pub fn upper_words(&self) -> usize {
        1 + self.m
    }
}

pub(crate) struct Graph {
    pub shape: Shape,
    pub nodes: Arena,
    pub upper: Arena,
    pub vectors: Arena,
    /// Published nodes (removed ones included).
    pub len: AtomicUsize,
    /// Nodes whose payload is written (writer side; >= `len`).
    pub written: AtomicUsize,
    /// Nodes not removed.
    pub live: AtomicUsize,
    /// Upper-level blocks handed out (writer only, saved).
    pub upper_len: AtomicUsize,
    /// `level << 32 | node` of the entry point, or `NO_ENTRY`.
    pub entry: AtomicU64,
    /// Set once the quantiser is trained and all nodes so far are linked.
    pub ready: AtomicBool,
    pub quant: OnceLock<Quantizer>,
    /// Stripe locks for writer threads linking in parallel.
    locks: Box<[std::sync::Mutex<()>]>,
}

/// How a search measures distance to graph nodes.
enum Probe<'a> {
    /// Between int8 codes (graph construction).
    Code(&'a [i8]),
    /// From a query in code units to int8 codes (search).
    Query(&'a [f32]),
}

thread_local! {
    static VISITED: RefCell<Visited> = RefCell::new(Visited::default());
}

/// Open-addressing set of node numbers, reused across searches on a thread so
/// a search costs O(nodes visited), not O(index size).
#[derive(Default)]
struct Visited {
    slots: Vec<u32>,
    count: usize,
}

impl Visited {
    fn reset(&mut self) {
        if self.slots.len() < 4096 {
            self.slots = vec![u32::MAX; 4096];
        } else {
            self.slots.fill(u32::MAX);
        }
        self.count = 0;
    }
    /// Insert `id`; false if it was already there.
    fn insert(&mut self, id: u32) -> bool {
        if self.count * 2 >= self.slots.len() {
            let grown = vec![u32::MAX; self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, grown);
            self.count = 0;
            for v in old.into_iter().filter(|&v| v != u32::MAX) {
                self.insert(v);
            }
        }
        let mask = self.slots.len() - 1;
        let mut h = (id.wrapping_mul(0x9E37_79B1) as usize) & mask;
        loop {
            match self.slots[h] {
                u32::MAX => {
                    self.slots[h] = id;
                    self.count += 1;
                    return true;
                }
                v if v == id => return false,
                _ => h = (h + 1) & mask,
            }
        }
    }
}

impl Graph {
    pub fn new(shape: Shape) -> Graph {
        Graph {
            shape,
            nodes: Arena::new(shape.node_words()),
            upper: Arena::new(shape.upper_words()),
            vectors: Arena::new(shape.dim),
            len: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            upper_len: AtomicUsize::new(0),
            entry: AtomicU64::new(NO_ENTRY),
            ready: AtomicBool::new(false),
            quant: OnceLock::new(),
            locks: (0..1024).map(|_| std::sync::Mutex::new(())).collect(),
        }
    }

    #[inline]
    pub fn node(&self, n: u32) -> &[AtomicU32] {
        self.nodes.item(n as usize)
    }
    #[inline]
    pub fn vector(&self, n: u32) -> &[f32] {
        // SAFETY: a vector is written once, by `push`, before its node is
        // published; readers never ask for a node at or above `len`, and the
        // writer asks only for nodes it has finished pushing.
        unsafe { as_f32(self.vectors.item(n as usize)) }
    }
    #[inline]
    fn code(&self, n: u32) -> &[i8] {
        // SAFETY: a code is written by `write_code` before the node is
        // linked or the graph is `ready` (and before a search reads codes),
        // then never again: a retrained quantiser builds a new graph.
        unsafe { as_i8(&self.node(n)[self.shape.code_offset()..], self.shape.dim) }
    }
    #[inline]
    pub fn external_id(&self, n: u32) -> u64 {
        let w = self.node(n);
        w[ID_LO].load(Ordering::Relaxed) as u64 | (w[ID_HI].load(Ordering::Relaxed) as u64) << 32
    }
    #[inline]
    pub fn is_deleted(&self, n: u32) -> bool {
        self.node(n)[META].load(Ordering::Acquire) & DELETED != 0
    }
    #[inline]
    fn level(&self, n: u32) -> usize {
        (self.node(n)[META].load(Ordering::Relaxed) & 0xff) as usize
    }

    /// Count word and link words of node `n` at `level`.
    #[inline]
    fn links(&self, n: u32, level: usize) -> (&AtomicU32, &[AtomicU32]) {
        if level == 0 {
            let w = self.node(n);
            (&w[COUNT0], &w[LINKS0..LINKS0 + self.shape.m0])
        } else {
            let first = self.node(n)[UPPER].load(Ordering::Relaxed) as usize;
            let b = self.upper.item(first + level - 1);
            (&b[0], &b[1..])
        }
    }

    /// Ask the CPU to start loading node `n`'s int8 code into cache.
    #[inline]
    fn prefetch_code(&self, n: u32) {
        let at = self.shape.code_offset();
        prefetch_words(&self.node(n)[at..at + self.shape.code_words()]);
    }

    #[inline]
    fn dist(&self, p: &Probe, n: u32) -> f32 {
        match p {
            Probe::Code(c) => l2_sq_i8(c, self.code(n)) as f32,
            Probe::Query(q) => l2_sq_f32_i8(q, self.code(n)),
        }
    }

    /// Write a node's payload after the last one without publishing it
    /// (writer only); returns its number. Call [`Graph::publish`] once the
    /// batch is written, then link it.
    pub fn push(&self, id: u64, v: &[f32], level: usize) -> u32 {
        let n = self.written.fetch_add(1, Ordering::Relaxed);
        self.nodes.ensure(n);
        self.vectors.ensure(n);
        let w = self.nodes.item(n);
        let upper_first = if level > 0 {
            self.alloc_upper(level)
        } else {
            0
        };
        store_words(
            w,
            [
                level as u32,
                upper_first as u32,
                id as u32,
                (id >> 32) as u32,
                0,
            ],
        );
        store_words(self.vectors.item(n), v.iter().map(|x| x.to_bits()));
        if let Some(q) = self.quant.get() {
            self.write_code(q, n as u32);
        }
        n as u32
    }

    /// Make every written node visible to readers (exact scans see them at
    /// once; graph walks once they are linked).
    pub fn publish(&self) {
        let written = self.written.load(Ordering::Relaxed);
        let old = self.len.swap(written, Ordering::Release);
        // After `len`, so a reader that sees the new count also sees the nodes.
        self.live.fetch_add(written - old, Ordering::Release);
    }

    /// Link published nodes `range` into the graph, on up to `threads`
    /// threads. Writers coordinate through per-node stripe locks; readers
    /// never take them.
    pub fn link_range(&self, range: std::ops::Range<u32>, threads: usize) {
        if self.quant.get().is_none() {
            return;
        }
        let threads = threads.clamp(1, (range.len() / 256).max(1));
        if threads == 1 {
            range.for_each(|n| self.link(n, self.level(n)));
            return;
        }
        // Each thread links one contiguous slice in order. Nodes linked at the
        // same moment cannot see each other, and neighbouring ids are often
        // the same person (several photos indexed together), so workers are
        // kept far apart in id rather than interleaved.
        let per = range.len().div_ceil(threads) as u32;
        std::thread::scope(|s| {
            for t in 0..threads as u32 {
                let lo = range.start + t * per;
                let hi = (lo + per).min(range.end);
                s.spawn(move || (lo..hi).for_each(|n| self.link(n, self.level(n))));
            }
        });
    }

    /// Reserve `levels` consecutive upper blocks inside one chunk.
    fn alloc_upper(&self, levels: usize) -> usize {
        let mut first = self.upper_len.load(Ordering::Relaxed);
        if (first & (CHUNK_ITEMS - 1)) + levels > CHUNK_ITEMS {
            first = (first | (CHUNK_ITEMS - 1)) + 1;
        }
        self.upper.ensure(first);
        for l in 0..levels {
            self.upper.item(first + l)[0].store(0, Ordering::Relaxed);
        }
        self.upper_len.store(first + levels, Ordering::Relaxed);
        first
    }

    fn write_code(&self, q: &Quantizer, n: u32) {
        let mut code = vec![0i8; self.shape.code_words() * 4];
        q.encode(self.vector(n), &mut code);
        let words = code
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]));
        store_words(&self.node(n)[self.shape.code_offset()..], words);
    }

    /// Fit the quantiser on the nodes published so far and link them all.
    pub fn train_and_link(&self, threads: usize) {
        let len = self.len.load(Ordering::Relaxed) as u32;
        let q = Quantizer::train(self.shape.dim, (0..len).map(|n| self.vector(n)));
        for n in 0..len {
            self.write_code(&q, n);
        }
        let _ = self.quant.set(q);
        // Link the first node alone so parallel workers start from an entry.
        self.link_range(0..len.min(1), 1);
        self.link_range(len.min(1)..len, threads);
        self.ready.store(true, Ordering::Release);
    }

    /// Draw a level for a new node: geometric with ratio 1/m, as in HNSW.
    pub fn draw_level(&self, rng: &mut u64) -> usize {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let u = ((*rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-u.ln() / (self.shape.m as f64).ln()) as usize).min(MAX_LEVEL)
    }

    /// Stripe lock guarding the neighbour lists of node `n` against other
    /// writer threads (readers never lock).
    fn lock(&self, n: u32) -> std::sync::MutexGuard<'_, ()> {
        let i = (n as usize).wrapping_mul(0x9E37_79B9) % self.locks.len();
        self.locks[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Link published node `n` into the graph.
    fn link(&self, n: u32, level: usize) {
        let entry = match self.entry.compare_exchange(
            NO_ENTRY,
            (level as u64) << 32 | n as u64,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return,
            Err(e) => e,
        };
        let (ep, top) = (entry as u32, (entry >> 32) as usize);
        let code = self.code(n).to_vec();
        let probe = Probe::Code(&code);
        let bound = self.len.load(Ordering::Acquire) as u32;
        let mut cur = Cand {
            d: self.dist(&probe, ep),
            id: ep,
        };
        for l in (level + 1..=top).rev() {
            cur = self.greedy(&probe, cur, l, bound);
        }
        let mut eps = vec![cur];
        for l in (0..=level.min(top)).rev() {
            let mut found = self.search_layer(&probe, &eps, self.shape.ef_construction, l, bound);
            // A concurrent writer may already have linked to `n`.
            found.retain(|c| c.id != n);
            let sel = self.select(&found, self.shape.m);
            {
                // Another writer may already have linked itself to `n` at this
                // level (reaching it from an upper level): keep those links.
                let _g = self.lock(n);
                let (count, links) = self.links(n, l);
                let mut keep = sel.clone();
                for w in &links[..count.load(Ordering::Relaxed) as usize] {
                    let id = w.load(Ordering::Relaxed);
                    if !keep.iter().any(|c| c.id == id) {
                        keep.push(Cand {
                            d: self.dist(&probe, id),
                            id,
                        });
                    }
                }
                if keep.len() > links.len() {
                    keep.sort_unstable();
                    keep = self.select(&keep, links.len());
                }
                store_words(links, keep.iter().map(|c| c.id));
                count.store(keep.len() as u32, Ordering::Release);
            }
            for c in &sel {
                self.add_link(c.id, n, c.d, l);
            }
            if !found.is_empty() {
                eps = found;
            }
        }
        // Promote `n` to entry point if it reaches above the current top.
        let mut cur = self.entry.load(Ordering::Acquire);
        while level > (cur >> 32) as usize {
            match self.entry.compare_exchange(
                cur,
                (level as u64) << 32 | n as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(e) => cur = e,
            }
        }
    }

    /// Add `to` to the neighbours of `from` at `level`, pruning with the
    /// heuristic when the list is full.
    fn add_link(&self, from: u32, to: u32, d: f32, level: usize) {
        let cap = if level == 0 {
            self.shape.m0
        } else {
            self.shape.m
        };
        let _g = self.lock(from);
        let (count, links) = self.links(from, level);
        let c = count.load(Ordering::Relaxed) as usize;
        if links[..c].iter().any(|w| w.load(Ordering::Relaxed) == to) {
            return;
        }
        if c < cap {
            links[c].store(to, Ordering::Relaxed);
            count.store(c as u32 + 1, Ordering::Release);
            return;
        }
        let code = self.code(from).to_vec();
        let probe = Probe::Code(&code);
        let mut cands: Vec<Cand> = links[..c]
            .iter()
            .map(|w| {
                let id = w.load(Ordering::Relaxed);
                Cand {
                    d: self.dist(&probe, id),
                    id,
                }
            })
            .collect();
        cands.push(Cand { d, id: to });
        cands.sort_unstable();
        let sel = self.select(&cands, cap);
        // Readers may see a mix of the old and new lists meanwhile; every
        // entry is a valid published node either way.
        store_words(links, sel.iter().map(|c| c.id));
        count.store(sel.len() as u32, Ordering::Release);
    }

    /// HNSW neighbour-selection heuristic: take candidates in order of
    /// distance, skipping any that is closer to an already chosen neighbour
    /// than to the base. This keeps links spread in different directions,
    /// which is what makes clustered data (several photos per person)
    /// navigable.
    fn select(&self, sorted: &[Cand], cap: usize) -> Vec<Cand> {
        let mut out: Vec<Cand> = Vec::with_capacity(cap);
        for &c in sorted {
            if out.len() >= cap {
                break;
            }
            let cc = self.code(c.id);
            if out
                .iter()
                .all(|r| (l2_sq_i8(cc, self.code(r.id)) as f32) > c.d)
            {
                out.push(c);
            }
        }
        out
    }

    /// Greedy walk to the closest node at `level`.
    fn greedy(&self, p: &Probe, mut cur: Cand, level: usize, bound: u32) -> Cand {
        loop {
            let mut moved = false;
            let (count, links) = self.links(cur.id, level);
            let c = (count.load(Ordering::Acquire) as usize).min(links.len());
            for w in &links[..c] {
                let id = w.load(Ordering::Relaxed);
                if id >= bound {
                    continue;
                }
                let d = self.dist(p, id);
                if d < cur.d {
                    cur = Cand { d, id };
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Beam search at one level; returns up to `ef` candidates, ascending.
    fn search_layer(
        &self,
        p: &Probe,
        eps: &[Cand],
        ef: usize,
        level: usize,
        bound: u32,
    ) -> Vec<Cand> {
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            visited.reset();
            let mut todo: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef * 4);
            let mut best: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
            for &e in eps {
                if visited.insert(e.id) {
                    todo.push(Reverse(e));
                    best.push(e);
                }
            }
            while best.len() > ef {
                best.pop();
            }
            let mut fresh = [0u32; MAX_LINKS];
            while let Some(Reverse(c)) = todo.pop() {
                if best.len() >= ef && c.d > best.peek().map_or(f32::INFINITY, |b| b.d) {
                    break;
                }
                // The next node to expand is most likely the current runner-up:
                // start loading its neighbour list while this one is worked on.
                if let Some(Reverse(next)) = todo.peek() {
                    prefetch_words(self.links(next.id, level).1);
                }
                let (count, links) = self.links(c.id, level);
                let n = (count.load(Ordering::Acquire) as usize).min(links.len());
                // Gather the unvisited neighbours and prefetch all their codes
                // before computing any distance: each code is a likely cache
                // (and TLB) miss, and issuing them together overlaps the waits.
                let mut k = 0;
                for w in &links[..n] {
                    let id = w.load(Ordering::Relaxed);
                    if id < bound && visited.insert(id) {
                        self.prefetch_code(id);
                        fresh[k] = id;
                        k += 1;
                    }
                }
                for &id in &fresh[..k] {
                    let d = self.dist(p, id);
                    if best.len() < ef || d < best.peek().map_or(f32::INFINITY, |b| b.d) {
                        todo.push(Reverse(Cand { d, id }));
                        best.push(Cand { d, id });
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
            best.into_sorted_vec()
        })
    }

    /// Approximate candidates for `q` (f32, already normalised if needed):
    /// up to `ef` nodes, by int8 distance. Callers re-rank exactly.
    pub fn ann_candidates(&self, q: &[f32], ef: usize) -> Vec<Cand> {
        let entry = self.entry.load(Ordering::Acquire);
        let bound = self.len.load(Ordering::Acquire) as u32;
        let quant = self.quant.get().expect("ready implies trained");
        let qq = quant.prepare(q);
        let probe = Probe::Query(&qq);
        let (ep, top) = (entry as u32, (entry >> 32) as usize);
        let mut cur = Cand {
            d: self.dist(&probe, ep),
            id: ep,
        };
        for l in (1..=top).rev() {
            cur = self.greedy(&probe, cur, l, bound);
        }
        self.search_layer(&probe, &[cur], ef, 0, bound)
    }

    /// Exact top-`k` by squared distance among live nodes, within `max_sq`.
    pub fn exact(&self, q: &[f32], k: usize, max_sq: f32) -> Vec<Cand> {
        let len = self.len.load(Ordering::Acquire) as u32;
        let mut best: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
        let mut worst = max_sq;
        for n in 0..len {
            let d = l2_sq(q, self.vector(n));
            if d > worst || self.is_deleted(n) {
                continue;
            }
            best.push(Cand { d, id: n });
            if best.len() > k {
                best.pop();
            }
            if best.len() == k {
                worst = worst.min(best.peek().map_or(f32::INFINITY, |b| b.d));
            }
        }
        best.into_sorted_vec()
    }
}
