//! Dead letters: handler calls that failed for good (a permanent error, a panic,
//! or a transient error with no retries left), kept with their event so they can be
//! inspected, retried or discarded.

use std::fmt;
use std::time::SystemTime;

use crate::envelope::{EventId, Meta};

/// One handler call that failed for good.
#[derive(Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its number in this bus's queue (not the event's id).
    pub id: u64,
    /// The event's envelope.
    pub meta: Meta,
    /// The payload, as JSON: what a retry delivers again. Use
    /// [`redacted_payload`](Self::redacted_payload) to show it.
    pub payload: serde_json::Value,
    /// The handler that failed.
    pub handler: String,
    /// Its last error or panic message.
    pub error: String,
    /// Whether it was a permanent failure (or a panic) rather than retries running out.
    pub permanent: bool,
    /// The event's sequence number in the bus's store, if the bus has one.
    pub sequence: Option<u64>,
    /// How many times the handler ran for this event.
    pub attempts: u32,
    /// When it first failed for this event.
    pub first_failure: SystemTime,
    /// When it last failed.
    pub last_failure: SystemTime,
}

impl DeadLetter {
    /// The payload with `#[event(redact)]` fields replaced by `"[redacted]"`.
    pub fn redacted_payload(&self) -> serde_json::Value {
        let mut json = self.payload.clone();
        if let serde_json::Value::Object(map) = &mut json {
            for key in self.meta.info().redacted_fields() {
                if let Some(v) = map.get_mut(*key) {
                    *v = serde_json::Value::String(crate::event::REDACTED.to_owned());
                }
            }
        }
        json
    }

    /// The event's name.
    pub fn event_name(&self) -> &'static str {
        self.meta.name()
    }

    /// The event's id.
    pub fn event_id(&self) -> EventId {
        self.meta.id()
    }
}

/// A dump shows the redacted payload, never the raw one.
impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.id)
            .field("event", &self.meta.name())
            .field("event_id", &self.meta.id())
            .field("handler", &self.handler)
            .field("error", &self.error)
            .field("permanent", &self.permanent)
            .field("attempts", &self.attempts)
            .field("payload", &self.redacted_payload())
            .finish_non_exhaustive()
    }
}

/// Which dead letters to list, retry or discard: all by default; each setting narrows.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct DeadLetterFilter {
    id: Option<u64>,
    event: Option<String>,
    handler: Option<String>,
    permanent: Option<bool>,
}

impl DeadLetterFilter {
    /// Every dead letter.
    pub fn all() -> DeadLetterFilter {
        DeadLetterFilter::default()
    }
    /// Only the dead letter with this number.
    pub fn id(mut self, id: u64) -> DeadLetterFilter {
        self.id = Some(id);
        self
    }
    /// Those of events with this name.
    pub fn event(mut self, name: impl Into<String>) -> DeadLetterFilter {
        self.event = Some(name.into());
        self
    }
    /// Those of this handler.
    pub fn handler(mut self, name: impl Into<String>) -> DeadLetterFilter {
        self.handler = Some(name.into());
        self
    }
    /// Only permanent failures (`true`) or only exhausted retries (`false`).
    pub fn permanent(mut self, permanent: bool) -> DeadLetterFilter {
        self.permanent = Some(permanent);
        self
    }
    pub(crate) fn matches(&self, d: &DeadLetter) -> bool {
        self.id.is_none_or(|id| id == d.id)
            && self.event.as_deref().is_none_or(|e| e == d.meta.name())
            && self.handler.as_deref().is_none_or(|h| h == d.handler)
            && self.permanent.is_none_or(|p| p == d.permanent)
    }
}
