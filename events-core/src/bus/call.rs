//! Calling one handler: filters, the sync fast path, panics caught, async calls with their
//! concurrency limit and timeout, spans only when a subscriber wants them.

use std::any::Any;
use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

use tracing::Instrument;

use super::dispatch::*;
use super::{Slot, Target};
use crate::context::Context;
use crate::envelope::Lineage;
use crate::event::AnyEvent;
use crate::handler::{Call, HandlerError, Invocation};
use crate::receipt::Outcome;

/// Converts an event into its next version.
pub(crate) type Convert = fn(&AnyEvent) -> Result<Box<AnyEvent>, String>;

/// What one synchronous call returned: `Ok(Ok(()))` is the fast path.
pub(super) type Caught = Result<Result<(), HandlerError>, Box<dyn Any + Send>>;

/// What happened when the dispatcher reached a slot without a runtime.
pub(super) enum Step {
    /// An upcast slot: the next version's handlers run next.
    Upcast(&'static crate::EventInfo, Convert),
    /// A synchronous call returned `Ok`.
    Done,
    /// A synchronous call returned (or panicked).
    Called(Caught),
    /// The filter said no.
    Filtered,
    /// A paused subscription.
    Paused,
    /// An async handler whose filter passed: the caller drives it, or skips it.
    Async(for<'a> fn(&'a Invocation<'a>) -> crate::handler::BoxFuture<'a>),
}

/// Filters, then calls a synchronous slot; the filter runs exactly once.
#[inline(always)]
pub(super) fn call_sync(slot: &Slot, inv: &Invocation<'_>) -> Step {
    // Only subscriptions and durable handlers pause; other link-time handlers have no flag
    // to read. A durable handler being rebuilt takes live events past the rebuild's boundary.
    if let Some(paused) = &slot.paused {
        if paused.load(std::sync::atomic::Ordering::Relaxed)
            && !(slot.durable && inv.ctx.bus.passes_rebuild(slot, &inv.ctx.meta))
        {
            return Step::Paused;
        }
    }
    if let Some(filter) = &slot.filter {
        if !filter.matches(inv.payload, &inv.ctx.meta) {
            return Step::Filtered;
        }
    }
    match &slot.target {
        Target::Handler(Call::Sync(f)) => called(catch_unwind(AssertUnwindSafe(|| f(inv)))),
        Target::Subscription { call, .. } => called(catch_unwind(AssertUnwindSafe(|| {
            call(inv.payload, inv.ctx)
        }))),
        Target::Handler(Call::Async(f)) => Step::Async(*f),
        Target::Upcast { to, convert } => Step::Upcast(to, *convert),
        // Responders are kept out of the routes; `request` calls them.
        Target::Handler(Call::Respond(_) | Call::RespondAsync(_)) => {
            Step::Called(Ok(Err(HandlerError::permanent(
                "a query's responder was routed as a handler: a bug in `events`",
            ))))
        }
    }
}

/// `Done` for the fast path, so that nothing is left to drop.
#[inline(always)]
pub(super) fn called(caught: Caught) -> Step {
    match caught {
        Ok(Ok(())) => Step::Done,
        other => Step::Called(other),
    }
}

/// [`call_sync`] inside a handler span: only when a subscriber wants spans, so the span code
/// stays out of the hot loop.
#[cold]
#[inline(never)]
pub(super) fn call_sync_traced(slot: &Slot, inv: &Invocation<'_>) -> Step {
    let _span = handler_span(slot, &inv.ctx.meta, inv.ctx.attempt).entered();
    call_sync(slot, inv)
}

/// One slot, traced or not; `spans` is [`spans_on`], read once per publish.
#[inline(always)]
pub(super) fn step(slot: &Slot, inv: &Invocation<'_>, spans: bool) -> Step {
    if spans {
        call_sync_traced(slot, inv)
    } else {
        call_sync(slot, inv)
    }
}

#[cold]
pub(crate) fn outcome(result: Caught) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Delivered,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(panic) => Outcome::Panicked(panic_message(&*panic)),
    }
}

pub(super) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Calls an async slot within its concurrency limit and timeout; `start` makes its future.
pub(crate) async fn call_limited<'a>(
    slot: &Slot,
    start: impl FnOnce() -> crate::handler::BoxFuture<'a>,
) -> Outcome {
    // The semaphore is never closed, so `acquire` cannot fail; without a permit the call
    // would only exceed the limit, not misbehave.
    let _permit = match &slot.limit {
        Some(limit) => limit.acquire().await.ok(),
        None => None,
    };
    match slot.timeout {
        Some(after) => match tokio::time::timeout(after, call_async(start)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed(HandlerError::transient(crate::HandlerTimedOut { after })),
        },
        None => call_async(start).await,
    }
}

pub(super) async fn call_async<'a>(
    start: impl FnOnce() -> crate::handler::BoxFuture<'a>,
) -> Outcome {
    let mut fut = match catch_unwind(AssertUnwindSafe(start)) {
        Ok(fut) => fut,
        Err(p) => return Outcome::Panicked(panic_message(&*p)),
    };
    let res = poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(p) => Poll::Ready(Err(p)),
        },
    )
    .await;
    outcome(res)
}

/// An async slot with a concurrency limit or a timeout, or traced.
pub(super) async fn call_limited_traced(
    slot: &Slot,
    f: for<'a> fn(&'a Invocation<'a>) -> crate::handler::BoxFuture<'a>,
    inv: &Invocation<'_>,
    lineage: Lineage,
    spans: bool,
) -> Outcome {
    let call = crate::context::scoped(lineage, call_limited(slot, || f(inv)));
    if spans {
        call.instrument(handler_span(slot, &inv.ctx.meta, inv.ctx.attempt))
            .await
    } else {
        call.await
    }
}

/// Calls one slot once, without settling: no retry is scheduled and nothing is
/// dead-lettered; the caller decides (a transport's consumer acknowledges, naks or
/// terminates).
pub(crate) async fn call_once(slot: &Slot, payload: &AnyEvent, ctx: &Context) -> Outcome {
    let inv = Invocation {
        event: payload.as_any(),
        payload,
        ctx,
        states: &slot.states,
    };
    let lineage = ctx.meta.lineage();
    let spans = spans_on();
    match crate::context::sync_scoped(lineage, || step(slot, &inv, spans)) {
        Step::Done => Outcome::Delivered,
        Step::Called(caught) => outcome(caught),
        Step::Filtered => Outcome::Filtered,
        Step::Paused => Outcome::Paused,
        Step::Upcast(..) => Outcome::Failed(HandlerError::permanent(
            "an upcast step was consumed as a handler: a bug in `events`",
        )),
        Step::Async(f) => Box::pin(call_limited_traced(slot, f, &inv, lineage, spans)).await,
    }
}
