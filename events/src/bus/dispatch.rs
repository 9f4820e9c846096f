//! Typed publishing: build the envelope, look the handlers up, call them in order, and
//! record what happened. No JSON, no lock; nothing allocated per handler for sync handlers,
//! only the boxed future for async ones.

use std::any::{Any, TypeId};
use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::Poll;

use super::{Bus, Slot, Target};
use crate::context::Context;
use crate::envelope::{EventId, Meta, PublishOptions};
use crate::event::Event;
use crate::handler::{Call, HandlerError, Invocation};
use crate::receipt::{Outcome, Receipt};

/// Why an event could not be published. No handler ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event is too many generations below its root event.
    #[error(
        "event `{name}` would be {depth} generations below its root event (limit {limit}): \
         a handler probably publishes the event that triggers it; raise the limit with \
         `BusBuilder::max_depth` if the chain is intended"
    )]
    TooDeep {
        /// The event's name.
        name: &'static str,
        /// Its depth.
        depth: u32,
        /// The bus's limit.
        limit: u32,
    },
    /// [`Bus::try_emit`] found the queue full; the event was not queued.
    #[error(
        "event `{name}` was not queued: the queue is full ({capacity} events); emit with \
         `.emit(..).await` to wait for room, or raise `BusBuilder::queue_capacity`"
    )]
    QueueFull {
        /// The event's name.
        name: &'static str,
        /// The queue's capacity.
        capacity: usize,
    },
    /// Emitting needs a tokio runtime to run the workers on.
    #[error("`emit` needs a tokio runtime for its workers: call it from inside one")]
    NoRuntime,
    /// The bus no longer accepts events.
    #[error("the bus is closed and accepts no more events")]
    Closed,
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
        self.publish_from(event, None, None).await
    }

    /// [`publish`](Self::publish) with a correlation id, source or metadata.
    pub async fn publish_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        self.publish_from(event, None, Some(options)).await
    }

    /// Publishes from code with no async runtime: runs the synchronous handlers in dispatch
    /// order on the calling thread. Async handlers do not run; the receipt marks them
    /// [`Outcome::SkippedAsync`].
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn publish_blocking<E: Event>(&self, event: E) -> Result<Receipt, PublishError> {
        self.publish_blocking_from(event, None, None)
    }

    /// [`publish_blocking`](Self::publish_blocking) with a correlation id, source or metadata.
    pub fn publish_blocking_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        self.publish_blocking_from(event, None, Some(options))
    }

    pub(crate) async fn publish_from<E: Event>(
        &self,
        event: E,
        parent: Option<&Meta>,
        options: Option<PublishOptions>,
    ) -> Result<Receipt, PublishError> {
        let ctx = self.context::<E>(parent, options)?;
        let slots = self.slots(TypeId::of::<E>());
        Ok(run(slots, &event, &ctx).await)
    }

    pub(crate) fn publish_blocking_from<E: Event>(
        &self,
        event: E,
        parent: Option<&Meta>,
        options: Option<PublishOptions>,
    ) -> Result<Receipt, PublishError> {
        let ctx = self.context::<E>(parent, options)?;
        let slots = self.slots(TypeId::of::<E>());
        Ok(run_blocking(slots, &event, &ctx))
    }

    #[inline]
    pub(crate) fn context<E: Event>(
        &self,
        parent: Option<&Meta>,
        options: Option<PublishOptions>,
    ) -> Result<Context, PublishError> {
        let depth = parent.map_or(0, |p| p.depth + 1);
        if depth > self.inner.max_depth {
            return Err(PublishError::TooDeep {
                name: E::NAME,
                depth,
                limit: self.inner.max_depth,
            });
        }
        let (id, time) = EventId::now();
        let mut meta = Meta {
            id,
            name: E::NAME,
            version: E::VERSION,
            time,
            source: Arc::clone(&self.inner.source),
            correlation_id: parent.map_or(id, |p| p.correlation_id),
            causation_id: parent.map(|p| p.id),
            depth,
            metadata: Default::default(),
        };
        if let Some(o) = options {
            if let Some(c) = o.correlation_id {
                meta.correlation_id = c;
            }
            if let Some(s) = o.source {
                meta.source = s;
            }
            meta.metadata = o.metadata;
        }
        Ok(Context {
            bus: self.clone(),
            meta,
        })
    }
}

