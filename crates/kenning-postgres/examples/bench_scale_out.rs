//! The PostgreSQL backend against the embedded one on the same synthetic
//! faces, through the storage interface both implement (bench/scale-out).
//!
//! `bench_scale_out --dir D --database URL [--ef 40,100,200,400,1000] [--batch 1000]
//! [--precision full|half] [--embedded yes|no]`
//! reads base.npy, queries.npy and gt.npy written by the index benchmark's
//! generator (`bench_index gen --dir D`), loads every face into one
//! collection of each backend (the embedded one in D/embedded, created anew),
//! and for each measures the ingest time, recall@10 against the exact ground
//! truth, p50/p99 single-query latency and bytes per face on disk. Each face
//! is added with its audit record, as IndexFaces would. Results are appended
//! to D/results.jsonl, one JSON object per line; D/face-ids.txt gets some of
//! the database's FaceIds for the API-node load (bench/scale-out/load.py).
//! `--precision half` builds the HNSW index over `halfvec(d)` instead of
//! `vector(d)`; `--embedded no` skips the embedded backend (for a second
//! PostgreSQL arm in the same run).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Instant;

use kenning_audit::Entry;
use kenning_core::BoundingBox;
use kenning_postgres::{Options, Postgres, Precision};
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

/// Loads every face in batches; returns the row each seq holds and the seconds taken.
fn ingest(store: &dyn FaceStore, data: &Data, batch: usize) -> (HashMap<u64, u64>, f64) {
    // dlib's recogniser (128-d, Euclidean), so `kenning serve` nodes can
    // search the collection by FaceId.
    let model = FaceModel {
        name: MODEL.into(),
        version: "dlib_face_recognition_resnet_model_v1".into(),
    };
    store
        .create_collection(
            NewCollection {
                id: COLLECTION.into(),
                face_model: model.clone(),
                dim: data.dim as u32,
                policy: "{}".into(),
            },
            Distance::Euclidean,
        )
        .unwrap();
    let mut rows = HashMap::new();
    let t = Instant::now();
    let n = data.base.len() / data.dim;
    for start in (0..n).step_by(batch) {
        let faces = (start..(start + batch).min(n))
            .map(|i| NewFace {
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
            })
            .collect();
        for (j, f) in store
            .add_faces(COLLECTION, &model, faces)
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

/// Runs one statement returning one bigint.
fn scalar(url: &str, statement: &str) -> i64 {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            let task = tokio::spawn(conn);
            let v: i64 = client.query_one(statement, &[]).await.unwrap().get(0);
            drop(client);
            let _ = task.await;
            v
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
    }

    // PostgreSQL: the database must be empty of a collection named `bench`.
    let pg = Postgres::connect(
        &url,
        None,
        Options {
            precision,
            ..Options::default()
        },
    )
    .expect("connecting");
    pg.faces.set_auditor(Arc::new(Audit));
    let (rows, secs) = ingest(pg.faces.as_ref(), &data, batch);
    let t = Instant::now();
    pg.faces.analyze(COLLECTION).unwrap();
    let analyze_s = t.elapsed().as_secs_f64();
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
    record(
        &dir,
        serde_json::json!({"backend": "postgres", "precision": prec, "phase": "ingest", "n": n, "seconds": secs,
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
    for ef in efs {
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
}
