//! Append-only storage of fixed-size items made of 32-bit atomic words.
//!
//! Items live in chunks of `CHUNK_ITEMS` that are allocated once and never
//! moved, so a reader holding `&Arena` can keep using an item while the single
//! writer appends more: there is no reallocation to wait for. A chunk is either
//! zeroed heap memory (lazily committed by the OS, so a fresh index costs little
//! RSS) or a window into a private copy-on-write file mapping (a loaded index,
//! which therefore opens without copying).
//!
//! Words are atomics because the writer rewrites neighbour lists that readers
//! may be scanning at the same moment. Payloads that are written once before
//! an item is published (vectors, int8 codes) are read through plain slices;
//! publication with release/acquire ordering makes that sound.

use memmap2::MmapMut;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// log2 of the number of items per chunk.
pub(crate) const CHUNK_SHIFT: u32 = 16;
/// Items per chunk.
pub(crate) const CHUNK_ITEMS: usize = 1 << CHUNK_SHIFT;
/// Chunks per arena; with 2^16 items each this bounds an index at 2^31 items.
const MAX_CHUNKS: usize = 1 << 15;

enum Owner {
    Heap(#[allow(dead_code)] Box<[AtomicU32]>),
    Map(#[allow(dead_code)] Arc<MmapMut>),
}

struct Chunk {
    ptr: *const AtomicU32,
    _owner: Owner,
}

// SAFETY: the pointer refers to memory owned by `_owner`, which is Send+Sync,
// and all mutation goes through atomics.
unsafe impl Send for Chunk {}
// SAFETY: as above: shared access only ever reads the pointer, and the
// words behind it are atomics.
unsafe impl Sync for Chunk {}

/// Append-only arena of items of `stride` words each.
pub(crate) struct Arena {
    stride: usize,
    chunks: Box<[OnceLock<Chunk>]>,
}

impl Arena {
    /// An empty arena of items `stride` words long.
    pub fn new(stride: usize) -> Self {
        Arena {
            stride,
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Words per item.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Maximum number of items.
    pub fn capacity(&self) -> usize {
        MAX_CHUNKS * CHUNK_ITEMS
    }

    fn heap_chunk(&self) -> Chunk {
        let words = self.stride * CHUNK_ITEMS;
        // calloc-backed: pages are committed only when touched.
        let zeroed: Box<[u32]> = vec![0u32; words].into_boxed_slice();
        // SAFETY: AtomicU32 has the same size, alignment and bit validity as u32.
        let boxed: Box<[AtomicU32]> =
            unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU32]) };
        Chunk {
            ptr: boxed.as_ptr(),
            _owner: Owner::Heap(boxed),
        }
    }

    /// Make sure the chunk holding item `i` exists (writer side).
    pub fn ensure(&self, i: usize) {
        self.chunks[i >> CHUNK_SHIFT].get_or_init(|| self.heap_chunk());
    }

    /// Install chunk `c` as a window of a mapping starting at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must point at `stride * CHUNK_ITEMS` 4-byte aligned words inside
    /// `map`, and nothing else may write those words while the arena lives
    /// (the arena hands them out as atomics and writes them itself).
    pub unsafe fn install_mapped(&self, c: usize, map: &Arc<MmapMut>, ptr: *const AtomicU32) {
        debug_assert!(ptr.is_aligned());
        let chunk = Chunk {
            ptr,
            _owner: Owner::Map(map.clone()),
        };
        assert!(self.chunks[c].set(chunk).is_ok(), "chunk installed twice");
    }

    /// Install chunk `c` as heap memory initialised from `words`.
    pub fn install_copied(&self, c: usize, words: &[u32]) {
        assert!(
            words.len() <= self.stride * CHUNK_ITEMS,
            "more words than a chunk"
        );
        let chunk = self.heap_chunk();
        // SAFETY: the chunk is fresh and unshared, and holds
        // `stride * CHUNK_ITEMS` words, no fewer than `words.len()` (asserted).
        unsafe {
            std::ptr::copy_nonoverlapping(words.as_ptr(), chunk.ptr as *mut u32, words.len())
        };
        assert!(self.chunks[c].set(chunk).is_ok(), "chunk installed twice");
    }

    /// The words of item `i`. Panics if its chunk was never allocated, which
    /// would be a bug: callers only ask for published items.
    #[inline]
    pub fn item(&self, i: usize) -> &[AtomicU32] {
        let chunk = self.chunks[i >> CHUNK_SHIFT]
            .get()
            .expect("item in an unallocated chunk");
        let off = (i & (CHUNK_ITEMS - 1)) * self.stride;
        // SAFETY: the chunk holds CHUNK_ITEMS * stride words and lives as long as self.
        unsafe { std::slice::from_raw_parts(chunk.ptr.add(off), self.stride) }
    }

    /// The raw words of the first `items` items of chunk `c`, for saving.
    ///
    /// # Safety
    ///
    /// No word of those items may be written while the returned slice is
    /// alive: the caller holds the index's writer lock, which every writer
    /// takes.
    pub unsafe fn chunk_words(&self, c: usize, items: usize) -> &[u32] {
        assert!(items <= CHUNK_ITEMS, "more items than a chunk");
        let chunk = self.chunks[c].get().expect("unallocated chunk");
        // SAFETY: in bounds (asserted); AtomicU32 has u32's layout, and the
        // caller guarantees no concurrent writes, so plain reads do not race.
        unsafe { std::slice::from_raw_parts(chunk.ptr as *const u32, items * self.stride) }
    }
}

/// Store `vals` into consecutive words (writer side, before publication).
#[inline]
pub(crate) fn store_words(dst: &[AtomicU32], vals: impl IntoIterator<Item = u32>) {
    for (w, v) in dst.iter().zip(vals) {
        w.store(v, Ordering::Relaxed);
    }
}

/// View words that are never written after publication as f32.
///
/// # Safety
///
/// No word of `words` may be written while the returned slice is alive: use
/// it only for payloads written before their item was published (with
/// release/acquire ordering) and immutable since.
#[inline]
pub(crate) unsafe fn as_f32(words: &[AtomicU32]) -> &[f32] {
    // SAFETY: f32 has AtomicU32's size and alignment and any bit pattern is
    // a valid f32; the caller guarantees the words are not written meanwhile.
    unsafe { std::slice::from_raw_parts(words.as_ptr() as *const f32, words.len()) }
}

/// View words that are never written after publication as `n` int8 values.
///
/// # Safety
///
/// As for [`as_f32`]: the words are not written while the slice is alive.
#[inline]
pub(crate) unsafe fn as_i8(words: &[AtomicU32], n: usize) -> &[i8] {
    assert!(n <= words.len() * 4, "more int8 values than the words hold");
    // SAFETY: in bounds (asserted); i8 has alignment 1 and any bit pattern
    // is valid; the caller guarantees the words are not written meanwhile.
    unsafe { std::slice::from_raw_parts(words.as_ptr() as *const i8, n) }
}
