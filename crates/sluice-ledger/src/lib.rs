//! The spend ledger's write-ahead side: every billable request appends an intent (before it
//! is forwarded) and a settlement (when it finishes) to a local file; a background task ships
//! the file in batches to the ledger database, idempotent by request id.
//!
//! An append is one `write(2)` of one line to a file opened for appending: no lock of ours, no
//! database, no wait for the disk (a killed process loses nothing written; a background task
//! syncs the file to disk every ship interval). The file is split in numbered segments; a new
//! process starts a new segment, ships what the old ones hold, then closes every request the
//! old process left open as `unsettled`.
//!
//! A process holds a slot of the directory (a file lock, released by the kernel however the
//! process ends): the first free of `dir`, `dir/slot-1`, `dir/slot-2`, … During a hand-over
//! the old process still holds its slot, so the new one writes to the next; a slot whose
//! process is gone is adopted by the next process that starts, or by a running one within
//! twenty ship intervals (its segments shipped, its open requests unsettled).

mod journal;
mod record;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_config::LedgerConfig;
use sluice_store::ledger::{Entry, LedgerDb};

pub use journal::LedgerError;
use journal::{
    ADOPT_EVERY, BATCH, BLOCKING_BATCH, Leftover, Position, SEGMENT_BYTES, SLOTS, Segment, instance_id, lock_slot,
    open_segment, orphans, read_from, read_position, segments, slot_dir, write_position,
};

/// Settlements waiting for the writer thread (beyond this, a request writes its own).
const SETTLE_QUEUE: usize = 16_384;
/// How often the writer thread appends the settlements queued meanwhile, in one write. A
/// process killed in between loses at most this much: those requests are closed as unsettled
/// (charged their reservation) by the next start, as any request cut off mid-way is.
const SETTLE_TICK: Duration = Duration::from_millis(5);
/// How often the hourly rollup is brought up to date, and the most hours one pass takes.
const ROLL_UP_EVERY: Duration = Duration::from_secs(10);
const ROLL_UP_HOURS: usize = 24;

