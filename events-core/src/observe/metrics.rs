//! [`Metrics`]: counts per event and handler, failure counts, and a latency histogram per
//! handler, in process, with a [`MetricsSnapshot`] to read them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Observer;
use crate::envelope::Meta;
use crate::error::IngestError;
use crate::error::PublishError;
use crate::outcome::Outcome;

/// Histogram buckets: bucket `i` counts durations below `2^(i + 7)` ns (128 ns ... ~1 s);
/// the last one counts the rest.
const BUCKETS: usize = 24;

fn bucket_of(nanos: u64) -> usize {
    let bits = 64 - nanos.leading_zeros() as usize; // 2^(bits-1) <= nanos < 2^bits
    bits.saturating_sub(7).min(BUCKETS - 1)
}

/// In-process metrics. Clone it: clones share one store, so keep one and give another to
/// [`BusBuilder::observer`](crate::BusBuilder::observer).
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Store>,
}

#[derive(Default)]
struct Store {
    events: RwLock<HashMap<&'static str, Arc<EventCounters>>>,
    handlers: RwLock<HashMap<String, Arc<HandlerCounters>>>,
    invalid_inputs: AtomicU64,
    refused_inputs: AtomicU64,
}

#[derive(Default)]
struct EventCounters {
    published: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
    invalid: AtomicU64,
    refused: AtomicU64,
}

struct HandlerCounters {
    calls: AtomicU64,
    failures: AtomicU64,
    sum_nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for HandlerCounters {
    fn default() -> Self {
        HandlerCounters {
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Store {
    fn event(&self, name: &'static str) -> Arc<EventCounters> {
        if let Some(c) = self
            .events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Arc::clone(c);
        }
        let mut w = self.events.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(w.entry(name).or_default())
    }

    fn handler(&self, name: &str) -> Arc<HandlerCounters> {
        if let Some(c) = self
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Arc::clone(c);
        }
        let mut w = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(w.entry(name.to_owned()).or_default())
    }

    fn handled(&self, meta: &Meta, handler: &str, failed: bool, elapsed: Duration) {
        let e = self.event(meta.name());
        let h = self.handler(handler);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        h.calls.fetch_add(1, Relaxed);
        h.sum_nanos.fetch_add(nanos, Relaxed);
        h.buckets[bucket_of(nanos)].fetch_add(1, Relaxed);
        if failed {
            h.failures.fetch_add(1, Relaxed);
            e.failed.fetch_add(1, Relaxed);
        } else {
            e.delivered.fetch_add(1, Relaxed);
        }
    }
}

impl Observer for Metrics {
    fn published(&self, meta: &Meta) {
        self.inner
            .event(meta.name())
            .published
            .fetch_add(1, Relaxed);
    }
    fn delivered(&self, meta: &Meta, handler: &str, elapsed: Duration) {
        self.inner.handled(meta, handler, false, elapsed);
    }
    fn failed(&self, meta: &Meta, handler: &str, _outcome: &Outcome, elapsed: Duration) {
        self.inner.handled(meta, handler, true, elapsed);
    }
    fn expired(&self, meta: &Meta) {
        self.inner.event(meta.name()).expired.fetch_add(1, Relaxed);
    }
    fn rejected(&self, event: &'static str, _error: &PublishError) {
        self.inner.event(event).rejected.fetch_add(1, Relaxed);
    }
    fn invalid(&self, event: Option<&'static str>, _error: &IngestError) {
        self.inner.invalid_inputs.fetch_add(1, Relaxed);
        if let Some(event) = event {
            self.inner.event(event).invalid.fetch_add(1, Relaxed);
        }
    }
    fn refused(&self, event: Option<&'static str>, _error: &IngestError) {
        self.inner.refused_inputs.fetch_add(1, Relaxed);
        if let Some(event) = event {
            self.inner.event(event).refused.fetch_add(1, Relaxed);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Counts for one event name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Events the bus took.
    pub published: u64,
    /// Handler calls that returned `Ok`.
    pub delivered: u64,
    /// Handler calls that failed or panicked.
    pub failed: u64,
    /// Queued events that expired before delivery.
    pub expired: u64,
    /// Events the bus refused.
    pub rejected: u64,
    /// Payloads from outside refused for this event (schema violations, bad version, ...).
    pub invalid: u64,
    /// Callers refused for this event by the access rules or the rate limits.
    pub refused: u64,
}

/// Calls, failures and latency of one handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerStats {
    /// Calls, failed or not.
    pub calls: u64,
    /// Calls that failed or panicked.
    pub failures: u64,
    /// How long the calls took.
    pub latency: LatencyHistogram,
}

/// Call durations in power-of-two buckets (128 ns, 256 ns, ... about 1 s, then the rest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `(upper bound, count)` per bucket; the last bound is `Duration::MAX`.
    pub buckets: Vec<(Duration, u64)>,
    /// The sum of every duration.
    pub sum: Duration,
}

impl LatencyHistogram {
    /// How many durations it holds.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// An upper bound of the `q` quantile (`0.0..=1.0`): the bound of the bucket it falls
    /// in. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets
            .iter()
            .find(|(_, n)| {
                seen += n;
                seen >= rank
            })
            .map(|(bound, _)| *bound)
    }
}

/// What a [`Metrics`] has counted, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Per event name.
    pub events: BTreeMap<&'static str, EventStats>,
    /// Per handler name.
    pub handlers: BTreeMap<String, HandlerStats>,
    /// Events waiting in the bus's queue.
    pub queue_depth: usize,
    /// Inputs from outside refused, including those naming no known event.
    pub invalid_inputs: u64,
    /// Callers refused by the access rules or the rate limits, including those naming no
    /// known event.
    pub refused_inputs: u64,
}

