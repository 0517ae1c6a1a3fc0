//! The per-stream contract: the state that sees every upstream event of one streamed response
//! and decides what the client receives.

use bytes::Bytes;

use crate::fault::StreamFault;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// Per-stream state: sees every upstream event in order and decides what the client receives.
pub trait StreamTranslator: Send {
    /// Handles one upstream event, appending what the client should receive to `out`.
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<Bytes>) -> Result<(), StreamFault>;
    /// Usage the upstream reported, if it did.
    fn reported_usage(&self) -> Option<Usage>;
    /// Completion chunks relayed so far (an estimate of completion tokens when none is reported).
    fn relayed_chunks(&self) -> u64;
    /// Prompt tokens the upstream counted before its final usage (Anthropic says them in
    /// `message_start`): what a stream cut short is charged for its prompt.
    fn prompt_tokens(&self) -> Option<u64> {
        None
    }
    /// Why the answer stopped, in OpenAI's words (`stop`, `length`, `tool_calls`,
    /// `content_filter`), once the upstream said.
    fn finish_reason(&self) -> Option<&'static str> {
        None
    }
    /// Whether the upstream said it was done (e.g. `data: [DONE]`).
    fn saw_end(&self) -> bool;
    /// Where the translator keeps generated text (content, reasoning, tool arguments) when
    /// asked to. Required: a translator that kept none would charge a stream cut short under
    /// token limits no output at all.
    fn text_buffer(&mut self) -> Option<&mut Option<String>>;
    /// From now on, keep the generated text for [`StreamTranslator::take_text`]: a stream cut
    /// short is then counted with a tokenizer.
    fn collect_text(&mut self) {
        if let Some(b) = self.text_buffer() {
            b.get_or_insert_with(String::new);
        }
    }
    /// Moves the text generated since the last call into `into` (nothing unless collecting).
    fn take_text(&mut self, into: &mut String) {
        if let Some(Some(t)) = self.text_buffer() {
            into.push_str(t);
            t.clear();
        }
    }
    /// An event telling the client the stream failed, in the client's protocol.
    fn error_event(&self, code: &str, message: &str) -> Bytes;
}
