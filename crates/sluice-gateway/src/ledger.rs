//! The spend ledger's write-ahead side: every billable request appends an intent (before it
//! is forwarded) and a settlement (when it finishes) to a local file; a background task ships
//! the file in batches to the ledger database, idempotent by request id.
//!
//! An append is one `write(2)` of one line to a file opened for appending: no lock of ours, no
//! database, no wait for the disk (a killed process loses nothing written; a background task
//! syncs the file to disk every ship interval). The file is split in numbered segments; a new
//! process starts a new segment, ships what the old ones hold, then closes every request the
//! old process left open as `unsettled`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_config::LedgerConfig;
use sluice_store::ledger::{Entry, LedgerDb};

/// A segment this large is closed and a new one started, once shipped.
const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
/// Entries per database transaction.
const BATCH: usize = 2_000;

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    file: std::fs::File,
}

/// Where shipping stands: a segment and the byte offset shipped up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    seq: u64,
    offset: u64,
}

pub struct Ledger {
    instance: Arc<str>,
    dir: PathBuf,
    current: ArcSwap<Segment>,
    db: LedgerDb,
    interval: Duration,
    /// Serializes shipping (the periodic task, and a final ship at shutdown).
    shipping: tokio::sync::Mutex<Position>,
    /// Segments of a previous process, shipped before anything of this one.
    leftovers: std::sync::Mutex<Vec<(u64, PathBuf)>>,
    /// Whether the last shipment failed (to log state changes only).
    failing: AtomicBool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("instance", &self.instance)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_owned(),
        source,
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("ledger-{seq:010}.wal"))
}

fn open_segment(dir: &Path, seq: u64) -> Result<Segment, LedgerError> {
    let path = segment_path(dir, seq);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    Ok(Segment { seq, path, file })
}

/// This instance's id: made once, kept in the directory (one directory per instance).
fn instance_id(dir: &Path) -> Result<String, LedgerError> {
    let path = dir.join("instance");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => {
            let id = format!("{:016x}", rand::random::<u64>());
            std::fs::write(&path, &id).map_err(io(&path))?;
            Ok(id)
        }
    }
}

fn read_position(dir: &Path) -> Position {
    std::fs::read_to_string(dir.join("position"))
        .ok()
        .and_then(|s| {
            let (a, b) = s.trim().split_once(' ')?;
            Some(Position {
                seq: a.parse().ok()?,
                offset: b.parse().ok()?,
            })
        })
        .unwrap_or_default()
}

fn write_position(dir: &Path, p: Position) -> std::io::Result<()> {
    let tmp = dir.join("position.tmp");
    std::fs::write(&tmp, format!("{} {}", p.seq, p.offset))?;
    std::fs::rename(tmp, dir.join("position"))
}

/// The bytes of `path` from `offset` up to its last complete line, and the offset after it.
fn read_lines(path: &Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let end = memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1);
    buf.truncate(end);
    Ok((buf, offset + end as u64))
}

/// The records in `lines`, borrowing their text; a line that is not a record is skipped.
fn parse_lines<'a>(path: &Path, lines: &'a [u8]) -> Vec<Entry<'a>> {
    let mut entries = Vec::with_capacity(lines.len() / 200);
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Entry<'a>>(line) {
            Ok(e) => entries.push(e),
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "ledger line skipped: not a record"),
        }
    }
    entries
}

