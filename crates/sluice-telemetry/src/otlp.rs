//! OTLP trace export requests (`opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`),
//! written straight into protobuf bytes: a span's attributes go from the gateway's own record
//! into the buffer with no intermediate message objects (no string per attribute key), so a
//! traced request costs a few hundred nanoseconds of encoding rather than dozens of allocations.
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto` and
//! `common/v1/common.proto`; the suite's OTLP receiver decodes what this writes with the
//! official generated classes.

/// `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// `Status.StatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

/// What a span is besides its attributes.
#[derive(Debug, Clone, Copy)]
pub struct SpanHead<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// The W3C `tracestate` this span carries (empty: none).
    pub trace_state: &'a str,
    /// The name, written as its parts joined by one space (`chat gpt-4o`); empty parts skipped.
    pub name: [&'a str; 2],
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: StatusCode,
    /// The status's message (only with `Error`).
    pub status_message: &'a str,
    /// W3C trace flags (bit 0: sampled), plus OTLP's "parent is remote" bits.
    pub flags: u32,
}

/// Spans for one export request, all under one resource and one instrumentation scope.
#[derive(Debug, Default)]
pub struct TraceBatch {
    spans: Vec<u8>,
    count: usize,
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

impl TraceBatch {
    pub fn new() -> TraceBatch {
        TraceBatch::default()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of spans held so far.
    pub fn bytes(&self) -> usize {
        self.spans.len()
    }

    /// Adds a span; `attributes` writes its attributes.
    pub fn push(&mut self, head: &SpanHead<'_>, attributes: impl FnOnce(&mut Attributes<'_>)) {
        self.count += 1;
        // ScopeSpans.spans = 2
        nested(&mut self.spans, 2, |out| {
            bytes_field(out, 1, &head.trace_id);
            bytes_field(out, 2, &head.span_id);
            if !head.trace_state.is_empty() {
                bytes_field(out, 3, head.trace_state.as_bytes());
            }
            if let Some(p) = &head.parent_span_id {
                bytes_field(out, 4, p);
            }
            match head.name {
                [a, ""] | ["", a] => bytes_field(out, 5, a.as_bytes()),
                [a, b] => {
                    tag(out, 5, LEN);
                    varint(out, (a.len() + 1 + b.len()) as u64);
                    out.extend_from_slice(a.as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(b.as_bytes());
                }
            }
            tag(out, 6, VARINT);
            varint(out, head.kind as u64);
            tag(out, 7, FIXED64);
            out.extend_from_slice(&head.start_unix_nano.to_le_bytes());
            tag(out, 8, FIXED64);
            out.extend_from_slice(&head.end_unix_nano.max(head.start_unix_nano).to_le_bytes());
            attributes(&mut Attributes { out, field: 9 });
            if head.status != StatusCode::Unset {
                nested(out, 15, |out| {
                    if !head.status_message.is_empty() {
                        bytes_field(out, 2, head.status_message.as_bytes());
                    }
                    tag(out, 3, VARINT);
                    varint(out, head.status as u64);
                });
            }
            if head.flags != 0 {
                tag(out, 16, FIXED32);
                out.extend_from_slice(&head.flags.to_le_bytes());
            }
        });
    }

    /// The export request's bytes: the resource (`service.name`, `service.version`,
    /// `service.instance.id` and `resource`'s own), the scope, then every span pushed.
    pub fn finish(self, resource: impl FnOnce(&mut Attributes<'_>), scope: (&str, &str)) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.spans.len() + 256);
        // ExportTraceServiceRequest.resource_spans = 1
        nested(&mut out, 1, |out| {
            // ResourceSpans.resource = 1 { attributes = 1 }
            nested(out, 1, |out| resource(&mut Attributes { out, field: 1 }));
            // ResourceSpans.scope_spans = 2 { scope = 1 { name = 1, version = 2 }, spans = 2 }
            nested(out, 2, |out| {
                nested(out, 1, |out| {
                    bytes_field(out, 1, scope.0.as_bytes());
                    bytes_field(out, 2, scope.1.as_bytes());
                });
                out.extend_from_slice(&self.spans);
            });
        });
        out
    }
}

/// Writes `KeyValue`s into a message's repeated attributes field.
#[derive(Debug)]
pub struct Attributes<'a> {
    out: &'a mut Vec<u8>,
    field: u32,
}

impl Attributes<'_> {
    fn kv(&mut self, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
        nested(self.out, self.field, |out| {
            bytes_field(out, 1, key.as_bytes());
            nested(out, 2, value);
        });
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.kv(key, |out| bytes_field(out, 1, value.as_bytes()));
    }

