//! The log against real files: appends, tampering of every kind, torn
//! writes, concurrent writers and exports.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kenning_audit::{
    export, records, verify, AuditError, AuditLog, Candidate, Entry, Filter, Record, VerifyReport,
};
use sha2::{Digest, Sha256};

fn entry(i: usize) -> Entry {
    let mut e = Entry {
        request_id: Some(format!("req-{i:04}")),
        operation: [
            "SearchFacesByImage",
            "IndexFaces",
            "DeleteFaces",
            "PutPolicy",
        ][i % 4]
            .into(),
        outcome: if i % 3 == 2 {
            "AccessDeniedException".into()
        } else {
            "ok".into()
        },
        ..Entry::default()
    };
    match i % 4 {
        0 => {
            e.access_key = Some("AKIDEXAMPLE".into());
            e.role = Some("investigator".into());
            e.collection = Some("watchlist".into());
            e.face_count = Some(1000 + i as u64);
            e.threshold = Some(80.5);
            e.false_match_rate = Some(1e-5);
            e.expected_false_matches = Some(0.01 * i as f64);
            e.probe_sha256 = Some(format!("{:064x}", i * 7919));
            e.candidates = vec![
                Candidate {
                    face_id: Some(format!("face-{i:03}-abc")),
                    user_id: Some("user-1".into()),
                    external_image_id: Some("img.jpg".into()),
                    similarity: 97.25,
                },
                Candidate {
                    face_id: Some(format!("face-{i:03}-def")),
                    user_id: None,
                    external_image_id: None,
                    similarity: 0.1 + 0.2,
                },
            ];
            e.case = Some(format!("CASE-{}", i % 3));
            e.purpose = Some("missing person \"Ünïcødé\" ✓\nsecond line".into());
        }
        1 => {
            e.collection = Some("watchlist".into());
            e.face_count = Some(3);
            e.details = Some(serde_json::json!({"added": ["a", "b", "c"], "n": 3, "x": null}));
        }
        2 => {
            e.message = Some("role viewer may not delete faces".into());
            e.details = Some(serde_json::json!({"removed": [format!("face-{i}")]}));
        }
        _ => {
            e.details =
                Some(serde_json::json!({"policy": {"retention_days": 30, "ratio": 1.0 / 3.0}}));
            e.case = Some("CASE-1".into());
        }
    }
    e
}

/// A log of `n` records in a fresh directory, with the hashes append returned.
fn log_with(n: usize) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let hashes = (0..n).map(|i| log.append(entry(i)).unwrap().1).collect();
    (dir, path, hashes)
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    text.lines().map(str::to_string).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn all_records(path: &Path) -> Vec<(Record, String)> {
    records(path).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Asserts the report stops at `line` for `why`, having accepted what came before.
fn assert_bad(report: &VerifyReport, line: u64, seq: Option<u64>, why: &str, hashes: &[String]) {
    let bad = report.first_bad.as_ref().expect("tampering went unnoticed");
    assert!(!report.is_ok());
    assert_eq!(bad.line, line, "{bad:?}");
    assert_eq!(bad.seq, seq, "{bad:?}");
    assert!(
        bad.reason.contains(why),
        "{:?} does not say {why:?}",
        bad.reason
    );
    assert_eq!(report.records, line - 1);
    let head = (line >= 2).then(|| hashes[line as usize - 2].clone());
    assert_eq!(report.head, head);
}

fn replace_byte(line: &mut String, at: usize, new: u8) {
    let mut bytes = std::mem::take(line).into_bytes();
    assert_ne!(bytes[at], new);
    bytes[at] = new;
    *line = String::from_utf8(bytes).unwrap();
}

#[test]
fn appended_records_verify_and_read_back_exactly() {
    let (dir, path, hashes) = log_with(10);
    let report = verify(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 10);
    assert_eq!(report.head.as_deref(), Some(hashes[9].as_str()));

    let read = all_records(&path);
    assert_eq!(read.len(), 10);
    let mut prev = "0".repeat(64);
    for (i, (record, hash)) in read.iter().enumerate() {
        assert_eq!(record.entry, entry(i), "record {}", i + 1);
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.prev, prev);
        assert_eq!(record.time, kenning_audit::format_time(record.time_ms));
        assert_eq!(hash, &hashes[i]);
        prev = hash.clone();
    }
    // Floats come back bit for bit, including ones that need 17 digits.
    assert_eq!(read[0].0.entry.candidates[1].similarity, 0.1 + 0.2);

    // The layout is the documented one, and empty fields stay out of it.
    let lines = read_lines(&path);
    assert!(lines[1].starts_with(&format!(
        "{{\"hash\":\"{}\",\"record\":{{\"seq\":2,\"time\":\"",
        hashes[1]
    )));
    assert!(lines[1].contains(&format!(
        ",\"prev\":\"{}\",\"request_id\":\"req-0001\",\"operation\":\"IndexFaces\",",
        hashes[0]
    )));
    for absent in ["message", "candidates", "threshold", "access_key"] {
        assert!(!lines[1].contains(&format!("\"{absent}\"")), "{}", lines[1]);
    }
    // The hash covers the record's bytes with the domain prefix.
    let record_bytes = &lines[1][lines[1].find("\"record\":").unwrap() + 9..lines[1].len() - 1];
    let mut h = Sha256::new();
    h.update(b"kenning-audit-v1\n");
    h.update(record_bytes.as_bytes());
    assert_eq!(hex::encode(h.finalize()), hashes[1]);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(dir);
}

