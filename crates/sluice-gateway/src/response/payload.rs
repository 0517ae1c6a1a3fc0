//! The payload log's response stage: it sees the answer after the output guardrails (so what
//! they redacted is redacted here too) and before input is restored, keeps its text and
//! tool-call arguments (bounded), and hands the row — with the request as the input
//! guardrails let it through — to the payload log when the answer ends, however it ends.

use std::sync::Arc;

use sluice_providers::chat::Delta;
use sluice_providers::translate::FilterStop;
use sluice_store::ledger::PayloadRow;

use super::ResponseStage;
use crate::payload_log::PayloadLog;

/// The most of a prompt or an answer a row keeps (bytes).
pub const MAX_BYTES: usize = 256 * 1024;

/// One request's capture.
pub struct Capture {
    row: Option<PayloadRow>,
    sink: Arc<PayloadLog>,
}

impl Capture {
    /// `row` holds everything but the answer (`response` empty; `request` already bounded).
    pub fn new(row: PayloadRow, sink: Arc<PayloadLog>) -> Capture {
        Capture { row: Some(row), sink }
    }

    fn keep(&mut self, text: &str) {
        if let Some(r) = &mut self.row {
            push_bounded(&mut r.response, text);
        }
    }

    fn flush(&mut self) {
        if let Some(row) = self.row.take() {
            self.sink.send(row);
        }
    }
}

/// Appends `text` to `to`, up to [`MAX_BYTES`] (cut on a character boundary).
pub fn push_bounded(to: &mut String, text: &str) {
    let room = MAX_BYTES.saturating_sub(to.len());
    if text.len() <= room {
        to.push_str(text);
    } else {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        to.push_str(&text[..end]);
    }
}

impl ResponseStage for Capture {
    fn on_event(&mut self, delta: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        match &delta {
            Delta::Text(t) | Delta::ToolArgs { json: t, .. } => self.keep(t),
            _ => {}
        }
        out.push(delta);
        Ok(())
    }

    fn finish(&mut self, _: &mut Vec<Delta>) -> Result<(), FilterStop> {
        self.flush();
        Ok(())
    }
}

impl Drop for Capture {
    /// An answer that ended early (a guardrail stopped it, the client left) is stored as far as
    /// it went.
    fn drop(&mut self) {
        self.flush();
    }
}
