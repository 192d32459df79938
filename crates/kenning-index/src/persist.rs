//! Single-file persistence.
//!
//! Layout: a 4 KiB header, then four sections each starting on a 4 KiB
//! boundary: quantiser means, node blocks, upper-level blocks, f32 vectors.
//! Section bytes are the arenas' words verbatim (little-endian), so loading
//! maps them copy-on-write and hands whole 2^16-item chunks straight to the
//! arenas. The header carries format version, shape, counts, the caller's
//! generation, the offset/length/xxh3 of every section and its own xxh3.

use crate::arena::{Arena, CHUNK_ITEMS};
use crate::graph::{Graph, NO_ENTRY};
use crate::quant::Quantizer;
use crate::{Index, IndexConfig, IndexError, Metric, Result};
use memmap2::{Advice, MmapOptions};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

#[cfg(target_endian = "big")]
compile_error!("the index file format is little-endian and is mapped verbatim");

const MAGIC: [u8; 8] = *b"KNNGIDX\0";
const VERSION: u32 = 1;
const PAGE: u64 = 4096;
const SECTIONS: [&str; 4] = ["quantiser", "nodes", "upper levels", "vectors"];

/// What the caller knows the file should contain. Any `Some` field that
/// differs from the file makes [`Index::load`] fail with `Stale`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expect {
    /// Vector dimension.
    pub dim: Option<usize>,
    /// Metric.
    pub metric: Option<Metric>,
    /// Number of live vectors.
    pub count: Option<usize>,
    /// Generation passed to [`Index::save`].
    pub generation: Option<u64>,
}

#[derive(Clone, Copy, Default)]
struct Section {
    off: u64,
    len: u64,
    hash: u64,
}

struct Header {
    config: IndexConfig,
    ready: bool,
    nodes: u64,
    live: u64,
    generation: u64,
    upper_items: u64,
    entry: u64,
    scale: f32,
    file_len: u64,
    sections: [Section; 4],
}

