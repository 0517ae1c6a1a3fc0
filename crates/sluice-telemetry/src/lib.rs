//! The access log: lines queued by the request path without blocking, serialized and written
//! by a thread of their own, whole lines only. It knows nothing of what a request records: a
//! line is anything that writes its own JSON ([`LogLine`]; [`json`] is a fast writer for it).
//!
//! A full queue is never silent: [`AccessLog::log`] says the line was dropped, and the caller
//! counts it.

mod histogram;
pub mod json;
pub mod otlp;

pub use histogram::Histogram;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Duration;

use sluice_config::AccessLogTarget;

/// A line of the access log, serialized on the writer thread, off the request path.
pub trait LogLine: Send {
    /// Appends the line's JSON (without the newline) to `out`.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
}

/// How often the writer drains the queue. The writer never blocks in `recv`, so a request that
/// queues a line never has to wake a thread (no futex call on the request path); lines reach
/// the file within one tick. A queue half full wakes it early (one wake per drain), so the tick
/// can be long enough that an idle gateway is not woken 200 times a second: each wake-up of an
/// idle core costs tens of microseconds of CPU on a VM.
pub const LOG_TICK: Duration = Duration::from_millis(50);
/// Lines serialised between two yields of the writer thread.
const YIELD_EVERY: u64 = 16;

/// The queue and its writer thread (none when the log is off).
#[derive(Debug)]
pub struct AccessLog {
    tx: Option<SyncSender<Box<dyn LogLine>>>,
    /// Lines queued for, and written by, the writer thread.
    queued: AtomicU64,
    written: Arc<AtomicU64>,
    /// Half the queue: past this many pending lines the writer is woken early.
    nudge_at: u64,
    /// Set when the writer has been woken early and has not drained since (one wake per drain).
    nudged: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for dyn LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogLine")
    }
}

impl AccessLog {
    /// The log the config names, through a queue of `queue` lines.
    pub fn open(target: &AccessLogTarget, queue: usize) -> std::io::Result<AccessLog> {
        let out: Option<Box<dyn Write + Send>> = match target {
            AccessLogTarget::Off => None,
            AccessLogTarget::Stdout => Some(Box::new(std::io::stdout())),
            AccessLogTarget::Stderr => Some(Box::new(std::io::stderr())),
            AccessLogTarget::File(path) => Some(Box::new(
                std::fs::OpenOptions::new().create(true).append(true).open(path)?,
            )),
        };
        Self::with_writer(out, queue, LOG_TICK)
    }

    /// A log written to `out` (off when `None`), drained every `tick` or when half full.
    pub fn with_writer(out: Option<Box<dyn Write + Send>>, queue: usize, tick: Duration) -> std::io::Result<AccessLog> {
        let written = Arc::new(AtomicU64::new(0));
        let nudged = Arc::new(AtomicBool::new(false));
        let (tx, writer) = match out {
            None => (None, None),
            Some(out) => {
                let (tx, rx) = sync_channel(queue);
                let (w, n) = (written.clone(), nudged.clone());
                let handle = std::thread::Builder::new()
                    .name("sluice-access-log".to_owned())
                    .spawn(move || write_lines(rx, out, &w, &n, tick))?;
                (Some(tx), Some(handle))
            }
        };
        Ok(AccessLog {
            tx,
            queued: AtomicU64::new(0),
            written,
            nudge_at: (queue as u64 / 2).max(1),
            nudged,
            writer,
        })
    }

    /// Queues a line; never blocks. `false` when the queue was full and the line is dropped.
    pub fn log(&self, line: Box<dyn LogLine>) -> bool {
        let Some(tx) = &self.tx else { return true };
        match tx.try_send(line) {
            Ok(()) => {
                let queued = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
                let pending = queued.saturating_sub(self.written.load(Ordering::Relaxed));
                if pending >= self.nudge_at && !self.nudged.swap(true, Ordering::AcqRel) {
                    self.wake_writer();
                }
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> &Arc<AtomicU64> {
        &self.written
    }

    fn wake_writer(&self) {
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
    }

    /// Waits (at most `within`) until every queued line has been written: for shutdown.
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.written.load(Ordering::Acquire) < self.queued.load(Ordering::Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            self.wake_writer();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Writes the batch (whole lines) and empties it.
fn flush(batch: &mut Vec<u8>, out: &mut Box<dyn Write + Send>) {
    if !batch.is_empty() {
        let _ = out.write_all(batch);
        let _ = out.flush();
        batch.clear();
    }
}
fn write_lines(
    rx: Receiver<Box<dyn LogLine>>,
    mut out: Box<dyn Write + Send>,
    written: &AtomicU64,
    nudged: &AtomicBool,
    tick: std::time::Duration,
) {
    // Whole lines only reach the file: each record is serialized with its newline first, and the
    // batch is written before it would grow past its capacity. With the file opened for
    // appending, two processes sharing it (a hand-over) never interleave inside a line.
    const BATCH: usize = 64 * 1024;
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let mut n = 0u64;
        loop {
            match rx.try_recv() {
                Ok(record) => {
                    line.clear();
                    if record.write_json(&mut line).is_ok() {
                        line.push(b'\n');
                        if batch.len() + line.len() > BATCH {
                            flush(&mut batch, &mut out);
                        }
                        batch.extend_from_slice(&line);
                        n += 1;
                    }
                    // The writer shares cores with the request path: hand the core back often,
                    // so a burst of lines never holds a request up for long.
                    if n.is_multiple_of(YIELD_EVERY) {
                        std::thread::yield_now();
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    flush(&mut batch, &mut out);
                    written.fetch_add(n, Ordering::Release);
                    return;
                }
            }
        }
        if n > 0 {
            flush(&mut batch, &mut out);
            written.fetch_add(n, Ordering::Release);
        }
        nudged.store(false, Ordering::Release);
        std::thread::park_timeout(tick);
    }
}
