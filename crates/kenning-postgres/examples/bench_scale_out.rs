//! The PostgreSQL backend against the embedded one on the same synthetic
//! faces, through the storage interface both implement (bench/scale-out).
//!
//! `bench_scale_out --dir D --database URL [--ef 40,100,200,400,1000] [--batch 1000]
//! [--precision full|half] [--embedded yes|no] [--ingest bulk|calls|none]
//! [--build-memory 2048] [--binary no|yes] [--m 16] [--ef-construction 64]
//! [--prewarm yes|no] [--embedded-ef 128,256,512]`
//! reads base.npy, queries.npy and gt.npy written by the index benchmark's
//! generator (`bench_index gen --dir D`), loads every face into one
//! collection of each backend (the embedded one in D/embedded, created anew),
//! and for each measures the ingest time, recall@10 against the exact ground
//! truth, p50/p99 single-query latency and bytes per face on disk. The
//! embedded store gets the faces in `add_faces` calls of `--batch`, each
//! with its audit record, as IndexFaces would; the database gets them in one
//! bulk load (`PgFaces::bulk_add_faces`: binary COPY, then the HNSW index
//! built with `--build-memory` MiB, audit records of 1,000 faces each), or
//! with `--ingest calls` like the embedded store; `--ingest none` searches
//! the collection an earlier run left in the database (for the same
//! searches under other server settings). Results are appended
//! to D/results.jsonl, one JSON object per line; D/face-ids.txt gets some of
//! the database's FaceIds for the API-node load (bench/scale-out/load.py).
//! `--precision half` builds the HNSW index over `halfvec(d)` instead of
//! `vector(d)`; `--embedded no` skips the embedded backend (for a second
//! PostgreSQL arm in the same run); `--binary yes` then adds a bit-quantized
//! HNSW index to the vector(d) partition and measures it with an exact
//! re-rank of its candidates. `--m` and `--ef-construction` build the
//! database's HNSW graph (the product's `Options` defaults otherwise);
//! `--prewarm yes` (the default) reads the partition and its indexes into
//! shared_buffers with pg_prewarm before the searches, as a server that has
//! been serving a while holds them. `--embedded-ef` also measures the
//! embedded store's saved index (`Index::load` of its .kix file, the graph
//! the store searches) at each of these beam widths, the index alone without
//! the store's record lookups, to compare the backends at equal recall.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Instant;

use kenning_audit::Entry;
use kenning_core::BoundingBox;
use kenning_postgres::{BulkLoad, IndexBuild, Options, Postgres, Precision};
use kenning_store::*;

const K: usize = 10;
const COLLECTION: &str = "bench";
const MODEL: &str = "dlib-resnet-v1";

struct Args(HashMap<String, String>);

impl Args {
    fn get<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        self.0.get(k).map_or(default, |v| v.parse().ok().expect(k))
    }
    fn req(&self, k: &str) -> &str {
        self.0.get(k).unwrap_or_else(|| panic!("--{k} is required"))
    }
}

/// An .npy file's rows (little-endian, C order) as `T` values and its row count.
fn npy<T: Copy>(path: &Path, decode: impl Fn(&[u8]) -> T, width: usize) -> (Vec<T>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header_len = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..header_len]);
    let rows: usize = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("an .npy shape");
    let values = bytes[header_len..]
        .chunks_exact(width)
        .map(decode)
        .collect();
    (values, rows)
}

/// Records each change as the accountability layer would (one audit record
/// per IndexFaces-like call).
struct Audit;

