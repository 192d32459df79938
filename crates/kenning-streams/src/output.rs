//! Where records go: Server-Sent Events ([`EventHub`], a bounded replay
//! buffer clients resume from with Last-Event-ID), HMAC-signed webhooks and
//! rotating JSON-lines files. Webhooks and files are fed through a bounded
//! queue that drops its oldest record when the sink falls behind, and says
//! how many it dropped; a processor never waits for a sink.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kenning_video::notify::Webhook;

use crate::config::{Backoff, Replay, Sink, StreamConfig};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One buffered event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its id (`id:` in the event stream; `Last-Event-ID` when resuming).
    pub id: u64,
    /// The JSON text.
    pub data: Arc<str>,
    at: Instant,
}

/// What a client resuming after an id gets.
#[derive(Debug, Default)]
pub struct Since {
    /// Events after the id, oldest first.
    pub events: Vec<Event>,
    /// Events after the id that are no longer buffered: `Some(n)` when the
    /// count is known, `Some(0)` when nothing was missed, `None` when the id
    /// is from before this buffer began (another run of the service).
    pub missed: Option<u64>,
}

struct Ring {
    events: VecDeque<Event>,
    bytes: usize,
    next_id: u64,
}

/// A stream of events held for a bounded while so Server-Sent Events
/// clients can resume: the newest `events`, `bytes` and `max_age` worth.
/// Ids increase across restarts of the service (they start from the clock),
/// so an id from an earlier run is never mistaken for a newer one.
pub struct EventHub {
    ring: Mutex<Ring>,
    first_id: u64,
    limits: Replay,
    tick: tokio::sync::watch::Sender<u64>,
    delivered: AtomicU64,
}

impl EventHub {
    /// An empty hub.
    pub fn new(limits: Replay) -> Self {
        let first_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Self {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                next_id: first_id,
            }),
            first_id,
            limits,
            tick: tokio::sync::watch::channel(first_id - 1).0,
            delivered: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prune(&self, ring: &mut Ring) {
        let now = Instant::now();
        while let Some(front) = ring.events.front() {
            let old = now.duration_since(front.at) > self.limits.max_age;
            if !(old || ring.events.len() > self.limits.events || ring.bytes > self.limits.bytes) {
                break;
            }
            ring.bytes -= front.data.len();
            ring.events.pop_front();
        }
    }

    /// Appends an event; returns its id.
    pub fn publish(&self, data: String) -> u64 {
        let mut ring = self.lock();
        let id = ring.next_id;
        ring.next_id += 1;
        ring.bytes += data.len();
        ring.events.push_back(Event {
            id,
            data: data.into(),
            at: Instant::now(),
        });
        self.prune(&mut ring);
        drop(ring);
        self.tick.send_replace(id);
        id
    }

    /// Drops events past their age (called now and then, so nothing is
    /// kept longer than the replay window when no one reads or writes).
    pub fn expire(&self) {
        let mut ring = self.lock();
        self.prune(&mut ring);
    }

    /// Up to `max` events after `last` (every buffered one for `None`).
    pub fn since(&self, last: Option<u64>, max: usize) -> Since {
        let mut ring = self.lock();
        self.prune(&mut ring);
        let oldest = ring.events.front().map_or(ring.next_id, |e| e.id);
        let (from, missed) = match last {
            None => (oldest, Some(0)),
            Some(l) if l >= ring.next_id => (oldest, None),
            Some(l) if l < self.first_id => (oldest, None),
            Some(l) => (l + 1, Some(oldest.saturating_sub(l + 1))),
        };
        let start = from.saturating_sub(oldest) as usize;
        Since {
            events: ring.events.iter().skip(start).take(max).cloned().collect(),
            missed,
        }
    }

    /// Changes whenever an event is published.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// Clients connected now.
    pub fn subscribers(&self) -> usize {
        self.tick.receiver_count()
    }

