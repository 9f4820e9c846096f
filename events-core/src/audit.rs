//! The bus's own record of what was done to it: refusals at the entry points, dead letters
//! retried or discarded, replays, forgotten data subjects and retention runs, as events
//! ([`BusBuilder::audit`](crate::BusBuilder::audit)). They are published like any other
//! event: stored with the rest, queried by name (`events.audit.>`), handled by
//! `#[handler]`s. They stay in the process and its store: never sent through the transport
//! (processes that share a PostgreSQL store share their records), never taken from outside
//! (no entry point accepts an `events.audit.` name), and in the bus's catalog only when it
//! records them.
//!
//! Refusals are recorded at most 100 a second (burst 100): past that, the next record says
//! how many were left out (`suppressed`), so a flood of hostile input cannot flood the store.

use crate::ids::EventId;

/// A caller was refused at an entry point that takes outside input: no access rule allowed
/// it, or a rate limit did not.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    crate::Event,
)]
#[event(name = "events.audit.refused", crate = crate)]
pub struct Refused {
    /// The caller.
    pub principal: String,
    /// The event it named, as it sent it (control characters escaped, clipped); empty when
    /// it named none.
    pub event: String,
    /// `forbidden` or `rate_limited`.
    pub reason: String,
    /// The refusal's message.
    pub message: String,
    /// Refusals left out of the record since the previous one (past 100 a second).
    pub suppressed: u64,
}

/// A dead letter was delivered again to its handler.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    crate::Event,
)]
#[event(name = "events.audit.dead_letter_retried", crate = crate)]
pub struct DeadLetterRetried {
    /// The dead letter's id.
    pub letter: u64,
    /// Its event's id.
    pub event_id: EventId,
    /// Its event's name.
    pub event: String,
    /// The handler it went to.
    pub handler: String,
}

/// Dead letters were discarded.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    crate::Event,
)]
#[event(name = "events.audit.dead_letters_discarded", crate = crate)]
pub struct DeadLettersDiscarded {
    /// The discarded letters: `(letter id, event id, event name, handler)`.
    pub letters: Vec<(u64, EventId, String, String)>,
}

/// Stored events were delivered again ([`Bus::replay`](crate::Bus::replay) or a projection's
/// rebuild).
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    crate::Event,
)]
#[event(name = "events.audit.replayed", crate = crate)]
pub struct Replayed {
    /// The query, as it reads (`StoreQuery`'s `Debug`).
    pub query: String,
    /// The handlers it was limited to; empty for every handler that allows replay.
    pub only: Vec<String>,
    /// Events delivered again.
    pub events: u64,
    /// Deliveries made.
    pub deliveries: u64,
    /// Handler calls that failed.
    pub failures: u64,
}

/// A data subject was forgotten ([`Bus::forget`](crate::Bus::forget)).
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    crate::Event,
)]
#[event(name = "events.audit.forgotten", crate = crate)]
pub struct Forgotten {
    /// The subject's id (control characters escaped, clipped).
    pub subject: String,
    /// How many keys were deleted.
    pub keys: u64,
}

/// A retention run deleted events ([`Bus::enforce_retention`](crate::Bus::enforce_retention)).
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    crate::Event,
)]
#[event(name = "events.audit.retention", crate = crate)]
pub struct RetentionRun {
    /// Events deleted, per rule (the rule's pattern).
    pub deleted: Vec<(String, u64)>,
    /// Dead letters deleted.
    pub dead_letters: u64,
}