impl Auditor for Audit {
    fn entry(&self, change: &Change<'_>) -> Entry {
        Entry {
            operation: "IndexFaces".into(),
            outcome: "ok".into(),
            collection: Some(change.collection().id.clone()),
            face_count: Some(change.collection().face_count),
            ..Entry::default()
        }
    }
    fn recorded(&self, _seq: u64) {}
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn record(dir: &Path, json: serde_json::Value) {
    println!("{json}");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("results.jsonl"))
        .unwrap();
    writeln!(f, "{json}").unwrap();
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

struct Data {
    dim: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    gt: Vec<u64>,
}

/// dlib's recogniser (128-d, Euclidean), so `kenning serve` nodes can
/// search the collection by FaceId.
fn model() -> FaceModel {
    FaceModel {
        name: MODEL.into(),
        version: "dlib_face_recognition_resnet_model_v1".into(),
    }
}

fn create(store: &dyn FaceStore, data: &Data) {
    store
        .create_collection(
            NewCollection {
                id: COLLECTION.into(),
                face_model: model(),
                dim: data.dim as u32,
                policy: "{}".into(),
            },
            Distance::Euclidean,
        )
        .unwrap();
}

/// Row `i` of the base set as a face to add.
fn new_face(data: &Data, i: usize) -> NewFace {
    NewFace {
        image_id: Uuid::new_v4(),
        external_image_id: Some(format!("row{i}")),
        bounding_box: BoundingBox {
            width: 0.5,
            height: 0.5,
            left: 0.25,
            top: 0.25,
        },
        confidence: 99.0,
        embedding: data.base[i * data.dim..(i + 1) * data.dim].to_vec(),
        indexed_at_ms: None,
        pixels: None,
    }
}

/// Loads every face in calls of `batch` (as IndexFaces would add them);
/// returns the row each seq holds and the seconds taken.
fn ingest(store: &dyn FaceStore, data: &Data, batch: usize) -> (HashMap<u64, u64>, f64) {
    create(store, data);
    let mut rows = HashMap::new();
    let t = Instant::now();
    let n = data.base.len() / data.dim;
    for start in (0..n).step_by(batch) {
        let faces = (start..(start + batch).min(n))
            .map(|i| new_face(data, i))
            .collect();
        for (j, f) in store
            .add_faces(COLLECTION, &model(), faces)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            rows.insert(f.seq, (start + j) as u64);
        }
    }
    store.flush().unwrap();
    (rows, t.elapsed().as_secs_f64())
}

/// Loads every face in one bulk load (binary COPY, then the HNSW index);
/// returns the row each seq holds, the seconds taken and the load's report.
fn bulk_ingest(pg: &Postgres, data: &Data) -> (HashMap<u64, u64>, f64, BulkLoad) {
    create(pg.faces.as_ref(), data);
    let n = data.base.len() / data.dim;
    let t = Instant::now();
    let load = pg
        .faces
        .bulk_add_faces(
            COLLECTION,
            &model(),
            (0..n).map(|i| new_face(data, i)),
            IndexBuild::Auto,
        )
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let rows = load
        .faces
        .iter()
        .enumerate()
        .map(|(i, f)| (f.seq, i as u64))
        .collect();
    (rows, secs, load)
}

/// Single-query latency (ms, sorted) and recall@10 of every query.
fn search(store: &dyn FaceStore, data: &Data, rows: &HashMap<u64, u64>) -> (Vec<f64>, f64) {
    let collection = store.describe_collection(COLLECTION).unwrap();
    let mut lat = Vec::new();
    let mut hits = 0;
    for (qi, q) in data.queries.chunks(data.dim).enumerate() {
        let t = Instant::now();
        let found = store
            .nearest(
                &collection,
                Nearest {
                    query: q,
                    distance: Distance::Euclidean,
                    k: K,
                    max_distance: None,
                    exclude: None,
                    with_embeddings: false,
                },
            )
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        let truth = &data.gt[qi * K..(qi + 1) * K];
        hits += found
            .iter()
            .filter(|n| truth.contains(&rows[&n.face.seq]))
            .count();
    }
    lat.sort_by(f64::total_cmp);
    let recall = hits as f64 / (lat.len() * K) as f64;
    (lat, recall)
}

/// The base-set row each face of an earlier run's collection holds (its
/// ExternalImageId is `row{i}`).
fn database_rows(url: &str) -> HashMap<u64, u64> {
    query(url, "", "SELECT seq, external_image_id FROM faces")
        .iter()
        .map(|r| {
            let row: String = r.get(1);
            (r.get::<_, i64>(0) as u64, row[3..].parse().unwrap())
        })
        .collect()
}

/// Runs one statement returning one bigint.
fn scalar(url: &str, statement: &str) -> i64 {
    scalar_after(url, "", statement)
}

/// Runs `setup` (any statements), then one statement returning one bigint.
fn scalar_after(url: &str, setup: &str, statement: &str) -> i64 {
    let rows = query(url, setup, statement);
    assert_eq!(rows.len(), 1, "{statement}: one row");
    rows[0].get(0)
}