fn metric_code(m: Metric) -> u32 {
    match m {
        Metric::Euclidean => 0,
        Metric::Cosine => 1,
    }
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let c = &self.config;
        let mut b = Vec::with_capacity(PAGE as usize);
        b.extend_from_slice(&MAGIC);
        for v in [
            VERSION,
            c.dim as u32,
            metric_code(c.metric),
            c.m as u32,
            c.ef_construction as u32,
            c.ef_search as u32,
            self.ready as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.scale.to_le_bytes());
        for v in [
            c.exact_below as u64,
            c.seed,
            self.nodes,
            self.live,
            self.generation,
            self.upper_items,
            self.entry,
            self.file_len,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for s in &self.sections {
            for v in [s.off, s.len, s.hash] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        let h = xxh3_64(&b);
        b.extend_from_slice(&h.to_le_bytes());
        b.resize(PAGE as usize, 0);
        b
    }

    fn decode(b: &[u8], path: &Path) -> Result<Header> {
        if b.len() < 8 || b[..8] != MAGIC {
            return Err(IndexError::NotAnIndex(path.to_path_buf()));
        }
        let mut pos = 8;
        let mut u32_ = || {
            let v = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
            pos += 4;
            v
        };
        let version = u32_();
        if version != VERSION {
            return Err(IndexError::UnsupportedVersion {
                expected: VERSION,
                found: version,
            });
        }
        if b.len() < PAGE as usize {
            return Err(IndexError::Truncated {
                expected: PAGE,
                found: b.len() as u64,
            });
        }
        let [dim, metric, m, efc, efs, ready, scale] = [(); 7].map(|_| u32_());
        let mut u64_ = || {
            let v = u64::from_le_bytes(b[pos..pos + 8].try_into().unwrap());
            pos += 8;
            v
        };
        let [exact_below, seed, nodes, live, generation, upper_items, entry, file_len] =
            [(); 8].map(|_| u64_());
        let sections = [(); 4].map(|_| Section {
            off: u64_(),
            len: u64_(),
            hash: u64_(),
        });
        let stored = u64_();
        if xxh3_64(&b[..pos - 8]) != stored {
            return Err(IndexError::Corrupt("header checksum mismatch".into()));
        }
        let metric = match metric {
            0 => Metric::Euclidean,
            1 => Metric::Cosine,
            x => return Err(IndexError::Corrupt(format!("unknown metric {x}"))),
        };
        let config = IndexConfig {
            dim: dim as usize,
            metric,
            exact_below: exact_below as usize,
            m: m as usize,
            ef_construction: efc as usize,
            ef_search: efs as usize,
            seed,
            build_threads: 0,
        };
        config
            .validate()
            .map_err(|e| IndexError::Corrupt(e.to_string()))?;
        Ok(Header {
            config,
            ready: ready != 0,
            nodes,
            live,
            generation,
            upper_items,
            entry,
            scale: f32::from_bits(scale),
            file_len,
            sections,
        })
    }
}

fn align(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

/// Writes sections sequentially while hashing them.
struct SectionWriter<W: Write> {
    out: W,
    pos: u64,
}

impl<W: Write> SectionWriter<W> {
    fn pad_to(&mut self, off: u64) -> std::io::Result<()> {
        let zeros = vec![0u8; (off - self.pos) as usize];
        self.out.write_all(&zeros)?;
        self.pos = off;
        Ok(())
    }

    fn section(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> std::io::Result<Section> {
        let off = align(self.pos);
        self.pad_to(off)?;
        let mut h = Xxh3::new();
        for p in parts {
            h.update(p);
            self.out.write_all(p)?;
            self.pos += p.len() as u64;
        }
        Ok(Section {
            off,
            len: self.pos - off,
            hash: h.digest(),
        })
    }
}

fn words_as_bytes(w: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding; any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 4) }
}

/// The first `items` items of an arena as byte slices, chunk by chunk.
///
/// # Safety
///
/// As for [`Arena::chunk_words`]: no writer may run while the slices are
/// alive (the caller holds the index's writer lock).
unsafe fn arena_bytes(a: &Arena, items: usize) -> impl Iterator<Item = &[u8]> {
    (0..items.div_ceil(CHUNK_ITEMS)).map(move |c| {
        // SAFETY: the caller excludes writers for as long as the slices live.
        words_as_bytes(unsafe { a.chunk_words(c, (items - c * CHUNK_ITEMS).min(CHUNK_ITEMS)) })
    })
}

impl Index {
    /// Write the index to `path` atomically: a temp file beside it is written,
    /// fsynced and renamed over `path`, then the directory is fsynced.
    /// `generation` is stored for [`Expect::generation`]. Writers wait while
    /// this runs; readers do not.
    pub fn save(&self, path: impl AsRef<Path>, generation: u64) -> Result<()> {
        let path = path.as_ref();
        let _w = self.lock();
        let g = self.graph.load();
        let n = g.len.load(Ordering::Relaxed);
        let upper_items = g.upper_len.load(Ordering::Relaxed);
        let quant = g.quant.get();
        let mean: Vec<u8> = quant.map_or(Vec::new(), |q| {
            q.mean.iter().flat_map(|x| x.to_le_bytes()).collect()
        });
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let io = |e| IndexError::io(&tmp, e);
        let file = File::create(&tmp).map_err(io)?;
        let mut w = SectionWriter {
            out: BufWriter::with_capacity(1 << 22, &file),
            pos: 0,
        };
        w.pad_to(PAGE).map_err(io)?;
        // SAFETY: `_w` holds the writer lock, so no word changes while the
        // arenas are written out.
        let sections = unsafe {
            [
                w.section(&mut std::iter::once(&mean[..])).map_err(io)?,
                w.section(&mut arena_bytes(&g.nodes, n)).map_err(io)?,
                w.section(&mut arena_bytes(&g.upper, upper_items))
                    .map_err(io)?,
                w.section(&mut arena_bytes(&g.vectors, n)).map_err(io)?,
            ]
        };
        let header = Header {
            config: self.config.clone(),
            ready: g.ready.load(Ordering::Relaxed),
            nodes: n as u64,
            live: g.live.load(Ordering::Relaxed) as u64,
            generation,
            upper_items: upper_items as u64,
            entry: g.entry.load(Ordering::Relaxed),
            scale: quant.map_or(0.0, |q| q.scale),
            file_len: w.pos,
            sections,
        };
        let mut out = w.out.into_inner().map_err(|e| io(e.into_error()))?;
        out.seek(SeekFrom::Start(0)).map_err(io)?;
        out.write_all(&header.encode()).map_err(io)?;
        out.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| IndexError::io(dir, e))?;
        }
        Ok(())
    }

    /// Open an index saved with [`Index::save`], verifying its checksums and
    /// that it matches `expect`. The file is mapped, not read into memory.
    pub fn load(path: impl AsRef<Path>, expect: &Expect) -> Result<Index> {
        let path = path.as_ref();
        let io = |e| IndexError::io(path, e);
        let mut file = File::open(path).map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        let mut head = vec![0u8; PAGE.min(found) as usize];
        file.read_exact(&mut head).map_err(io)?;
        let h = Header::decode(&head, path)?;
        if found < h.file_len {
            return Err(IndexError::Truncated {
                expected: h.file_len,
                found,
            });
        }
        if found > h.file_len {
            return Err(IndexError::Corrupt(format!(
                "{} bytes past the end of the index",
                found - h.file_len
            )));
        }
        let c = &h.config;
        let stale = |what, e: String, f: String| {
            Err(IndexError::Stale {
                what,
                expected: e,
                found: f,
            })
        };
        match expect {
            Expect { dim: Some(d), .. } if *d != c.dim => {
                return stale("dimension", d.to_string(), c.dim.to_string())
            }
            Expect {
                metric: Some(m), ..
            } if *m != c.metric => {
                return stale("metric", format!("{m:?}"), format!("{:?}", c.metric))
            }
            Expect { count: Some(n), .. } if *n as u64 != h.live => {
                return stale("count", n.to_string(), h.live.to_string())
            }
            Expect {
                generation: Some(g),
                ..
            } if *g != h.generation => {
                return stale("generation", g.to_string(), h.generation.to_string())
            }
            _ => {}
        }
        let shape = c.shape();
        let want = [
            if h.ready || h.scale != 0.0 {
                c.dim * 4
            } else {
                0
            } as u64,
            h.nodes * shape.node_words() as u64 * 4,
            h.upper_items * shape.upper_words() as u64 * 4,
            h.nodes * c.dim as u64 * 4,
        ];
        for (i, s) in h.sections.iter().enumerate() {
            if s.len != want[i] || s.off % PAGE != 0 || s.off + s.len > h.file_len || s.off < PAGE {
                return Err(IndexError::Corrupt(format!(
                    "{} section has the wrong size or place",
                    SECTIONS[i]
                )));
            }
        }
        if h.live > h.nodes
            || (h.entry != NO_ENTRY && (h.entry as u32 as u64) >= h.nodes)
            || h.nodes >= 1 << 31
        {
            return Err(IndexError::Corrupt("inconsistent counts".into()));
        }

        // Graph sections are hashed through the mapping (they will be resident
        // anyway); the f32 vectors through read() so verifying them does not
        // leave 4 bytes per dimension per face in our resident set.
        // SAFETY: the file is only ever replaced by rename, never modified in
        // place, so the private mapping stays valid.
        let mut map = unsafe { MmapOptions::new().map_copy(&file) }.map_err(io)?;
        let base = map.as_mut_ptr();
        let map = Arc::new(map);
        let bytes = |s: &Section| -> &[u8] {
            // SAFETY: bounds checked above; nothing writes the mapping yet.
            unsafe { std::slice::from_raw_parts(base.add(s.off as usize), s.len as usize) }
        };
        for (s, name) in h.sections.iter().zip(SECTIONS).take(3) {
            if xxh3_64(bytes(s)) != s.hash {
                return Err(IndexError::Corrupt(format!("{name} checksum mismatch")));
            }
        }
        let vs = h.sections[3];
        file.seek(SeekFrom::Start(vs.off)).map_err(io)?;
        let mut hasher = Xxh3::new();
        let mut buf = vec![0u8; 1 << 23];
        let mut left = vs.len as usize;
        while left > 0 {
            let chunk = &mut buf[..left.min(1 << 23)];
            file.read_exact(chunk).map_err(io)?;
            hasher.update(chunk);
            left -= chunk.len();
        }
        if hasher.digest() != vs.hash {
            return Err(IndexError::Corrupt("vectors checksum mismatch".into()));
        }
        // Re-ranking touches a few scattered vectors per query: read-ahead
        // would only pull in neighbours nobody asked for.
        let _ = map.advise_range(Advice::Random, vs.off as usize, vs.len as usize);

        let graph = Graph::new(shape);
        let install = |arena: &Arena, s: &Section, items: usize| {
            let item_bytes = arena.stride() * 4;
            for c in 0..items.div_ceil(CHUNK_ITEMS) {
                let first = s.off as usize + c * CHUNK_ITEMS * item_bytes;
                let count = (items - c * CHUNK_ITEMS).min(CHUNK_ITEMS);
                // SAFETY: in bounds (section sizes checked); page-aligned.
                let ptr = unsafe { base.add(first) };
                if count == CHUNK_ITEMS {
                    // SAFETY: a full chunk of the section lies at `ptr`
                    // (sizes checked), page-aligned; the private mapping is
                    // written only through this arena.
                    unsafe { arena.install_mapped(c, &map, ptr as *const AtomicU32) };
                } else {
                    // The last, partial chunk gets heap room to grow into.
                    // SAFETY: as above; u32 alignment holds at page offsets.
                    let words = unsafe {
                        std::slice::from_raw_parts(ptr as *const u32, count * arena.stride())
                    };
                    arena.install_copied(c, words);
                }
            }
        };
        install(&graph.nodes, &h.sections[1], h.nodes as usize);
        install(&graph.upper, &h.sections[2], h.upper_items as usize);
        install(&graph.vectors, &h.sections[3], h.nodes as usize);
        graph.len.store(h.nodes as usize, Ordering::Relaxed);
        graph.written.store(h.nodes as usize, Ordering::Relaxed);
        graph.live.store(h.live as usize, Ordering::Relaxed);
        graph
            .upper_len
            .store(h.upper_items as usize, Ordering::Relaxed);
        graph.entry.store(h.entry, Ordering::Relaxed);
        if h.sections[0].len > 0 {
            let mean = bytes(&h.sections[0])
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let _ = graph.quant.set(Quantizer {
                mean,
                scale: h.scale,
            });
        }
        graph.ready.store(h.ready, Ordering::Release);
        Ok(Index::from_parts(h.config, graph, None))
    }
}