#[test]
fn open_creates_missing_directories_and_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/audit.jsonl");
    let (_, first) = AuditLog::open(&path).unwrap().append(entry(0)).unwrap();
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.path(), path);
    let (record, _) = log.append(entry(1)).unwrap();
    assert_eq!((record.seq, record.prev), (2, first));
    assert!(verify(&path).unwrap().is_ok());
}

#[test]
fn a_changed_byte_in_a_record_is_found_on_its_line() {
    for k in [1usize, 5, 9] {
        // Records 1, 5 and 9 are searches with candidates (entry(i % 4 == 0)).
        let (_dir, path, hashes) = log_with(10);
        let mut lines = read_lines(&path);
        let at = lines[k - 1].find("\"similarity\":").unwrap() + 13;
        replace_byte(&mut lines[k - 1], at, b'8'); // 97.25 -> 87.25
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        assert_bad(
            &report,
            k as u64,
            Some(k as u64),
            "do not match its hash (modified)",
            &hashes,
        );
    }
    let (_dir, path, hashes) = log_with(10);
    let mut lines = read_lines(&path);
    let at = lines[4].find("\"face_id\":\"face").unwrap() + 11;
    replace_byte(&mut lines[4], at, b'g');
    write_lines(&path, &lines);
    assert_bad(&verify(&path).unwrap(), 5, Some(5), "(modified)", &hashes);
}

#[test]
fn a_change_that_keeps_the_meaning_is_still_found() {
    // A verifier that re-serialised would accept these; hashing the bytes
    // as written does not.
    let (_dir, path, hashes) = log_with(10);
    let original = read_lines(&path);
    for (k, from, to) in [
        (5, "97.25", "97.250"),
        (6, "\"face_count\":3", "\"face_count\": 3"),
        (
            7,
            "\"operation\":\"DeleteFaces\"",
            "\"operation\":\"Delete\\u0046aces\"",
        ),
    ] {
        let mut lines = original.clone();
        assert!(lines[k - 1].contains(from), "{}", lines[k - 1]);
        lines[k - 1] = lines[k - 1].replacen(from, to, 1);
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        assert_bad(&report, k as u64, Some(k as u64), "(modified)", &hashes);
    }
}

#[test]
fn a_changed_byte_in_a_hash_is_found_on_its_line() {
    for k in [1usize, 4, 10] {
        let (_dir, path, hashes) = log_with(10);
        let mut lines = read_lines(&path);
        let at = "{\"hash\":\"".len() + 17;
        let new = if lines[k - 1].as_bytes()[at] == b'0' {
            b'1'
        } else {
            b'0'
        };
        replace_byte(&mut lines[k - 1], at, new);
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        assert_bad(&report, k as u64, Some(k as u64), "(modified)", &hashes);
    }
}