/// Runs `setup` (any statements), then `statement` on a connection of its
/// own; its rows.
fn query(url: &str, setup: &str, statement: &str) -> Vec<tokio_postgres::Row> {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            let task = tokio::spawn(conn);
            client.batch_execute(setup).await.unwrap();
            let rows = client.query(statement, &[]).await.unwrap();
            drop(client);
            let _ = task.await;
            rows
        })
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = Args(
        argv.chunks(2)
            .map(|p| (p[0].trim_start_matches("--").to_owned(), p[1].clone()))
            .collect(),
    );
    let dir = PathBuf::from(args.req("dir"));
    let url = args.req("database").to_owned();
    let batch: usize = args.get("batch", 1000);
    let efs: Vec<u32> = args
        .get("ef", "40,100,200,400,1000".to_owned())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let precision = match args.get("precision", "full".to_owned()).as_str() {
        "full" => Precision::Full,
        "half" => Precision::Half,
        other => panic!("--precision {other}: expected full or half"),
    };
    let embedded = args.get("embedded", "yes".to_owned()) == "yes";
    let ingest_mode = args.get("ingest", "bulk".to_owned());
    let bulk = ingest_mode == "bulk";
    let reuse = ingest_mode == "none";
    let binary = args.get("binary", "no".to_owned()) == "yes";
    let build_memory_mb: u32 = args.get("build-memory", 2048);
    let defaults = Options::default();
    let m: u32 = args.get("m", defaults.m);
    let ef_construction: u32 = args.get("ef-construction", defaults.ef_construction);
    let prewarm = args.get("prewarm", "yes".to_owned()) == "yes";
    let embedded_efs: Vec<usize> = args
        .get("embedded-ef", String::new())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let prec = precision.type_name();

    let (base, n) = npy(
        &dir.join("base.npy"),
        |b| f32::from_le_bytes(b.try_into().unwrap()),
        4,
    );
    let (queries, nq) = npy(
        &dir.join("queries.npy"),
        |b| f32::from_le_bytes(b.try_into().unwrap()),
        4,
    );
    let (gt, _) = npy(
        &dir.join("gt.npy"),
        |b| i64::from_le_bytes(b.try_into().unwrap()) as u64,
        8,
    );
    let data = Data {
        dim: base.len() / n,
        base,
        queries,
        gt,
    };
    eprintln!("{n} faces, {nq} queries, {} dimensions", data.dim);

    // The embedded backend: redb, Kenning's index, the audit file.
    let edir = dir.join("embedded");
    if embedded {
        let _ = std::fs::remove_dir_all(&edir);
        let store = Embedded::open(&edir, [(MODEL.to_owned(), Distance::Euclidean)].into())
            .expect("opening the embedded store");
        store.set_auditor(Arc::new(Audit));
        let (rows, secs) = ingest(&store, &data, batch);
        record(
            &dir,
            serde_json::json!({"backend": "embedded", "phase": "ingest", "n": n, "seconds": secs,
                "faces_per_s": n as f64 / secs, "bytes_per_face": dir_bytes(&edir) as f64 / n as f64}),
        );
        let (lat, recall) = search(&store, &data, &rows);
        record(
            &dir,
            serde_json::json!({"backend": "embedded", "phase": "search", "n": n, "ef": "default",
                "recall10": recall, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)}),
        );
        drop(store);
        if !embedded_efs.is_empty() {
            embedded_sweep(&dir, &edir, &data, &rows, &embedded_efs);
        }
    }

    // PostgreSQL: the database must be empty of a collection named `bench`.
    let pg = Postgres::connect(
        &url,
        None,
        Options {
            precision,
            build_memory_mb,
            m,
            ef_construction,
            ..Options::default()
        },
    )
    .expect("connecting");
    pg.faces.set_auditor(Arc::new(Audit));
    let (rows, secs, load) = if reuse {
        (database_rows(&url), 0.0, BulkLoad::default())
    } else if bulk {
        bulk_ingest(&pg, &data)
    } else {
        let (rows, secs) = ingest(pg.faces.as_ref(), &data, batch);
        (rows, secs, BulkLoad::default())
    };
    let t = Instant::now();
    pg.faces.analyze(COLLECTION).unwrap();
    let analyze_s = t.elapsed().as_secs_f64();
    let verify = pg.faces.audit().verify().expect("reading the audit chain");
    assert!(verify.is_ok(), "the audit chain breaks: {verify:?}");
    let partition = "(SELECT inhrelid FROM pg_inherits WHERE inhparent = 'faces'::regclass)";
    let table = scalar(
        &url,
        "SELECT sum(pg_table_size(inhrelid))::bigint FROM pg_inherits WHERE inhparent = 'faces'::regclass",
    );
    let hnsw = scalar(
        &url,
        &format!(
            "SELECT sum(pg_relation_size(i.indexrelid))::bigint FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
             WHERE a.amname = 'hnsw' AND i.indrelid IN {partition}"
        ),
    );
    let all = scalar(
        &url,
        "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits WHERE inhparent = 'faces'::regclass",
    );
    let settings = |name: &str| {
        scalar(
            &url,
            &format!("SELECT setting::bigint * pg_size_bytes(coalesce(unit, '1')) FROM pg_settings WHERE name = '{name}'"),
        )
    };
    let shared_buffers = settings("shared_buffers");
    let t = Instant::now();
    let prewarmed = if prewarm {
        scalar_after(
            &url,
            "CREATE EXTENSION IF NOT EXISTS pg_prewarm",
            &format!(
                "SELECT sum(pg_prewarm(r))::bigint FROM (SELECT inhrelid AS r FROM pg_inherits \
                 WHERE inhparent = 'faces'::regclass UNION ALL SELECT indexrelid FROM pg_index \
                 WHERE indrelid IN {partition}) rels"
            ),
        ) * 8192
    } else {
        0
    };
    let prewarm_s = t.elapsed().as_secs_f64();
    record(
        &dir,
        serde_json::json!({"backend": "postgres", "precision": prec, "phase": "ingest", "n": n, "seconds": secs,
            "m": (!reuse).then_some(m), "ef_construction": (!reuse).then_some(ef_construction),
            "shared_buffers_bytes": shared_buffers,
            "prewarmed_bytes": prewarmed, "prewarm_s": prewarm_s,
            "ingest": ingest_mode, "copy_s": load.copy_seconds,
            "index_build_s": load.index_seconds, "index_rebuilt": load.index_rebuilt,
            "audit_records": load.audit_records, "audit_verified": verify.records,
            "faces_per_s": n as f64 / secs, "analyze_s": analyze_s,
            "table_bytes_per_face": table as f64 / n as f64,
            "hnsw_bytes_per_face": hnsw as f64 / n as f64,
            "bytes_per_face": all as f64 / n as f64}),
    );
    // Some FaceIds for the API-node load.
    let ids: Vec<String> = pg
        .faces
        .list_faces(COLLECTION, None, None, Some(1000))
        .unwrap()
        .items
        .iter()
        .map(|f| f.face_id.to_string())
        .collect();
    std::fs::write(dir.join("face-ids.txt"), ids.join("\n")).unwrap();
    drop(pg);
    drop(load);
    for &ef in &efs {
        let pg = Postgres::connect(
            &url,
            None,
            Options {
                ef_search: ef,
                precision,
                ..Options::default()
            },
        )
        .expect("connecting");
        let (lat, recall) = search(pg.faces.as_ref(), &data, &rows);
        record(
            &dir,
            serde_json::json!({"backend": "postgres", "precision": prec, "phase": "search", "n": n, "ef": ef,
                "recall10": recall, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)}),
        );
    }
    if binary {
        binary_quantized(&dir, &url, &data, &rows, &efs);
    }
}

