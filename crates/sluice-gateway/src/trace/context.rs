//! A request's place in a trace: the W3C `traceparent` read, continued or begun, the sampling
//! decision, and the `traceparent` an upstream is sent.

use http::{HeaderMap, HeaderValue};

/// Trace flags bit 0: the trace is recorded.
const SAMPLED: u8 = 1;

/// A request's place in a trace.
#[derive(Debug, Clone)]
pub struct TraceCtx {
    pub trace_id: [u8; 16],
    /// The request's own (server) span.
    pub span_id: [u8; 8],
    /// The caller's span, when it sent a `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    /// The caller's `tracestate`, passed on unchanged.
    pub state: Option<HeaderValue>,
}

impl TraceCtx {
    /// Continues the caller's trace (its `traceparent` decides sampling) or begins one, sampled
    /// at `ratio` by its trace id (the same id gets the same answer on every instance).
    pub fn begin(headers: &HeaderMap, ratio: f64) -> TraceCtx {
        let caller = headers
            .get(sluice_providers::names::TRACEPARENT)
            .and_then(|v| parse_traceparent(v.as_bytes()));
        match caller {
            Some((trace_id, parent, flags)) => TraceCtx {
                trace_id,
                span_id: span_id(),
                parent: Some(parent),
                sampled: flags & SAMPLED != 0,
                state: headers
                    .get(sluice_providers::names::TRACESTATE)
                    .filter(|v| v.len() <= 512)
                    .cloned(),
            },
            None => {
                let trace_id = loop {
                    let id: u128 = rand::random();
                    if id != 0 {
                        break id.to_be_bytes();
                    }
                };
                TraceCtx {
                    sampled: ratio_sampled(&trace_id, ratio),
                    trace_id,
                    span_id: span_id(),
                    parent: None,
                    state: None,
                }
            }
        }
    }

    /// The `traceparent` an upstream gets: this trace, with `span` (the attempt's) as parent.
    pub fn traceparent(&self, span: &[u8; 8]) -> HeaderValue {
        let mut v = [0u8; 55];
        v[..3].copy_from_slice(b"00-");
        hex_into(&mut v[3..35], &self.trace_id);
        v[35] = b'-';
        hex_into(&mut v[36..52], span);
        v[52] = b'-';
        hex_into(&mut v[53..55], &[u8::from(self.sampled)]);
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A new span id (never all zeros).
pub fn span_id() -> [u8; 8] {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// The ratio sampler of OpenTelemetry's SDKs: the trace id's last 8 bytes, as a 63-bit number,
/// below `ratio × 2^63`.
fn ratio_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    x < (ratio * (1u64 << 63) as f64) as u64
}

fn parse_traceparent(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if !sluice_providers::adapter::is_traceparent(v) {
        return None;
    }
    let mut trace = [0u8; 16];
    let mut parent = [0u8; 8];
    let mut flags = [0u8; 1];
    hex_from(&v[3..35], &mut trace)?;
    hex_from(&v[36..52], &mut parent)?;
    hex_from(&v[53..55], &mut flags)?;
    Some((trace, parent, flags[0]))
}

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

fn hex_from(hex: &[u8], out: &mut [u8]) -> Option<()> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (pair, o) in hex.chunks_exact(2).zip(out.iter_mut()) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_traceparent_is_continued_with_its_sampling_decision() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        h.insert("tracestate", HeaderValue::from_static("vendor=x"));
        let t = TraceCtx::begin(&h, 0.0);
        assert!(t.sampled, "the caller sampled it: the ratio does not apply");
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent.map(hex::encode).as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(t.state.as_ref().map(|v| v.as_bytes()), Some(&b"vendor=x"[..]));
        let forwarded = t.traceparent(&[0xab; 8]);
        assert_eq!(
            forwarded.to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-abababababababab-01"
        );

        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        let t = TraceCtx::begin(&h, 1.0);
        assert!(!t.sampled, "the caller did not sample it");
        assert!(t.traceparent(&[1; 8]).to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn new_traces_are_sampled_at_the_ratio() {
        let h = HeaderMap::new();
        let n = 20_000;
        let sampled = (0..n).filter(|_| TraceCtx::begin(&h, 0.25).sampled).count();
        // Binomial(20 000, 0.25): sd ≈ 61; ±1 000 is over 16 sd.
        assert!((4_000..6_000).contains(&sampled), "{sampled}");
        assert!((0..100).all(|_| TraceCtx::begin(&h, 1.0).sampled));
        assert!((0..100).all(|_| !TraceCtx::begin(&h, 0.0).sampled));
        let t = TraceCtx::begin(&h, 1.0);
        assert!(t.parent.is_none() && t.trace_id != [0; 16] && t.span_id != [0; 8]);
    }
}
