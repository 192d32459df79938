//! The writer: appending records to the chain.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::io_err;
use crate::read::{decode, record_hash, LineKind, ZERO_HASH};
use crate::{format_time, AuditError, Entry, Record, MAX_LINE_BYTES};

/// How much of the file is read at a time when looking backwards for the
/// start of the last line.
const TAIL_CHUNK: usize = 64 << 10;

/// An open audit log that records are appended to.
///
/// Share one handle between threads (it is `Send + Sync`); handles in other
/// processes, or other handles in this one, may append to the same file at
/// the same time and the chain stays intact.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    tail: Mutex<Tail>,
    clock: Clock,
}

/// Where a record's time comes from: milliseconds since 1970.
type Clock = Box<dyn Fn() -> Result<u64, AuditError> + Send + Sync>;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

/// Where the chain ends, as this handle last saw it.
#[derive(Debug)]
struct Tail {
    /// File length after the last record.
    len: u64,
    seq: u64,
    hash: String,
    /// Set when a failed append may have left the file other than `len`
    /// says, so the next append must look again.
    stale: bool,
}

/// Holds the cross-process lock until dropped, so every early return
/// releases it.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn exclusive(file: &'a File, path: &Path) -> Result<Self, AuditError> {
        file.lock().map_err(io_err(path))?;
        Ok(Locked(file))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the file releases the lock too; nothing useful to do here.
        let _ = self.0.unlock();
    }
}

impl AuditLog {
    /// Opens the log at `path`, creating it (and its parent directories) if
    /// missing, and finds where the chain ends by reading only the file's
    /// tail.
    ///
    /// A final line without its newline is an append that crashed before it
    /// was acknowledged; it is cut off. Fails with [`AuditError::Corrupt`]
    /// if the last complete line is not a record matching its hash, because
    /// new records could not be chained onto it.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = match options.clone().create_new(true).open(path) {
            Ok(file) => {
                // Make the new directory entry durable too, or a crash could
                // lose the file with its first acknowledged records. Best
                // effort: not every file system can sync a directory.
                #[cfg(unix)]
                let _ = File::open(parent.unwrap_or(Path::new("."))).and_then(|d| d.sync_all());
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                options.open(path).map_err(io_err(path))?
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        let tail = {
            let _lock = Locked::exclusive(&file, path)?;
            load_tail(&file, path)?
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            tail: Mutex::new(tail),
            clock: Box::new(now_ms),
        })
    }

    /// Stamps records with `clock`'s time (milliseconds since 1970) instead
    /// of the system clock's: for tests that need known times.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> AuditLog {
        self.clock = Box::new(move || Ok(clock()));
        self
    }

    /// The file this log writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as the next record, synced to disk before returning,
    /// and returns the record with its hash.
    ///
    /// Any error means the record is not acknowledged: callers should fail
    /// the operation they meant to log. A failed write is cut back off the
    /// file where possible, and the next append re-reads the tail in any
    /// case, so a fragment is never chained onto.
    pub fn append(&self, entry: Entry) -> Result<(Record, String), AuditError> {
        let mut tail = self.lock_tail();
        let _lock = Locked::exclusive(&self.file, &self.path)?;

        let len = self.file.metadata().map_err(io_err(&self.path))?.len();
        if tail.stale || len != tail.len {
            // Another handle (or process) appended, or our last write failed.
            *tail = load_tail(&self.file, &self.path)?;
        }

        let seq = tail.seq.checked_add(1).ok_or_else(|| AuditError::Corrupt {
            path: self.path.clone(),
            reason: "the last record's seq is the largest possible".into(),
        })?;
        let sealed = seal(seq, &tail.hash, (self.clock)()?, entry)?;
        let (record, hash) = (sealed.record, sealed.hash);
        let line = sealed.line + "\n";

        let written = (|| {
            let mut f = &self.file;
            f.seek(SeekFrom::Start(tail.len))?;
            f.write_all(line.as_bytes())?;
            self.file.sync_data()
        })();
        if let Err(e) = written {
            // Don't leave a fragment for a later append to chain onto.
            // Should this fail too, `stale` makes the next append re-read the
            // tail, which cuts off a fragment without a newline.
            let _ = self
                .file
                .set_len(tail.len)
                .and_then(|()| self.file.sync_data());
            tail.stale = true;
            return Err(io_err(&self.path)(e));
        }
        tail.len += line.len() as u64;
        tail.seq = seq;
        tail.hash.clone_from(&hash);
        Ok((record, hash))
    }

    fn lock_tail(&self) -> MutexGuard<'_, Tail> {
        match self.tail.lock() {
            Ok(tail) => tail,
            Err(poisoned) => {
                // A panic mid-append leaves the file as the lock-protected
                // code left it; re-reading the tail makes that safe.
                self.tail.clear_poison();
                let mut tail = poisoned.into_inner();
                tail.stale = true;
                tail
            }
        }
    }
}

