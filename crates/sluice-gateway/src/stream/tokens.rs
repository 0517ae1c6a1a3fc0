//! Token counting with the o200k tokenizer: loaded once in the background at start, and run on
//! a blocking thread for large texts (or until it has loaded), never on an async worker.

use std::sync::atomic::{AtomicBool, Ordering};

/// Texts larger than this are counted on a blocking thread, off the async workers.
const COUNT_INLINE_MAX: usize = 4 * 1024;

/// Whether the tokenizer is loaded (until it is, every count runs on a blocking thread: the
/// first load takes ~0.1 s).
static TOKENIZER_READY: AtomicBool = AtomicBool::new(false);

/// Tokens in `text` with the o200k tokenizer (OpenAI's current models; an approximation for
/// other vendors' models, which do not publish theirs).
pub fn count_tokens(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len() as u64
}

/// Whether the tokenizer is loaded (counting inline is then cheap for small texts).
pub fn tokenizer_ready() -> bool {
    TOKENIZER_READY.load(Ordering::Acquire)
}

/// Loads the tokenizer, so the first request that needs it does not pay for it.
pub fn preload_tokenizer() {
    let _ = count_tokens("warm");
    TOKENIZER_READY.store(true, Ordering::Release);
}

/// Tokens in `bytes` (read as UTF-8, lossily): inline when small and the tokenizer is loaded,
/// else on a blocking thread. A count that cannot run is taken as too large to admit.
pub async fn count_off_thread(bytes: bytes::Bytes) -> u64 {
    let inline = tokenizer_ready() && bytes.len() <= COUNT_INLINE_MAX;
    let count = move || count_tokens(&String::from_utf8_lossy(&bytes));
    if inline {
        count()
    } else {
        tokio::task::spawn_blocking(count).await.unwrap_or(u64::MAX / 4)
    }
}

/// Tokens in a piece of generated text as it streams past: counted when small and the
/// tokenizer is loaded, else estimated (a token is rarely under four bytes of text).
pub fn count_piece(text: &str) -> u64 {
    if text.len() <= COUNT_INLINE_MAX && tokenizer_ready() {
        count_tokens(text)
    } else {
        (text.len() as u64).div_ceil(4)
    }
}
