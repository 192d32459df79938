//! Crash safety of the collection store through the CLI: `kenning index`
//! and `kenning faces delete` are killed with SIGKILL at seeded moments, the
//! saved index file is truncated, corrupted or deleted now and then, and
//! after every round the data directory must open cleanly with every
//! acknowledged face present and searchable and every acknowledged deletion
//! gone.
//!
//! KENNING_CRASH_SEED=N replays a run: the seed fixes every choice (photos,
//! how many acknowledgements a kill follows, which faces are deleted and
//! searched, the damage), and faces are picked in acknowledgement order,
//! never by their random FaceIds. `kenning index` runs on one thread and is
//! killed the moment a seeded acknowledgement arrives (or a seeded fraction,
//! at most 0.8, into model loading, before any), and DeleteFaces at most 0.8
//! into its run, before its one line: so a replay acknowledges the same
//! photos and deletions. Each round prints its counts to compare. Kills
//! inside a commit are the kenning-store crash test's.
//!
//! An acknowledgement is a stdout line printed in full before the kill:
//! `kenning index` prints an image's line only after its faces are
//! committed, `kenning faces delete` prints DeletedFaces after the commit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

const COLLECTION: &str = "crash";
/// Photos used (a shuffled subset of CelebA): enough for every round to
/// index a full chunk, so the rounds, and the kills, never run out.
const PHOTOS: usize = 600;
/// Photos per `kenning index` run.
const CHUNK: usize = 40;
const ROUNDS: usize = 20;

/// splitmix64: a small seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A random point between `lo` and `hi` (fractions) of `whole`.
    fn within(&mut self, whole: Duration, lo: f64, hi: f64) -> Duration {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        whole.mul_f64(lo + u * (hi - lo))
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    fn sample<'a, T>(&mut self, v: &'a [T], n: usize) -> Vec<&'a T> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        self.shuffle(&mut idx);
        idx.into_iter().take(n).map(|i| &v[i]).collect()
    }
}

fn kenning(data: &Path) -> Command {
    let mut cmd = Command::new(common::kenning_bin());
    cmd.arg("--data")
        .arg(data)
        .arg("--models")
        .arg(common::models());
    cmd
}