/// The part of a handler call that is the same with and without a runtime: the filter, then
/// a synchronous call with panics caught. `None` means "async: the caller drives it".
#[inline]
fn call_sync(slot: &Slot, inv: &Invocation<'_>) -> Option<Outcome> {
    if let Some(filter) = slot.filter {
        if !filter(inv.event, &inv.ctx.meta) {
            return Some(Outcome::Filtered);
        }
    }
    let result = match &slot.target {
        Target::Handler(Call::Sync(f)) => catch_unwind(AssertUnwindSafe(|| f(inv))),
        Target::Subscription { call, .. } => {
            catch_unwind(AssertUnwindSafe(|| call(inv.event, inv.ctx)))
        }
        Target::Handler(Call::Async(_)) => return None,
    };
    Some(outcome(result))
}

fn outcome(result: Result<Result<(), HandlerError>, Box<dyn Any + Send>>) -> Outcome {
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

fn record(receipt: &mut Receipt, index: usize, slot: &Slot, outcome: Outcome) {
    match &outcome {
        Outcome::Failed(e) => tracing::warn!(
            event = receipt.name, event_id = %receipt.id, handler = slot.name(),
            transient = e.is_transient(), error = %e, "event handler failed"
        ),
        Outcome::Panicked(m) => tracing::error!(
            event = receipt.name, event_id = %receipt.id, handler = slot.name(),
            panic = %m, "event handler panicked"
        ),
        Outcome::Delivered | Outcome::Filtered | Outcome::SkippedAsync => {}
    }
    receipt.record(index, outcome);
}

pub(crate) async fn run(
    slots: Option<Arc<[Slot]>>,
    event: &(dyn Any + Send + Sync),
    ctx: &Context,
) -> Receipt {
    let mut receipt = Receipt::new(ctx.meta.id, ctx.meta.name);
    if let Some(slots) = &slots {
        for (i, slot) in slots.iter().enumerate() {
            let inv = Invocation {
                event,
                ctx,
                states: &slot.states,
            };
            let outcome = match call_sync(slot, &inv) {
                Some(o) => o,
                None => match &slot.target {
                    Target::Handler(Call::Async(f)) => {
                        let mut fut = catch_unwind(AssertUnwindSafe(|| f(&inv)));
                        match &mut fut {
                            Ok(fut) => {
                                let res = poll_fn(|cx| {
                                    match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                                        Ok(Poll::Pending) => Poll::Pending,
                                        Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
                                        Err(p) => Poll::Ready(Err(p)),
                                    }
                                })
                                .await;
                                outcome(res)
                            }
                            Err(p) => Outcome::Panicked(panic_message(&**p)),
                        }
                    }
                    _ => Outcome::SkippedAsync,
                },
            };
            record(&mut receipt, i, slot, outcome);
        }
    }
    receipt.slots = slots;
    receipt
}

fn run_blocking(
    slots: Option<Arc<[Slot]>>,
    event: &(dyn Any + Send + Sync),
    ctx: &Context,
) -> Receipt {
    let mut receipt = Receipt::new(ctx.meta.id, ctx.meta.name);
    if let Some(slots) = &slots {
        for (i, slot) in slots.iter().enumerate() {
            let inv = Invocation {
                event,
                ctx,
                states: &slot.states,
            };
            let outcome = call_sync(slot, &inv).unwrap_or(Outcome::SkippedAsync);
            record(&mut receipt, i, slot, outcome);
        }
    }
    receipt.slots = slots;
    receipt
}