impl Ledger {
    /// Opens the directory, starts a new segment, and starts shipping (what a previous process
    /// left first).
    pub async fn open(config: &LedgerConfig, db: LedgerDb) -> Result<Arc<Ledger>, LedgerError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let instance = instance_id(&dir)?;
        let mut old: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| {
                let path = e.ok()?.path();
                let name = path.file_name()?.to_str()?;
                let seq = name.strip_prefix("ledger-")?.strip_suffix(".wal")?.parse().ok()?;
                Some((seq, path))
            })
            .collect();
        old.sort();
        let next = old.last().map_or(1, |(s, _)| s + 1);
        let segment = open_segment(&dir, next)?;
        let position = read_position(&dir);
        let ledger = Arc::new(Ledger {
            instance: Arc::from(instance),
            dir,
            current: ArcSwap::from_pointee(segment),
            db,
            interval: config.ship_interval,
            shipping: tokio::sync::Mutex::new(position),
            leftovers: std::sync::Mutex::new(old),
            failing: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&ledger);
        tokio::spawn(async move {
            loop {
                let Some(l) = weak.upgrade() else { return };
                let interval = l.interval;
                l.ship().await;
                drop(l);
                tokio::time::sleep(interval).await;
            }
        });
        Ok(ledger)
    }

    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    pub fn db(&self) -> &LedgerDb {
        &self.db
    }

    /// Appends one record: a single write of one line.
    pub fn append(&self, entry: &Entry<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let segment = self.current.load();
        (&segment.file).write_all(&line)
    }

    /// Ships everything written so far (a previous process's segments first). Returns whether
    /// everything reached the database.
    pub async fn ship(&self) -> bool {
        let mut pos = self.shipping.lock().await;
        let ok = self.ship_locked(&mut pos).await;
        if ok == self.failing.load(Ordering::Relaxed) {
            self.failing.store(!ok, Ordering::Relaxed);
            if ok {
                tracing::info!("spend ledger shipping again");
            } else {
                tracing::warn!("spend ledger cannot reach its database; records wait in the local file");
            }
        }
        ok
    }

    async fn ship_locked(&self, pos: &mut Position) -> bool {
        // A previous process's segments, oldest first; then its open requests are unsettled.
        let leftovers = std::mem::take(&mut *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()));
        if !leftovers.is_empty() {
            for (i, (seq, path)) in leftovers.iter().enumerate() {
                let from = if pos.seq == *seq { pos.offset } else { 0 };
                if self.ship_file(path, *seq, from, pos).await.is_err() {
                    *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()) = leftovers[i..].to_vec();
                    return false;
                }
                let _ = std::fs::remove_file(path);
            }
            let now_ms = chrono::Utc::now().timestamp_millis();
            match self.db.close_unsettled(&self.instance, now_ms).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(
                            requests = n,
                            "requests left open by the previous process closed as unsettled"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot close the previous process's open requests yet");
                    *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()) = Vec::new();
                    return false;
                }
            }
        }
        let segment = self.current.load_full();
        let from = if pos.seq == segment.seq { pos.offset } else { 0 };
        if self.ship_file(&segment.path, segment.seq, from, pos).await.is_err() {
            return false;
        }
        if pos.offset >= SEGMENT_BYTES {
            self.rotate(segment, pos).await
        } else {
            // Durable against a machine crash too, not only a process crash.
            let _ = tokio::task::spawn_blocking(move || segment.file.sync_data()).await;
            true
        }
    }

    /// Starts a new segment; ships and removes the old one once no writer holds it.
    async fn rotate(&self, old: Arc<Segment>, pos: &mut Position) -> bool {
        let next = match open_segment(&self.dir, old.seq + 1) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a new ledger segment");
                return false;
            }
        };
        self.current.store(Arc::new(next));
        // Writers that loaded the old segment finish their one write promptly.
        while Arc::strong_count(&old) > 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let from = pos.offset;
        if self.ship_file(&old.path, old.seq, from, pos).await.is_err() {
            *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()) = vec![(old.seq, old.path.clone())];
            return false;
        }
        let _ = std::fs::remove_file(&old.path);
        true
    }

    async fn ship_file(&self, path: &Path, seq: u64, from: u64, pos: &mut Position) -> Result<(), ()> {
        let p = path.to_owned();
        let read = tokio::task::spawn_blocking(move || read_lines(&p, from)).await;
        let (lines, end) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read a ledger segment");
                return Err(());
            }
            Err(_) => return Err(()),
        };
        let entries = parse_lines(path, &lines);
        for chunk in entries.chunks(BATCH) {
            if let Err(e) = self.db.apply(chunk).await {
                tracing::debug!(error = %e, "ledger batch not shipped");
                return Err(());
            }
        }
        *pos = Position { seq, offset: end };
        let dir = self.dir.clone();
        let p = *pos;
        let _ = tokio::task::spawn_blocking(move || write_position(&dir, p)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::ledger::{Intent, Settlement};

    fn intent<'a>(id: &'a str, instance: &'a str) -> Entry<'a> {
        Entry::Intent(Intent {
            id: id.into(),
            instance: instance.into(),
            at: 1_795_338_000_000,
            key: Some("k".into()),
            team: None,
            tenant: None,
            route: None,
            model: Some("chat".into()),
            reserved_tokens: 10,
            reserved_cost: 5,
        })
    }

    fn settle(id: &str) -> Entry<'_> {
        Entry::Settlement(Settlement {
            id: id.into(),
            at: 1_795_338_000_100,
            deployment: None,
            status: 200,
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_tokens: 0,
            cost: 3,
            currency: None,
            estimated: false,
        })
    }

    #[tokio::test]
    async fn a_restart_ships_the_old_segments_and_unsettles_what_was_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig {
            enabled: true,
            dir: dir.path().join("wal"),
            ship_interval: Duration::from_secs(3600),
        };
        let db = LedgerDb::sqlite(dir.path().join("l.db").to_str().unwrap())
            .await
            .unwrap();
        let first = Ledger::open(&config, db.clone()).await.unwrap();
        let me = first.instance().to_string();
        first.append(&intent("a", &me)).unwrap();
        first.append(&settle("a")).unwrap();
        first.append(&intent("b", &me)).unwrap();
        assert!(first.ship().await);
        first.append(&intent("c", &me)).unwrap();
        // A torn last line, as a kill in the middle of a write would leave.
        let seg = first.current.load_full();
        (&seg.file).write_all(b"{\"k\":\"s\",\"id\":\"c\"").unwrap();
        drop(first);

        let second = Ledger::open(&config, db.clone()).await.unwrap();
        assert_eq!(second.instance().as_ref(), me, "the instance id is kept");
        second.append(&intent("d", &me)).unwrap();
        assert!(second.ship().await);
        let states = db.states().await.unwrap();
        let expect = [("a", "settled"), ("b", "unsettled"), ("c", "unsettled"), ("d", "open")];
        assert_eq!(
            states,
            expect
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>()
        );
        let left: Vec<_> = std::fs::read_dir(&config.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".wal"))
            .collect();
        assert_eq!(left.len(), 1, "old segments are removed once shipped: {left:?}");
    }
}