/// Runs a command to completion and parses its one JSON line.
fn run_json(data: &Path, args: &[&str]) -> Value {
    let out = kenning(data).args(args).output().expect("spawning kenning");
    assert!(
        out.status.success(),
        "kenning {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kenning {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// When to SIGKILL a run.
#[derive(Clone, Copy)]
enum Kill {
    Never,
    /// This long after the start, if it is still running.
    After(Duration),
    /// As soon as its `n`th acknowledgement line arrives: tied to progress
    /// rather than to time, so the kill lands after the same photos on a
    /// fast machine and a loaded one alike (the next photo takes tens of
    /// milliseconds, a kill microseconds).
    AfterLine(usize),
}

/// What a run printed and how it went.
struct Run {
    /// The stdout lines printed in full.
    lines: Vec<Value>,
    killed: bool,
    elapsed: Duration,
    /// From the start to the first line printed.
    first_line: Option<Duration>,
}

/// Starts a command and kills it as `kill` says.
fn run_maybe_killed(data: &Path, args: &[String], kill: Kill) -> Run {
    let started = Instant::now();
    let mut child = kenning(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kenning");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // Lines are passed on as they arrive, so a kill can follow one; a line
    // cut off by the kill has no newline and is dropped.
    let (tx, rx) = std::sync::mpsc::channel::<(String, Instant)>();
    let reader = std::thread::spawn(move || {
        let mut stdout = std::io::BufReader::new(stdout);
        let mut line = String::new();
        while matches!(stdout.read_line(&mut line), Ok(n) if n > 0) {
            if line.ends_with('\n') && tx.send((line.clone(), Instant::now())).is_err() {
                break;
            }
            line.clear();
        }
    });
    let mut received = Vec::new();
    let deadline = match kill {
        Kill::Never => None,
        Kill::After(after) => Some(started + after),
        Kill::AfterLine(n) => {
            while received.len() < n {
                match rx.recv() {
                    Ok(line) => received.push(line),
                    Err(_) => break, // exited first
                }
            }
            Some(Instant::now())
        }
    };
    if let Some(deadline) = deadline {
        while Instant::now() < deadline && child.try_wait().expect("polling kenning").is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        // SIGKILL on Unix; a run that has just ended is left as it ended.
        if child.try_wait().expect("polling kenning").is_none() {
            child.kill().expect("SIGKILL");
        }
    }
    let status = child.wait().expect("waiting for kenning");
    let elapsed = started.elapsed();
    reader.join().expect("stdout reader");
    received.extend(rx.try_iter());
    let stderr = stderr.join().expect("stderr reader");
    let killed = std::os::unix::process::ExitStatusExt::signal(&status) == Some(9);
    assert!(
        killed || status.success(),
        "kenning {args:?} failed without being killed: {status}\n{stderr}"
    );
    Run {
        first_line: received.first().map(|(_, at)| *at - started),
        lines: received
            .iter()
            .map(|(l, _)| {
                serde_json::from_str(l.trim_end()).unwrap_or_else(|e| panic!("bad line ({e}): {l}"))
            })
            .collect(),
        killed,
        elapsed,
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// What the test knows from acknowledgements.
#[derive(Default)]
struct Acked {
    /// Acknowledged and not (possibly) deleted: (FaceId, photo), in the
    /// order acknowledged, so seeded picks replay.
    live: Vec<(String, PathBuf)>,
    /// Acknowledged deletions.
    deleted: BTreeSet<String>,
    /// Deletions attempted but not acknowledged: present or absent.
    uncertain: BTreeSet<String>,
    /// ExternalImageIds of photos whose indexing was cut off unacknowledged:
    /// their faces may or may not be in the store.
    unacked_photos: BTreeSet<String>,
    indexed: usize,
}

impl Acked {
    fn is_live(&self, id: &str) -> bool {
        self.live.iter().any(|(live, _)| live == id)
    }
}

/// Checks the data directory against the acknowledgements; returns the
/// number of faces in the collection.
fn verify(data: &Path, acked: &Acked, rng: &mut Rng, round: usize) -> usize {
    let described = run_json(data, &["collection", "describe", COLLECTION]);
    let face_count = described["FaceCount"].as_u64().expect("FaceCount") as usize;

    // Every face, through ListFaces' pagination.
    let mut listed: BTreeMap<String, String> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut args = vec![
            "faces",
            "list",
            "--collection",
            COLLECTION,
            "--max-results",
            "150",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let page = run_json(data, &args);
        for f in page["Faces"].as_array().expect("Faces") {
            let ext = f["ExternalImageId"].as_str().unwrap_or_default().to_owned();
            assert!(
                listed
                    .insert(str_field(f, "FaceId").to_owned(), ext)
                    .is_none(),
                "round {round}: a face listed twice"
            );
        }
        token = page["NextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        listed.len(),
        face_count,
        "round {round}: ListFaces and DescribeCollection disagree"
    );
    assert!(
        face_count >= acked.live.len(),
        "round {round}: {face_count} faces but {} acknowledged",
        acked.live.len()
    );
    for (id, _) in &acked.live {
        assert!(
            listed.contains_key(id),
            "round {round}: acknowledged face {id} lost"
        );
    }
    for id in &acked.deleted {
        assert!(
            !listed.contains_key(id),
            "round {round}: acknowledged deletion {id} came back"
        );
    }
    // No phantoms: a face nobody acknowledged comes from a photo whose
    // indexing was cut off, or from a deletion cut off.
    for (id, ext) in &listed {
        if !acked.is_live(id) && !acked.uncertain.contains(id) {
            assert!(
                acked.unacked_photos.contains(ext),
                "round {round}: face {id} of {ext} was never indexed"
            );
        }
    }

    // Every acknowledged face is searchable: SearchFaces at threshold 0
    // returns every other face of this small collection.
    for (n, (id, _)) in rng.sample(&acked.live, 3).into_iter().enumerate() {
        let r = run_json(
            data,
            &[
                "search",
                "--collection",
                COLLECTION,
                "--face-id",
                id,
                "--threshold",
                "0",
                "--max-faces",
                "4096",
            ],
        );
        assert_eq!(str_field(&r, "SearchedFaceId"), id.as_str());
        if n == 0 {
            let found: BTreeSet<&str> = r["FaceMatches"]
                .as_array()
                .expect("FaceMatches")
                .iter()
                .map(|m| str_field(&m["Face"], "FaceId"))
                .collect();
            for other in listed.keys().filter(|f| *f != id) {
                assert!(
                    found.contains(other.as_str()),
                    "round {round}: face {other} is stored but not searchable"
                );
            }
            assert_eq!(
                found.len() + 1,
                listed.len(),
                "round {round}: search returned faces that are not stored"
            );
        }
    }
    // And found by its own photo.
    for (id, photo) in rng.sample(&acked.live, 2) {
        let r = run_json(
            data,
            &[
                "search",
                "--collection",
                COLLECTION,
                photo.to_str().expect("utf-8 path"),
                "--threshold",
                "0",
                "--max-faces",
                "4096",
            ],
        );
        let matches = r["FaceMatches"].as_array().expect("FaceMatches");
        assert!(
            matches.iter().any(|m| m["Face"]["FaceId"] == id.as_str()),
            "round {round}: searching by {} did not find its face {id}",
            photo.display()
        );
    }
    face_count
}

#[derive(Default)]
struct Damage {
    truncated: usize,
    flipped: usize,
    removed: usize,
}

/// Damages the saved index file now and then: it is a cache the collection
/// service must rebuild from the store.
fn damage_index(data: &Path, rng: &mut Rng, damage: &mut Damage) {
    let path = data.join("index").join(format!("{COLLECTION}.kix"));
    let Ok(len) = std::fs::metadata(&path).map(|m| m.len()) else {
        return;
    };
    match rng.below(5) {
        0 => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("opening the index");
            f.set_len(len / 2).expect("truncating the index");
            damage.truncated += 1;
        }
        1 => {
            let mut bytes = std::fs::read(&path).expect("reading the index");
            let at = len as usize / 2 + rng.below(len as usize / 2);
            bytes[at] ^= 0x5A;
            std::fs::write(&path, bytes).expect("writing the index");
            damage.flipped += 1;
        }
        2 => {
            std::fs::remove_file(&path).expect("removing the index");
            damage.removed += 1;
        }
        _ => {}
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let Some(shared) = common::data("acknowledged_writes_survive_sigkill") else {
        return;
    };
    let celeba = shared.join("identity/celeba");
    // Decimal, or hex as the summary line prints it.
    let seed = std::env::var("KENNING_CRASH_SEED").map_or(0x6b656e6e696e67u64, |s| {
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        parsed.unwrap_or_else(|e| panic!("KENNING_CRASH_SEED={s}: {e}"))
    });
    let mut rng = Rng(seed);
    let list = std::fs::read_to_string(celeba.join("identities.csv")).expect("identities.csv");
    let mut photos: Vec<PathBuf> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .map(|f| celeba.join(f))
        .collect();
    photos.sort();
    rng.shuffle(&mut photos);
    photos.truncate(PHOTOS);

    let data =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    run_json(&data, &["collection", "create", COLLECTION]);

    let started = Instant::now();
    let mut acked = Acked::default();
    let mut damage = Damage::default();
    let (mut kills, mut delete_kills, mut cursor, mut face_count) = (0, 0, 0, 0);
    // Timings of the last uninterrupted runs, which scale the kills timed
    // before any acknowledgement: DeleteFaces' whole run (its one line comes
    // at the end) and `kenning index`'s time to its first line (model
    // loading and one photo).
    let (mut index_time, mut delete_time) = (None::<Duration>, None);
    for round in 0..ROUNDS {
        let delete_round = round % 4 == 3 && !acked.live.is_empty();
        if delete_round {
            // DeleteFaces of a few acknowledged faces (the process needs
            // ~0.5 s, most of it loading the models).
            let n = 1 + rng.below(5);
            let ids: Vec<String> = rng
                .sample(&acked.live, n)
                .into_iter()
                .map(|(id, _)| id.clone())
                .collect();
            let mut args: Vec<String> = ["faces", "delete", "--collection", COLLECTION]
                .map(String::from)
                .to_vec();
            args.extend(ids.iter().cloned());
            // Every other DeleteFaces (the first included) runs to the end,
            // so some deletions are acknowledged and the run is timed.
            let kill = match delete_time {
                Some(t) if round / 4 % 2 == 1 => Kill::After(rng.within(t, 0.2, 0.8)),
                _ => Kill::Never,
            };
            let Run {
                lines,
                killed,
                elapsed,
                ..
            } = run_maybe_killed(&data, &args, kill);
            if !killed {
                delete_time = Some(elapsed);
            }
            kills += usize::from(killed);
            delete_kills += usize::from(killed);
            acked.live.retain(|(id, _)| !ids.contains(id));
            acked.uncertain.extend(ids.iter().cloned());
            for line in &lines {
                for id in line["DeletedFaces"].as_array().expect("DeletedFaces") {
                    let id = id.as_str().expect("FaceId");
                    acked.uncertain.remove(id);
                    acked.deleted.insert(id.to_owned());
                }
            }
        } else {
            if cursor >= photos.len() {
                break;
            }
            let chunk = &photos[cursor..(cursor + CHUNK).min(photos.len())];
            // One thread: photos finish one at a time, so a kill that follows
            // an acknowledgement lands before the next one.
            let mut args: Vec<String> = ["--threads", "1", "index", "--collection", COLLECTION]
                .map(String::from)
                .to_vec();
            args.extend(chunk.iter().map(|p| p.to_string_lossy().into_owned()));
            // Most runs are killed, during model loading or in the photo after
            // some were acknowledged (at least one is left, so the kill
            // lands); the first and every fifth run to the end.
            let kill = match index_time {
                Some(first) if round % 5 != 4 && chunk.len() > 2 => {
                    match rng.below(chunk.len() - 1) {
                        0 => Kill::After(rng.within(first, 0.1, 0.8)),
                        n => Kill::AfterLine(n),
                    }
                }
                _ => Kill::Never,
            };
            let Run {
                lines,
                killed,
                first_line,
                ..
            } = run_maybe_killed(&data, &args, kill);
            if !killed {
                index_time = first_line;
            }
            kills += usize::from(killed);
            // Lines come in input order, so the acknowledged photos are a prefix.
            for (line, photo) in lines.iter().zip(chunk) {
                assert_eq!(Path::new(str_field(line, "File")), photo.as_path());
                for rec in line["FaceRecords"].as_array().expect("FaceRecords") {
                    acked
                        .live
                        .push((str_field(&rec["Face"], "FaceId").to_owned(), photo.clone()));
                    acked.indexed += 1;
                }
            }
            for photo in &chunk[lines.len()..] {
                acked.unacked_photos.insert(
                    photo
                        .file_name()
                        .expect("file name")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            // Photos cut off are indexed again by the next run, as a client
            // retrying would (a committed but unacknowledged face stays as a
            // duplicate).
            cursor += lines.len();
        }
        damage_index(&data, &mut rng, &mut damage);
        face_count = verify(&data, &acked, &mut rng, round);
        eprintln!(
            "round {round}: {} faces stored, {} acknowledged live, {} acknowledged deletions, {kills} kills so far",
            face_count,
            acked.live.len(),
            acked.deleted.len()
        );
    }
    eprintln!(
        "crash test (seed {seed:#x}): {kills} kills ({delete_kills} during DeleteFaces), {} faces acknowledged, {} \
         deletions acknowledged, {} unacknowledged deletions, {face_count} faces stored at the end, index file \
         truncated {} / corrupted {} / removed {} times, lost 0, {:.0} s",
        acked.indexed,
        acked.deleted.len(),
        acked.uncertain.len(),
        damage.truncated,
        damage.flipped,
        damage.removed,
        started.elapsed().as_secs_f64()
    );
    // 11 of the 15 `kenning index` runs are killed with photos still to go,
    // and some DeleteFaces runs.
    assert!(kills >= 11, "only {kills} kills landed");
    assert!(
        acked.indexed > 0 && !acked.deleted.is_empty(),
        "the test acknowledged too little to mean anything"
    );
    let _ = std::fs::remove_dir_all(&data);
}