/// A record ready to be stored: the record, its hash and its line (without
/// the newline), exactly as [`crate::verify`] will read it back.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The record.
    pub record: Record,
    /// Its hash.
    pub hash: String,
    /// `{"hash":"<hash>","record":{...}}`: the line a log stores.
    pub line: String,
}

/// Chains `entry` onto a trail whose last record is `seq - 1` with hash
/// `prev`, at `time_ms`: what every trail, file or database, stores.
pub fn seal(seq: u64, prev: &str, time_ms: u64, entry: Entry) -> Result<Sealed, AuditError> {
    check_entry(&entry)?;
    let record = Record {
        seq,
        time: format_time(time_ms),
        time_ms,
        prev: prev.to_owned(),
        entry,
    };
    let json = serde_json::to_string(&record).map_err(AuditError::Encode)?;
    let hash = record_hash(json.as_bytes());
    let line = format!("{{\"hash\":\"{hash}\",\"record\":{json}}}");
    if line.len() > MAX_LINE_BYTES {
        return Err(AuditError::InvalidEntry(format!(
            "the record would be {} bytes; the most a line may hold is {MAX_LINE_BYTES}",
            line.len()
        )));
    }
    Ok(Sealed { record, hash, line })
}

/// Milliseconds since the Unix epoch, as records are stamped.
pub fn now_ms() -> Result<u64, AuditError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| AuditError::InvalidTime("the system clock is before 1970".into()))
}

/// JSON has no NaN or infinity: serde_json would write `null`, and a
/// similarity of `null` would make the record unreadable forever.
fn check_entry(entry: &Entry) -> Result<(), AuditError> {
    let mut numbers = vec![
        ("threshold".to_string(), entry.threshold),
        ("false_match_rate".to_string(), entry.false_match_rate),
        (
            "expected_false_matches".to_string(),
            entry.expected_false_matches,
        ),
    ];
    for (i, c) in entry.candidates.iter().enumerate() {
        numbers.push((format!("candidates[{i}].similarity"), Some(c.similarity)));
    }
    for (name, value) in numbers {
        if let Some(v) = value.filter(|v| !v.is_finite()) {
            return Err(AuditError::InvalidEntry(format!(
                "{name} is {v}, which JSON cannot represent"
            )));
        }
    }
    Ok(())
}

/// Finds where the chain ends, cutting off a torn final line first.
/// The caller holds the exclusive file lock.
fn load_tail(file: &File, path: &Path) -> Result<Tail, AuditError> {
    let corrupt = |reason: String| AuditError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let len = file.metadata().map_err(io_err(path))?.len();
    // No line is longer than MAX_LINE_BYTES plus its newline, so the newline
    // that ends the previous line is within that distance.
    let window = MAX_LINE_BYTES as u64 + 1;

    let end = match rfind_newline(file, len.saturating_sub(window), len).map_err(io_err(path))? {
        Some(i) => i + 1,
        None if len <= window => 0,
        None => {
            return Err(corrupt(format!(
                "the last {window} bytes hold no newline: that is no interrupted append, \
                 and no record is that long"
            )))
        }
    };
    if end != len {
        // Never acknowledged (the append syncs only after the newline is
        // written), so removing it loses nothing anyone was told was logged.
        file.set_len(end)
            .and_then(|()| file.sync_data())
            .map_err(io_err(path))?;
    }
    if end == 0 {
        return Ok(Tail {
            len: 0,
            seq: 0,
            hash: ZERO_HASH.to_string(),
            stale: false,
        });
    }

    let last_end = end - 1; // the newline ending the last record
    let start = match rfind_newline(file, last_end.saturating_sub(window), last_end)
        .map_err(io_err(path))?
    {
        Some(i) => i + 1,
        None if last_end <= window => 0,
        None => {
            return Err(corrupt(format!(
                "the last line is longer than {MAX_LINE_BYTES} bytes, more than any record"
            )))
        }
    };
    let mut line = vec![0; (last_end - start) as usize];
    read_at(file, start, &mut line).map_err(io_err(path))?;
    let decoded = decode(LineKind::Complete, &line).map_err(|(_, why)| {
        corrupt(format!(
            "the last record (at byte {start}) cannot be chained onto: {why}; run verify"
        ))
    })?;
    if record_hash(decoded.raw.get().as_bytes()) != decoded.hash {
        return Err(corrupt(format!(
            "the last record (at byte {start}, seq {}) does not match its hash (modified); \
             run verify",
            decoded.record.seq
        )));
    }
    Ok(Tail {
        len: end,
        seq: decoded.record.seq,
        hash: decoded.hash,
        stale: false,
    })
}

/// The offset of the last '\n' in `from..to`, reading backwards in chunks.
fn rfind_newline(file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0; TAIL_CHUNK];
    let mut end = to;
    while end > from {
        let start = end.saturating_sub(TAIL_CHUNK as u64).max(from);
        let chunk = &mut buf[..(end - start) as usize];
        read_at(file, start, chunk)?;
        if let Some(i) = chunk.iter().rposition(|&c| c == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

fn read_at(mut file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

// Other crates share one handle across request threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<AuditLog>();
};
