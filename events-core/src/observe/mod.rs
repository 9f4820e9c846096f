//! Observers: code told about each event's lifecycle (published, delivered with its
//! duration, failed, expired, rejected), for logs, error reports and metrics.
//!
//! Give them to [`BusBuilder::observer`](crate::BusBuilder::observer). With none, the bus
//! does not even read the clock for them.

mod collector;
#[cfg(feature = "metrics")]
mod facade;
mod metrics;

use std::time::Duration;

pub use collector::{CollectedError, ErrorCollector};
#[cfg(feature = "metrics")]
pub use facade::MetricsFacade;
pub use metrics::{
    EventStats, HandlerStats, LatencyHistogram, Metrics, MetricsSnapshot, QueueDepth,
};

use crate::envelope::Meta;
use crate::error::IngestError;
use crate::error::PublishError;
use crate::outcome::Outcome;

/// Told about each event's lifecycle. Every method does nothing by default; implement the
/// ones you need. Methods are called on the thread that handles the event: keep them quick.
pub trait Observer: Send + Sync + 'static {
    /// The bus took the event: it is being dispatched, or it is queued.
    fn published(&self, meta: &Meta) {
        let _ = meta;
    }
    /// The event's handlers are about to run, and this is the event itself: for a publish,
    /// right after [`published`](Self::published); for an emit, when a worker takes it
    /// from the queue. Not called for retries, [replays](crate::Bus::replay),
    /// [recovery](crate::Bus::recover) or events sent over a transport. For recorders (the
    /// [testing kit](crate::testing)'s capture) and audit logs.
    fn dispatching(&self, meta: &Meta, event: &crate::event::AnyEvent) {
        let _ = (meta, event);
    }
    /// A handler returned `Ok` after `elapsed`.
    fn delivered(&self, meta: &Meta, handler: &str, elapsed: Duration) {
        let _ = (meta, handler, elapsed);
    }
    /// A handler failed or panicked (`outcome` is `Failed` or `Panicked`) after `elapsed`.
    fn failed(&self, meta: &Meta, handler: &str, outcome: &Outcome, elapsed: Duration) {
        let _ = (meta, handler, outcome, elapsed);
    }
    /// A queued event expired before a worker took it; no handler ran.
    fn expired(&self, meta: &Meta) {
        let _ = meta;
    }
    /// The bus refused an event named `event` (disabled, shut down, queue full, expired,
    /// too deep); nothing was dispatched.
    fn rejected(&self, event: &'static str, error: &PublishError) {
        let _ = (event, error);
    }
    /// A handler call failed for good and went to the dead-letter queue.
    fn dead_lettered(&self, letter: &crate::dead_letter::DeadLetter) {
        let _ = letter;
    }
    /// Input from outside the process (JSON, CloudEvents) was refused: unknown event,
    /// malformed, too large, or not matching the schema. Nothing was dispatched. `event` is
    /// the event it named, when that is a known one.
    fn invalid(&self, event: Option<&'static str>, error: &IngestError) {
        let _ = (event, error);
    }
    /// A caller was refused at an entry point that takes outside input: no
    /// [access rule](crate::security::AccessRules) allowed it
    /// ([`IngestError::Forbidden`]) or a [rate limit](crate::security::RateLimits) did not
    /// ([`IngestError::RateLimited`]). Nothing was dispatched. `event` is the event it named,
    /// when that is a known one.
    fn refused(&self, event: Option<&'static str>, error: &IngestError) {
        let _ = (event, error);
    }
    /// The outbox's forwarder ([`BusBuilder::outbox`](crate::BusBuilder::outbox)) reports
    /// its state, backlog and counts: when its state changes, and at most once a second
    /// while it forwards. Called on the forwarder's task.
    fn outbox(&self, status: &crate::outbox::OutboxStatus) {
        let _ = status;
    }
    /// A delivery to the `#[handler(inbox)]` handler `handler` was skipped: its inbox had
    /// the event already.
    fn inbox_hit(&self, meta: &Meta, handler: &str) {
        let _ = (meta, handler);
    }
}

