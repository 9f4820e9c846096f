//! Typed publishing: build the envelope, look the handlers up, call them in order, and
//! record what happened. No JSON, no lock; nothing allocated per handler for sync handlers,
//! only the boxed future for async ones.

use std::any::TypeId;

use tracing::Instrument;

pub use crate::error::PublishError;

use super::run::*;
use super::{Bus, Slot};
use crate::context::Context;
use crate::envelope::{Lineage, Meta, NoOptions, Options, PublishOptions};
use crate::event::{AnyEvent, Event};
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
pub(super) fn check_metadata(name: &'static str, meta: &Meta) -> Result<(), PublishError> {
    let Some(extra) = &meta.extra else {
        return Ok(());
    };
    if extra.metadata.is_empty() && extra.source.is_none() {
        return Ok(());
    }
    check_options(name, extra)
}

#[inline(never)]
pub(super) fn check_options(
    name: &'static str,
    extra: &crate::envelope::Extra,
) -> Result<(), PublishError> {
    const CONTROL: &str = "its value contains a control character, which CloudEvents strings \
                           may not";
    let has_control = |text: &str| text.chars().any(char::is_control);
    for (key, value) in &extra.metadata {
        if !crate::options::is_metadata_key(key)
            && key != crate::cloudevents::ORIGINAL_ID
            && key != crate::security::PRINCIPAL_KEY
        {
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
    ///
    /// Events that leave the process go together: with the outbox
    /// ([`BusBuilder::outbox`](crate::BusBuilder::outbox)) all their appends are handed to
    /// the store at once (one group commit for the batch, not one per event); without it,
    /// they are stored, then sent pipelined ([`Transport::send_batch`](crate::transport::Transport::send_batch)),
    /// every message written before the first acknowledgement is awaited.
    pub async fn publish_batch<E: Event>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Vec<Result<Receipt, PublishError>> {
        if self.inner.outbound && self.is_remote(E::NAME) {
            return self
                .publish_remote_batch(events.into_iter().collect())
                .await;
        }
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
        let route = self.route(TypeId::of::<E>(), E::info());
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
            if let Some(sequence) = self.outbound_blocking(event, &mut ctx.meta)? {
                return Ok(Receipt::remote(ctx, sequence));
            }
        }
        if !self.inner.observers.is_empty() {
            self.observe_dispatch(&ctx.meta, event);
        }
        let route = self.route(type_id, ctx.meta.info());
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
    pub(super) fn observe_dispatch(&self, meta: &Meta, event: &AnyEvent) {
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
        let route = self.route(info.type_id(), info);
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
    pub(super) fn record(&mut self, index: usize, slot: &Slot, meta: &Meta, outcome: Outcome) {
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
