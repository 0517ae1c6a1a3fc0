//! Where an analytics query reads from: the daily rollup for whole UTC days (day and month
//! buckets in UTC), the hourly rollup for the other whole hours that are rolled up, the raw
//! ledger rows for the rest — the partial hours at either end, hours with rows written since
//! their last rollup, and every query the rollups cannot answer (per minute, a time zone that
//! is not a whole number of hours, a drill-down filter). All add into the same accumulators,
//! so an answer is the same whichever way it was read.

use std::collections::HashMap;

use super::LedgerDb;
use super::analytics::{Accs, Point, Query, Shape, Span, finish};
use super::rollup::{Grain, HOUR_MS};
use crate::StoreError;

/// Past this many dirty hours in a range, the raw rows are read for all of it (a rollup that
/// has fallen this far behind is being caught up).
const MOST_DIRTY_HOURS: usize = 48;

/// Time ranges `[from, to)` in ms to read raw, ranges of whole hours from the hourly rollup
/// (but the dirty hours), and a range of whole days from the daily one (but the days holding
/// a dirty hour, read by the hour).
struct Plan {
    raw: Vec<(i64, i64)>,
    hours: Vec<(i64, i64)>,
    dirty: Vec<i64>,
    days: Option<((i64, i64), Vec<i64>)>,
}

impl LedgerDb {
    /// The metric by group and bucket, in bucket then group order (settled and unsettled
    /// requests; open ones are still in flight). With a top N of a metric that adds up, the
    /// groups are chosen from their totals first, and only theirs are read per bucket.
    pub async fn analytics(&self, q: &Query<'_>) -> Result<Vec<Point>, StoreError> {
        let plan = self.plan(q).await?;
        let top = match q.top {
            Some(n) if q.metric.additive() => {
                let mut totals = HashMap::new();
                let shape = Shape {
                    totals: true,
                    groups: None,
                };
                self.read(q, plan.as_ref(), shape, &mut totals).await?;
                let mut ranked: Vec<(String, f64)> = totals
                    .into_iter()
                    .map(|((g, _), a)| {
                        let v = a.value(q.metric).unwrap_or(f64::MIN);
                        (g, v)
                    })
                    .collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                Some(ranked.into_iter().take(n).map(|(g, _)| g).collect::<Vec<_>>())
            }
            _ => None,
        };
        let mut accs = HashMap::new();
        let shape = Shape {
            totals: false,
            groups: top.as_deref(),
        };
        self.read(q, plan.as_ref(), shape, &mut accs).await?;
        Ok(finish(q, accs))
    }

    /// Reads what `plan` says (none: the raw rows of the whole range) into `accs`.
    async fn read(
        &self,
        q: &Query<'_>,
        plan: Option<&Plan>,
        shape: Shape<'_>,
        accs: &mut Accs,
    ) -> Result<(), StoreError> {
        let Some(plan) = plan else {
            return self.raw_into(q, shape, (q.since_ms, q.until_ms), accs).await;
        };
        for range in &plan.raw {
            self.raw_into(q, shape, *range, accs).await?;
        }
        for range in &plan.hours {
            self.rollup_into(q, shape, Grain::Hour, *range, &plan.dirty, accs)
                .await?;
        }
        if let Some((range, skip)) = &plan.days {
            self.rollup_into(q, shape, Grain::Day, *range, skip, accs).await?;
        }
        Ok(())
    }

    /// The same answer from the raw rows alone (what the rollup is checked against).
    pub async fn analytics_from_rows(&self, q: &Query<'_>) -> Result<Vec<Point>, StoreError> {
        let mut accs = HashMap::new();
        self.raw_into(q, Shape::default(), (q.since_ms, q.until_ms), &mut accs)
            .await?;
        Ok(finish(q, accs))
    }

    async fn plan(&self, q: &Query<'_>) -> Result<Option<Plan>, StoreError> {
        if q.per == Span::Minute || q.tz_offset_s % 3600 != 0 || !q.only.is_empty() {
            return Ok(None);
        }
        let first = q.since_ms.div_euclid(HOUR_MS) + i64::from(q.since_ms.rem_euclid(HOUR_MS) != 0);
        let end = q.until_ms.div_euclid(HOUR_MS);
        if first >= end {
            return Ok(None);
        }
        let dirty = self.dirty_hours(first, end, MOST_DIRTY_HOURS as i64 + 1).await?;
        if dirty.len() > MOST_DIRTY_HOURS {
            return Ok(None);
        }
        let mut raw = Vec::new();
        if q.since_ms < first * HOUR_MS {
            raw.push((q.since_ms, first * HOUR_MS));
        }
        // Runs of dirty hours, one range each.
        for &h in &dirty {
            match raw.last_mut() {
                Some((_, to)) if *to == h * HOUR_MS => *to = (h + 1) * HOUR_MS,
                _ => raw.push((h * HOUR_MS, (h + 1) * HOUR_MS)),
            }
        }
        if end * HOUR_MS < q.until_ms {
            match raw.last_mut() {
                Some((_, to)) if *to == end * HOUR_MS => *to = q.until_ms,
                _ => raw.push((end * HOUR_MS, q.until_ms)),
            }
        }
        // Whole UTC days, when buckets are days or months in UTC.
        let (d0, d1) = (
            first.div_euclid(24) + i64::from(first.rem_euclid(24) != 0),
            end.div_euclid(24),
        );
        let daily = matches!(q.per, Span::Day | Span::Month) && q.tz_offset_s == 0 && d0 < d1;
        if !daily {
            return Ok(Some(Plan {
                raw,
                hours: vec![(first, end)],
                dirty,
                days: None,
            }));
        }
        let mut dirty_days: Vec<i64> = dirty
            .iter()
            .map(|h| h.div_euclid(24))
            .filter(|d| (d0..d1).contains(d))
            .collect();
        dirty_days.dedup();
        let mut hours = vec![(first, d0 * 24), (d1 * 24, end)];
        hours.extend(dirty_days.iter().map(|d| (d * 24, d * 24 + 24)));
        hours.retain(|(a, b)| a < b);
        Ok(Some(Plan {
            raw,
            hours,
            dirty,
            days: Some(((d0, d1), dirty_days)),
        }))
    }
}
