//! What a failed call comes to: a retry scheduled after its delay, or a dead letter. The
//! decision is [`retry::fate`](crate::retry::fate), made here for the in-process path.

use crate::retry::Fate;
use std::time::Instant;

use super::call::*;
use super::dispatch::*;
use super::run::*;
use super::{Slot, Target};
use crate::context::Context;
use crate::event::{AnyEvent, Payload};
use crate::handler::HandlerError;
use crate::receipt::Outcome;

/// Records what a slot did other than succeed, for [`run_blocking`]'s fast loop.
#[cold]
#[inline(never)]
pub(super) fn settle_blocking(
    index: usize,
    slot: &Slot,
    payload: &dyn Payload,
    ctx: &Context,
    outcomes: &mut Outcomes,
    step: Step,
) {
    let outcome = blocking_outcome(step, payload, ctx);
    settle(index, slot, Some(payload), ctx, outcomes, outcome, None);
}

/// Tells the observers (when timed) and records a slot's outcome.
#[inline]
pub(crate) fn settle(
    index: usize,
    slot: &Slot,
    payload: Option<&AnyEvent>,
    ctx: &Context,
    outcomes: &mut Outcomes,
    outcome: Outcome,
    start: Option<Instant>,
) {
    if let Some(start) = start {
        ctx.bus
            .inner
            .observers
            .handled(&ctx.meta, slot.name(), &outcome, start.elapsed());
    }
    // Only failures have a fate to decide: success stays on the fast path.
    let outcome = match (outcome, payload) {
        (outcome @ (Outcome::Failed(_) | Outcome::Panicked(_)), Some(payload)) => {
            settle_failure(slot, payload, ctx, outcome)
        }
        (outcome, _) => outcome,
    };
    outcomes.record(index, slot, &ctx.meta, outcome);
}

/// A failed call's fate ([`crate::retry::fate`], the one decision transports use too): a
/// retry scheduled, or a dead letter (an upcast step's failure is its handler's, dead-lettered
/// there). Returns the outcome the receipt shows.
#[cold]
#[inline(never)]
pub(super) fn settle_failure(
    slot: &Slot,
    payload: &AnyEvent,
    ctx: &Context,
    outcome: Outcome,
) -> Outcome {
    let outcome = match (
        crate::retry::fate(&outcome, slot.retry, ctx.attempt),
        outcome,
    ) {
        (Fate::Retry { after, attempt }, Outcome::Failed(error)) => {
            schedule_retry(slot, payload, ctx, error, after, attempt)
        }
        (_, outcome) => outcome,
    };
    if let Some(Fate::DeadLetter { error, permanent }) = crate::retry::dead_letter(&outcome) {
        if !matches!(slot.target, Target::Upcast { .. }) {
            // Sealed: a dead letter is kept, and may be stored.
            let json = ctx
                .bus
                .sealed_json(payload)
                .unwrap_or_else(|e| serde_json::Value::String(format!("unserializable: {e}")));
            ctx.bus
                .dead_letter(ctx, slot.name(), json, error, permanent);
        }
    }
    outcome
}

/// Runs `slot` again for this event after `after`, as attempt `attempt`, on a task of its
/// own, if there is a runtime to run it on and room among the pending retries; the outcome
/// says what was decided. The event is copied through its JSON form, as the publisher's
/// value is gone by then.
#[cold]
pub(super) fn schedule_retry(
    slot: &Slot,
    payload: &AnyEvent,
    ctx: &Context,
    error: HandlerError,
    after: std::time::Duration,
    attempt: u32,
) -> Outcome {
    let (Ok(runtime), Ok(json)) = (tokio::runtime::Handle::try_current(), payload.to_json()) else {
        return Outcome::Failed(error);
    };
    let Some(pending) = ctx.bus.retry_scheduled() else {
        return Outcome::Failed(HandlerError::transient(format!(
            "{error}; not retried: {} retries are already waiting \
             (`BusBuilder::max_pending_retries`)",
            ctx.bus.inner.max_pending_retries
        )));
    };
    let error_text = error.to_string();
    let (slot, meta, decode) = (slot.clone(), ctx.meta.clone(), ctx.meta.info.decode);
    runtime.spawn(async move {
        tokio::time::sleep(after).await;
        let bus = pending.bus().clone();
        if bus.inner.lifecycle.is_stopped() {
            tracing::warn!(
                event = meta.name(), event_id = %meta.id(), handler = slot.name(), attempt,
                "retry abandoned: the bus was shut down"
            );
            return;
        }
        match decode(json.clone(), true) {
            Ok(event) => run_one(&slot, &*event, &Context { bus, meta, attempt }).await,
            // The type's `Deserialize` refuses its own `Serialize` output (a skipped field
            // without a default, say): the retry cannot run, and the failure is kept.
            Err(e) => {
                let failed = Context {
                    bus,
                    meta,
                    attempt: attempt - 1,
                };
                failed.bus.dead_letter(
                    &failed,
                    slot.name(),
                    json,
                    format!(
                        "{error_text}; not retried: the event's JSON form does not \
                         deserialize into its type again ({e})"
                    ),
                    true,
                );
            }
        }
        drop(pending);
    });
    Outcome::Retrying {
        error,
        attempt,
        after,
    }
}
