//! A bounded pool of blocking threads that run embedding jobs: a queue of fixed size (a full
//! queue refuses at once), jobs dropped unrun once their deadline has passed, the answer sent
//! back on a oneshot channel. The threads end when the pool is dropped. A pool may hold no
//! model: its threads then run the searches for vectors embedded elsewhere (an embedding
//! deployment), still off the async workers.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::model::MiniLm;

type Job = Box<dyn FnOnce(Option<&MiniLm>) + Send>;

/// The queue is full: the caller goes on without an embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the embedding queue is full")]
pub struct Busy;

/// What the pool has done, for metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Jobs waiting for a thread.
    pub queued: AtomicI64,
    /// Jobs refused because the queue was full.
    pub refused: AtomicU64,
    /// Jobs dropped unrun because their deadline passed while they waited.
    pub late: AtomicU64,
    /// Jobs run.
    pub done: AtomicU64,
}

/// Threads that embed.
pub struct Pool {
    jobs: SyncSender<Job>,
    stats: Arc<PoolStats>,
    model_id: Option<String>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("model", &self.model_id)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// `threads` threads sharing `model` (if any), and a queue of `queue` jobs.
    pub fn start(model: Option<MiniLm>, threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (jobs, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let model_id = model.as_ref().map(|m| m.id().to_owned());
        let model = Arc::new(model);
        let stats = Arc::new(PoolStats::default());
        for n in 0..threads.max(1) {
            let (rx, model) = (rx.clone(), model.clone());
            std::thread::Builder::new()
                .name(format!("sluice-embed-{n}"))
                .spawn(move || work(&rx, &model))?;
        }
        Ok(Pool { jobs, stats, model_id })
    }

    /// The in-process model's id; `None` when the pool only searches.
    pub fn model_id(&self) -> Option<&str> {
        self.model_id.as_deref()
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Queues `job`; its answer comes on the receiver — or never (the receiver then errors)
    /// when `deadline` passes before a thread takes it. A full queue refuses at once.
    pub fn submit<T: Send + 'static>(
        &self,
        deadline: Instant,
        job: impl FnOnce(Option<&MiniLm>) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Busy> {
        let (tx, rx) = oneshot::channel();
        let stats = self.stats.clone();
        let wrapped: Job = Box::new(move |model: Option<&MiniLm>| {
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            if Instant::now() >= deadline || tx.is_closed() {
                stats.late.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let _ = tx.send(job(model));
            stats.done.fetch_add(1, Ordering::Relaxed);
        });
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(wrapped) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }
}

/// A thread's life: take a job, run it, until the pool is gone.
fn work(rx: &Mutex<Receiver<Job>>, model: &Option<MiniLm>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        match job {
            Ok(job) => job(model.as_ref()),
            Err(_) => return,
        }
    }
}
