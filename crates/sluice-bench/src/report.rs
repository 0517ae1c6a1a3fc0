//! Medians with min–max over repeated runs, printed as Markdown.

use std::fmt::Write;

/// Several runs of one figure.
#[derive(Debug, Clone, Default)]
pub struct Runs(pub Vec<f64>);

impl Runs {
    pub fn push(&mut self, v: f64) {
        if v.is_finite() {
            self.0.push(v);
        }
    }
    pub fn median(&self) -> Option<f64> {
        let mut v = self.0.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
    pub fn min(&self) -> Option<f64> {
        self.0.iter().copied().reduce(f64::min)
    }
    pub fn max(&self) -> Option<f64> {
        self.0.iter().copied().reduce(f64::max)
    }
    /// `median [min–max]` formatted with `unit`.
    pub fn show(&self, fmt: fn(f64) -> String) -> String {
        match (self.median(), self.min(), self.max()) {
            (Some(m), Some(lo), Some(hi)) if self.0.len() > 1 => format!("{} [{}–{}]", fmt(m), fmt(lo), fmt(hi)),
            (Some(m), _, _) => fmt(m),
            _ => "–".to_owned(),
        }
    }
}

pub fn micros(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

pub fn count(v: f64) -> String {
    format!("{v:.0}")
}

pub fn percent(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

pub fn kib(v: f64) -> String {
    format!("{:.1} KiB", v / 1024.0)
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(Runs(vec![3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(Runs(vec![4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(Runs(vec![]).median(), None);
        assert_eq!(Runs(vec![5.0, 1.0, 9.0]).show(count), "5 [1–9]");
    }
}