/// Bit-quantized HNSW with an exact re-rank: an expression index over
/// `binary_quantize(embedding)::bit(d)` (Hamming distance) added to the
/// partition, asked for `ef` candidates per query (hnsw.ef_search = ef,
/// iterative scan), which are re-ranked here by exact Euclidean distance on
/// their float4 vectors. Records the index's build time and size, then
/// recall@10 and latency per candidate count.
fn binary_quantized(dir: &Path, url: &str, data: &Data, rows: &HashMap<u64, u64>, efs: &[u32]) {
    let dim = data.dim;
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        let key: i64 = client
            .query_one("SELECT key FROM collections WHERE id = $1", &[&COLLECTION])
            .await
            .unwrap()
            .get(0);
        let table = format!("faces_{key}");
        let expr = format!("(binary_quantize(embedding)::bit({dim}))");
        let t = Instant::now();
        client
            .batch_execute(&format!(
                "SET maintenance_work_mem = '2GB';
                 CREATE INDEX {table}_bit ON {table} USING hnsw ({expr} bit_hamming_ops)
                     WITH (m = 16, ef_construction = 64);
                 ANALYZE {table};"
            ))
            .await
            .unwrap();
        let build_s = t.elapsed().as_secs_f64();
        let bytes: i64 = client
            .query_one(&format!("SELECT pg_relation_size('{table}_bit')::bigint"), &[])
            .await
            .unwrap()
            .get(0);
        let n = rows.len();
        record(
            dir,
            serde_json::json!({"backend": "postgres", "precision": "bit+rerank", "phase": "ingest",
                "n": n, "index_build_s": build_s, "hnsw_bytes_per_face": bytes as f64 / n as f64}),
        );
        let sql = format!(
            "SELECT seq, embedding::real[] FROM {table} \
             ORDER BY {expr} <~> binary_quantize($1::text::vector) LIMIT $2"
        );
        let text = |q: &[f32]| {
            format!(
                "[{}]",
                q.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
            )
        };
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {sql}"), &[&text(&data.queries[..dim]), &10i64])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(plan.join("\n").contains("_bit"), "the bit index is not used:\n{}", plan.join("\n"));
        let stmt = client.prepare(&sql).await.unwrap();
        for &ef in efs {
            client
                .batch_execute(&format!(
                    "SET hnsw.ef_search = {}; SET hnsw.iterative_scan = relaxed_order",
                    ef.min(1000)
                ))
                .await
                .unwrap();
            let mut lat = Vec::new();
            let mut hits = 0;
            for (qi, q) in data.queries.chunks(dim).enumerate() {
                let q_text = text(q);
                let t = Instant::now();
                let found = client
                    .query(&stmt, &[&q_text, &i64::from(ef)])
                    .await
                    .unwrap();
                let mut ranked: Vec<(f32, u64)> = found
                    .iter()
                    .map(|r| {
                        let v: Vec<f32> = r.get(1);
                        let seq = r.get::<_, i64>(0) as u64;
                        (exact_distance(Distance::Euclidean, q, &v), seq)
                    })
                    .collect();
                ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
                ranked.truncate(K);
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                let truth = &data.gt[qi * K..(qi + 1) * K];
                hits += ranked
                    .iter()
                    .filter(|(_, seq)| truth.contains(&rows[seq]))
                    .count();
            }
            lat.sort_by(f64::total_cmp);
            record(
                dir,
                serde_json::json!({"backend": "postgres", "precision": "bit+rerank", "phase": "search",
                    "n": n, "ef": ef, "candidates": ef, "recall10": hits as f64 / (lat.len() * K) as f64,
                    "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)}),
            );
        }
        drop(client);
        let _ = task.await;
    });
}