pub struct Ledger {
    instance: Arc<str>,
    dir: PathBuf,
    current: ArcSwap<Segment>,
    db: LedgerDb,
    interval: Duration,
    /// Serializes shipping (the periodic task, and a final ship at shutdown).
    shipping: tokio::sync::Mutex<Position>,
    /// Segments of previous processes, shipped before anything of this one.
    leftovers: std::sync::Mutex<Vec<Leftover>>,
    /// This process's slot, held while it runs: the root directory and the slot's number.
    _lock: std::fs::File,
    root: PathBuf,
    slot: usize,
    /// Whether the last shipment failed (to log state changes only).
    failing: AtomicBool,
    /// Encoded settlements on their way to the writer thread: the request path only queues.
    settle_tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Drained by the writer thread, and by [`Ledger::ship`] before it reads the file.
    settle_rx: std::sync::Mutex<std::sync::mpsc::Receiver<Vec<u8>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("instance", &self.instance)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens the directory, starts a new segment, and starts shipping (what a previous process
    /// left first).
    pub async fn open(config: &LedgerConfig, db: LedgerDb) -> Result<Arc<Ledger>, LedgerError> {
        let root = config.dir.clone();
        let mut slot = None;
        for n in 0..SLOTS {
            let dir = slot_dir(&root, n);
            if let Some(lock) = lock_slot(&dir)? {
                slot = Some((n, dir, lock));
                break;
            }
        }
        let Some((n, dir, lock)) = slot else {
            return Err(LedgerError::Io {
                path: root,
                source: std::io::Error::other(format!("all {SLOTS} slots are held by running processes")),
            });
        };
        let instance = instance_id(&dir)?;
        let old = segments(&dir)?;
        let next = old.last().map_or(1, |(s, _)| s + 1);
        let segment = open_segment(&dir, next)?;
        let position = read_position(&dir);
        let mut leftovers = Vec::new();
        if !old.is_empty() {
            leftovers.push(Leftover {
                dir: dir.clone(),
                instance: instance.clone(),
                segments: old,
                position,
                _lock: None,
            });
        }
        leftovers.extend(orphans(&root, n));
        if n > 0 {
            tracing::info!(slot = %dir.display(), "spend ledger: another process holds the first slot (a hand-over)");
        }
        let (settle_tx, settle_rx) = std::sync::mpsc::sync_channel(SETTLE_QUEUE);
        let ledger = Arc::new(Ledger {
            settle_tx,
            settle_rx: std::sync::Mutex::new(settle_rx),
            instance: Arc::from(instance),
            dir,
            current: ArcSwap::from_pointee(segment),
            db,
            interval: config.ship_interval,
            shipping: tokio::sync::Mutex::new(position),
            leftovers: std::sync::Mutex::new(leftovers),
            failing: AtomicBool::new(false),
            _lock: lock,
            root,
            slot: n,
        });
        let writer = Arc::downgrade(&ledger);
        std::thread::Builder::new()
            .name("sluice-ledger".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(SETTLE_TICK);
                    let Some(l) = writer.upgrade() else { return };
                    l.write_settlements();
                }
            })
            .map_err(|e| LedgerError::Io {
                path: ledger.dir.clone(),
                source: e,
            })?;
        let weak = Arc::downgrade(&ledger);
        tokio::spawn(async move {
            let mut every = 0u32;
            let mut rolled = std::time::Instant::now();
            loop {
                let Some(l) = weak.upgrade() else { return };
                let interval = l.interval;
                // A process that ended after this one started (a hand-over's old process whose
                // last shipment failed, or one killed) left its slot: take it up.
                every += 1;
                if every.is_multiple_of(ADOPT_EVERY) {
                    l.adopt_orphans().await;
                }
                l.ship().await;
                // The hourly rollup follows what was shipped (analytics read the hours not yet
                // rolled up from the rows meanwhile).
                if rolled.elapsed() >= ROLL_UP_EVERY {
                    rolled = std::time::Instant::now();
                    if let Err(e) = l.db.roll_up(ROLL_UP_HOURS).await {
                        tracing::warn!(error = %e, "the ledger's hourly rollup did not run; it is retried");
                    }
                }
                drop(l);
                tokio::time::sleep(interval).await;
            }
        });
        Ok(ledger)
    }

    /// Adds the slots whose process has gone, with segments still in them, to what is shipped
    /// next (their open requests are then closed as unsettled). The look is a few file
    /// operations, made on a blocking thread.
    pub async fn adopt_orphans(&self) {
        let (root, slot) = (self.root.clone(), self.slot);
        let Ok(found) = tokio::task::spawn_blocking(move || orphans(&root, slot)).await else {
            return;
        };
        let mut leftovers = self.leftovers.lock().unwrap_or_else(|p| p.into_inner());
        let known: Vec<PathBuf> = leftovers.iter().map(|l| l.dir.clone()).collect();
        for orphan in found {
            if !known.contains(&orphan.dir) {
                tracing::info!(slot = %orphan.dir.display(), "spend ledger: taking up a slot its process left");
                leftovers.push(orphan);
            }
        }
    }

    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    pub fn db(&self) -> &LedgerDb {
        &self.db
    }

    /// Appends one record now: a single write of its compact binary form. An intent goes this
    /// way — it must be in the file before the request is forwarded.
    pub fn append(&self, entry: &Entry<'_>) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(128);
        record::encode(entry, &mut bytes);
        let segment = self.current.load();
        (&segment.file).write_all(&bytes)
    }

    /// Queues a settlement for the writer thread, which appends what was queued every few
    /// milliseconds in one write (written here, at once, if the queue is full).
    pub fn settle(&self, entry: &Entry<'_>) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(128);
        record::encode(entry, &mut bytes);
        match self.settle_tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(bytes) | std::sync::mpsc::TrySendError::Disconnected(bytes)) => {
                let segment = self.current.load();
                (&segment.file).write_all(&bytes)
            }
        }
    }

    /// Appends the queued settlements, in one write.
    fn write_settlements(&self) {
        let rx = self.settle_rx.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = Vec::new();
        while let Ok(bytes) = rx.try_recv() {
            if batch.is_empty() {
                batch = bytes;
            } else {
                batch.extend_from_slice(&bytes);
            }
        }
        if batch.is_empty() {
            return;
        }
        let segment = self.current.load();
        if let Err(e) = (&segment.file).write_all(&batch) {
            // Their intents are in the file: the next start closes them as unsettled.
            tracing::error!(error = %e, "cannot append settlements to the spend ledger");
        }
    }

    /// Ships everything written so far (a previous process's segments first). Returns whether
    /// everything reached the database.
    pub async fn ship(&self) -> bool {
        let mut pos = self.shipping.lock().await;
        self.write_settlements();
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
        // Previous processes' segments, oldest first; then their open requests are unsettled.
        let mut leftovers = std::mem::take(&mut *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()));
        while let Some(left) = leftovers.first_mut() {
            while let Some((seq, path)) = left.segments.first().cloned() {
                let from = if left.position.seq == seq {
                    left.position.offset
                } else {
                    0
                };
                match self.ship_file(&path, seq, from, &left.dir).await {
                    Ok(p) => left.position = p,
                    Err(()) => {
                        *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()) = leftovers;
                        return false;
                    }
                }
                let _ = std::fs::remove_file(&path);
                left.segments.remove(0);
            }
            let now_ms = chrono::Utc::now().timestamp_millis();
            match self.db.close_unsettled(&left.instance, now_ms).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(
                            requests = n,
                            slot = %left.dir.display(),
                            "requests left open by a previous process closed as unsettled"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot close a previous process's open requests yet");
                    *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()) = leftovers;
                    return false;
                }
            }
            leftovers.remove(0);
        }
        let segment = self.current.load_full();
        let from = if pos.seq == segment.seq { pos.offset } else { 0 };
        match self.ship_file(&segment.path, segment.seq, from, &self.dir).await {
            Ok(p) => *pos = p,
            Err(()) => return false,
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
        match self.ship_file(&old.path, old.seq, from, &self.dir).await {
            Ok(p) => *pos = p,
            Err(()) => {
                *self.leftovers.lock().unwrap_or_else(|p| p.into_inner()) = vec![Leftover {
                    dir: self.dir.clone(),
                    instance: self.instance.to_string(),
                    segments: vec![(old.seq, old.path.clone())],
                    position: *pos,
                    _lock: None,
                }];
                return false;
            }
        }
        let _ = std::fs::remove_file(&old.path);
        true
    }

    /// Ships `path` from `from`; returns the new position, also written to `dir`.
    async fn ship_file(&self, path: &Path, seq: u64, from: u64, dir: &Path) -> Result<Position, ()> {
        let p = path.to_owned();
        let read = tokio::task::spawn_blocking(move || read_from(&p, from)).await;
        let bytes = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read a ledger segment");
                return Err(());
            }
            Err(_) => return Err(()),
        };
        let used = if self.db.writes_blocking() {
            // Decoded and written on a blocking thread, straight from the file's bytes.
            let (db, p) = (self.db.clone(), path.to_owned());
            let wrote = tokio::task::spawn_blocking(move || {
                let (entries, used) = record::decode(&p, &bytes);
                for chunk in entries.chunks(BLOCKING_BATCH) {
                    db.apply_blocking(chunk)?;
                }
                Ok::<_, sluice_store::StoreError>(used)
            })
            .await;
            match wrote {
                Ok(Ok(used)) => used,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "ledger batch not shipped");
                    return Err(());
                }
                Err(_) => return Err(()),
            }
        } else {
            let (entries, used) = record::decode(path, &bytes);
            for chunk in entries.chunks(BATCH) {
                if let Err(e) = self.db.apply(chunk).await {
                    tracing::debug!(error = %e, "ledger batch not shipped");
                    return Err(());
                }
            }
            used
        };
        let end = from + used as u64;
        let p = Position { seq, offset: end };
        let dir = dir.to_owned();
        let _ = tokio::task::spawn_blocking(move || write_position(&dir, p)).await;
        Ok(p)
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

    async fn assert_states(db: &LedgerDb, expect: &[(&str, &str)]) {
        let want: Vec<(String, String)> = expect.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
        assert_eq!(db.states().await.unwrap(), want);
    }

    /// A ledger directory and database in a temporary directory (kept alive by the first).
    async fn setup() -> (tempfile::TempDir, LedgerConfig, LedgerDb) {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig {
            enabled: true,
            dir: dir.path().join("wal"),
            ship_interval: Duration::from_secs(3600),
            retention: None,
        };
        let db = LedgerDb::sqlite(dir.path().join("l.db").to_str().unwrap())
            .await
            .unwrap();
        (dir, config, db)
    }

    /// Drops the ledger once its shipping task has let go of it (the slot's lock goes with it).
    async fn close(l: Arc<Ledger>) {
        while Arc::strong_count(&l) > 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn settle(id: &str) -> Entry<'_> {
        Entry::Settlement(Settlement {
            id: id.into(),
            at: 1_795_338_000_100,
            deployment: None,
            model: None,
            status: 200,
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_tokens: 0,
            cost: 3,
            currency: None,
            estimated: false,
            detail: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_restart_ships_the_old_segments_and_unsettles_what_was_left_open() {
        let (_dir, config, db) = setup().await;
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
        close(first).await;

        let second = Ledger::open(&config, db.clone()).await.unwrap();
        assert_eq!(second.instance().as_ref(), me, "the instance id is kept");
        second.append(&intent("d", &me)).unwrap();
        assert!(second.ship().await);
        assert_states(
            &db,
            &[("a", "settled"), ("b", "unsettled"), ("c", "unsettled"), ("d", "open")],
        )
        .await;
        let left: Vec<_> = std::fs::read_dir(&config.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".wal"))
            .collect();
        assert_eq!(left.len(), 1, "old segments are removed once shipped: {left:?}");
    }

    #[tokio::test]
    async fn a_second_process_takes_the_next_slot_and_orphaned_slots_are_adopted() {
        let (_dir, config, db) = setup().await;
        let old = Ledger::open(&config, db.clone()).await.unwrap();
        let new = Ledger::open(&config, db.clone()).await.unwrap();
        assert_ne!(old.dir, new.dir, "a running process's slot is not shared");
        assert_ne!(old.instance(), new.instance());
        let (a, b) = (old.instance().to_string(), new.instance().to_string());
        old.append(&intent("a1", &a)).unwrap();
        new.append(&intent("b1", &b)).unwrap();
        new.append(&settle("b1")).unwrap();
        new.append(&intent("b2", &b)).unwrap();
        // Neither ships: both end with their records only in their files.
        close(old).await;
        close(new).await;

        let third = Ledger::open(&config, db.clone()).await.unwrap();
        assert_eq!(third.instance().as_ref(), a, "the first free slot is the first one");
        assert!(third.ship().await);
        assert_states(&db, &[("a1", "unsettled"), ("b1", "settled"), ("b2", "unsettled")]).await;
        // The adopted slot is free again, and empty.
        let fourth = Ledger::open(&config, db.clone()).await.unwrap();
        assert_eq!(fourth.instance().as_ref(), b);
        assert!(fourth.ship().await);
        assert_eq!(db.states().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_running_process_takes_up_a_slot_left_after_it_started() {
        let (_dir, config, db) = setup().await;
        let old = Ledger::open(&config, db.clone()).await.unwrap();
        let new = Ledger::open(&config, db.clone()).await.unwrap();
        let a = old.instance().to_string();
        old.append(&intent("x1", &a)).unwrap();
        // The old process goes without shipping (killed, or its database was away).
        close(old).await;
        assert!(new.ship().await);
        assert!(
            db.states().await.unwrap().is_empty(),
            "nothing of the old one shipped yet"
        );
        new.adopt_orphans().await;
        assert!(new.ship().await);
        assert_states(&db, &[("x1", "unsettled")]).await;
    }
}
