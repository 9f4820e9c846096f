//! Running a route: every slot in order, sync and async, blocking or not, with upcast steps.

use std::time::Instant;

use super::Slot;
use super::call::*;
use super::dispatch::*;
use super::failure::*;
use crate::context::Context;
use crate::event::{AnyEvent, Payload};
use crate::handler::{HandlerError, Invocation};
use crate::receipt::Outcome;

/// Runs every slot in order, sync and async.
pub(crate) async fn run(
    slots: &[Slot],
    payload: &dyn Payload,
    ctx: &Context,
    outcomes: &mut Outcomes,
) {
    let event = payload.as_any();
    let lineage = ctx.meta.lineage();
    let observed = !ctx.bus.inner.observers.is_empty();
    let spans = spans_on();
    for (i, slot) in slots.iter().enumerate() {
        let inv = Invocation {
            event,
            payload,
            ctx,
            states: &slot.states,
        };
        let start = observed.then(Instant::now);
        let outcome = match crate::context::sync_scoped(lineage, || step(slot, &inv, spans)) {
            Step::Done if !observed => continue,
            Step::Done => Outcome::Delivered,
            Step::Called(caught) => outcome(caught),
            Step::Filtered => Outcome::Filtered,
            Step::Paused => Outcome::Paused,
            Step::Upcast(to, convert) => run_upcast(payload, ctx, to, convert).await,
            Step::Async(f) => match if spans || slot.limit.is_some() || slot.timeout.is_some() {
                // Boxed: the limit's and the timeout's futures are large, and every publish
                // future would otherwise carry room for them.
                Box::pin(call_limited_traced(slot, f, &inv, lineage, spans)).await
            } else {
                crate::context::scoped(lineage, call_async(|| f(&inv))).await
            } {
                Outcome::Delivered if !observed => continue,
                o => o,
            },
        };
        settle(i, slot, Some(payload), ctx, outcomes, outcome, start);
    }
    if let Some(sequence) = ctx.meta.sequence() {
        super::durable::record_deliveries(slots, ctx, sequence, outcomes);
    }
}

/// Runs the synchronous slots in order; async ones are marked skipped.
pub(super) fn run_blocking(
    slots: &[Slot],
    payload: &dyn Payload,
    ctx: &Context,
    outcomes: &mut Outcomes,
) {
    let event = payload.as_any();
    let observed = !ctx.bus.inner.observers.is_empty();
    let spans = spans_on();
    if !observed && !spans {
        // The common case, kept tight: nobody times handlers or wants spans.
        for (i, slot) in slots.iter().enumerate() {
            let inv = Invocation {
                event,
                payload,
                ctx,
                states: &slot.states,
            };
            match call_sync(slot, &inv) {
                Step::Done => {}
                step => settle_blocking(i, slot, payload, ctx, outcomes, step),
            }
        }
        if let Some(sequence) = ctx.meta.sequence() {
            super::durable::record_deliveries(slots, ctx, sequence, outcomes);
        }
        return;
    }
    for (i, slot) in slots.iter().enumerate() {
        let inv = Invocation {
            event,
            payload,
            ctx,
            states: &slot.states,
        };
        let start = observed.then(Instant::now);
        let outcome = match step(slot, &inv, spans) {
            Step::Done if !observed => continue,
            step => blocking_outcome(step, payload, ctx),
        };
        settle(i, slot, Some(payload), ctx, outcomes, outcome, start);
    }
    if let Some(sequence) = ctx.meta.sequence() {
        super::durable::record_deliveries(slots, ctx, sequence, outcomes);
    }
}

