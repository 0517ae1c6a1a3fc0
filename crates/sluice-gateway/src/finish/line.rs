//! The access-log line of a [`RequestRecord`]: one flat JSON object, written field by field
//! (the writer thread does this for every request, so it is written by hand, not derived).
//! The field order is the line's documented order; tests read the line back over the wire.

use std::time::SystemTime;

use chrono::{Datelike, Timelike};
use sluice_telemetry::LogLine;
use sluice_telemetry::json::Object;

use super::RequestRecord;

impl LogLine for RequestRecord {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut o = Object::begin(out);
        o.raw("time", |out| rfc3339_micros(out, self.time))
            .str("request_id", &self.request_id)
            .str("endpoint", self.endpoint);
        let c = &self.caller;
        o.opt_str("tenant", c.tenant.as_deref())
            .opt_str("team", c.team.as_deref())
            .opt_str("key_id", c.key_id.as_deref());
        let r = &self.route;
        o.opt_str("route", r.route.as_deref())
            .opt_str("model", r.model.as_deref())
            .opt_str("deployment", r.deployment.as_deref())
            .bool("stream", r.stream);
        if let Some(d) = &r.degraded {
            o.str("degraded", d);
        }
        if let Some(f) = r.fallback {
            o.str("fallback", f);
        }
        let e = &self.outcome;
        o.u64("status", u64::from(e.status))
            .opt_str("error_class", e.error_class)
            .opt_str("error_code", e.error_code)
            .opt_str("finish_reason", e.finish_reason);
        let t = &self.timing;
        o.f64("latency_ms", t.latency_ms)
            .opt_f64("ttfb_ms", t.ttfb_ms)
            .opt_f64("ttft_ms", t.ttft_ms)
            .opt_f64("tpot_ms", t.tpot_ms)
            .opt_f64("upstream_ms", t.upstream_ms)
            .f64("overhead_ms", t.overhead_ms);
        if let Some(q) = t.queue_ms {
            o.f64("queue_ms", q);
        }
        o.raw("stages", |out| t.stages.write_json(out));
        {
            let mut attempts = o.array("attempts");
            for a in &self.attempts {
                attempts
                    .object()
                    .str("deployment", &a.deployment)
                    .str("outcome", a.outcome)
                    .opt_u64("status", a.status.map(u64::from))
                    .f64("ms", a.ms);
            }
        }
        let u = &self.usage;
        o.u64("prompt_tokens", u.prompt_tokens)
            .u64("completion_tokens", u.completion_tokens)
            .u64("total_tokens", u.total_tokens)
            .u64("cached_tokens", u.cached_tokens)
            .u64("cache_write_tokens", u.cache_write_tokens)
            .u64("reasoning_tokens", u.reasoning_tokens)
            .bool("usage_estimated", u.usage_estimated)
            .opt_u64("cost_micros", u.cost_micros)
            .opt_u64(
                "discarded_cost_micros",
                Some(u.discarded.cost_micros).filter(|_| u.discarded.input_tokens + u.discarded.output_tokens > 0),
            )
            .opt_str("currency", u.currency.as_deref());
        let c = &self.cache;
        if let Some(outcome) = c.outcome {
            o.str("cache", outcome);
            if let Some(key) = c.key {
                o.raw("cache_key", |out| {
                    out.push(b'"');
                    key.write_hex(out);
                    out.push(b'"');
                });
            }
        }
        if let Some(saved) = c.saved_cost_micros {
            o.u64("saved_cost_micros", saved);
        }
        if let Some(s) = c.similarity {
            o.f64("similarity", f64::from(s));
        }
        if let Some(g) = &self.guard {
            let read = g.read();
            if !read.fired.is_empty() {
                // `set/rule:action:side`, never the text.
                let names: Vec<String> = read
                    .fired
                    .iter()
                    .map(|f| format!("{}:{}:{}", f.rule, f.action.as_str(), f.side))
                    .collect();
                o.raw("guardrails", |out| {
                    if serde_json::to_writer(&mut *out, &names).is_err() {
                        out.extend_from_slice(b"[]");
                    }
                });
            }
            if read.images > 0 {
                o.u64("guard_images_unscreened", u64::from(read.images));
            }
            if read.held > 0 {
                o.u64("guard_held_bytes", read.held as u64);
            }
            if read.whole {
                o.raw("guard_held_whole", |out| out.extend_from_slice(b"true"));
            }
            if read.invalid > 0 {
                o.u64("guard_invalid_outputs", u64::from(read.invalid));
            }
            if !read.hooks.is_empty() {
                // `set/rule:ms:ok|error`.
                let calls: Vec<String> = read
                    .hooks
                    .iter()
                    .map(|h| {
                        let ms = h.took.as_secs_f64() * 1000.0;
                        format!("{}:{ms:.1}:{}", h.rule, if h.ok { "ok" } else { "error" })
                    })
                    .collect();
                o.raw("guard_hooks", |out| {
                    if serde_json::to_writer(&mut *out, &calls).is_err() {
                        out.extend_from_slice(b"[]");
                    }
                });
            }
        }
        o.str("config_version", &self.config_version);
        Ok(())
    }
}

/// `"2026-12-02T18:49:03.652308Z"`: RFC 3339 in UTC with microseconds.
fn rfc3339_micros(out: &mut Vec<u8>, time: SystemTime) {
    let t: chrono::DateTime<chrono::Utc> = time.into();
    let year = u32::try_from(t.year()).unwrap_or(0);
    out.push(b'"');
    digits(out, year, 4);
    out.push(b'-');
    digits(out, t.month(), 2);
    out.push(b'-');
    digits(out, t.day(), 2);
    out.push(b'T');
    digits(out, t.hour(), 2);
    out.push(b':');
    digits(out, t.minute(), 2);
    out.push(b':');
    digits(out, t.second(), 2);
    out.push(b'.');
    digits(out, t.timestamp_subsec_micros() % 1_000_000, 6);
    out.extend_from_slice(b"Z\"");
}

/// `n` in decimal, zero-padded to `width` digits.
fn digits(out: &mut Vec<u8>, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        // A digit: always below 10.
        out.push(b'0' + u8::try_from(n / div % 10).unwrap_or(0));
        div /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_written_as_chrono_writes_rfc3339_with_micros() {
        for secs in [0u64, 1_795_338_000, 1_795_338_059, 4_102_444_799] {
            for micros in [0u32, 7, 652_308, 999_999] {
                let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros));
                let mut out = Vec::new();
                rfc3339_micros(&mut out, t);
                let dt: chrono::DateTime<chrono::Utc> = t.into();
                let want = format!("\"{}\"", dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
                assert_eq!(String::from_utf8(out).unwrap(), want);
            }
        }
    }
}
