//! Benchmark for kenning-index on synthetic face-like vectors.
//!
//! Subcommands (all take `--dir D`; see bench/index/run.sh):
//! - `gen --n N --queries Q [--seed S]`: write base.npy (N x 128 f32),
//!   queries.npy and gt.npy (exact top-10 row numbers, int64).
//! - `build [--m 16 --efc 100]`: insert base.npy, save D/kenning.idx.
//! - `search [--ef 32,64,128] [--exact-queries 50]`: open the index, measure
//!   open time, RSS, single-query latency and recall; run it pinned to one core.
//! - `crossover`: exact scan vs HNSW latency at small sizes.
//!
//! Results are appended to D/results.jsonl as one JSON object per line.
//!
//! The data: identity centres are Gaussian with a decaying spectrum (about 50
//! effective dimensions, like real face embeddings rather than isotropic
//! noise), unit-normalised; each identity has 1-8 enrolled samples, each the
//! centre plus anisotropic noise, renormalised (same-person distance ~0.45-0.65,
//! different people ~1.2-1.6). Queries are fresh samples of enrolled identities.

use kenning_index::{distance::l2_sq, Expect, Index, IndexConfig, Metric};
use memmap2::{Mmap, MmapMut};
use rayon::prelude::*;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DIM: usize = 128;
const K: usize = 10;

struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    /// splitmix64
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss_vec(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let (u, v) = (self.uniform(), self.uniform());
            let r = (-2.0 * u.ln()).sqrt();
            let t = std::f64::consts::TAU * v;
            pair[0] = (r * t.cos()) as f32;
            if pair.len() > 1 {
                pair[1] = (r * t.sin()) as f32;
            }
        }
    }
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// Anisotropic unit direction: Gaussian scaled by a decaying spectrum.
fn direction(rng: &mut Rng, out: &mut [f32]) {
    rng.gauss_vec(out);
    for (j, x) in out.iter_mut().enumerate() {
        *x *= (-(j as f32) / 48.0).exp();
    }
    normalise(out);
}

struct Gen {
    seed: u64,
}
impl Gen {
    fn centre(&self, ident: u64, out: &mut [f32]) {
        direction(
            &mut Rng::new(self.seed ^ ident.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            out,
        );
    }
    /// Sample `s` of identity `ident` (distinct streams for enrolled/query).
    fn sample(&self, ident: u64, s: u64, out: &mut [f32]) {
        self.centre(ident, out);
        let mut noise = [0f32; DIM];
        direction(
            &mut Rng::new(self.seed.rotate_left(17) ^ ident << 8 ^ s),
            &mut noise,
        );
        for (x, n) in out.iter_mut().zip(noise) {
            *x += 0.5 * n;
        }
        normalise(out);
    }
    fn samples_of(&self, ident: u64) -> u64 {
        1 + Rng::new(self.seed ^ 0xABCD ^ ident).next() % 8
    }
}

fn npy_header(rows: usize, cols: usize, descr: &str) -> Vec<u8> {
    let dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut d = dict.into_bytes();
    d.resize(total - 10 - 1, b' ');
    d.push(b'\n');
    h.extend_from_slice(&(d.len() as u16).to_le_bytes());
    h.extend_from_slice(&d);
    h
}

/// Create an .npy file of rows x cols 4- or 8-byte elements and map it.
fn create_npy(path: &Path, rows: usize, cols: usize, descr: &str, elem: usize) -> (MmapMut, usize) {
    let h = npy_header(rows, cols, descr);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len((h.len() + rows * cols * elem) as u64).unwrap();
    let mut m = unsafe { MmapMut::map_mut(&f).unwrap() };
    m[..h.len()].copy_from_slice(&h);
    (m, h.len())
}

/// Map an f32 .npy file; returns (map, header length, rows).
fn open_npy(path: &Path) -> (Mmap, usize, usize) {
    let m = unsafe { Mmap::map(&File::open(path).unwrap()).unwrap() };
    let hl = 10 + u16::from_le_bytes([m[8], m[9]]) as usize;
    let hdr = std::str::from_utf8(&m[10..hl]).unwrap();
    let rows: usize = hdr
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (m, hl, rows)
}

fn f32s(m: &[u8]) -> &[f32] {
    assert_eq!(m.as_ptr() as usize % 4, 0);
    unsafe { std::slice::from_raw_parts(m.as_ptr() as *const f32, m.len() / 4) }
}

struct Args(HashMap<String, String>);
impl Args {
    fn get<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        self.0.get(k).map_or(default, |v| v.parse().ok().expect(k))
    }
    fn dir(&self) -> PathBuf {
        PathBuf::from(self.0.get("dir").expect("--dir"))
    }
}

