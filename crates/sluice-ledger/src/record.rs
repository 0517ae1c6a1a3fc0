//! The write-ahead file's records: compact binary, one `write(2)` each.
//!
//! ```text
//! 0xB1 | kind ('I' intent, 'S' settlement) | payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload
//! ```
//!
//! The payload is the record's fields in order: integers little-endian, text as a varint length
//! and its bytes, optional text as 0 (absent) or length + 1. A reader stops at the end of what it
//! knows, so fields added at the end later are skipped by older readers. A record whose header
//! or payload is cut short (a kill in the middle of a write) ends what can be read for now; one
//! whose checksum fails is skipped. Segments written by earlier versions hold JSON lines
//! (`{"i":…}` / `{"s":…}`); a segment may hold both, and both are read.

use std::borrow::Cow;
use std::path::Path;

use sluice_store::ledger::{Detail, Entry, Intent, Settlement};

const MAGIC: u8 = 0xB1;
const HEADER: usize = 10;

/// Appends `entry`'s record to `out`.
pub fn encode(entry: &Entry<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[MAGIC, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let kind = match entry {
        Entry::Intent(i) => {
            text(out, &i.id);
            text(out, &i.instance);
            out.extend_from_slice(&i.at.to_le_bytes());
            for t in [&i.key, &i.team, &i.tenant, &i.route, &i.model] {
                opt_text(out, t);
            }
            varint(out, i.reserved_tokens);
            varint(out, i.reserved_cost);
            b'I'
        }
        Entry::Settlement(s) => {
            text(out, &s.id);
            out.extend_from_slice(&s.at.to_le_bytes());
            opt_text(out, &s.deployment);
            opt_text(out, &s.model);
            varint(out, u64::from(s.status));
            for n in [s.prompt_tokens, s.completion_tokens, s.cached_tokens, s.cost] {
                varint(out, n);
            }
            opt_text(out, &s.currency);
            out.push(u8::from(s.estimated));
            let d = &s.detail;
            opt_u64(out, d.latency_us);
            opt_u64(out, d.ttfb_us);
            opt_text(out, &d.error_class);
            opt_text(out, &d.cache);
            opt_text(out, &d.guardrail);
            opt_u64(out, d.saved_cost_micros);
            opt_u64(out, d.ttft_us);
            b'S'
        }
    };
    let payload = &out[start + HEADER..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start + 1] = kind;
    out[start + 2..start + 6].copy_from_slice(&len);
    out[start + 6..start + 10].copy_from_slice(&crc);
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn text(out: &mut Vec<u8>, t: &str) {
    varint(out, t.len() as u64);
    out.extend_from_slice(t.as_bytes());
}

fn opt_text(out: &mut Vec<u8>, t: &Option<Cow<'_, str>>) {
    match t {
        None => out.push(0),
        Some(t) => {
            varint(out, t.len() as u64 + 1);
            out.extend_from_slice(t.as_bytes());
        }
    }
}

fn opt_u64(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        None => out.push(0),
        Some(n) => varint(out, n.saturating_add(1)),
    }
}

/// The records in `buf` (borrowing their text), and how many bytes of it they took: a record
/// cut short at the end is left for the next read.
pub fn decode<'a>(path: &Path, buf: &'a [u8]) -> (Vec<Entry<'a>>, usize) {
    let mut entries = Vec::with_capacity(buf.len() / 120);
    let mut at = 0;
    while at < buf.len() {
        match buf[at] {
            MAGIC => {
                let Some(header) = buf.get(at..at + HEADER) else { break };
                let len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
                let crc = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
                let Some(payload) = buf.get(at + HEADER..at + HEADER + len) else {
                    break;
                };
                at += HEADER + len;
                if crc32fast::hash(payload) != crc {
                    tracing::warn!(file = %path.display(), "ledger record skipped: its checksum does not match");
                    continue;
                }
                match read(header[1], payload) {
                    Some(e) => entries.push(e),
                    None => tracing::warn!(file = %path.display(), "ledger record skipped: not a record"),
                }
            }
            b'{' => {
                // A JSON line, as earlier versions wrote.
                let Some(end) = memchr::memchr(b'\n', &buf[at..]) else {
                    break;
                };
                let line = &buf[at..at + end];
                at += end + 1;
                match serde_json::from_slice::<Entry<'a>>(line) {
                    Ok(e) => entries.push(e),
                    Err(e) => tracing::warn!(file = %path.display(), error = %e, "ledger line skipped: not a record"),
                }
            }
            b'\n' => at += 1,
            _ => {
                // Not the start of a record: find the next one.
                tracing::warn!(file = %path.display(), offset = at, "ledger bytes skipped: not a record");
                at += 1;
                while at < buf.len() && buf[at] != MAGIC && buf[at] != b'{' {
                    at += 1;
                }
            }
        }
    }
    (entries, at)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.buf.get(..n)?, self.buf.get(n..)?);
        self.buf = rest;
        Some(head)
    }
    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(n);
            }
        }
        None
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<Cow<'a, str>> {
        let n = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.take(n)?).ok().map(Cow::Borrowed)
    }
    fn opt_text(&mut self) -> Option<Option<Cow<'a, str>>> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n == 0 {
            return Some(None);
        }
        std::str::from_utf8(self.take(n - 1)?)
            .ok()
            .map(|t| Some(Cow::Borrowed(t)))
    }
    fn opt_u64(&mut self) -> Option<Option<u64>> {
        Some(self.varint()?.checked_sub(1))
    }
    /// A field added after the record was written reads as absent.
    fn later<T: Default>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.buf.is_empty() {
            Some(T::default())
        } else {
            f(self)
        }
    }
}

