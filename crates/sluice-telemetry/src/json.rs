//! A JSON object written straight into a buffer, for lines written thousands of times a second:
//! keys and values go in as they come, strings escaped exactly as `serde_json` escapes them,
//! numbers formatted as it formats them. A derived `Serialize` with `#[serde(flatten)]` parts
//! costs several times more per line (every flattened field goes through serde's map machinery).
//!
//! An [`Object`] or [`Array`] closes itself when dropped, so a nested one is closed before its
//! parent writes again (the borrow checker sees to the order).

/// An object being written; `}` goes in when it is dropped.
#[derive(Debug)]
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

/// An array being written; `]` goes in when it is dropped.
#[derive(Debug)]
pub struct Array<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Keys are written as they are: they are names in the code, never needing an escape.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        debug_assert!(!needs_escape(key.as_bytes()), "{key:?}");
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        string(self.key(key), value);
        self
    }

    /// A string, or `null`.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key).extend_from_slice(b"null");
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
        self
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        let mut digits = itoa::Buffer::new();
        self.key(key).extend_from_slice(digits.format(value).as_bytes());
        self
    }

    /// A number, or `null`.
    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u64(key, v),
            None => self.null(key),
        }
    }

    /// A number as `serde_json` writes an `f64` (shortest form that reads back; `null` when not
    /// finite).
    pub fn f64(&mut self, key: &str, value: f64) -> &mut Self {
        float(self.key(key), value);
        self
    }

    /// A number, or `null`.
    pub fn opt_f64(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        match value {
            Some(v) => self.f64(key, v),
            None => self.null(key),
        }
    }

    /// A value written by `write` (which must write exactly one JSON value).
    pub fn raw(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        write(self.key(key));
        self
    }

    /// A nested object under `key`, closed when the returned value is dropped.
    pub fn object(&mut self, key: &str) -> Object<'_> {
        Object::begin(self.key(key))
    }

    /// A nested array under `key`, closed when the returned value is dropped.
    pub fn array(&mut self, key: &str) -> Array<'_> {
        let out = self.key(key);
        out.push(b'[');
        Array { out, empty: true }
    }
}

impl Drop for Object<'_> {
    fn drop(&mut self) {
        self.out.push(b'}');
    }
}

impl Array<'_> {
    /// The next element, an object closed when the returned value is dropped.
    pub fn object(&mut self) -> Object<'_> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        Object::begin(self.out)
    }
}

impl Drop for Array<'_> {
    fn drop(&mut self) {
        self.out.push(b']');
    }
}

