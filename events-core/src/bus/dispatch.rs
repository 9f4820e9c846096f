//! Typed publishing: build the envelope, look the handlers up, call them in order, and
//! record what happened. No JSON, no lock; nothing allocated per handler for sync handlers,
//! only the boxed future for async ones.

use crate::retry::Fate;
use std::any::{Any, TypeId};
use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;
use std::time::Instant;

use tracing::Instrument;

pub use crate::error::PublishError;

use super::{Bus, Slot, Target};
use crate::context::Context;
use crate::envelope::{Lineage, Meta, NoOptions, Options, PublishOptions};
use crate::event::{AnyEvent, Event, Payload};
use crate::handler::{Call, HandlerError, Invocation};
use crate::receipt::{Outcome, Receipt};

/// Every metadata entry and the source must travel as CloudEvents attributes: none is
/// dropped on the way out, and none is sent that a receiving bus would refuse.
#[cold]
fn bad_envelope(name: &'static str, key: &str, reason: &'static str) -> PublishError {
    PublishError::BadMetadata {
        name,
        key: crate::ingest::clip(key),
        reason,
    }
}

/// Checks what options added to an envelope: its metadata and its own source (the bus's
/// source is checked once, by `build`).
#[inline]
fn check_metadata(name: &'static str, meta: &Meta) -> Result<(), PublishError> {
    let Some(extra) = &meta.extra else {
        return Ok(());
    };
    if extra.metadata.is_empty() && extra.source.is_none() {
        return Ok(());
    }
    check_options(name, extra)
}

#[inline(never)]
fn check_options(name: &'static str, extra: &crate::envelope::Extra) -> Result<(), PublishError> {
    const CONTROL: &str = "its value contains a control character, which CloudEvents strings \
                           may not";
    let has_control = |text: &str| text.chars().any(char::is_control);
    for (key, value) in &extra.metadata {
        if !crate::options::is_metadata_key(key) && key != crate::cloudevents::ORIGINAL_ID {
            return Err(bad_envelope(
                name,
                key,
                "it cannot travel as a CloudEvents extension: use lower-case ASCII letters and \
                 digits (e.g. `tenantid`), not an attribute of the envelope",
            ));
        }
        if value.as_str().is_some_and(has_control) {
            return Err(bad_envelope(name, key, CONTROL));
        }
        // Both become attributes of their own, which only take text of their form.
        if key == "subject" && value.as_str().is_none() {
            return Err(bad_envelope(
                name,
                key,
                "the CloudEvents `subject` is a string",
            ));
        }
        if key == "traceparent"
            && !value
                .as_str()
                .is_some_and(crate::cloudevents::is_traceparent)
        {
            return Err(bad_envelope(
                name,
                key,
                "not W3C trace context (`00-<32 hex>-<16 hex>-<2 hex>`)",
            ));
        }
    }
    if extra.source.as_deref().is_some_and(has_control) {
        return Err(bad_envelope(name, "source", CONTROL));
    }
    Ok(())
}

impl Bus {
    /// Publishes an event and runs every handler for it, sync and async, one after the other
    /// in dispatch order. Resolves when all have finished.
    ///
    /// A handler's error or panic is caught and reported in the [`Receipt`] and through
    /// `tracing`; it never reaches the caller or the other handlers.
    ///
    /// # Errors
    /// [`PublishError`] when the event cannot be published at all; then no handler ran.
    pub async fn publish<E: Event>(&self, event: E) -> Result<Receipt, PublishError> {
        self.publish_from(event, None, NoOptions).await
    }