#[test]
fn a_deleted_record_is_found_where_it_was() {
    let (_dir, path, hashes) = log_with(10);
    let mut lines = read_lines(&path);
    lines.remove(5 - 1);
    write_lines(&path, &lines);
    let report = verify(&path).unwrap();
    assert_bad(
        &report,
        5,
        Some(6),
        "seq 6 where 5 was expected (a record was removed, inserted or reordered)",
        &hashes,
    );
}

#[test]
fn deleting_the_first_record_breaks_line_one() {
    let (_dir, path, hashes) = log_with(10);
    let lines = read_lines(&path);
    write_lines(&path, &lines[1..]);
    assert_bad(
        &verify(&path).unwrap(),
        1,
        Some(2),
        "seq 2 where 1 was expected",
        &hashes,
    );
}

#[test]
fn swapped_records_are_found_at_the_first_of_them() {
    for k in [1usize, 5, 9] {
        let (_dir, path, hashes) = log_with(10);
        let mut lines = read_lines(&path);
        lines.swap(k - 1, k);
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        let why = format!("seq {} where {k} was expected", k + 1);
        assert_bad(&report, k as u64, Some(k as u64 + 1), &why, &hashes);
    }
}

#[test]
fn a_renumbered_record_is_caught_by_prev() {
    // Someone who deletes record 5 and rewrites seq (and the hash) of the
    // record after it still cannot fake its prev.
    let (_dir, path, hashes) = log_with(10);
    let mut lines = read_lines(&path);
    lines.remove(5 - 1);
    let six = &lines[5 - 1];
    let record = &six[six.find("\"record\":").unwrap() + 9..six.len() - 1];
    assert!(record.starts_with("{\"seq\":6,"));
    let record = record.replacen("\"seq\":6,", "\"seq\":5,", 1);
    let mut h = Sha256::new();
    h.update(b"kenning-audit-v1\n");
    h.update(record.as_bytes());
    lines[4] = format!(
        "{{\"hash\":\"{}\",\"record\":{record}}}",
        hex::encode(h.finalize())
    );
    write_lines(&path, &lines);
    assert_bad(
        &verify(&path).unwrap(),
        5,
        Some(5),
        "prev does not match the hash of the record before it",
        &hashes,
    );
}

#[test]
fn truncation_is_visible_only_through_the_head() {
    let (_dir, path, hashes) = log_with(10);
    let lines = read_lines(&path);
    write_lines(&path, &lines[..8]);
    let report = verify(&path).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.records, 8);
    assert_ne!(report.head.as_deref(), Some(hashes[9].as_str()));
    assert_eq!(report.head.as_deref(), Some(hashes[7].as_str()));
}

#[test]
fn garbage_lines_are_reported_not_errors() {
    let (_dir, path, hashes) = log_with(4);
    let lines = read_lines(&path);
    let cases: [(&str, &str); 6] = [
        ("", "not a JSON record"),
        ("hello", "not a JSON record"),
        (
            "{\"hash\":\"ab\",\"record\":{\"seq\":3}}",
            "not a JSON record",
        ),
        ("{\"hash\":\"ab\",\"record\":[1]}", "not a JSON record"),
        (
            "{\"hash\":\"ab\",\"record\":{}, \"extra\":1}",
            "not a JSON record",
        ),
        ("{\"hash\":\"AB\",\"record\":{}}", "not a JSON record"),
    ];
    for (garbage, why) in cases {
        let mut l = lines.clone();
        l.insert(2, garbage.to_string());
        write_lines(&path, &l);
        let report = verify(&path).unwrap();
        assert_bad(
            &report,
            3,
            report.first_bad.as_ref().unwrap().seq,
            why,
            &hashes,
        );
    }
    // The seq is reported when the record is readable that far.
    let mut l = lines.clone();
    l[2] = l[2].replacen("\"operation\":", "\"operation\":1,\"x\":", 1);
    write_lines(&path, &l);
    assert_bad(&verify(&path).unwrap(), 3, Some(3), "malformed", &hashes);
    // An upper-case hash is not the hash the log wrote.
    let mut l = lines.clone();
    l[2] = l[2].replacen(&hashes[2], &hashes[2].to_uppercase(), 1);
    write_lines(&path, &l);
    assert_bad(
        &verify(&path).unwrap(),
        3,
        Some(3),
        "64 lowercase hex",
        &hashes,
    );
}