    /// A string attribute when there is a value.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.kv(key, |out| {
            tag(out, 2, VARINT);
            varint(out, u64::from(value));
        });
    }

    pub fn int(&mut self, key: &str, value: i64) {
        self.kv(key, |out| {
            tag(out, 3, VARINT);
            varint(out, value as u64);
        });
    }

    pub fn double(&mut self, key: &str, value: f64) {
        self.kv(key, |out| {
            tag(out, 4, FIXED64);
            out.extend_from_slice(&value.to_le_bytes());
        });
    }

    /// An array of strings (`gen_ai.response.finish_reasons`).
    pub fn strs<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) {
        self.kv(key, |out| {
            // AnyValue.array_value = 5 { values = 1 }
            nested(out, 5, |out| {
                for v in values {
                    nested(out, 1, |out| bytes_field(out, 1, v.as_bytes()));
                }
            });
        });
    }
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A length-delimited field whose body `body` writes: written in place, then its length is
/// put in front of it (bodies are small; the move is a short `memmove`).
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, LEN);
    let at = out.len();
    body(out);
    let len = out.len() - at;
    if len < 0x80 {
        out.insert(at, len as u8);
    } else {
        let mut prefix = Vec::with_capacity(5);
        varint(&mut prefix, len as u64);
        out.splice(at..at, prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader for the tests: (field, wire type, value) triples.
    fn fields(mut b: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
        fn read_varint(b: &mut &[u8]) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let t = read_varint(&mut b);
            let (field, wire) = ((t >> 3) as u32, (t & 7) as u8);
            let value = match wire {
                VARINT => read_varint(&mut b).to_le_bytes().to_vec(),
                FIXED64 => {
                    let v = b[..8].to_vec();
                    b = &b[8..];
                    v
                }
                FIXED32 => {
                    let v = b[..4].to_vec();
                    b = &b[4..];
                    v
                }
                LEN => {
                    let n = read_varint(&mut b) as usize;
                    let v = b[..n].to_vec();
                    b = &b[n..];
                    v
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, wire, value));
        }
        out
    }

    fn one(b: &[u8], field: u32) -> Vec<u8> {
        fields(b)
            .into_iter()
            .find(|f| f.0 == field)
            .map(|f| f.2)
            .unwrap_or_else(|| panic!("no field {field}"))
    }

    #[test]
    fn a_batch_nests_resource_scope_and_spans_with_their_fields() {
        let mut batch = TraceBatch::new();
        let long = "x".repeat(300); // a length past one varint byte
        batch.push(
            &SpanHead {
                trace_id: [7; 16],
                span_id: [9; 8],
                parent_span_id: Some([3; 8]),
                trace_state: "k=v",
                name: ["chat", "gpt-x"],
                kind: SpanKind::Server,
                start_unix_nano: 1_000,
                end_unix_nano: 2_500,
                status: StatusCode::Error,
                status_message: "upstream_error",
                flags: 0x101,
            },
            |a| {
                a.str("gen_ai.operation.name", "chat");
                a.int("gen_ai.usage.input_tokens", 42);
                a.strs("gen_ai.response.finish_reasons", ["stop"]);
                a.str("long", &long);
            },
        );
        assert_eq!(batch.len(), 1);
        let bytes = batch.finish(|a| a.str("service.name", "sluice"), ("sluice", "0.1.0"));
        let resource_spans = one(&bytes, 1);
        let resource = one(&resource_spans, 1);
        let kv = one(&resource, 1);
        assert_eq!(one(&kv, 1), b"service.name");
        assert_eq!(one(&one(&kv, 2), 1), b"sluice");
        let scope_spans = one(&resource_spans, 2);
        assert_eq!(one(&one(&scope_spans, 1), 1), b"sluice");
        let span = one(&scope_spans, 2);
        assert_eq!(one(&span, 1), [7; 16]);
        assert_eq!(one(&span, 2), [9; 8]);
        assert_eq!(one(&span, 3), b"k=v");
        assert_eq!(one(&span, 4), [3; 8]);
        assert_eq!(one(&span, 5), b"chat gpt-x");
        assert_eq!(one(&span, 6)[0], 2);
        assert_eq!(u64::from_le_bytes(one(&span, 7).try_into().unwrap()), 1_000);
        assert_eq!(u64::from_le_bytes(one(&span, 8).try_into().unwrap()), 2_500);
        let attrs: Vec<_> = fields(&span).into_iter().filter(|f| f.0 == 9).collect();
        assert_eq!(attrs.len(), 4);
        assert_eq!(one(&one(&attrs[1].2, 2), 3)[0], 42);
        let reasons = one(&one(&attrs[2].2, 2), 5);
        assert_eq!(one(&one(&reasons, 1), 1), b"stop");
        assert_eq!(one(&one(&attrs[3].2, 2), 1), long.as_bytes());
        let status = one(&span, 15);
        assert_eq!(one(&status, 2), b"upstream_error");
        assert_eq!(one(&status, 3)[0], 2);
        assert_eq!(one(&span, 16), 0x101u32.to_le_bytes());
    }
}