    /// Counts `n` events handed to a client's connection (replays
    /// included: each client's copy counts).
    pub fn count_delivered(&self, n: usize) {
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Events handed to clients so far, over every client.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// A bounded queue that drops its oldest item when full.
pub struct DropQueue<T> {
    inner: Mutex<(VecDeque<T>, bool)>,
    wake: Condvar,
    capacity: usize,
    dropped: AtomicU64,
}

impl<T> DropQueue<T> {
    /// A queue of at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((VecDeque::new(), false)),
            wake: Condvar::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<T>, bool)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `item`, dropping the oldest if the queue is full.
    pub fn push(&self, item: T) {
        let mut q = self.lock();
        if q.1 {
            return;
        }
        if q.0.len() >= self.capacity {
            q.0.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.0.push_back(item);
        drop(q);
        self.wake.notify_all();
    }

    /// The oldest item, waiting for one; `None` once closed.
    pub fn pop(&self) -> Option<T> {
        let mut q = self.lock();
        loop {
            if q.1 {
                return None;
            }
            if let Some(item) = q.0.pop_front() {
                return Some(item);
            }
            q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits `d` unless the queue is closed first; `false` when closed.
    pub fn sleep(&self, d: Duration) -> bool {
        let q = self.lock();
        let (q, _) = self
            .wake
            .wait_timeout_while(q, d, |q| !q.1)
            .unwrap_or_else(|e| e.into_inner());
        !q.1
    }

    /// Stops the queue: waiting and later pops return `None`.
    pub fn close(&self) {
        self.lock().1 = true;
        self.wake.notify_all();
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts of one webhook or file sink.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Records delivered or written.
    pub delivered: AtomicU64,
    /// Records given up on (a webhook after its last attempt, a failed write).
    pub failed: AtomicU64,
}

/// A webhook or file sink with its queue and worker thread.
pub struct QueuedSink {
    /// `webhook` or `file`.
    pub kind: &'static str,
    /// The records waiting.
    pub queue: Arc<DropQueue<Arc<str>>>,
    /// What it did.
    pub counts: Arc<SinkCounts>,
    /// Whether the sink takes only records of matched faces (files:
    /// nothing of a stranger is written to disk).
    pub matched_only: bool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl QueuedSink {
    fn spawn(
        kind: &'static str,
        matched_only: bool,
        capacity: usize,
        mut deliver: impl FnMut(&str, &DropQueue<Arc<str>>) -> bool + Send + 'static,
    ) -> Self {
        let queue = Arc::new(DropQueue::<Arc<str>>::new(capacity));
        let counts = Arc::new(SinkCounts::default());
        let (q, c) = (queue.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name(format!("kenning-stream-{kind}"))
            .spawn(move || {
                while let Some(record) = q.pop() {
                    let n = if deliver(&record, &q) {
                        &c.delivered
                    } else {
                        &c.failed
                    };
                    n.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("spawning a stream output thread");
        Self {
            kind,
            queue,
            counts,
            matched_only,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// A webhook: each record POSTed, signed with HMAC-SHA-256 as
    /// completion notifications are, retried with `backoff` up to
    /// `attempts` times.
    pub fn webhook(
        hook: Webhook,
        secret: Vec<u8>,
        capacity: usize,
        attempts: u32,
        backoff: Backoff,
    ) -> Self {
        Self::spawn("webhook", false, capacity, move |body, queue| {
            for attempt in 1..=attempts.max(1) {
                match hook.post(body, &secret, now_secs()) {
                    Ok(_) => return true,
                    Err(e) if attempt == attempts.max(1) => {
                        eprintln!(
                            "kenning: stream output to {hook}: a record dropped after {attempt} attempts: {e}"
                        );
                    }
                    Err(_) => {
                        if !queue.sleep(backoff.delay(attempt)) {
                            return false;
                        }
                    }
                }
            }
            false
        })
    }

    /// A JSON-lines file rotated at `max_bytes`, keeping `keep` old files.
    pub fn file(path: PathBuf, capacity: usize, max_bytes: u64, keep: usize) -> Self {
        let mut file = RotatingFile::new(path, max_bytes, keep);
        Self::spawn("file", true, capacity, move |line, _| {
            match file.append(line) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("kenning: stream output file {}: {e}", file.path.display());
                    false
                }
            }
        })
    }

    /// Stops the worker (records still queued are dropped).
    pub fn close(&self) {
        self.queue.close();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// An append-only JSON-lines file renamed to `FILE.1` (and older ones
/// shifted, the oldest dropped) when it would pass `max_bytes`. Created
/// readable by the service's user only.
struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<(File, u64)>,
}

impl RotatingFile {
    fn new(path: PathBuf, max_bytes: u64, keep: usize) -> Self {
        Self {
            path,
            max_bytes,
            keep,
            file: None,
        }
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn open(path: &Path) -> std::io::Result<(File, u64)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut o = OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let f = o.open(path)?;
        let len = f.metadata()?.len();
        Ok((f, len))
    }

    fn append(&mut self, line: &str) -> std::io::Result<()> {
        let need = line.len() as u64 + 1;
        if self.file.is_none() {
            self.file = Some(Self::open(&self.path)?);
        }
        if self
            .file
            .as_ref()
            .is_some_and(|(_, len)| *len > 0 && len + need > self.max_bytes)
        {
            if let Some((f, _)) = self.file.take() {
                f.sync_all()?;
            }
            if self.keep == 0 {
                std::fs::remove_file(&self.path)?;
            } else {
                for n in (1..self.keep).rev() {
                    let from = self.numbered(n);
                    if from.exists() {
                        std::fs::rename(&from, self.numbered(n + 1))?;
                    }
                }
                std::fs::rename(&self.path, self.numbered(1))?;
            }
            self.file = Some(Self::open(&self.path)?);
        }
        let (f, len) = self.file.as_mut().expect("opened above");
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        f.write_all(&buf)?;
        *len += need;
        Ok(())
    }
}

/// Every sink of one output name.
pub struct Output {
    /// The data stream name.
    pub name: String,
    /// The Server-Sent Events hub, when the output has one.
    pub sse: Option<Arc<EventHub>>,
    /// Webhooks and files.
    pub queued: Vec<QueuedSink>,
}

impl Output {
    /// The output `name` with `sinks`, as `config` bounds them.
    pub fn new(name: &str, sinks: &[Sink], config: &StreamConfig) -> Self {
        let mut out = Self {
            name: name.to_owned(),
            sse: None,
            queued: Vec::new(),
        };
        for s in sinks {
            match s {
                Sink::Sse => {
                    out.sse
                        .get_or_insert_with(|| Arc::new(EventHub::new(config.replay)));
                }
                Sink::Webhook(hook) => out.queued.push(QueuedSink::webhook(
                    hook.clone(),
                    config.webhook_secret.clone(),
                    config.queue,
                    config.webhook_attempts,
                    config.webhook_backoff,
                )),
                Sink::File(path) => out.queued.push(QueuedSink::file(
                    path.clone(),
                    config.queue,
                    config.file_max_bytes,
                    config.file_keep,
                )),
            }
        }
        out
    }

    /// Sends a record to every sink: `record` in full, `matched` (the
    /// record with only the faces that matched, `None` when none did) to
    /// sinks that keep only matches.
    pub fn publish(&self, record: &str, matched: Option<&str>) {
        if let Some(hub) = &self.sse {
            hub.publish(record.to_owned());
        }
        let full: Arc<str> = record.into();
        let matched: Option<Arc<str>> = matched.map(Into::into);
        for s in &self.queued {
            if s.matched_only {
                if let Some(m) = &matched {
                    s.queue.push(m.clone());
                }
            } else {
                s.queue.push(full.clone());
            }
        }
    }

    /// Stops the sinks' workers.
    pub fn close(&self) {
        for s in &self.queued {
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(events: usize) -> Replay {
        Replay {
            events,
            bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_hub_replays_what_it_still_holds() {
        let hub = EventHub::new(replay(3));
        let ids: Vec<u64> = (0..5)
            .map(|i| hub.publish(format!("{{\"n\":{i}}}")))
            .collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
        // Only the last three are held.
        let all = hub.since(None, 10);
        assert_eq!(
            all.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            ids[2..]
        );
        // Resuming after the second: the third was dropped, two remain.
        let s = hub.since(Some(ids[1]), 10);
        assert_eq!(s.missed, Some(0));
        assert_eq!(s.events.len(), 3);
        let s = hub.since(Some(ids[0]), 10);
        assert_eq!(s.missed, Some(1));
        let s = hub.since(Some(ids[3]), 10);
        assert_eq!(s.events.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[4]]);
        assert!(hub.since(Some(ids[4]), 10).events.is_empty());
        // An id from another run: everything held, count unknown.
        assert_eq!(hub.since(Some(5), 10).missed, None);
        assert_eq!(hub.since(Some(ids[4] + 100), 10).events.len(), 3);
        // A later hub (a restart) starts above every earlier id.
        std::thread::sleep(Duration::from_millis(2));
        assert!(EventHub::new(replay(3)).publish("x".into()) > ids[4]);
    }

    #[test]
    fn old_events_expire() {
        let hub = EventHub::new(Replay {
            events: 10,
            bytes: 1 << 20,
            max_age: Duration::from_millis(30),
        });
        hub.publish("a".into());
        std::thread::sleep(Duration::from_millis(60));
        hub.expire();
        assert!(hub.since(None, 10).events.is_empty());
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let q = DropQueue::new(2);
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), Some(4));
        q.close();
        assert_eq!(q.pop(), None);
        assert!(
            !q.sleep(Duration::from_secs(5)),
            "a closed queue does not sleep"
        );
    }

    #[test]
    fn files_rotate_and_keep_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/records.jsonl");
        let mut f = RotatingFile::new(path.clone(), 25, 2);
        for i in 0..7 {
            f.append(&format!("{{\"record\":{i}}}")).unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        // 13-byte lines, 25 bytes a file: one line each, two old files kept.
        assert_eq!(read(path.clone()), "{\"record\":6}\n");
        assert_eq!(read(f.numbered(1)), "{\"record\":5}\n");
        assert_eq!(read(f.numbered(2)), "{\"record\":4}\n");
        assert!(!f.numbered(3).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