#[test]
fn an_overlong_line_is_a_bad_record_not_an_allocation() {
    let (_dir, path, hashes) = log_with(2);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    let long = vec![b'x'; kenning_audit::MAX_LINE_BYTES + 1];
    f.write_all(&long).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    assert_bad(&verify(&path).unwrap(), 3, None, "longer than", &hashes);
    let mut it = records(&path).unwrap();
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(it.next(), Some(Err(AuditError::Corrupt { .. }))));
    assert!(it.next().is_none());
    // Nothing can be chained onto it either.
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt { .. })
    ));
}

#[test]
fn a_torn_tail_is_cut_off_and_the_chain_goes_on() {
    let (_dir, path, hashes) = log_with(10);
    let good_len = fs::metadata(&path).unwrap().len();
    let lines = read_lines(&path);
    let half = &lines[3][..lines[3].len() / 2];
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(half.as_bytes())
        .unwrap();
    assert_bad(&verify(&path).unwrap(), 11, None, "no newline", &hashes);

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    let (record, hash) = log.append(entry(10)).unwrap();
    assert_eq!((record.seq, &record.prev), (11, &hashes[9]));
    let report = verify(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.records, report.head), (11, Some(hash)));
}

#[test]
fn a_torn_tail_left_by_another_writer_is_cut_before_appending() {
    let (_dir, path, hashes) = log_with(3);
    let log = AuditLog::open(&path).unwrap();
    // Another process crashes mid-append after this handle opened.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"hash\":\"0123")
        .unwrap();
    let (record, _) = log.append(entry(3)).unwrap();
    assert_eq!((record.seq, &record.prev), (4, &hashes[2]));
    assert!(verify(&path).unwrap().is_ok());
}

#[test]
fn long_records_and_long_torn_tails_span_many_read_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let big = |n: usize| Entry {
        operation: "IndexFaces".into(),
        outcome: "ok".into(),
        message: Some("m".repeat(n)),
        ..Entry::default()
    };
    log.append(big(300_000)).unwrap();
    let (_, h2) = log.append(big(500_000)).unwrap();
    drop(log);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&vec![b'{'; 400_000])
        .unwrap();
    let log = AuditLog::open(&path).unwrap();
    let (record, _) = log.append(big(10)).unwrap();
    assert_eq!((record.seq, record.prev), (3, h2));
    let report = verify(&path).unwrap();
    assert!(report.is_ok() && report.records == 3, "{report:?}");
}

#[test]
fn open_reads_only_the_tail() {
    // Garbage at the start does not stop open (it never reads that far),
    // but verify still finds it.
    let (_dir, path, hashes) = log_with(3);
    let mut lines = read_lines(&path);
    lines[0] = "not json at all".into();
    write_lines(&path, &lines);
    let log = AuditLog::open(&path).unwrap();
    let (record, _) = log.append(entry(3)).unwrap();
    assert_eq!((record.seq, &record.prev), (4, &hashes[2]));
    assert_bad(
        &verify(&path).unwrap(),
        1,
        None,
        "not a JSON record",
        &hashes,
    );
}

