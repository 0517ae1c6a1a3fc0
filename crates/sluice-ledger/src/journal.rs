//! The ledger's journal on disk: a slot per process (a directory under a file lock), numbered
//! segments of lines in each, and the position shipping has reached.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A segment this large is closed and a new one started, once shipped.
pub(crate) const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
/// Entries per database transaction.
pub(crate) const BATCH: usize = 2_000;
/// Entries per transaction of the blocking SQLite writer: a whole shipment at up to 100 000
/// requests a second (one commit, and the table's and indexes' last pages written once, per
/// shipment rather than per 2 000 entries), bounded so that a restart's leftover segment does
/// not grow the WAL without limit.
pub(crate) const BLOCKING_BATCH: usize = 100_000;
/// Processes that may write to one ledger directory at once.
pub(crate) const SLOTS: usize = 16;
/// Every this many ship intervals, slots left by ended processes are looked for.
pub(crate) const ADOPT_EVERY: u32 = 20;

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: std::fs::File,
}

/// Where shipping stands: a segment and the byte offset shipped up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) seq: u64,
    pub(crate) offset: u64,
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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a previous process left in a slot: its segments (oldest first), where shipping stood,
/// and the slot's lock while it is not ours.
#[derive(Debug)]
pub(crate) struct Leftover {
    pub(crate) dir: PathBuf,
    pub(crate) instance: String,
    pub(crate) segments: Vec<(u64, PathBuf)>,
    pub(crate) position: Position,
    pub(crate) _lock: Option<std::fs::File>,
}

pub(crate) fn slot_dir(root: &Path, n: usize) -> PathBuf {
    if n == 0 {
        root.to_owned()
    } else {
        root.join(format!("slot-{n}"))
    }
}

/// Takes the slot's lock, or `None` when a running process holds it.
pub(crate) fn lock_slot(dir: &Path) -> Result<Option<std::fs::File>, LedgerError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// The segment files in `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let seq = name.strip_prefix("ledger-")?.strip_suffix(".wal")?.parse().ok()?;
            Some((seq, path))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Slots other than `mine` whose process is gone and that still hold segments, locked.
pub(crate) fn orphans(root: &Path, mine: usize) -> Vec<Leftover> {
    let mut out = Vec::new();
    for n in (0..SLOTS).filter(|n| *n != mine) {
        let dir = slot_dir(root, n);
        let Ok(instance) = std::fs::read_to_string(dir.join("instance")) else {
            continue;
        };
        let Ok(Some(lock)) = lock_slot(&dir) else { continue };
        match segments(&dir) {
            Ok(segs) if !segs.is_empty() => out.push(Leftover {
                position: read_position(&dir),
                instance: instance.trim().to_owned(),
                segments: segs,
                dir,
                _lock: Some(lock),
            }),
            _ => {}
        }
    }
    out
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("ledger-{seq:010}.wal"))
}

pub(crate) fn open_segment(dir: &Path, seq: u64) -> Result<Segment, LedgerError> {
    let path = segment_path(dir, seq);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    Ok(Segment { seq, path, file })
}

/// This instance's id: made once, kept in the directory (one directory per instance).
pub(crate) fn instance_id(dir: &Path) -> Result<String, LedgerError> {
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

pub(crate) fn read_position(dir: &Path) -> Position {
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

pub(crate) fn write_position(dir: &Path, p: Position) -> std::io::Result<()> {
    let tmp = dir.join("position.tmp");
    std::fs::write(&tmp, format!("{} {}", p.seq, p.offset))?;
    std::fs::rename(tmp, dir.join("position"))
}

/// The bytes of `path` from `offset` to its end (a record still being written included: the
/// reader leaves what is cut short for the next read).
pub(crate) fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}
