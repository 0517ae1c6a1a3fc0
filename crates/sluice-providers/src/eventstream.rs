//! AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock streams use, and
//! the one place the data path chooses between it and SSE ([`Framing`]).
//!
//! A message is `total length (u32) | headers length (u32) | prelude CRC32 | headers | payload |
//! message CRC32`, big-endian. Each decoded message becomes an [`SseEvent`] whose `event` is the
//! `:event-type` header (or `exception:{:exception-type}` for an exception message) and whose
//! `data` is the payload, so stream translators see one kind of event whatever the framing.

use bytes::{Buf, Bytes, BytesMut};

use crate::fault::StreamFault;
use crate::sse::{SseEvent, SseParser};

/// Largest message accepted (Bedrock's chunks are small; this only bounds a corrupt length).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct EventStreamParser {
    buf: BytesMut,
    eof: bool,
}

impl EventStreamParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn end_of_input(&mut self) {
        self.eof = true;
    }

    /// The next whole message; `Err` for a corrupt one (bad length or checksum), or for bytes
    /// left over when the input ended.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, StreamFault>> {
        if self.buf.len() < 12 {
            if self.eof && !self.buf.is_empty() {
                self.buf.clear();
                return Some(Err(StreamFault::Malformed));
            }
            return None;
        }
        let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        let headers_len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        let prelude_crc = u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
        if crc32fast::hash(&self.buf[..8]) != prelude_crc || total < 16 + headers_len || total > MAX_MESSAGE {
            self.buf.clear();
            return Some(Err(StreamFault::Malformed));
        }
        if self.buf.len() < total {
            if self.eof {
                self.buf.clear();
                return Some(Err(StreamFault::Malformed));
            }
            return None;
        }
        let raw = self.buf.split_to(total).freeze();
        let crc = u32::from_be_bytes([raw[total - 4], raw[total - 3], raw[total - 2], raw[total - 1]]);
        if crc32fast::hash(&raw[..total - 4]) != crc {
            return Some(Err(StreamFault::Malformed));
        }
        let headers = match parse_headers(&raw[12..12 + headers_len]) {
            Some(h) => h,
            None => return Some(Err(StreamFault::Malformed)),
        };
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let event = match find(":message-type").as_deref() {
            Some("exception") => format!("exception:{}", find(":exception-type").unwrap_or_default()),
            Some("error") => format!("exception:{}", find(":error-code").unwrap_or_default()),
            _ => find(":event-type").unwrap_or_default(),
        };
        let data = raw.slice(12 + headers_len..total - 4);
        Some(Ok(SseEvent {
            raw,
            event: Some(event),
            data: Some(data),
        }))
    }
}

/// String-valued headers; other value types are skipped by their declared sizes.
fn parse_headers(mut b: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while b.has_remaining() {
        let name_len = usize::from(*b.first()?);
        b.advance(1);
        let name = std::str::from_utf8(b.get(..name_len)?).ok()?.to_owned();
        b.advance(name_len);
        let kind = *b.first()?;
        b.advance(1);
        let skip = |b: &mut &[u8], n: usize| -> Option<()> {
            b.get(..n)?;
            b.advance(n);
            Some(())
        };
        match kind {
            0 | 1 => {}                // bool true / false
            2 => skip(&mut b, 1)?,     // byte
            3 => skip(&mut b, 2)?,     // short
            4 => skip(&mut b, 4)?,     // int
            5 | 8 => skip(&mut b, 8)?, // long, timestamp
            9 => skip(&mut b, 16)?,    // uuid
            6 | 7 => {
                let len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
                b.advance(2);
                let value = b.get(..len)?;
                if kind == 7 {
                    out.push((name, std::str::from_utf8(value).ok()?.to_owned()));
                }
                b.advance(len);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// How an upstream frames its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    #[default]
    Sse,
    /// AWS event-stream (Bedrock).
    EventStream,
}

/// A stream parser for either framing.
#[derive(Debug)]
pub enum StreamParser {
    Sse(SseParser),
    EventStream(EventStreamParser),
}

impl StreamParser {
    pub fn new(framing: Framing) -> StreamParser {
        match framing {
            Framing::Sse => StreamParser::Sse(SseParser::new()),
            Framing::EventStream => StreamParser::EventStream(EventStreamParser::default()),
        }
    }
    pub fn push(&mut self, bytes: &[u8]) {
        match self {
            StreamParser::Sse(p) => p.push(bytes),
            StreamParser::EventStream(p) => p.push(bytes),
        }
    }
    pub fn end_of_input(&mut self) {
        match self {
            StreamParser::Sse(p) => p.end_of_input(),
            StreamParser::EventStream(p) => p.end_of_input(),
        }
    }
    pub fn next_event(&mut self) -> Option<Result<SseEvent, StreamFault>> {
        match self {
            StreamParser::Sse(p) => p.next_event().map(Ok),
            StreamParser::EventStream(p) => p.next_event(),
        }
    }
}

/// Encodes one message with string headers (tests and tools; the gateway only decodes).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut h = Vec::new();
    for (k, v) in headers {
        h.push(k.len() as u8);
        h.extend_from_slice(k.as_bytes());
        h.push(7);
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = 16 + h.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude = crc32fast::hash(&out);
    out.extend_from_slice(&prelude.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut all = Vec::new();
        for (i, t) in ["messageStart", "contentBlockDelta", "messageStop"].iter().enumerate() {
            all.extend_from_slice(&encode(
                &[
                    (":event-type", t),
                    (":content-type", "application/json"),
                    (":message-type", "event"),
                ],
                format!("{{\"n\":{i}}}").as_bytes(),
            ));
        }
        all
    }

    #[test]
    fn decodes_messages_and_rejects_corruption() {
        let mut p = EventStreamParser::default();
        p.push(&sample());
        let names: Vec<String> = std::iter::from_fn(|| p.next_event())
            .map(|e| e.unwrap().event.unwrap())
            .collect();
        assert_eq!(names, ["messageStart", "contentBlockDelta", "messageStop"]);
        let mut bad = sample();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let mut p = EventStreamParser::default();
        p.push(&bad);
        p.end_of_input();
        let results: Vec<_> = std::iter::from_fn(|| p.next_event()).collect();
        assert!(results.last().unwrap().is_err());
        let exc = encode(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            b"{\"message\":\"slow down\"}",
        );
        let mut p = EventStreamParser::default();
        p.push(&exc);
        assert_eq!(
            p.next_event().unwrap().unwrap().event.as_deref(),
            Some("exception:throttlingException")
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_messages(splits in proptest::collection::vec(0usize..300, 0..10)) {
            let bytes = sample();
            let mut splits = splits;
            splits.sort_unstable();
            let mut p = EventStreamParser::default();
            let mut got = Vec::new();
            let mut at = 0;
            for s in splits.into_iter().chain(std::iter::once(bytes.len())) {
                let s = s.clamp(at, bytes.len());
                p.push(&bytes[at..s]);
                at = s;
                while let Some(e) = p.next_event() {
                    got.push(e.unwrap().data.unwrap());
                }
            }
            prop_assert_eq!(got.len(), 3);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut p = EventStreamParser::default();
            p.push(&bytes);
            p.end_of_input();
            for _ in 0..50 {
                if p.next_event().is_none() { break; }
            }
        }
    }
}