/// What has a queue whose depth a [`MetricsSnapshot`] reports: [`Bus`](crate::Bus).
pub trait QueueDepth {
    /// Events waiting in the queue now.
    fn queue_depth(&self) -> usize;
}

impl Metrics {
    /// A new, empty store.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The counts now, with `bus`'s queue depth (a [`Bus`](crate::Bus), or anything else
    /// that says how deep its queue is).
    pub fn snapshot(&self, bus: &impl QueueDepth) -> MetricsSnapshot {
        let events = self.inner.events.read().unwrap_or_else(|p| p.into_inner());
        let handlers = self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner());
        MetricsSnapshot {
            events: events
                .iter()
                .map(|(name, c)| {
                    (
                        *name,
                        EventStats {
                            published: c.published.load(Relaxed),
                            delivered: c.delivered.load(Relaxed),
                            failed: c.failed.load(Relaxed),
                            expired: c.expired.load(Relaxed),
                            rejected: c.rejected.load(Relaxed),
                            invalid: c.invalid.load(Relaxed),
                            refused: c.refused.load(Relaxed),
                        },
                    )
                })
                .collect(),
            handlers: handlers
                .iter()
                .map(|(name, c)| {
                    let buckets = c
                        .buckets
                        .iter()
                        .enumerate()
                        .map(|(i, n)| {
                            let bound = if i + 1 == BUCKETS {
                                Duration::MAX
                            } else {
                                Duration::from_nanos(1 << (i + 7))
                            };
                            (bound, n.load(Relaxed))
                        })
                        .collect();
                    (
                        name.clone(),
                        HandlerStats {
                            calls: c.calls.load(Relaxed),
                            failures: c.failures.load(Relaxed),
                            latency: LatencyHistogram {
                                buckets,
                                sum: Duration::from_nanos(c.sum_nanos.load(Relaxed)),
                            },
                        },
                    )
                })
                .collect(),
            queue_depth: bus.queue_depth(),
            invalid_inputs: self.inner.invalid_inputs.load(Relaxed),
            refused_inputs: self.inner.refused_inputs.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_from_128_ns() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(127), 0);
        assert_eq!(bucket_of(128), 1);
        assert_eq!(bucket_of(255), 1);
        assert_eq!(bucket_of(256), 2);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let h = LatencyHistogram {
            buckets: vec![
                (Duration::from_nanos(128), 90),
                (Duration::from_nanos(256), 9),
                (Duration::MAX, 1),
            ],
            sum: Duration::ZERO,
        };
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(128)));
        assert_eq!(h.quantile(0.95), Some(Duration::from_nanos(256)));
        assert_eq!(h.quantile(1.0), Some(Duration::MAX));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }
}
