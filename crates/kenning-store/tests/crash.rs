//! kill -9 test: a child process (this test binary, re-invoked with
//! KENNING_STORE_CRASH_CHILD) writes faces, deletions and collection churn,
//! printing an acknowledgement after each commit returns; the parent counts
//! those lines and SIGKILLs the child right after a seeded number of them
//! (or as a compaction starts), re-opens the store and checks that every
//! acknowledged write is there, byte for byte, every acknowledged deletion
//! stayed deleted, and the counters agree with the records. The child must
//! die by the SIGKILL: a child that panicked or exited fails the test, with
//! its stderr.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use kenning_core::BoundingBox;
use kenning_store::{FaceModel, NewCollection, NewFace, OnAssociated, Store, StoreError, Uuid};

const CHILD_ENV: &str = "KENNING_STORE_CRASH_CHILD";
const SEED_ENV: &str = "KENNING_STORE_CRASH_SEED";
const DIM: usize = 128;
const KILLS: u64 = 20;
const MAIN: &str = "main";

/// splitmix64: tiny, seedable, good enough to drive a test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The embedding of face number `n`: the parent recomputes it from the ack.
fn embedding(n: u64) -> Vec<f32> {
    let mut r = Rng(n);
    (0..DIM)
        .map(|_| (r.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect()
}

fn model() -> FaceModel {
    FaceModel {
        name: "crash".into(),
        version: "1".into(),
    }
}

fn ensure_collection(store: &Store, id: &str) {
    let new = NewCollection {
        id: id.into(),
        face_model: model(),
        dim: DIM as u32,
        policy: String::new(),
    };
    match store.create_collection(new) {
        Ok(_) | Err(StoreError::CollectionExists(_)) => {}
        Err(e) => panic!("create {id}: {e}"),
    }
}

/// Adds `k` faces to `coll` and acknowledges each after the commit.
fn add(store: &Store, rng: &mut Rng, coll: &str, k: u64, out: &mut impl Write) -> Vec<String> {
    let ns: Vec<u64> = (0..k).map(|_| rng.next()).collect();
    let faces = ns
        .iter()
        .map(|&n| NewFace {
            image_id: Uuid::new_v4(),
            external_image_id: Some(format!("n{n}")),
            bounding_box: BoundingBox::default(),
            confidence: 90.0,
            embedding: embedding(n),
            indexed_at_ms: None,
            pixels: None,
        })
        .collect();
    let added = store.add_faces(coll, &model(), faces).unwrap();
    let mut ids = Vec::new();
    for (f, n) in added.iter().zip(&ns) {
        writeln!(out, "face {} committed {coll} {n}", f.face_id).unwrap();
        ids.push(f.face_id.to_string());
    }
    out.flush().unwrap();
    ids
}

/// The writer, in the child process: runs until killed.
fn child(dir: &str) -> ! {
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let mut rng = Rng(seed);
    let mut out = std::io::stdout().lock();
    let store = Store::open(dir).expect("store must open after a crash");
    ensure_collection(&store, MAIN);
    let mut live: Vec<String> = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_faces(MAIN, None, token.as_deref(), Some(4096))
            .unwrap();
        live.extend(page.items.iter().map(|f| f.face_id.to_string()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    // Leading newline: libtest has just printed "test <name> ... " unterminated.
    writeln!(out, "\nopened {}", live.len()).unwrap();
    loop {
        match rng.below(100) {
            0..=64 => {
                let k = 1 + rng.below(4);
                live.extend(add(&store, &mut rng, MAIN, k, &mut out));
            }
            65..=79 if !live.is_empty() => {
                let k = (1 + rng.below(3) as usize).min(live.len());
                let picked: Vec<String> = (0..k)
                    .map(|_| live.swap_remove(rng.below(live.len() as u64) as usize))
                    .collect();
                for id in &picked {
                    writeln!(out, "deleting {id}").unwrap();
                }
                out.flush().unwrap();
                let res = store
                    .delete_faces(MAIN, &picked, OnAssociated::Disassociate)
                    .unwrap();
                for id in res.done {
                    writeln!(out, "deleted {id}").unwrap();
                }
                out.flush().unwrap();
            }
            80..=89 if !live.is_empty() => {
                // Users exercise the cross-table counters the parent checks.
                let user = format!("u{}", rng.below(5));
                if rng.below(4) == 0 {
                    let _ = store.delete_user(MAIN, &user);
                } else {
                    let _ = store.create_user(MAIN, &user);
                    let face = &live[rng.below(live.len() as u64) as usize];
                    // May hit the 100-faces limit; that is not what is tested here.
                    let _ = store.associate_faces(MAIN, &user, &[face]);
                }
            }
            90..=92 => {
                // Kills also land inside the copy-and-rename of a compaction.
                writeln!(out, "compacting").unwrap();
                out.flush().unwrap();
                store.compact().unwrap();
                writeln!(out, "compacted").unwrap();
                out.flush().unwrap();
            }
            93..=99 => {
                let coll = format!("tmp-{}", rng.next());
                ensure_collection(&store, &coll);
                add(&store, &mut rng, &coll, 3, &mut out);
                writeln!(out, "deleting collection {coll}").unwrap();
                out.flush().unwrap();
                store.delete_collection(&coll).unwrap();
                writeln!(out, "collection deleted {coll}").unwrap();
                out.flush().unwrap();
            }
            _ => {}
        }
    }
}

/// What the parent learned from acknowledgements so far.
#[derive(Default)]
struct Acks {
    faces: HashMap<String, (String, u64)>,
    deleting: HashSet<String>,
    deleted: HashSet<String>,
    colls_deleting: HashSet<String>,
    colls_deleted: HashSet<String>,
    opens: usize,
    compactions: usize,
    compactions_started: usize,
}

impl Acks {
    fn take(&mut self, line: &str) {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["face", id, "committed", coll, n] => {
                self.faces
                    .insert(id.to_string(), (coll.to_string(), n.parse().unwrap()));
            }
            ["deleting", "collection", c] => drop(self.colls_deleting.insert(c.to_string())),
            ["collection", "deleted", c] => drop(self.colls_deleted.insert(c.to_string())),
            ["deleting", id] => drop(self.deleting.insert(id.to_string())),
            ["deleted", id] => drop(self.deleted.insert(id.to_string())),
            ["opened", _] => self.opens += 1,
            ["compacting"] => self.compactions_started += 1,
            ["compacted"] => self.compactions += 1,
            _ => {} // libtest's own chatter
        }
    }
}

/// Checks the re-opened store against the acknowledgements; returns faces checked.
fn check(store: &Store, acks: &Acks) -> usize {
    let report = store.verify().unwrap();
    assert!(
        report.problems.is_empty(),
        "inconsistent after crash: {:?}",
        report.problems
    );
    for c in &acks.colls_deleted {
        assert!(
            matches!(
                store.describe_collection(c),
                Err(StoreError::CollectionNotFound(_))
            ),
            "{c} came back"
        );
    }
    let mut checked = 0;
    for (id, (coll, n)) in &acks.faces {
        let got = match store.face_embedding(coll, id) {
            Ok((face, v)) => Some((face, v)),
            Err(StoreError::FaceNotFound(_) | StoreError::CollectionNotFound(_)) => None,
            Err(e) => panic!("{id}: {e}"),
        };
        if acks.deleted.contains(id) || acks.colls_deleted.contains(coll) {
            assert!(got.is_none(), "acknowledged deletion of {id} undone");
            continue;
        }
        let maybe_gone = acks.deleting.contains(id) || acks.colls_deleting.contains(coll);
        match got {
            Some((face, v)) => {
                assert_eq!(face.external_image_id, Some(format!("n{n}")));
                assert!(
                    v.iter()
                        .zip(embedding(*n))
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{id} embedding changed"
                );
                checked += 1;
            }
            None => assert!(maybe_gone, "acknowledged face {id} lost"),
        }
    }
    checked
}

/// When to kill a child.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// Right after its `n`th line (acknowledgements and announcements).
    AfterLine(usize),
    /// As the first compaction it announces after its `n`th line starts.
    InCompaction(usize),
}

impl Kill {
    fn due(self, lines: usize, line: &str) -> bool {
        match self {
            Kill::AfterLine(n) => lines >= n,
            Kill::InCompaction(n) => lines > n && line.trim() == "compacting",
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x004b_454e_4e49_4e47);
    let mut acks = Acks::default();
    let started = Instant::now();
    let mut checked = 0;
    let mut in_compaction = 0;
    for i in 0..KILLS {
        let kill = if rng.below(4) == 0 {
            Kill::InCompaction(rng.below(20) as usize)
        } else {
            Kill::AfterLine(1 + rng.below(60) as usize)
        };
        let mut child = Command::new(&exe)
            .args([
                "acknowledged_writes_survive_kill_9",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(SEED_ENV, (1000 + i).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // Lines after "opened", counted as they arrive; the kill follows the
        // one `kill` names at once, so it lands in the next operation.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut counted = 0;
        let mut opened = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            acks.take(&line);
            if opened {
                counted += 1;
                if kill.due(counted, &line) {
                    child.kill().unwrap(); // SIGKILL on Unix
                    in_compaction += usize::from(matches!(kill, Kill::InCompaction(_)));
                    break;
                }
            }
            opened |= line.starts_with("opened ");
        }
        // Whatever the child printed before it died is acknowledged too.
        for line in lines.map_while(Result::ok) {
            acks.take(&line);
        }
        let status = child.wait().unwrap();
        let stderr = stderr.join().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "child {i} ({kill:?}) was not killed by SIGKILL but ended with {status}; stderr:\n{stderr}"
        );
        let store = Store::open(dir.path()).expect("store must open cleanly after kill -9");
        checked = check(&store, &acks);
    }
    let in_flight = acks.deleting.difference(&acks.deleted).count();
    eprintln!(
        "crash test: {KILLS} kills ({in_compaction} as a compaction started), {} child opens, {} compactions \
         ({} cut short by a kill), {} faces acknowledged, {} deletions acknowledged ({in_flight} in flight at a \
         kill), {} collections deleted, {checked} faces verified byte-exact, nothing lost, {:.1}s",
        acks.opens,
        acks.compactions,
        acks.compactions_started - acks.compactions,
        acks.faces.len(),
        acks.deleted.len(),
        acks.colls_deleted.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(acks.opens, KILLS as usize, "every child opened the store");
    assert!(
        acks.compactions_started > acks.compactions,
        "no kill landed in a compaction"
    );
    assert!(acks.faces.len() > 50, "too little work to mean anything");
}