/// The embedded store's own graph (its saved .kix file) searched at each
/// beam width in `efs`, without the store around it: recall@10 and latency
/// per width, for the comparison at equal recall.
fn embedded_sweep(dir: &Path, edir: &Path, data: &Data, rows: &HashMap<u64, u64>, efs: &[usize]) {
    let file = std::fs::read_dir(edir.join("index"))
        .expect("the embedded store's index directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "kix"))
        .expect("a saved .kix index");
    let index = kenning_index::Index::load(&file, &kenning_index::Expect::default())
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let n = index.len();
    for &ef in efs {
        let mut lat = Vec::new();
        let mut hits = 0;
        for (qi, q) in data.queries.chunks(data.dim).enumerate() {
            let t = Instant::now();
            let found = index.search_with(q, K, None, ef).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let truth = &data.gt[qi * K..(qi + 1) * K];
            hits += found
                .iter()
                .filter(|h| truth.contains(&rows[&h.id]))
                .count();
        }
        lat.sort_by(f64::total_cmp);
        record(
            dir,
            serde_json::json!({"backend": "embedded-index", "phase": "search", "n": n, "ef": ef,
                "default_ef": index.default_ef(), "recall10": hits as f64 / (lat.len() * K) as f64,
                "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)}),
        );
    }
}
