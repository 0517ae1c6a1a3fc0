//! A Prometheus histogram the request path observes without a lock: one atomic counter per
//! bucket, an atomic count and an atomic sum (an `f64` in a `u64`, added with compare-and-swap).
//! `prometheus-client`'s own histogram takes a mutex on every observation; this one is shared by
//! every request of a route and must not. A scrape reads the atomics one by one, so it may see a
//! count one observation ahead of a bucket: the usual trade of lock-free histograms.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Cloning shares the counts (as with the crate's own metrics).
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; the `+Inf` bucket is `counts`' last entry.
    bounds: Box<[f64]>,
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum's bits.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (sorted here; non-finite bounds are dropped, `+Inf` is
    /// always the last bucket).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            inner: Arc::new(Inner {
                bounds: bounds.into_boxed_slice(),
                counts,
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records `v` (NaN counts, in `+Inf`, and leaves the sum alone).
    pub fn observe(&self, v: f64) {
        let i = &self.inner;
        let bucket = i.bounds.partition_point(|b| *b < v);
        let bucket = if v.is_nan() { i.bounds.len() } else { bucket };
        if let Some(c) = i.counts.get(bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        i.count.fetch_add(1, Ordering::Relaxed);
        if !v.is_nan() {
            let _ = i.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The sum of what was observed.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum.load(Ordering::Relaxed))
    }

    /// `(upper bound, observations in that bucket)`, the last bound `+Inf`.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let i = &self.inner;
        i.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(i.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
        // The count is the buckets' total, so the exposition is consistent with itself.
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn buckets_are_upper_bounds_inclusive_and_render_like_the_crates_own() {
        let bounds = [0.001, 0.01, 0.1];
        let ours = Histogram::new(bounds);
        let theirs = prometheus_client::metrics::histogram::Histogram::new(bounds);
        for v in [0.0005, 0.001, 0.002, 0.05, 0.1, 3.0, 0.01] {
            ours.observe(v);
            theirs.observe(v);
        }
        assert_eq!(
            ours.buckets(),
            vec![(0.001, 2), (0.01, 2), (0.1, 2), (f64::INFINITY, 1)]
        );
        let render = |h: Box<dyn Fn(&mut Registry)>| {
            let mut r = Registry::default();
            h(&mut r);
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
            out
        };
        let (o, t) = (ours.clone(), theirs.clone());
        assert_eq!(
            render(Box::new(move |r| r.register("h", "help", o.clone()))),
            render(Box::new(move |r| r.register("h", "help", t.clone())))
        );
        assert_eq!(ours.count(), 7);
        assert!((ours.sum() - 3.1635).abs() < 1e-9);
    }

    #[test]
    fn observations_from_many_threads_are_all_counted() {
        let h = Histogram::new([1.0, 2.0]);
        std::thread::scope(|s| {
            for t in 0..4 {
                let h = h.clone();
                s.spawn(move || {
                    for _ in 0..10_000 {
                        h.observe(f64::from(t % 3));
                    }
                });
            }
        });
        assert_eq!(h.count(), 40_000);
        assert_eq!(h.buckets().iter().map(|(_, n)| n).sum::<u64>(), 40_000);
        assert!((h.sum() - 30_000.0).abs() < 1e-9); // (0 + 1 + 2 + 0) × 10 000
    }
}
