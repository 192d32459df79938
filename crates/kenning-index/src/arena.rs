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

    /// Install chunk `c` as a window of a mapping starting at `ptr`, which must
    /// point at `stride * CHUNK_ITEMS` 4-byte aligned words inside `map`.
    pub fn install_mapped(&self, c: usize, map: &Arc<MmapMut>, ptr: *const AtomicU32) {
        let chunk = Chunk {
            ptr,
            _owner: Owner::Map(map.clone()),
        };
        assert!(self.chunks[c].set(chunk).is_ok(), "chunk installed twice");
    }

    /// Install chunk `c` as heap memory initialised from `words`.
    pub fn install_copied(&self, c: usize, words: &[u32]) {
        let chunk = self.heap_chunk();
        // SAFETY: the chunk is fresh and unshared; it holds at least `words.len()` words.
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
    /// Only call while no writer is active.
    pub fn chunk_words(&self, c: usize, items: usize) -> &[u32] {
        let chunk = self.chunks[c].get().expect("unallocated chunk");
        // SAFETY: no concurrent writers (caller holds the writer lock); the
        // atomics have u32 layout.
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
#[inline]
pub(crate) fn as_f32(words: &[AtomicU32]) -> &[f32] {
    // SAFETY: same size/alignment; the caller only uses this for payloads that
    // were written before the item was published and are immutable since.
    unsafe { std::slice::from_raw_parts(words.as_ptr() as *const f32, words.len()) }
}

/// View words that are never written after publication as `n` int8 values.
#[inline]
pub(crate) fn as_i8(words: &[AtomicU32], n: usize) -> &[i8] {
    debug_assert!(n <= words.len() * 4);
    // SAFETY: as for `as_f32`; i8 has alignment 1.
    unsafe { std::slice::from_raw_parts(words.as_ptr() as *const i8, n) }
}