fn record(dir: &Path, json: String) {
    println!("{json}");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("results.jsonl"))
        .unwrap();
    writeln!(f, "{json}").unwrap();
}

/// (VmRSS, RssAnon, RssFile) in bytes.
fn rss() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(0, |v| v.parse::<u64>().unwrap() * 1024)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

/// CPU time of this thread in ms: latency without time spent descheduled
/// (the benchmark machine is shared).
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// User + system CPU seconds of this process (all threads).
fn process_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn gen(a: &Args) {
    let dir = a.dir();
    std::fs::create_dir_all(&dir).unwrap();
    let n: usize = a.get("n", 1_000_000);
    let nq: usize = a.get("queries", 1000);
    let g = Gen {
        seed: a.get("seed", 42),
    };
    let t = Instant::now();
    // Identity of every row, in order: identities 0.. with their sample counts.
    let mut owners = Vec::with_capacity(n);
    let mut ident = 0u64;
    while owners.len() < n {
        for s in 0..g.samples_of(ident) {
            if owners.len() < n {
                owners.push((ident, s));
            }
        }
        ident += 1;
    }
    let (mut base, hl) = create_npy(&dir.join("base.npy"), n, DIM, "<f4", 4);
    let rows =
        unsafe { std::slice::from_raw_parts_mut(base[hl..].as_mut_ptr() as *mut f32, n * DIM) };
    rows.par_chunks_mut(DIM)
        .zip(owners.par_iter())
        .for_each(|(row, &(id, s))| g.sample(id, s, row));
    base.flush().unwrap();
    let (mut qm, qhl) = create_npy(&dir.join("queries.npy"), nq, DIM, "<f4", 4);
    let queries =
        unsafe { std::slice::from_raw_parts_mut(qm[qhl..].as_mut_ptr() as *mut f32, nq * DIM) };
    let mut r = Rng::new(7);
    for q in queries.chunks_mut(DIM) {
        let id = r.next() % ident.saturating_sub(1).max(1);
        g.sample(id, 1000 + r.next() % 1000, q);
    }
    qm.flush().unwrap();
    eprintln!(
        "generated {n} vectors of {ident} identities in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Exact ground truth, blocked so a block of base rows stays in cache while
    // every query passes over it.
    let t = Instant::now();
    type Top = Vec<BinaryHeap<(u32, u64)>>;
    let push = |h: &mut BinaryHeap<(u32, u64)>, d: f32, i: u64| {
        if h.len() < K || d.to_bits() < h.peek().unwrap().0 {
            h.push((d.to_bits(), i));
            if h.len() > K {
                h.pop();
            }
        }
    };
    let block = 2048;
    let tops: Top = rows
        .par_chunks(block * DIM)
        .enumerate()
        .fold(
            || vec![BinaryHeap::new(); nq],
            |mut acc: Top, (b, chunk)| {
                for (qi, q) in queries.chunks(DIM).enumerate() {
                    for (j, v) in chunk.chunks(DIM).enumerate() {
                        push(&mut acc[qi], l2_sq(q, v), (b * block + j) as u64);
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![BinaryHeap::new(); nq],
            |mut a, b| {
                for (ha, hb) in a.iter_mut().zip(b) {
                    for (d, i) in hb {
                        push(ha, f32::from_bits(d), i);
                    }
                }
                a
            },
        );
    let (mut gm, ghl) = create_npy(&dir.join("gt.npy"), nq, K, "<i8", 8);
    let gt = unsafe { std::slice::from_raw_parts_mut(gm[ghl..].as_mut_ptr() as *mut i64, nq * K) };
    for (qi, h) in tops.into_iter().enumerate() {
        for (j, (_, i)) in h.into_sorted_vec().into_iter().enumerate() {
            gt[qi * K + j] = i as i64;
        }
    }
    gm.flush().unwrap();
    eprintln!(
        "ground truth for {nq} queries in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

fn config(a: &Args) -> IndexConfig {
    let mut c = IndexConfig::new(DIM, Metric::Euclidean);
    c.m = a.get("m", c.m);
    c.ef_construction = a.get("efc", c.ef_construction);
    c.exact_below = a.get("exact-below", c.exact_below);
    c
}

fn build(a: &Args) {
    let dir = a.dir();
    let (m, hl, n) = open_npy(&dir.join("base.npy"));
    let base = f32s(&m[hl..]);
    let cfg = config(a);
    let index = Index::new(cfg.clone()).unwrap();
    let t = Instant::now();
    for (b, rows) in base.chunks(DIM * 10_000).enumerate() {
        index
            .insert_many(
                rows.chunks(DIM)
                    .enumerate()
                    .map(|(i, v)| ((b * 10_000 + i) as u64, v)),
            )
            .unwrap();
        if b % 50 == 49 {
            let done = (b + 1) * 10_000;
            eprintln!(
                "  {done} inserted, {:.0}/s",
                done as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    let build_s = t.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s();
    let path = dir.join("kenning.idx");
    let t = Instant::now();
    index.save(&path, 1).unwrap();
    let save_s = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).unwrap().len();
    record(
        &dir,
        format!(
            r#"{{"system":"kenning","phase":"build","n":{n},"m":{},"efc":{},"threads":{},"build_s":{build_s:.2},"rate":{:.0},"cpu_s":{cpu_s:.1},"save_s":{save_s:.2},"file_bytes":{size},"disk_bytes_per_face":{:.1}}}"#,
            cfg.m,
            cfg.ef_construction,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            n as f64 / build_s,
            size as f64 / n as f64
        ),
    );
}

fn search(a: &Args) {
    let dir = a.dir();
    let (qm, qhl, nq) = open_npy(&dir.join("queries.npy"));
    let queries: Vec<f32> = f32s(&qm[qhl..]).to_vec();
    let gm = std::fs::read(dir.join("gt.npy")).unwrap();
    let ghl = 10 + u16::from_le_bytes([gm[8], gm[9]]) as usize;
    let gt: Vec<u64> = gm[ghl..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u64)
        .collect();
    drop(qm);
    let (rss0, _, _) = rss();
    let t = Instant::now();
    let index = Index::load(
        dir.join("kenning.idx"),
        &Expect {
            dim: Some(DIM),
            ..Default::default()
        },
    )
    .unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let (rss1, anon1, file1) = rss();
    let n = index.len();
    let default_ef = index.default_ef();
    let efs: Vec<usize> =
        a.0.get("ef")
            .map_or("16,32,64,128,256".into(), |s| s.clone())
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect();
    let mut runs: Vec<(String, usize, usize)> = efs
        .iter()
        .map(|&e| ("kenning-hnsw".to_string(), e, nq))
        .collect();
    let exact_queries = a.get("exact-queries", 50usize).min(nq);
    if exact_queries > 0 {
        runs.push(("kenning-exact".into(), 0, exact_queries));
    }
    for (system, ef, count) in runs {
        let mut lat = Vec::with_capacity(count);
        let mut cpu = Vec::with_capacity(count);
        let (mut r1, mut r10) = (0usize, 0usize);
        for (qi, q) in queries.chunks(DIM).take(count).enumerate() {
            let (t, c) = (Instant::now(), thread_cpu_ms());
            let hits = if ef == 0 {
                index.search_exact(q, K, None)
            } else {
                index.search_with(q, K, None, ef)
            }
            .unwrap();
            cpu.push(thread_cpu_ms() - c);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let truth = &gt[qi * K..qi * K + K];
            r1 += (hits.first().map(|h| h.id) == Some(truth[0])) as usize;
            r10 += hits.iter().filter(|h| truth.contains(&h.id)).count();
        }
        lat.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let (rss2, anon2, file2) = rss();
        record(
            &dir,
            format!(
                r#"{{"system":"{system}","phase":"search","n":{n},"ef":{ef},"default_ef":{default_ef},"queries":{count},"open_s":{open_s:.3},"p50_ms":{:.3},"p99_ms":{:.3},"cpu_p50_ms":{:.3},"cpu_p99_ms":{:.3},"recall1":{:.4},"recall10":{:.4},"rss_load_bytes_per_face":{:.1},"anon_load_per_face":{:.1},"file_load_per_face":{:.1},"rss_after_queries_per_face":{:.1},"anon_after_per_face":{:.1},"file_after_per_face":{:.1}}}"#,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                percentile(&cpu, 0.5),
                percentile(&cpu, 0.99),
                r1 as f64 / count as f64,
                r10 as f64 / (count * K) as f64,
                (rss1 - rss0) as f64 / n as f64,
                anon1 as f64 / n as f64,
                file1 as f64 / n as f64,
                (rss2 - rss0) as f64 / n as f64,
                anon2 as f64 / n as f64,
                file2 as f64 / n as f64,
            ),
        );
    }
}

/// Exact scan vs HNSW (+ re-rank) latency at growing sizes, to set `exact_below`.
fn crossover(a: &Args) {
    let dir = a.dir();
    let (m, hl, n) = open_npy(&dir.join("base.npy"));
    let base = f32s(&m[hl..]);
    let (qm, qhl, _) = open_npy(&dir.join("queries.npy"));
    let queries = f32s(&qm[qhl..]);
    let mut cfg = config(a);
    cfg.exact_below = 0;
    let index = Index::new(cfg).unwrap();
    let mut done = 0;
    for size in [2_000usize, 5_000, 10_000, 20_000, 50_000, 100_000]
        .into_iter()
        .filter(|&s| s <= n)
    {
        index
            .insert_many((done..size).map(|i| (i as u64, &base[i * DIM..(i + 1) * DIM])))
            .unwrap();
        done = size;
        let time = |exact: bool| {
            let mut lat: Vec<f64> = queries
                .chunks(DIM)
                .take(300)
                .map(|q| {
                    // CPU time: the machine is shared, wall time is noisy.
                    let t = thread_cpu_ms();
                    let h = if exact {
                        index.search_exact(q, K, None)
                    } else {
                        index.search_with(q, K, None, 64)
                    };
                    std::hint::black_box(h.unwrap());
                    thread_cpu_ms() - t
                })
                .collect();
            lat.sort_by(f64::total_cmp);
            (percentile(&lat, 0.5), percentile(&lat, 0.99))
        };
        let (e50, e99) = time(true);
        let (h50, h99) = time(false);
        record(
            &dir,
            format!(
                r#"{{"system":"kenning","phase":"crossover","n":{size},"exact_p50_ms":{e50:.4},"exact_p99_ms":{e99:.4},"hnsw_p50_ms":{h50:.4},"hnsw_p99_ms":{h99:.4}}}"#
            ),
        );
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = argv.first().cloned().unwrap_or_default();
    let mut map = HashMap::new();
    for kv in argv[1..].chunks(2) {
        map.insert(
            kv[0].trim_start_matches("--").to_string(),
            kv.get(1).cloned().unwrap_or_default(),
        );
    }
    let a = Args(map);
    match cmd.as_str() {
        "gen" => gen(&a),
        "build" => build(&a),
        "search" => search(&a),
        "crossover" => crossover(&a),
        _ => eprintln!("usage: bench_index gen|build|search|crossover --dir D [options]"),
    }
}