/// What a slot did, without a runtime: async handlers are skipped, upcasts run the next
/// version's synchronous handlers.
pub(super) fn blocking_outcome(step: Step, payload: &dyn Payload, ctx: &Context) -> Outcome {
    match step {
        Step::Done => Outcome::Delivered,
        Step::Called(caught) => outcome(caught),
        Step::Filtered => Outcome::Filtered,
        Step::Paused => Outcome::Paused,
        Step::Async(_) => Outcome::SkippedAsync,
        Step::Upcast(to, convert) => match upcast(payload, ctx, to, convert) {
            Ok((next, ctx)) => {
                let route = ctx.bus.route(to.type_id(), to);
                let slots = ctx.bus.slots_of(&route, to.type_id());
                let mut nested = Outcomes::default();
                run_blocking(slots, &*next, &ctx, &mut nested);
                upcast_outcome(to, slots, nested)
            }
            Err(failed) => failed,
        },
    }
}

/// The next version of `payload`, with its envelope: same id, correlation and lineage.
pub(super) fn upcast(
    payload: &dyn Payload,
    ctx: &Context,
    to: &'static crate::EventInfo,
    convert: Convert,
) -> Result<(Box<AnyEvent>, Context), Outcome> {
    match convert(payload) {
        Ok(next) => {
            let mut meta = ctx.meta.clone();
            meta.info = to;
            Ok((
                next,
                Context {
                    bus: ctx.bus.clone(),
                    meta,
                    attempt: ctx.attempt,
                },
            ))
        }
        Err(reason) => Err(Outcome::Failed(HandlerError::permanent(format!(
            "upcasting `{}` v{} to v{} failed: {reason}",
            ctx.meta.name(),
            ctx.meta.version(),
            to.version
        )))),
    }
}

/// Runs the handlers of the next version of `payload`, sync and async.
pub(super) async fn run_upcast(
    payload: &dyn Payload,
    ctx: &Context,
    to: &'static crate::EventInfo,
    convert: Convert,
) -> Outcome {
    match upcast(payload, ctx, to, convert) {
        Ok((next, ctx)) => {
            let route = ctx.bus.route(to.type_id(), to);
            let slots = ctx.bus.slots_of(&route, to.type_id());
            let mut nested = Outcomes::default();
            match ctx.meta.replay() {
                None => {
                    Box::pin(run(slots, &*next, &ctx, &mut nested)).await;
                    upcast_outcome(to, slots, nested)
                }
                Some(selection) => {
                    let chosen = selection.choose(slots);
                    Box::pin(run(&chosen, &*next, &ctx, &mut nested)).await;
                    upcast_outcome(to, &chosen, nested)
                }
            }
        }
        Err(failed) => failed,
    }
}

/// What the next version's handlers did, as the upcast's own outcome in the receipt of the
/// event published: the first that failed for good, else the first retry pending, else
/// delivered. The failure itself is dead-lettered (and retried) under the handler that
/// failed, not again under the upcast.
#[cold]
pub(super) fn upcast_outcome(to: &crate::EventInfo, slots: &[Slot], nested: Outcomes) -> Outcome {
    let mut retrying = None;
    for (i, o) in nested.exceptions {
        let name = slots.get(i).map_or("?", Slot::name);
        match o {
            Outcome::Failed(_) | Outcome::Panicked(_) => {
                return Outcome::Failed(HandlerError::permanent(format!(
                    "after the upcast to `{}` v{}, handler `{name}` {o}",
                    to.name, to.version
                )));
            }
            Outcome::Retrying {
                error,
                attempt,
                after,
            } if retrying.is_none() => {
                retrying = Some(Outcome::Retrying {
                    error: HandlerError::transient(format!(
                        "after the upcast to `{}` v{}, handler `{name}` failed: {error}",
                        to.name, to.version
                    )),
                    attempt,
                    after,
                });
            }
            _ => {}
        }
    }
    retrying.unwrap_or(Outcome::Delivered)
}

/// Runs one slot for an event, as a retry or a dead letter's redelivery: it settles (and
/// retries, and dead-letters) like any other call.
pub(crate) async fn run_one(slot: &Slot, payload: &AnyEvent, ctx: &Context) {
    run(
        std::slice::from_ref(slot),
        payload,
        ctx,
        &mut Outcomes::default(),
    )
    .await;
}
