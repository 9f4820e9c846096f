//! [`MetricsFacade`]: the same counts through the `metrics` crate, for any exporter.

use std::time::Duration;

use super::Observer;
use crate::envelope::Meta;
use crate::error::PublishError;
use crate::outcome::Outcome;

/// Emits through the [`metrics`](https://docs.rs/metrics) facade, so any recorder
/// (Prometheus, StatsD, ...) exports them:
///
/// | metric | kind | labels |
/// |---|---|---|
/// | `events_published_total` | counter | `event` |
/// | `events_delivered_total` | counter | `event`, `handler` |
/// | `events_failed_total` | counter | `event`, `handler` |
/// | `events_expired_total` | counter | `event` |
/// | `events_rejected_total` | counter | `event` |
/// | `events_invalid_total` | counter | `event` (empty when the input named no known event) |
/// | `events_refused_total` | counter | `event` (empty when not a known one), `reason`: `forbidden` or `rate_limited` |
/// | `events_handler_seconds` | histogram | `event`, `handler` |
/// | `events_outbox_backlog` | gauge | (entries waiting, all partitions) |
/// | `events_outbox_oldest_seconds` | gauge | (how long the oldest entry has waited) |
/// | `events_outbox_forwarder_state` | gauge | `state`: 1 for the current one of `starting`, `connected`, `backing_off`, `error`; 0 for the others |
/// | `events_outbox_forwarded_total` | counter | |
/// | `events_outbox_duplicates_total` | counter | (sent again, dropped by the broker) |
/// | `events_outbox_failed_sends_total` | counter | |
/// | `events_inbox_hits_total` | counter | `event`, `handler` |
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsFacade;

impl Observer for MetricsFacade {
    fn published(&self, meta: &Meta) {
        metrics::counter!("events_published_total", "event" => meta.name()).increment(1);
    }
    fn delivered(&self, meta: &Meta, handler: &str, elapsed: Duration) {
        let labels = [
            ("event", meta.name().to_owned()),
            ("handler", handler.to_owned()),
        ];
        metrics::counter!("events_delivered_total", &labels).increment(1);
        metrics::histogram!("events_handler_seconds", &labels).record(elapsed.as_secs_f64());
    }
    fn failed(&self, meta: &Meta, handler: &str, _outcome: &Outcome, elapsed: Duration) {
        let labels = [
            ("event", meta.name().to_owned()),
            ("handler", handler.to_owned()),
        ];
        metrics::counter!("events_failed_total", &labels).increment(1);
        metrics::histogram!("events_handler_seconds", &labels).record(elapsed.as_secs_f64());
    }
    fn expired(&self, meta: &Meta) {
        metrics::counter!("events_expired_total", "event" => meta.name()).increment(1);
    }
    fn rejected(&self, event: &'static str, _error: &PublishError) {
        metrics::counter!("events_rejected_total", "event" => event).increment(1);
    }
    fn invalid(&self, event: Option<&'static str>, _error: &crate::error::IngestError) {
        let event = event.unwrap_or("");
        metrics::counter!("events_invalid_total", "event" => event).increment(1);
    }
    fn refused(&self, event: Option<&'static str>, error: &crate::error::IngestError) {
        let event = event.unwrap_or("");
        let mut error = error;
        while let crate::error::IngestError::InBatch { error: inner, .. } = error {
            error = inner;
        }
        let reason = match error {
            crate::error::IngestError::RateLimited { .. } => "rate_limited",
            _ => "forbidden",
        };
        metrics::counter!("events_refused_total", "event" => event, "reason" => reason)
            .increment(1);
    }
    fn outbox(&self, status: &crate::outbox::OutboxStatus) {
        use crate::outbox::ForwarderState as S;
        metrics::gauge!("events_outbox_backlog").set(status.backlog.events as f64);
        metrics::gauge!("events_outbox_oldest_seconds").set(status.backlog.age().as_secs_f64());
        let current = match status.state {
            S::Starting => "starting",
            S::Connected => "connected",
            S::BackingOff { .. } => "backing_off",
            _ => "error",
        };
        for state in ["starting", "connected", "backing_off", "error"] {
            metrics::gauge!("events_outbox_forwarder_state", "state" => state)
                .set(if state == current { 1.0 } else { 0.0 });
        }
        metrics::counter!("events_outbox_forwarded_total").absolute(status.forwarded);
        metrics::counter!("events_outbox_duplicates_total").absolute(status.duplicates);
        metrics::counter!("events_outbox_failed_sends_total").absolute(status.failed_sends);
    }
    fn inbox_hit(&self, meta: &Meta, handler: &str) {
        let labels = [
            ("event", meta.name().to_owned()),
            ("handler", handler.to_owned()),
        ];
        metrics::counter!("events_inbox_hits_total", &labels).increment(1);
    }
}