#[test]
fn open_refuses_to_chain_onto_a_bad_last_record() {
    let (_dir, path, _) = log_with(3);
    let mut lines = read_lines(&path);
    let pristine = lines.clone();
    lines[2] = lines[2].replacen(
        "\"outcome\":\"AccessDeniedException\"",
        "\"outcome\":\"ok\"",
        1,
    );
    write_lines(&path, &lines);
    let err = AuditLog::open(&path).unwrap_err();
    assert!(
        matches!(&err, AuditError::Corrupt { reason, .. } if reason.contains("modified")),
        "{err}"
    );
    lines[2] = "garbage".into();
    write_lines(&path, &lines);
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt { .. })
    ));
    write_lines(&path, &pristine);
    AuditLog::open(&path).unwrap();
}

#[test]
fn two_handles_on_one_file_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let a = AuditLog::open(&path).unwrap();
    let b = AuditLog::open(&path).unwrap();
    let mut last = "0".repeat(64);
    for i in 0..20 {
        let log = if i % 2 == 0 { &a } else { &b };
        let (record, hash) = log.append(entry(i)).unwrap();
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.prev, last);
        last = hash;
    }
    let report = verify(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.records, report.head), (20, Some(last)));
}

#[test]
fn concurrent_appends_through_one_handle_leave_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| log.append(entry(t * 50 + i)).unwrap().0.seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let report = verify(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 200);
    let in_file: Vec<u64> = all_records(&path).iter().map(|(r, _)| r.seq).collect();
    assert_eq!(in_file, (1..=200).collect::<Vec<_>>());
}

#[test]
fn concurrent_appends_through_several_handles_leave_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("audit.jsonl"));
    let handles: Vec<_> = (0..2)
        .map(|_| Arc::new(AuditLog::open(&path).unwrap()))
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&handles[t % 2]);
            std::thread::spawn(move || {
                for i in 0..25 {
                    log.append(entry(t * 25 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 100);
}

#[test]
fn entries_json_cannot_hold_are_refused_without_touching_the_file() {
    let (_dir, path, hashes) = log_with(2);
    let log = AuditLog::open(&path).unwrap();
    let before = fs::read(&path).unwrap();
    let mut bad = entry(0);
    bad.candidates[1].similarity = f64::NAN;
    assert!(
        matches!(log.append(bad), Err(AuditError::InvalidEntry(m)) if m.contains("candidates[1]"))
    );
    let bad = Entry {
        threshold: Some(f64::INFINITY),
        ..entry(1)
    };
    assert!(matches!(log.append(bad), Err(AuditError::InvalidEntry(_))));
    let huge = Entry {
        message: Some("x".repeat(kenning_audit::MAX_LINE_BYTES)),
        ..entry(1)
    };
    assert!(matches!(log.append(huge), Err(AuditError::InvalidEntry(_))));
    assert_eq!(fs::read(&path).unwrap(), before);
    let (record, _) = log.append(entry(2)).unwrap();
    assert_eq!((record.seq, &record.prev), (3, &hashes[1]));
}

#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_is_an_error() {
    // /dev/full (always there on Linux) accepts the open and the lock, and
    // refuses every write.
    let path = Path::new("/dev/full");
    let log = AuditLog::open(path).unwrap();
    assert!(matches!(log.append(entry(0)), Err(AuditError::Io { .. })));
    assert!(matches!(log.append(entry(1)), Err(AuditError::Io { .. })));
}

#[test]
fn export_selects_by_time_and_case() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // A clock that moves 5 ms between records, so time bounds fall between them.
    let start = 1_767_225_600_000u64; // 2026-01-01T00:00:00Z
    let tick = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start));
    let clock = tick.clone();
    let log = AuditLog::open(&path)
        .unwrap()
        .with_clock(move || clock.fetch_add(5, std::sync::atomic::Ordering::Relaxed));
    for i in 1..=10u64 {
        let case = match i {
            2 | 5 | 8 => Some("C-1".to_string()),
            3 => Some("C-10".to_string()),
            _ => None,
        };
        log.append(Entry {
            case,
            ..entry(i as usize)
        })
        .unwrap();
    }
    let all = all_records(&path);
    let t: Vec<u64> = all.iter().map(|(r, _)| r.time_ms).collect();
    assert_eq!(t, (0..10).map(|i| start + 5 * i).collect::<Vec<_>>());
    assert_eq!(all[0].0.time, "2026-01-01T00:00:00.000Z");

    let run = |filter: Filter| {
        let mut out = Vec::new();
        let n = export(&path, &filter, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let seqs: Vec<u64> = text
            .lines()
            .map(|line| {
                let record: Record = serde_json::from_str(line).unwrap();
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let hash = value["hash"].as_str().unwrap();
                assert_eq!(hash, all[record.seq as usize - 1].1);
                assert_eq!(record, all[record.seq as usize - 1].0);
                // Each exported record can be checked on its own.
                let original = line.replacen(&format!("\"hash\":\"{hash}\","), "", 1);
                let mut h = Sha256::new();
                h.update(b"kenning-audit-v1\n");
                h.update(original.as_bytes());
                assert_eq!(hex::encode(h.finalize()), hash);
                record.seq
            })
            .collect();
        assert_eq!(n as usize, seqs.len());
        seqs
    };
    let case = |c: &str| Some(c.to_string());
    assert_eq!(run(Filter::default()), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        run(Filter {
            from_ms: Some(t[3]),
            to_ms: Some(t[7]),
            ..Filter::default()
        }),
        [4, 5, 6, 7]
    );
    assert_eq!(
        run(Filter {
            from_ms: Some(t[3] + 1),
            ..Filter::default()
        }),
        [5, 6, 7, 8, 9, 10]
    );
    assert_eq!(
        run(Filter {
            to_ms: Some(t[0] + 1),
            ..Filter::default()
        }),
        [1]
    );
    assert_eq!(
        run(Filter {
            to_ms: Some(t[0]),
            ..Filter::default()
        }),
        Vec::<u64>::new()
    );
    assert_eq!(
        run(Filter {
            case: case("C-1"),
            ..Filter::default()
        }),
        [2, 5, 8]
    );
    assert_eq!(
        run(Filter {
            from_ms: Some(t[2]),
            to_ms: Some(t[7]),
            case: case("C-1"),
            ..Filter::default()
        }),
        [5]
    );
    assert_eq!(
        run(Filter {
            case: case("C-"),
            ..Filter::default()
        }),
        Vec::<u64>::new()
    );
}

