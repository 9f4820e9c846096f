//! [`Receipt`]: what happened to one published event, handler by handler.

use crate::bus::{Bus, Outcomes, Route, Slot};
use crate::context::Context;
use crate::envelope::EventId;
use std::fmt;

pub use crate::outcome::Outcome;

static DELIVERED: Outcome = Outcome::Delivered;
static FILTERED: Outcome = Outcome::Filtered;
static SKIPPED_ASYNC: Outcome = Outcome::SkippedAsync;

/// One handler's line in a [`Receipt`].
#[derive(Debug, Clone, Copy)]
pub struct HandlerOutcome<'a> {
    /// The handler's name.
    pub handler: &'a str,
    /// What happened.
    pub outcome: &'a Outcome,
}

/// What happened to one published event: its id and, for every handler in the order they
/// ran, what happened there.
///
/// The vocabulary: a handler's outcome is *final* (delivered, filtered, skipped, failed for
/// good) or *pending* (`Retrying`: it failed transiently and runs again later). The receipt
/// is taken when `publish` returns, so it knows a retry is pending but not how it ends.
///
/// | question | ask |
/// |---|---|
/// | did everything succeed, now? | [`is_ok`](Self::is_ok) |
/// | did anything fail for good? | [`failed`](Self::failed) |
/// | is anything still retrying? | [`retrying`](Self::retrying), [`is_settled`](Self::is_settled) |
///
/// Building it allocates nothing unless a handler fails: successes are implied, and filtered
/// or skipped handlers are bits. Handler names are looked up when asked for.
pub struct Receipt {
    pub(crate) id: EventId,
    pub(crate) name: &'static str,
    sequence: u64,
    /// The bus the event was published on (moved out of the handlers' `Context`).
    bus: Bus,
    route: Route,
    outcomes: Outcomes,
}

impl Receipt {
    #[inline(always)]
    pub(crate) fn new(ctx: Context, route: Route, outcomes: Outcomes) -> Receipt {
        let Context { bus, meta, .. } = ctx;
        let (id, name) = (meta.id, meta.name());
        let mut sequence = 0;
        if let Some(extra) = &meta.extra {
            sequence = extra.sequence;
            drop_meta(meta);
        } else {
            // Nothing to free: no call to the drop glue on the root fast path.
            std::mem::forget(meta);
        }
        Receipt {
            id,
            name,
            sequence,
            bus,
            route,
            outcomes,
        }
    }

    /// The receipt of an event sent over the transport: it is handled by consumers, so
    /// no handler is listed; `sequence` is its place in the stream.
    #[cold]
    pub(crate) fn remote(ctx: Context, sequence: u64) -> Receipt {
        Receipt {
            id: ctx.meta.id,
            name: ctx.meta.name(),
            sequence,
            bus: ctx.bus,
            route: Route::Snapshot(std::sync::Arc::from(Vec::new())),
            outcomes: Outcomes::default(),
        }
    }

    fn slots(&self) -> &[Slot] {
        match &self.route {
            Route::Snapshot(slots) => slots,
            Route::Fixed(type_id) => self.bus.slots_of(&self.route, *type_id),
        }
    }

    /// The published event's id.
    pub fn event_id(&self) -> EventId {
        self.id
    }

    /// The event's sequence number in the bus's [store](crate::store), if the bus has one:
    /// the event was stored before any handler ran.
    pub fn sequence(&self) -> Option<u64> {
        (self.sequence != 0).then_some(self.sequence)
    }

