//! Input normalisation: invisible characters removed (controls, zero-width, bidi overrides,
//! tag characters — the carriers of "ASCII smuggling"), Unicode composed (NFC, or NFKC when the
//! route asks, which also folds full-width and other compatibility forms), and optionally runs
//! of whitespace collapsed outside code (fenced blocks and inline spans are left as they are).

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick, is_nfkc_quick};

/// How a route normalises its prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Normalize {
    /// NFKC instead of NFC.
    pub nfkc: bool,
    /// Collapse runs of spaces and tabs to one space and three or more line breaks to two.
    pub collapse_whitespace: bool,
    /// Collapse inside code too.
    pub in_code: bool,
}

/// What normalising one text did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// Invisible characters removed.
    pub removed: usize,
    /// Text hidden in Unicode tag characters (U+E0020–U+E007E), read as ASCII: a smuggled
    /// instruction the injection screen reads too.
    pub smuggled: String,
}

/// A character no prompt needs and attacks use: C0/C1 controls other than tab and line
/// breaks, zero-width characters, bidi embeddings, overrides and isolates, the soft hyphen,
/// and tag characters.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}')
}

/// `text` normalised as `how` says; borrowed when nothing changes (the common case for ASCII).
pub fn normalize<'t>(text: &'t str, how: Normalize, report: &mut Normalized) -> Cow<'t, str> {
    let clean = text.is_ascii()
        && !text
            .bytes()
            .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') || b == 0x7f);
    let mut out: Cow<'t, str> = if clean {
        Cow::Borrowed(text)
    } else {
        let mut kept = String::with_capacity(text.len());
        for c in text.chars() {
            if invisible(c) {
                report.removed += 1;
                if let '\u{e0020}'..='\u{e007e}' = c {
                    report.smuggled.push(char::from((u32::from(c) - 0xe0000) as u8));
                }
            } else {
                kept.push(c);
            }
        }
        let composed = if how.nfkc {
            match is_nfkc_quick(kept.chars()) {
                IsNormalized::Yes => kept,
                _ => kept.nfkc().collect(),
            }
        } else {
            match is_nfc_quick(kept.chars()) {
                IsNormalized::Yes => kept,
                _ => kept.nfc().collect(),
            }
        };
        if composed == text {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(composed)
        }
    };
    if how.collapse_whitespace
        && let Some(collapsed) = collapse(&out, how.in_code)
    {
        out = Cow::Owned(collapsed);
    }
    out
}

/// Runs of spaces and tabs as one space, three or more line breaks as two, trailing spaces
/// on a line dropped; inside ``` fences and `inline code` nothing changes unless `in_code`.
/// `None` when nothing would change.
fn collapse(text: &str, in_code: bool) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut fenced = false;
    let mut inline = false;
    let mut spaces = 0usize;
    let mut breaks = 0usize;
    for line in text.split_inclusive('\n') {
        let fence = line.trim_start().starts_with("```");
        if fence || (fenced && !in_code) {
            // A fence line, or a line inside a fence, goes as it is.
            fenced ^= fence;
            flush(&mut out, &mut spaces, &mut breaks);
            out.push_str(line);
            inline = false;
            continue;
        }
        for c in line.chars() {
            match c {
                '`' if !in_code => {
                    inline = !inline;
                    flush(&mut out, &mut spaces, &mut breaks);
                    out.push(c);
                }
                _ if inline && !in_code => out.push(c),
                ' ' | '\t' => spaces += 1,
                '\r' => {}
                '\n' => {
                    spaces = 0;
                    breaks += 1;
                    inline = false;
                }
                c => {
                    flush(&mut out, &mut spaces, &mut breaks);
                    out.push(c);
                }
            }
        }
    }
    flush(&mut out, &mut 0, &mut breaks);
    (out != text).then_some(out)
}

fn flush(out: &mut String, spaces: &mut usize, breaks: &mut usize) {
    if *breaks > 0 {
        out.push_str(if *breaks >= 2 { "\n\n" } else { "\n" });
        *spaces = 0;
    }
    if *spaces > 0 {
        out.push(' ');
    }
    *breaks = 0;
    *spaces = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, how: Normalize, expected: &str, removed: usize) {
        let mut r = Normalized::default();
        assert_eq!(normalize(text, how, &mut r), expected, "{text:?}");
        assert_eq!(r.removed, removed, "{text:?}");
    }

    #[test]
    fn removes_invisible_characters_and_composes() {
        let nfc = Normalize::default();
        check("plain ascii\n\ttext", nfc, "plain ascii\n\ttext", 0);
        check("ig\u{200b}nore\u{202e}", nfc, "ignore", 2);
        check("e\u{301}te\u{301}", nfc, "\u{e9}t\u{e9}", 0);
        check("ｆｕｌｌ", nfc, "ｆｕｌｌ", 0);
        check("ｆｕｌｌ", Normalize { nfkc: true, ..nfc }, "full", 0);
        check("bell\u{7}", nfc, "bell", 1);
    }

    #[test]
    fn reads_text_smuggled_in_tag_characters() {
        let hidden: String = "hi"
            .chars()
            .map(|c| char::from_u32(0xe0000 + u32::from(c)).unwrap_or(' '))
            .collect();
        let mut r = Normalized::default();
        assert_eq!(normalize(&format!("ok{hidden}"), Normalize::default(), &mut r), "ok");
        assert_eq!(r.smuggled, "hi");
    }

    #[test]
    fn collapses_whitespace_outside_code() {
        let how = Normalize {
            collapse_whitespace: true,
            ..Normalize::default()
        };
        check("a   b\t\tc\n\n\n\nd", how, "a b c\n\nd", 0);
        check(
            "keep `a   b` and\n```\nx    y\n```\nz  w",
            how,
            "keep `a   b` and\n```\nx    y\n```\nz w",
            0,
        );
        let all = Normalize { in_code: true, ..how };
        check("`a   b`", all, "`a b`", 0);
    }
}