    /// [`publish`](Self::publish) with a correlation id, source or metadata.
    pub async fn publish_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        self.publish_from(event, None, options).await
    }

    /// [`publish`](Self::publish)es each event in order; one result per event.
    pub async fn publish_batch<E: Event>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Vec<Result<Receipt, PublishError>> {
        let mut out = Vec::new();
        for event in events {
            out.push(self.publish_from(event, None, NoOptions).await);
        }
        out
    }

    /// Publishes from code with no async runtime: runs the synchronous handlers in dispatch
    /// order on the calling thread. Async handlers do not run; the receipt marks them
    /// [`Outcome::SkippedAsync`].
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn publish_blocking<E: Event>(&self, event: E) -> Result<Receipt, PublishError> {
        self.publish_blocking_from(event, None, NoOptions)
    }

    /// [`publish_blocking`](Self::publish_blocking) with a correlation id, source or metadata.
    pub fn publish_blocking_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        self.publish_blocking_from(event, None, options)
    }

    /// Publishes with the given lineage and options. Marked `inline(always)` so that the
    /// public entry points, which pass literal `None`s, compile to a root-event fast path
    /// with no options to move or drop.
    #[inline(always)]
    pub(crate) async fn publish_from<E: Event>(
        &self,
        event: E,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<Receipt, PublishError> {
        let mut ctx = self.context::<E>(parent, options)?;
        if self.inner.outbound {
            if let Some(sequence) = self.outbound(&event, &mut ctx.meta).await? {
                return Ok(Receipt::remote(ctx, sequence));
            }
        }
        if !self.inner.observers.is_empty() {
            self.observe_dispatch(&ctx.meta, &event);
        }
        let route = self.route(TypeId::of::<E>());
        let mut outcomes = Outcomes::default();
        let slots = self.dispatch_slots(&route, TypeId::of::<E>(), &ctx.meta);
        if spans_on() {
            let span = publish_span(&ctx.meta);
            run(slots, &event, &ctx, &mut outcomes)
                .instrument(span)
                .await;
        } else {
            run(slots, &event, &ctx, &mut outcomes).await;
        }
        Ok(Receipt::new(ctx, route, outcomes))
    }

    /// As [`publish_from`](Self::publish_from), without a runtime.
    #[inline(always)]
    pub(crate) fn publish_blocking_from<E: Event>(
        &self,
        event: E,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<Receipt, PublishError> {
        let ctx = self.context::<E>(parent, options)?;
        self.dispatch_blocking(event, ctx)
    }

    /// Stores (with a store), then runs the synchronous handlers of an event whose envelope
    /// is made.
    #[inline(always)]
    fn dispatch_blocking<E: Event>(&self, event: E, ctx: Context) -> Result<Receipt, PublishError> {
        self.dispatch_blocking_any(&event, TypeId::of::<E>(), ctx)
    }

    /// [`dispatch_blocking`](Self::dispatch_blocking) of an event of type `type_id`.
    #[inline(always)]
    fn dispatch_blocking_any(
        &self,
        event: &AnyEvent,
        type_id: TypeId,
        mut ctx: Context,
    ) -> Result<Receipt, PublishError> {
        if self.inner.outbound {
            self.outbound_blocking(event, &mut ctx.meta)?;
        }
        if !self.inner.observers.is_empty() {
            self.observe_dispatch(&ctx.meta, event);
        }
        let route = self.route(type_id);
        let mut outcomes = Outcomes::default();
        let slots = self.dispatch_slots(&route, type_id, &ctx.meta);
        let lineage = ctx.meta.lineage();
        let mut dispatch = || {
            crate::context::sync_scoped(lineage, || run_blocking(slots, event, &ctx, &mut outcomes))
        };
        if spans_on() {
            publish_span(&ctx.meta).in_scope(dispatch)
        } else {
            dispatch()
        }
        Ok(Receipt::new(ctx, route, outcomes))
    }

    #[inline(always)]
    pub(crate) fn context<E: Event>(
        &self,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<Context, PublishError> {
        Ok(Context {
            bus: self.clone(),
            meta: self.meta::<E>(parent, options)?,
            attempt: 1,
        })
    }

    /// A new envelope for an `E`, checked against the depth limit.
    #[inline(always)]
    pub(crate) fn meta<E: Event>(
        &self,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<Meta, PublishError> {
        self.try_meta::<E>(parent, options)
            .map_err(|e| self.refused(E::NAME, e))
    }

    /// Tells the observers an event was published and is about to be dispatched.
    #[cold]
    fn observe_dispatch(&self, meta: &Meta, event: &AnyEvent) {
        self.inner.observers.published(meta);
        self.inner.observers.dispatching(meta, event);
    }

    /// An event that no handler or subscription takes, and that was neither stored nor
    /// sent: warns once per event type, naming the likely cause (an unlinked crate of
    /// handlers). The receipt says so too ([`Receipt::is_unhandled`]).
    #[cold]
    #[inline(never)]
    pub(crate) fn taken_by_nothing(&self, meta: &Meta) {
        if meta.sequence().is_some() {
            return; // stored: replay and recovery may still deliver it
        }
        let first = self
            .inner
            .unhandled_warned
            .get(&meta.info.type_id())
            .is_some_and(|warned| !warned.swap(true, std::sync::atomic::Ordering::Relaxed));
        if first {
            tracing::warn!(
                event = meta.name(),
                "`{}` was published, but no handler or subscription of this bus takes it; \
                 if its handlers are in a library crate, add `events::link!(crate_name);` to \
                 the binary (rustc links a crate only when the code names it)",
                meta.name()
            );
        }
    }

    /// Tells the observers an event was refused, and gives the error back.
    #[cold]
    pub(crate) fn refused(&self, name: &'static str, error: PublishError) -> PublishError {
        self.inner.observers.rejected(name, &error);
        error
    }

    #[inline(always)]
    fn try_meta<E: Event>(
        &self,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<Meta, PublishError> {
        self.try_meta_of(E::info(), parent, options)
    }

    /// [`try_meta`](Self::try_meta) for a type known by its catalog entry.
    #[inline(always)]
    pub(crate) fn try_meta_of<O: Options>(
        &self,
        info: &'static crate::EventInfo,
        parent: Option<Lineage>,
        options: O,
    ) -> Result<Meta, PublishError> {
        self.inner.lifecycle.check(info.name, || {
            parent.is_some() || crate::context::current().is_some()
        })?;
        // Published from inside a handler without its `Context`: still a child.
        let parent = parent.or_else(crate::context::current);
        if let Some(p) = parent {
            let depth = p.depth + 1;
            if depth > self.inner.max_depth {
                return Err(PublishError::TooDeep {
                    name: info.name,
                    depth,
                    limit: self.inner.max_depth,
                });
            }
        }
        let no_options = O::NONE;
        let meta = Meta::new(info, self.inner.source, parent, options);
        // Only options set an expiry or metadata.
        if !no_options {
            if meta.is_expired() {
                return Err(PublishError::Expired { name: info.name });
            }
            check_metadata(info.name, &meta)?;
        }
        Ok(meta)
    }

    /// The context of an event known by its catalog entry; empty options make a plain root
    /// envelope.
    fn context_of(
        &self,
        info: &'static crate::EventInfo,
        options: PublishOptions,
    ) -> Result<Context, PublishError> {
        Ok(Context {
            bus: self.clone(),
            meta: self
                .try_meta_of(info, None, (!options.is_empty()).then_some(options))
                .map_err(|e| self.refused(info.name, e))?,
            attempt: 1,
        })
    }

    /// Publishes an event known only as [`AnyEvent`] (decoded from outside): the same
    /// dispatch as [`publish_with`](Self::publish_with), routed by the value's type.
    pub(crate) async fn publish_any(
        &self,
        event: Box<AnyEvent>,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        let info = event.info();
        let mut ctx = self.context_of(info, options)?;
        if self.inner.outbound {
            if let Some(sequence) = self.outbound(&*event, &mut ctx.meta).await? {
                return Ok(Receipt::remote(ctx, sequence));
            }
        }
        if !self.inner.observers.is_empty() {
            self.observe_dispatch(&ctx.meta, &*event);
        }
        let route = self.route(info.type_id());
        let mut outcomes = Outcomes::default();
        let slots = self.dispatch_slots(&route, info.type_id(), &ctx.meta);
        let span = if spans_on() {
            publish_span(&ctx.meta)
        } else {
            tracing::Span::none()
        };
        run(slots, &*event, &ctx, &mut outcomes)
            .instrument(span)
            .await;
        Ok(Receipt::new(ctx, route, outcomes))
    }

    /// [`publish_any`](Self::publish_any) without a runtime: synchronous handlers only.
    pub(crate) fn publish_any_blocking(
        &self,
        event: Box<AnyEvent>,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        let info = event.info();
        let ctx = self.context_of(info, options)?;
        self.dispatch_blocking_any(&*event, info.type_id(), ctx)
    }
}

/// Whether any subscriber wants `DEBUG` spans: one relaxed load. Spans are made only then;
/// even a disabled `debug_span!` costs ~20 ns per call, which the typed path cannot afford
/// per handler.
#[inline]
pub(crate) fn spans_on() -> bool {
    tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG
}

/// The span of one publish (or emit); handler spans are its children. `DEBUG`; call only
/// when [`spans_on`].
#[cold]
pub(crate) fn publish_span(meta: &Meta) -> tracing::Span {
    tracing::debug_span!(
        "publish",
        event = meta.name(),
        event_id = %meta.id(),
        correlation_id = %meta.correlation_id(),
    )
}

/// The span of one handler call; call only when [`spans_on`].
#[cold]
pub(crate) fn handler_span(slot: &Slot, meta: &Meta, attempt: u32) -> tracing::Span {
    tracing::debug_span!(
        "handler",
        handler = slot.name(),
        event = meta.name(),
        event_id = %meta.id(),
        correlation_id = %meta.correlation_id(),
        attempt,
    )
}

/// Outcomes other than `Delivered`, gathered while handlers run. Filtered and skipped
/// handlers among the first 64 are bits, so only a failure allocates.
#[derive(Default)]
pub(crate) struct Outcomes {
    /// `(slot index, outcome)`, in slot order.
    pub(crate) exceptions: Vec<(usize, Outcome)>,
    pub(crate) filtered: u64,
    pub(crate) skipped_async: u64,
}

impl Outcomes {
    fn record(&mut self, index: usize, slot: &Slot, meta: &Meta, outcome: Outcome) {
        match &outcome {
            Outcome::Failed(e) => tracing::warn!(
                event = meta.name(), event_id = %meta.id(), handler = slot.name(),
                transient = e.is_transient(), error = %e, "event handler failed"
            ),
            Outcome::Panicked(m) => tracing::error!(
                event = meta.name(), event_id = %meta.id(), handler = slot.name(),
                panic = %m, "event handler panicked"
            ),
            Outcome::Retrying {
                error,
                attempt,
                after,
            } => tracing::warn!(
                event = meta.name(), event_id = %meta.id(), handler = slot.name(),
                error = %error, next_attempt = attempt, retry_in_ms = after.as_millis() as u64,
                "event handler failed; retrying"
            ),
            Outcome::Delivered | Outcome::Filtered | Outcome::SkippedAsync | Outcome::Paused => {}
        }
        let bit = u32::try_from(index).ok().and_then(|i| 1u64.checked_shl(i));
        match (outcome, bit) {
            (Outcome::Delivered, _) => {}
            (Outcome::Filtered, Some(bit)) => self.filtered |= bit,
            (Outcome::SkippedAsync, Some(bit)) => self.skipped_async |= bit,
            (outcome, _) => self.exceptions.push((index, outcome)),
        }
    }
}

/// Converts an event into its next version.
pub(crate) type Convert = fn(&AnyEvent) -> Result<Box<AnyEvent>, String>;

/// What one synchronous call returned: `Ok(Ok(()))` is the fast path.
type Caught = Result<Result<(), HandlerError>, Box<dyn Any + Send>>;

/// What happened when the dispatcher reached a slot without a runtime.
enum Step {
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
fn call_sync(slot: &Slot, inv: &Invocation<'_>) -> Step {
    // Only subscriptions pause; link-time handlers have no flag to read.
    if let Some(paused) = &slot.paused {
        if paused.load(std::sync::atomic::Ordering::Relaxed) {
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
fn called(caught: Caught) -> Step {
    match caught {
        Ok(Ok(())) => Step::Done,
        other => Step::Called(other),
    }
}

/// [`call_sync`] inside a handler span: only when a subscriber wants spans, so the span code
/// stays out of the hot loop.
#[cold]
#[inline(never)]
fn call_sync_traced(slot: &Slot, inv: &Invocation<'_>) -> Step {
    let _span = handler_span(slot, &inv.ctx.meta, inv.ctx.attempt).entered();
    call_sync(slot, inv)
}

/// One slot, traced or not; `spans` is [`spans_on`], read once per publish.
#[inline(always)]
fn step(slot: &Slot, inv: &Invocation<'_>, spans: bool) -> Step {
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

fn panic_message(panic: &(dyn Any + Send)) -> String {
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

async fn call_async<'a>(start: impl FnOnce() -> crate::handler::BoxFuture<'a>) -> Outcome {
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
async fn call_limited_traced(
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
fn run_blocking(slots: &[Slot], payload: &dyn Payload, ctx: &Context, outcomes: &mut Outcomes) {
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
fn blocking_outcome(step: Step, payload: &dyn Payload, ctx: &Context) -> Outcome {
    match step {
        Step::Done => Outcome::Delivered,
        Step::Called(caught) => outcome(caught),
        Step::Filtered => Outcome::Filtered,
        Step::Paused => Outcome::Paused,
        Step::Async(_) => Outcome::SkippedAsync,
        Step::Upcast(to, convert) => match upcast(payload, ctx, to, convert) {
            Ok((next, ctx)) => {
                let route = ctx.bus.route(to.type_id());
                let slots = ctx.bus.slots_of(&route, to.type_id());
                let mut nested = Outcomes::default();
                run_blocking(slots, &*next, &ctx, &mut nested);
                upcast_outcome(to, slots, nested)
            }
            Err(failed) => failed,
        },
    }
}

/// Records what a slot did other than succeed, for [`run_blocking`]'s fast loop.
#[cold]
#[inline(never)]
fn settle_blocking(
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

/// The next version of `payload`, with its envelope: same id, correlation and lineage.
fn upcast(
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
async fn run_upcast(
    payload: &dyn Payload,
    ctx: &Context,
    to: &'static crate::EventInfo,
    convert: Convert,
) -> Outcome {
    match upcast(payload, ctx, to, convert) {
        Ok((next, ctx)) => {
            let route = ctx.bus.route(to.type_id());
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
fn upcast_outcome(to: &crate::EventInfo, slots: &[Slot], nested: Outcomes) -> Outcome {
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

/// A failed call's fate ([`crate::retry::fate`], the one decision transports use too): a
/// retry scheduled, or a dead letter (an upcast step's failure is its handler's, dead-lettered
/// there). Returns the outcome the receipt shows.
#[cold]
#[inline(never)]
fn settle_failure(slot: &Slot, payload: &AnyEvent, ctx: &Context, outcome: Outcome) -> Outcome {
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
            let json = payload
                .to_json()
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
fn schedule_retry(
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