    /// The published event's name.
    pub fn event_name(&self) -> &'static str {
        self.name
    }

    /// How many handlers the event was routed to (run or not).
    pub fn handler_count(&self) -> usize {
        self.slots().len()
    }

    /// Every handler in the order they were called, with its outcome.
    pub fn outcomes(&self) -> impl Iterator<Item = HandlerOutcome<'_>> + '_ {
        let mut exceptions = self.outcomes.exceptions.iter().peekable();
        let (filtered, skipped) = (self.outcomes.filtered, self.outcomes.skipped_async);
        self.slots().iter().enumerate().map(move |(i, slot)| {
            let bit = u32::try_from(i)
                .ok()
                .and_then(|i| 1u64.checked_shl(i))
                .unwrap_or(0);
            let outcome = match exceptions.next_if(|(at, _)| *at == i) {
                Some((_, o)) => o,
                None if filtered & bit != 0 => &FILTERED,
                None if skipped & bit != 0 => &SKIPPED_ASYNC,
                None => &DELIVERED,
            };
            HandlerOutcome {
                handler: slot.name(),
                outcome,
            }
        })
    }

    /// The outcome of the handler named `handler`, if the event was routed to it.
    pub fn outcome(&self, handler: &str) -> Option<&Outcome> {
        self.outcomes()
            .find(|o| o.handler == handler)
            .map(|o| o.outcome)
    }

    /// How many handlers ran and returned `Ok`.
    pub fn delivered(&self) -> usize {
        self.outcomes()
            .filter(|o| matches!(o.outcome, Outcome::Delivered))
            .count()
    }

    /// The handlers that failed, for now or for good: [`failed`](Self::failed) and
    /// [`retrying`](Self::retrying) together.
    pub fn failures(&self) -> impl Iterator<Item = HandlerOutcome<'_>> + '_ {
        self.outcomes().filter(|o| o.outcome.is_failure())
    }

    /// The handlers that failed for good (`Failed` or `Panicked`): their calls are in the
    /// dead-letter queue.
    pub fn failed(&self) -> impl Iterator<Item = HandlerOutcome<'_>> + '_ {
        self.outcomes()
            .filter(|o| matches!(o.outcome, Outcome::Failed(_) | Outcome::Panicked(_)))
    }

    /// The handlers that failed transiently and wait for a retry (`Retrying`): how the
    /// retry ends, this receipt does not learn (observers and the dead-letter queue do).
    pub fn retrying(&self) -> impl Iterator<Item = HandlerOutcome<'_>> + '_ {
        self.outcomes()
            .filter(|o| matches!(o.outcome, Outcome::Retrying { .. }))
    }

    /// `true` when no handler waits for a retry: every outcome in this receipt is final.
    pub fn is_settled(&self) -> bool {
        !self
            .outcomes
            .exceptions
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Retrying { .. }))
    }

    /// `true` when something took the event, every handler is done and none failed: not
    /// [`is_unhandled`](Self::is_unhandled), settled ([`is_settled`](Self::is_settled)) and
    /// nothing [`failed`](Self::failed). `false` while a retry is pending, even one that will
    /// succeed; to ask only whether something failed for good, use
    /// `receipt.failed().next().is_none()`.
    pub fn is_ok(&self) -> bool {
        !self.outcomes.exceptions.iter().any(|(_, o)| o.is_failure()) && !self.is_unhandled()
    }

    /// `true` when nothing took the event: no handler or subscription of the bus, and it
    /// was neither stored nor sent over a transport. Usually the crate with its handlers is
    /// not linked into the binary: add [`events::link!`](crate::link!) naming it. (A bus
    /// built with [`no_handlers`](crate::BusBuilder::no_handlers) on purpose gets this too.)
    pub fn is_unhandled(&self) -> bool {
        self.sequence == 0 && self.slots().is_empty()
    }
}

/// Frees a child's or an optioned event's envelope.
#[inline(never)]
fn drop_meta(meta: crate::envelope::Meta) {
    drop(meta);
}

/// What happened, in a line per handler: `order.placed 0190…: 2 handlers` then
/// `  - billing.charge: delivered`. An unhandled event says why that usually is.
impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.name, self.id)?;
        if self.is_unhandled() {
            return write!(
                f,
                ": no handler or subscription of this bus takes it, and it was neither stored \
                 nor sent; if its handlers are in a library crate, add \
                 `events::link!(crate_name);` to the binary"
            );
        }
        let n = self.handler_count();
        match self.sequence() {
            Some(s) if n == 0 => return write!(f, ": stored or sent as #{s}; no local handler"),
            Some(s) => write!(f, " (#{s})")?,
            None => {}
        }
        write!(f, ": {n} handler{}", if n == 1 { "" } else { "s" })?;
        for o in self.outcomes() {
            write!(f, "\n  - {}: {}", o.handler, o.outcome)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Outcomes<'a>(&'a Receipt);
        impl fmt::Debug for Outcomes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.outcomes().map(|o| (o.handler, o.outcome)))
                    .finish()
            }
        }
        f.debug_struct("Receipt")
            .field("event_id", &self.id)
            .field("event_name", &self.name)
            .field("outcomes", &Outcomes(self))
            .finish()
    }
}