#[test]
fn reading_a_missing_log_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.jsonl");
    assert!(matches!(verify(&path), Err(AuditError::Io { .. })));
    assert!(matches!(records(&path), Err(AuditError::Io { .. })));
    let mut out = Vec::new();
    assert!(matches!(
        export(&path, &Filter::default(), &mut out),
        Err(AuditError::Io { .. })
    ));
}

#[test]
fn an_empty_log_verifies_with_no_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    AuditLog::open(&path).unwrap();
    let report = verify(&path).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            records: 0,
            head: None,
            first_bad: None
        }
    );
    assert!(report.is_ok());
}

#[test]
fn any_finite_float_reads_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    // Arbitrary bit patterns cover 17-digit mantissas and extreme exponents.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let values: Vec<f64> = std::iter::from_fn(|| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(f64::from_bits(x))
    })
    .filter(|v| v.is_finite())
    .take(5000)
    .chain([0.1 + 0.2, 5e-324, f64::MAX, -0.0, 99.99999999999999])
    .collect();
    let candidates = values
        .iter()
        .map(|&similarity| Candidate {
            face_id: None,
            user_id: None,
            external_image_id: None,
            similarity,
        })
        .collect();
    let logged = Entry {
        operation: "SearchFacesByImage".into(),
        outcome: "ok".into(),
        threshold: Some(values[7]),
        candidates,
        ..Entry::default()
    };
    log.append(logged.clone()).unwrap();
    let read = &all_records(&path)[0].0.entry;
    for (a, b) in read.candidates.iter().zip(&logged.candidates) {
        assert_eq!(a.similarity.to_bits(), b.similarity.to_bits());
    }
    assert_eq!(
        read.threshold.map(f64::to_bits),
        logged.threshold.map(f64::to_bits)
    );
}
