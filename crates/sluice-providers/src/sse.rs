//! Incremental Server-Sent Events framing.
//!
//! Bytes go in as they arrive from the network, split anywhere; whole events come out, each with
//! its exact raw bytes (so a relay can forward it untouched) and its parsed `event` / `data`
//! fields. Line endings may be `\n`, `\r\n` or `\r`, as the SSE specification allows; a `\r` at
//! the end of the buffer waits for the next byte before it is read as a line end.

use bytes::{Bytes, BytesMut};

/// One complete event block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The block as received, including its terminating blank line.
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`; `None` for blocks with no data (comments, keep-alives).
    pub data: Option<Bytes>,
}

impl SseEvent {
    /// The data as text (SSE is UTF-8); empty when the block had no data.
    pub fn data_str(&self) -> &str {
        self.data
            .as_deref()
            .and_then(|d| std::str::from_utf8(d).ok())
            .unwrap_or("")
    }
}

/// Where the current block's data lives: a range of the buffer while it is one line, a copy once
/// there are several.
#[derive(Debug, Default)]
enum DataAcc {
    #[default]
    None,
    One(usize, usize),
    Many(Vec<u8>),
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    /// Start of the next unread line, relative to `buf`.
    pos: usize,
    data: DataAcc,
    event: Option<String>,
    bom_checked: bool,
    eof: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if !self.bom_checked && self.buf.len() >= 3 {
            self.bom_checked = true;
            if self.buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                // A BOM is not part of the first line; keep it in the raw bytes but skip it.
                self.pos = 3;
            }
        }
    }

    /// Bytes received but not yet part of a complete event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Marks the end of the input: a trailing `\r` now ends its line. Call `next_event` again
    /// afterwards to drain what that completes.
    pub fn end_of_input(&mut self) {
        self.eof = true;
        self.bom_checked = true;
    }

    /// The next complete event, or `None` until more bytes arrive.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        if !self.bom_checked && self.buf.len() < 3 && [0xEFu8, 0xBB, 0xBF].starts_with(&self.buf) {
            return None; // could still be a BOM
        }
        loop {
            let rest = &self.buf[self.pos..];
            let i = memchr::memchr2(b'\n', b'\r', rest)?;
            let term = if rest[i] == b'\n' {
                1
            } else if i + 1 < rest.len() {
                if rest[i + 1] == b'\n' { 2 } else { 1 }
            } else if self.eof {
                1
            } else {
                return None; // a trailing '\r' may be the first half of "\r\n"
            };
            let (start, end) = (self.pos, self.pos + i);
            self.pos = end + term;
            if start == end {
                return Some(self.dispatch());
            }
            self.field(start, end);
        }
    }

    /// At end of stream: the unterminated remainder, if any. Per the specification an incomplete
    /// block is not dispatched, so only its raw bytes are returned (a relay may still forward them).
    pub fn finish(&mut self) -> Option<Bytes> {
        self.data = DataAcc::None;
        self.event = None;
        self.pos = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    fn field(&mut self, start: usize, end: usize) {
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return; // comment
        }
        let (name, value_start) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = start + c + 1;
                (&line[..c], if self.buf.get(v) == Some(&b' ') { v + 1 } else { v })
            }
            None => (line, end),
        };
        let value_start = value_start.min(end);
        match name {
            b"data" => {
                self.data = match std::mem::take(&mut self.data) {
                    DataAcc::None => DataAcc::One(value_start, end),
                    DataAcc::One(a, b) => {
                        let mut v = Vec::with_capacity(b - a + 1 + end - value_start);
                        v.extend_from_slice(&self.buf[a..b]);
                        v.push(b'\n');
                        v.extend_from_slice(&self.buf[value_start..end]);
                        DataAcc::Many(v)
                    }
                    DataAcc::Many(mut v) => {
                        v.push(b'\n');
                        v.extend_from_slice(&self.buf[value_start..end]);
                        DataAcc::Many(v)
                    }
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(&self.buf[value_start..end]).into_owned()),
            _ => {} // id, retry and unknown fields do not change what we relay
        }
    }

    fn dispatch(&mut self) -> SseEvent {
        let raw = self.buf.split_to(self.pos).freeze();
        self.pos = 0;
        let data = match std::mem::take(&mut self.data) {
            DataAcc::None => None,
            DataAcc::One(a, b) => Some(raw.slice(a..b)),
            DataAcc::Many(v) => Some(Bytes::from(v)),
        };
        SseEvent {
            raw,
            event: self.event.take(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Parsed = Vec<(Option<String>, Option<String>)>;

    fn parse_all(chunks: &[&[u8]]) -> (Parsed, Vec<u8>) {
        let mut p = SseParser::new();
        let mut events = Vec::new();
        let mut raw = Vec::new();
        for c in chunks {
            p.push(c);
            while let Some(e) = p.next_event() {
                raw.extend_from_slice(&e.raw);
                events.push((
                    e.event.clone(),
                    e.data.as_ref().map(|d| String::from_utf8_lossy(d).into_owned()),
                ));
            }
        }
        p.end_of_input();
        while let Some(e) = p.next_event() {
            raw.extend_from_slice(&e.raw);
            events.push((
                e.event.clone(),
                e.data.as_ref().map(|d| String::from_utf8_lossy(d).into_owned()),
            ));
        }
        if let Some(rest) = p.finish() {
            raw.extend_from_slice(&rest);
        }
        (events, raw)
    }

    fn check(input: &str, expected: &[(Option<&str>, Option<&str>)]) {
        let (events, raw) = parse_all(&[input.as_bytes()]);
        let want: Vec<_> = expected
            .iter()
            .map(|(e, d)| (e.map(str::to_owned), d.map(str::to_owned)))
            .collect();
        assert_eq!(events, want, "input {input:?}");
        assert_eq!(raw, input.as_bytes(), "raw bytes are preserved");
    }

    #[test]
    fn framing_cases() {
        check("data: hello\n\n", &[(None, Some("hello"))]);
        check("data:hello\r\n\r\n", &[(None, Some("hello"))]);
        check("data: a\rdata: b\r\r", &[(None, Some("a\nb"))]);
        check(
            "event: ping\ndata: {}\n\ndata: [DONE]\n\n",
            &[(Some("ping"), Some("{}")), (None, Some("[DONE]"))],
        );
        check(": keep-alive\n\n", &[(None, None)]);
        check("data\n\n", &[(None, Some(""))]);
        check("data:  two spaces\n\n", &[(None, Some(" two spaces"))]);
        check("id: 1\nretry: 5\ndata: x\n\n", &[(None, Some("x"))]);
        check("data: unterminated", &[]);
        check("\u{feff}data: bom\n\n", &[(None, Some("bom"))]);
    }

    #[test]
    fn cr_at_buffer_end_waits_for_the_next_byte() {
        let (events, _) = parse_all(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(events, vec![(None, Some("a\nb".to_owned()))]);
    }

    fn stream_strategy() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            "[a-z{}\":, ]{0,12}".prop_map(|s| format!("data: {s}")),
            "[a-z]{1,6}".prop_map(|s| format!("event: {s}")),
            "[a-z ]{0,8}".prop_map(|s| format!(": {s}")),
            Just(String::new()),
        ];
        let eol = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        proptest::collection::vec((line, eol), 0..24)
            .prop_map(|v| v.into_iter().map(|(l, e)| format!("{l}{e}")).collect::<String>())
    }

    proptest! {
        #[test]
        fn same_events_however_the_bytes_are_split(input in stream_strategy(), cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let bytes = input.as_bytes();
            let whole = parse_all(&[bytes]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            let split = parse_all(&chunks);
            prop_assert_eq!(&whole.0, &split.0);
            prop_assert_eq!(&split.1, &bytes.to_vec());
        }
    }
}