/// `value` as a JSON string: `"`, `\\` and the control characters escaped as `serde_json` does
/// (`\n`, `\t`… and `\u00XX` for the rest); everything else, UTF-8 included, copied as it is.
/// Eight bytes are looked at a time: a log line's values rarely need an escape.
pub fn string(out: &mut Vec<u8>, value: &str) {
    out.reserve(value.len() + 2);
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8)
            && !needs_escape(word)
        {
            i += 8;
            continue;
        }
        let b = bytes[i];
        if b >= 0x20 && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        i += 1;
        start = i;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte of `bytes` is a control character, `"` or `\\` (eight at a time, as words).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero ⇔ its high bit is set here (exact when no byte is ≥ 0x80 after the
    // subtraction borrows: `& !x` rules out bytes that were ≥ 0x80 to begin with).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = u64::from_le_bytes(word);
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        if below_space | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `value` as `serde_json` writes an `f64`. A whole number of thousandths below 10⁹ (a time in
/// ms rounded to the µs, the log line's kind of number) is written directly — the same digits
/// serde_json's shortest form gives; anything else goes through serde_json.
pub fn float(out: &mut Vec<u8>, value: f64) {
    let thousandths = (value * 1000.0).round();
    if (0.0..1e12).contains(&thousandths) && thousandths / 1000.0 == value {
        // In range and whole: the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let k = thousandths as u64;
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(k / 1000).as_bytes());
        out.push(b'.');
        let frac = k % 1000;
        if frac == 0 {
            out.push(b'0');
        } else {
            let d = [frac / 100, frac / 10 % 10, frac % 10];
            let keep = if d[2] != 0 {
                3
            } else if d[1] != 0 {
                2
            } else {
                1
            };
            for digit in &d[..keep] {
                out.push(b'0' + u8::try_from(*digit).unwrap_or(0));
            }
        }
        return;
    }
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let cases = [
            "",
            "plain",
            "quote \" and \\ backslash",
            "lines\nand\ttabs\r",
            "\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "ünïcödé ✓ 🦀",
            "</script>",
            "exactly8",
            "eight + \"quoted\" + more than sixteen bytes, \\ and a tab\there",
            "ünïcödé ✓ 🦀 past the first word \u{1b}[0m",
        ];
        for case in cases {
            let mut out = Vec::new();
            string(&mut out, case);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(case).unwrap(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn the_escape_check_finds_every_byte_that_needs_one_at_every_position() {
        for len in 0..20 {
            assert!(!needs_escape(&vec![b'a'; len]));
            assert!(!needs_escape(&vec![0x7f; len]) && !needs_escape(&vec![0xff; len]));
            for at in 0..len {
                for bad in [0u8, 0x1f, b'"', b'\\', b'\n'] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    assert!(needs_escape(&v), "{bad:#x} at {at} of {len}");
                    let mut hi = vec![0xe2; len];
                    hi[at] = bad;
                    assert!(needs_escape(&hi), "{bad:#x} at {at} of {len} among high bytes");
                }
                for fine in [0x20u8, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xa2, 0xdc] {
                    let mut v = vec![b'a'; len];
                    v[at] = fine;
                    assert!(!needs_escape(&v), "{fine:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn floats_are_written_as_serde_json_writes_them() {
        let mut values: Vec<f64> = (0..20_000u32).map(|k| f64::from(k) / 1000.0).collect();
        values.extend([
            0.0005,
            1e-7,
            12.5,
            3.0,
            123_456.789,
            999_999_999.999,
            1e9,
            1e12,
            1e16,
            0.1 + 0.2,
            -1.5,
            2.5e-3,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NAN,
        ]);
        for k in (0..1_000_000_000_000u64).step_by(7_777_777_777) {
            #[allow(clippy::cast_precision_loss)]
            values.push((k as f64 / 1000.0 * 1000.0).round() / 1000.0);
        }
        for v in values {
            let mut out = Vec::new();
            float(&mut out, v);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&v).unwrap(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn an_object_reads_back_with_every_kind_of_value() {
        let mut out = Vec::new();
        {
            let mut o = Object::begin(&mut out);
            o.str("s", "a\"b")
                .opt_str("none", None)
                .opt_str("some", Some("x"))
                .bool("t", true)
                .u64("n", u64::MAX)
                .opt_u64("m", None)
                .f64("f", 0.012)
                .f64("nan", f64::NAN)
                .opt_f64("g", Some(3.0));
            {
                let mut inner = o.object("inner");
                inner.f64("auth", 0.004);
            }
            {
                let mut list = o.array("list");
                list.object().str("a", "1");
                list.object().u64("b", 2);
            }
            o.array("empty");
            o.raw("raw", |out| out.extend_from_slice(b"[1,2]"));
        }
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "s": "a\"b", "none": null, "some": "x", "t": true, "n": u64::MAX, "m": null,
                "f": 0.012, "nan": null, "g": 3.0, "inner": {"auth": 0.004},
                "list": [{"a": "1"}, {"b": 2}], "empty": [], "raw": [1, 2]
            })
        );
        // Floats come out as serde_json writes them.
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""f":0.012,"#) && text.contains(r#""g":3.0,"#), "{text}");
    }
}