/// Logs every lifecycle step through `tracing`: published and delivered at `DEBUG`, the
/// rest at `WARN`. (Handler failures are logged at `WARN`/`ERROR` even without observers.)
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracing;

impl Observer for Tracing {
    fn published(&self, meta: &Meta) {
        tracing::debug!(event = meta.name(), event_id = %meta.id(), correlation_id = %meta.correlation_id(), "event published");
    }
    fn delivered(&self, meta: &Meta, handler: &str, elapsed: Duration) {
        tracing::debug!(event = meta.name(), event_id = %meta.id(), handler, elapsed_us = elapsed.as_micros() as u64, "event delivered");
    }
    fn expired(&self, meta: &Meta) {
        tracing::warn!(event = meta.name(), event_id = %meta.id(), "event expired before delivery");
    }
    fn rejected(&self, event: &'static str, error: &PublishError) {
        tracing::warn!(event, error = %error, "event rejected");
    }
    fn invalid(&self, event: Option<&'static str>, error: &IngestError) {
        tracing::warn!(event, error = %error, "invalid input refused");
    }
    fn refused(&self, event: Option<&'static str>, error: &IngestError) {
        tracing::warn!(event, error = %error, "caller refused");
    }
    fn outbox(&self, status: &crate::outbox::OutboxStatus) {
        tracing::debug!(
            backlog = status.backlog.events,
            oldest_age_ms = status.backlog.age().as_millis() as u64,
            state = ?status.state,
            forwarded = status.forwarded,
            duplicates = status.duplicates,
            "outbox"
        );
    }
}

/// The observers of one bus.
#[derive(Default, Clone)]
pub(crate) struct Observers(pub(crate) std::sync::Arc<[std::sync::Arc<dyn Observer>]>);

impl Observers {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn published(&self, meta: &Meta) {
        self.0.iter().for_each(|o| o.published(meta));
    }
    pub(crate) fn dispatching(&self, meta: &Meta, event: &crate::event::AnyEvent) {
        self.0.iter().for_each(|o| o.dispatching(meta, event));
    }
    pub(crate) fn dead_lettered(&self, letter: &crate::dead_letter::DeadLetter) {
        self.0.iter().for_each(|o| o.dead_lettered(letter));
    }
    pub(crate) fn invalid(&self, event: Option<&'static str>, error: &IngestError) {
        if error.is_refusal() {
            self.0.iter().for_each(|o| o.refused(event, error));
        } else {
            self.0.iter().for_each(|o| o.invalid(event, error));
        }
    }
    pub(crate) fn rejected(&self, event: &'static str, error: &PublishError) {
        self.0.iter().for_each(|o| o.rejected(event, error));
    }
    pub(crate) fn expired(&self, meta: &Meta) {
        self.0.iter().for_each(|o| o.expired(meta));
    }
    pub(crate) fn outbox(&self, status: &crate::outbox::OutboxStatus) {
        self.0.iter().for_each(|o| o.outbox(status));
    }
    pub(crate) fn inbox_hit(&self, meta: &Meta, handler: &str) {
        self.0.iter().for_each(|o| o.inbox_hit(meta, handler));
    }
    pub(crate) fn handled(&self, meta: &Meta, handler: &str, outcome: &Outcome, elapsed: Duration) {
        match outcome {
            Outcome::Delivered => self
                .0
                .iter()
                .for_each(|o| o.delivered(meta, handler, elapsed)),
            Outcome::Failed(_) | Outcome::Panicked(_) | Outcome::Retrying { .. } => self
                .0
                .iter()
                .for_each(|o| o.failed(meta, handler, outcome, elapsed)),
            Outcome::Filtered | Outcome::SkippedAsync | Outcome::Paused => {}
        }
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.0.len())
    }
}