fn read(kind: u8, payload: &[u8]) -> Option<Entry<'_>> {
    let mut r = Reader { buf: payload };
    match kind {
        b'I' => Some(Entry::Intent(Intent {
            id: r.text()?,
            instance: r.text()?,
            at: r.i64()?,
            key: r.opt_text()?,
            team: r.opt_text()?,
            tenant: r.opt_text()?,
            route: r.opt_text()?,
            model: r.opt_text()?,
            reserved_tokens: r.varint()?,
            reserved_cost: r.varint()?,
        })),
        b'S' => Some(Entry::Settlement(Settlement {
            id: r.text()?,
            at: r.i64()?,
            deployment: r.opt_text()?,
            model: r.opt_text()?,
            status: u16::try_from(r.varint()?).ok()?,
            prompt_tokens: r.varint()?,
            completion_tokens: r.varint()?,
            cached_tokens: r.varint()?,
            cost: r.varint()?,
            currency: r.opt_text()?,
            estimated: *r.take(1)?.first()? != 0,
            detail: Detail {
                latency_us: r.later(Reader::opt_u64)?,
                ttfb_us: r.later(Reader::opt_u64)?,
                error_class: r.later(Reader::opt_text)?,
                cache: r.later(Reader::opt_text)?,
                guardrail: r.later(Reader::opt_text)?,
                saved_cost_micros: r.later(Reader::opt_u64)?,
                ttft_us: r.later(Reader::opt_u64)?,
            },
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn intent() -> Entry<'static> {
        Entry::Intent(Intent {
            id: "req-1".into(),
            instance: "inst".into(),
            at: 1_795_338_000_000,
            key: Some("k".into()),
            team: None,
            tenant: Some("t\n{".into()),
            route: Some("r".into()),
            model: Some("chat".into()),
            reserved_tokens: 1 << 40,
            reserved_cost: 0,
        })
    }

    fn settlement() -> Entry<'static> {
        Entry::Settlement(Settlement {
            id: "req-1".into(),
            at: -5,
            deployment: Some("d".into()),
            model: None,
            status: 503,
            prompt_tokens: 127,
            completion_tokens: 128,
            cached_tokens: u64::MAX,
            cost: 3,
            currency: Some("EUR".into()),
            estimated: true,
            detail: Detail {
                latency_us: Some(0),
                ttfb_us: None,
                error_class: Some("upstream_5xx".into()),
                cache: Some("hit".into()),
                guardrail: Some("".into()),
                saved_cost_micros: Some(1_234),
                ttft_us: Some(77_000),
            },
        })
    }

    #[test]
    fn records_read_back_as_written_between_json_lines_and_a_torn_tail() {
        let mut buf = Vec::new();
        encode(&intent(), &mut buf);
        // An earlier version's line in the same segment.
        buf.extend_from_slice(br#"{"i":{"id":"old","instance":"inst","at":1,"key":null,"team":null,"tenant":null,"route":null,"model":null,"reserved_tokens":1,"reserved_cost":2}}"#);
        buf.push(b'\n');
        encode(&settlement(), &mut buf);
        let whole = buf.len();
        // A record cut short by a kill.
        let mut torn = Vec::new();
        encode(&settlement(), &mut torn);
        buf.extend_from_slice(&torn[..torn.len() - 3]);

        let (entries, used) = decode(Path::new("seg"), &buf);
        assert_eq!(used, whole, "the torn record is left for later");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], intent());
        assert!(matches!(&entries[1], Entry::Intent(i) if i.id == "old"));
        assert_eq!(entries[2], settlement());
        // Once it is complete, it reads.
        buf.extend_from_slice(&torn[torn.len() - 3..]);
        let (entries, used) = decode(Path::new("seg"), &buf[whole..]);
        assert_eq!((entries, used), (vec![settlement()], torn.len()));
    }

    #[test]
    fn a_damaged_record_is_skipped_and_reading_goes_on() {
        let mut buf = Vec::new();
        encode(&intent(), &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        buf.extend_from_slice(b"garbage");
        encode(&settlement(), &mut buf);
        let (entries, used) = decode(Path::new("seg"), &buf);
        assert_eq!(entries, vec![settlement()]);
        assert_eq!(used, buf.len());
    }

    #[test]
    fn a_settlement_without_the_later_fields_reads_them_as_absent() {
        let mut buf = Vec::new();
        encode(&settlement(), &mut buf);
        // Drop the detail fields (as a record of a version before them would be): rebuild the
        // payload up to `estimated` and fix the header.
        let Entry::Settlement(mut s) = settlement() else {
            unreachable!()
        };
        s.detail = Detail::default();
        let mut full = Vec::new();
        encode(&Entry::Settlement(s.clone()), &mut full);
        let cut = full.len() - 6; // six absent optional fields, one byte each
        let payload = full[HEADER..cut].to_vec();
        let mut old = vec![MAGIC, b'S'];
        old.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        old.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        old.extend_from_slice(&payload);
        let (entries, _) = decode(Path::new("seg"), &old);
        assert_eq!(entries, vec![Entry::Settlement(s)]);
    }
}
